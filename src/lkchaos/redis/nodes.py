"""Which container is the Redis node at an address Sentinel announces.

Sentinel announces a node by whatever its configuration says (``replica-announce-ip``) or by
the address it saw: a compose service name, a container's hostname, a network alias or an IP
address on the deployment's network. A container matches an announced host when the host is
one of its identities (:func:`identities`): its runtime name (as the target names it), its
container name, its hostname, its network aliases (and the DNS names Docker gives it), or one
of its IP addresses. Only the containers of the roles ``redis_primary`` and ``redis_replica``
are candidates, so a match never reaches anything else.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from lkchaos.settings import Settings

#: The roles whose containers may hold a Redis data node.
REDIS_ROLES = ("redis_primary", "redis_replica")

#: Kinds of identity, in the order they are tried and reported.
KINDS = ("runtime name", "container name", "hostname", "network alias", "IP address")


def candidates(settings: Settings) -> list[str]:
    """Runtime names of the Redis data nodes: the roles ``redis_primary``, ``redis_replica``."""
    names: list[str] = []
    for role in REDIS_ROLES:
        names += [name for name in settings.roles.get(role, ()) if name not in names]
    return names


def _ip(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        return None


def identities(name: str, container: Any) -> dict[str, list[str]]:
    """Every name and address a container answers to, by kind (see :data:`KINDS`), from
    ``container.attrs`` as the Docker engine reports it (empty values left out)."""
    attrs: Mapping[str, Any] = getattr(container, "attrs", None) or {}
    config: Mapping[str, Any] = attrs.get("Config") or {}
    settings: Mapping[str, Any] = attrs.get("NetworkSettings") or {}
    networks: Mapping[str, Any] = settings.get("Networks") or {}
    hostname = str(config.get("Hostname") or "")
    domain = str(config.get("Domainname") or "")
    aliases: list[str] = []
    addresses: list[str] = [str(settings.get(k) or "") for k in ("IPAddress", "GlobalIPv6Address")]
    for network in networks.values():
        network = network or {}
        for key in ("Aliases", "DNSNames"):
            aliases += [str(a) for a in network.get(key) or []]
        addresses += [str(network.get(k) or "") for k in ("IPAddress", "GlobalIPv6Address")]
    found = {
        "runtime name": [name],
        "container name": [str(getattr(container, "name", "") or ""),
                           str(attrs.get("Name") or "").lstrip("/")],
        "hostname": [hostname, f"{hostname}.{domain}" if hostname and domain else ""],
        "network alias": aliases,
        "IP address": [ip for ip in (_ip(a) for a in addresses if a) if ip],
    }
    return {kind: sorted({v for v in values if v}) for kind, values in found.items()}


def matches(host: str, name: str, container: Any) -> str | None:
    """The kind of identity by which ``container`` answers to ``host``, or None."""
    wanted_ip = _ip(host)
    for kind, values in identities(name, container).items():
        if kind == "IP address":
            if wanted_ip is not None and wanted_ip in values:
                return kind
        elif host.lower() in (v.lower() for v in values):
            return kind
    return None


def find(host: str, containers: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(runtime name, kind)`` of every container that answers to ``host``."""
    found = [(name, matches(host, name, c)) for name, c in containers.items()]
    return [(name, kind) for name, kind in found if kind is not None]


def describe(containers: Mapping[str, Any]) -> str:
    """What was looked at, for a refusal: each container with its identities."""
    parts = []
    for name, container in sorted(containers.items()):
        seen = identities(name, container)
        shown = "; ".join(f"{kind} {', '.join(v)}" for kind, v in seen.items()
                          if v and kind != "runtime name")  # fmt: skip
        parts.append(f"{name} ({shown or 'nothing else known'})")
    return ", ".join(parts) or "no container"
