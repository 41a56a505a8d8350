"""The deployment-aware level of the preflight check: it reads, and never changes, the
deployment.

Read: the target's containers (and, for a compose project, the other containers on the engine,
to tell a target outside the project apart from a typo), through the Docker SDK; Toxiproxy's
proxies (``GET /proxies``); the names in the resolver's hosts file and the names the TLS proxy
serves a certificate file for (the files their containers bind-mount). Roles and link roles are
resolved through the target in use (:mod:`lkchaos.roles`). Only what the experiment's
activities name is read. A backend that cannot be read is itself a problem: the run would meet
the same.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from chaoslib.exceptions import ActivityFailed

from lkchaos import roles
from lkchaos.errors import LkChaosError
from lkchaos.preflight.walk import Call, Problem
from lkchaos.settings import Settings

#: Which argument of which activity names which kind of deployment object.
TARGETS: dict[str, tuple[tuple[str, str], ...]] = {
    **{f"lkchaos.docker.actions.{f}": (("service", "service"), ("one_of", "services"))
       for f in ("kill_service", "crash_service", "stop_service", "pause_service",
                 "restart_service", "start_service", "unpause_service")},  # fmt: skip
    **{f"lkchaos.stress.actions.{f}": (("service", "service"),)
       for f in ("cpu_pressure", "memory_pressure", "end_pressure", "fill_disk", "free_disk")},
    **{f"lkchaos.network.actions.{f}": (("service", "service"),)
       for f in ("partition", "media_packet_loss", "limit_bandwidth", "block_udp",
                 "heal_partition", "clear_network_faults")},  # fmt: skip
    "lkchaos.network.actions.partition": (("service", "service"), ("peers", "services")),
    "lkchaos.redis.actions.restore_old_primary": (("service", "service"),),
    "lkchaos.docker.probes.services_health": (("services", "services"),),
    "lkchaos.docker.probes.all_services_healthy": (("services", "services"),),
    "lkchaos.docker.probes.service_health": (("service", "service"),),
    **{f"lkchaos.toxiproxy.actions.{f}": (("proxy", "proxy"),)
       for f in ("add_toxic", "add_latency", "add_bandwidth", "add_timeout", "add_reset_peer",
                 "add_slow_close", "add_limit_data", "remove_toxic", "remove_all_toxics",
                 "disable_proxy", "enable_proxy")},  # fmt: skip
    "lkchaos.toxiproxy.probes.link_latency": (("proxy", "proxy"),),
    **{f"lkchaos.dns.actions.{f}": (("name", "dns_name"),)
       for f in ("nxdomain_name", "wrong_address", "servfail_name", "restore_name")},
    "lkchaos.tls.actions.swap_certificate": (("name", "tls_name"),),
    "lkchaos.tls.actions.restore_certificate": (("name", "tls_name"),),
}
KINDS = {"service": "docker", "services": "docker", "proxy": "toxiproxy",
         "dns_name": "dns", "tls_name": "tls"}  # fmt: skip


@dataclass
class Deployment:
    """What the deployment holds, as read; a part that could not be read is None."""

    project: str
    settings: Settings = field(default_factory=Settings)
    services: set[str] | None = None
    #: Containers outside the project: compose service or container name -> its project.
    outside: dict[str, str] = field(default_factory=dict)
    proxies: set[str] | None = None
    dns_names: set[str] | None = None
    tls_names: set[str] | None = None
    unreachable: list[str] = field(default_factory=list)
    #: Faults the target cannot take, and why (a resolver lkchaos may not fault, ...).
    refused: list[str] = field(default_factory=list)


def needs(calls: Iterable[Call]) -> set[str]:
    """The backends (``docker``, ``toxiproxy``, ``dns``, ``tls``) the calls name objects of."""
    return {KINDS[kind] for call in calls for arg, kind in TARGETS.get(call.key, ())
            if call.arguments.get(arg) is not None}  # fmt: skip


def _docker(deployment: Deployment, client: Any, wanted: set[str], settings: Settings) -> None:
    from lkchaos.docker.client import runtime_containers

    deployment.services = set(runtime_containers(client, settings))
    if settings.runtime == "compose":
        for container in client.containers.list(all=True):
            labels = container.labels or {}
            project = labels.get("com.docker.compose.project", "")
            if project != settings.compose_project:
                for name in (labels.get("com.docker.compose.service"), container.name):
                    if name:
                        deployment.outside[str(name)] = project
    if "dns" in wanted:
        from lkchaos.dns import client as dns

        why = dns.refusal(settings)
        if why is not None:
            deployment.refused.append(f"DNS faults cannot run on this target: {why}")
        else:
            found = dns.resolver(client, settings)
            deployment.dns_names = dns.known_names(found.hosts.read_text())
    if "tls" in wanted:
        from lkchaos.tls import rotation

        why = rotation.refusal(settings)
        if why is not None:
            deployment.refused.append(f"certificate faults cannot run on this target: {why}")
        else:
            deployment.tls_names = rotation.served_names(client, settings)


def read(
    settings: Settings,
    wanted: set[str],
    docker_client: Callable[[], Any] | None = None,
    toxiproxy_client: Callable[[Settings], Any] | None = None,
) -> Deployment:
    """Read what ``wanted`` asks for; the factories default to lkchaos's own clients."""
    from lkchaos.docker.client import describe_runtime

    deployment = Deployment(describe_runtime(settings), settings)
    if wanted & {"docker", "dns", "tls"}:
        from lkchaos.docker.client import docker_client as lkchaos_docker

        client = None
        try:
            client = (docker_client or lkchaos_docker)()
            _docker(deployment, client, wanted, settings)
        except (LkChaosError, OSError) as exc:
            deployment.unreachable.append(f"the Docker engine or the "
                                          f"{deployment.project}: {exc}")  # fmt: skip
        finally:
            if client is not None and hasattr(client, "close"):
                client.close()
    if "toxiproxy" in wanted:
        from lkchaos.toxiproxy.client import connect

        try:
            with (toxiproxy_client or connect)(settings) as toxi:
                deployment.proxies = set(toxi.proxies())
        except (LkChaosError, OSError) as exc:
            deployment.unreachable.append(f"Toxiproxy at {settings.toxiproxy_url}: {exc}")
    return deployment


def _service_problem(deployment: Deployment, value: str) -> str | None:
    assert deployment.services is not None
    try:
        names = roles.resolve(deployment.settings, value)
    except ActivityFailed as exc:
        return str(exc)
    harness = roles.harness(deployment.settings)
    for name in names:
        if name in deployment.services or name in harness:
            continue
        if name in deployment.outside:
            other = deployment.outside[name]
            where = f"compose project {other!r}" if other else "no compose project"
            return (f"{name!r} belongs to {where}, outside the {deployment.project}: "
                    "lkchaos targets only the target's own containers")  # fmt: skip
        known = ", ".join(sorted(deployment.services - harness)) or "none (is it up?)"
        return (f"no container {name!r} among {deployment.project}"
                f"{roles.did_you_mean(name)}; there are: {known}")
    return None


def check(calls: Iterable[Call], deployment: Deployment) -> list[Problem]:
    """Problems with the objects the calls name: services, proxies, DNS and TLS names."""
    problems = [Problem("deployment", "", None, None, f"cannot read {what}; start it, or "
                        "check the experiment with --offline") for what in deployment.unreachable]
    problems += [Problem("deployment", "", None, None, why) for why in deployment.refused]
    for call in calls:
        for arg, kind in TARGETS.get(call.key, ()):
            value = call.arguments.get(arg)
            if value is None or arg in call.bad:
                continue
            for item in value if kind == "services" and isinstance(value, list) else [value]:
                message = _problem(deployment, kind, item)
                if message:
                    problems.append(call.problem(arg, message))
                    break
    return problems


def _problem(deployment: Deployment, kind: str, value: Any) -> str | None:
    if kind in ("service", "services") and deployment.services is not None:
        return _service_problem(deployment, str(value))
    if kind == "proxy" and deployment.proxies is not None:
        name = deployment.settings.toxiproxy_links.get(str(value), str(value))
        if name not in deployment.proxies:
            known = ", ".join(sorted(deployment.proxies)) or "(none)"
            return f"Toxiproxy has no proxy named {name!r}; its proxies are: {known}"
    if kind == "dns_name" and deployment.dns_names is not None:
        if str(value).lower() not in deployment.dns_names:
            known = ", ".join(sorted(deployment.dns_names)) or "(none)"
            return f"{value!r} is not in the resolver's hosts file; names: {known}"
    if kind == "tls_name" and deployment.tls_names is not None:
        if value not in deployment.tls_names:
            known = ", ".join(sorted(deployment.tls_names)) or "(none)"
            return (f"the TLS proxy serves no certificate file for {value!r}; names it "
                    f"serves: {known}")  # fmt: skip
    return None
