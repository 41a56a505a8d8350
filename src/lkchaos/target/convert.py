"""A target as the values of today's :class:`lkchaos.settings.Settings`.

:func:`settings_values` returns a mapping of Settings field -> value, so that Settings can be
built from a target (``Settings(**settings_values(loaded))``). Components the target has
none of map to ``""`` (or an empty tuple / mapping), never to the reference stack's
addresses: an activity that needs one must refuse (see :mod:`lkchaos.target.needs`).
``state_dir`` is not the target's: Settings chooses it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lkchaos.target import secrets
from lkchaos.target.load import LoadedTarget
from lkchaos.target.model import Target


def settings_values(loaded: LoadedTarget, *, resolve_secrets: bool = True,
                    state: Path | None = None) -> dict[str, Any]:  # fmt: skip
    """Settings field -> value for this target.

    Keys: ``livekit_url``, ``livekit_node_urls`` (tuple), ``livekit_rtc_tcp_port``,
    ``livekit_turn_udp_port``, ``sentinel_addresses`` (tuple, empty
    for direct Redis), ``sentinel_master`` (``""`` for direct Redis), ``redis_address_map``
    (dict), ``toxiproxy_url``, ``dns_server``, ``tls_address``, ``domain``,
    ``compose_project`` (``""`` unless the runtime is compose), ``voice_prober_url``,
    ``agent_name`` (only when ``voice`` gives one; ``""``: automatic dispatch), ``runtime``
    (``compose``, ``docker-name`` or ``docker-label``), ``runtime_label``, ``roles`` (role ->
    tuple of runtime names),
    ``toxiproxy_links``, ``redis_primary_address`` and ``redis_replica_addresses`` (direct
    Redis), ``redis_username``, ``redis_db``, ``sentinel_username`` (``""`` for direct
    Redis), ``redis_tls``, ``redis_ca_file``, ``tls_proxy_kind``, ``tls_names``,
    ``tls_reload`` (``{}``, ``{"command": tuple}``, ``{"signal": NAME}`` or
    ``{"admin_api": URL}``),
    ``resolver_may_fault``, ``prometheus_url``, ``alertmanager_url``, ``pushgateway_url`` and
    ``receiver_url`` (``""`` where the ``monitoring`` section names none); ``ca_file`` when
    the TLS proxy names one; and with ``resolve_secrets``, ``livekit_api_key``,
    ``livekit_api_secret`` and, when the target has a ``password_ref``, ``redis_password``
    (and ``sentinel_password`` for a ``sentinel_password_ref``).

    ``state``: the state folder for ``{state_dir}`` in paths (chosen as Settings does when
    None). Raises :class:`lkchaos.target.secrets.SecretUnavailable` when a secret does not
    resolve."""
    target = loaded.target
    sentinel = target.redis.sentinel
    direct = target.redis.direct
    mode = sentinel or direct
    redis_tls = mode.tls if mode is not None else None
    monitoring = target.monitoring
    values: dict[str, Any] = {
        "livekit_url": target.livekit.url,
        "livekit_node_urls": tuple(node.url for node in target.livekit.nodes),
        "livekit_rtc_tcp_port": target.livekit.rtc_tcp_port,
        "livekit_turn_udp_port": target.livekit.turn_udp_port,
        "sentinel_addresses": tuple(sentinel.addresses) if sentinel else (),
        "sentinel_master": sentinel.master if sentinel else "",
        "redis_address_map": dict(sentinel.address_map) if sentinel else {},
        "toxiproxy_url": target.toxiproxy.api_url if target.toxiproxy else "",
        "dns_server": target.resolver.address if target.resolver else "",
        "tls_address": target.tls_proxy.address,
        "domain": target.test_domain,
        "compose_project": target.runtime.compose.project if target.runtime.compose else "",
        "voice_prober_url": target.voice.prober_url if target.voice else "",
        "runtime": _runtime(target),
        "runtime_label": (target.runtime.docker.label or "") if target.runtime.docker else "",
        "roles": {role: tuple(names) for role, names in target.role_names().items()},
        "toxiproxy_links": dict(target.toxiproxy.links) if target.toxiproxy else {},
        "redis_primary_address": direct.primary if direct else "",
        "redis_replica_addresses": tuple(direct.replicas) if direct else (),
        "redis_username": (mode.username or "") if mode is not None else "",
        "redis_db": mode.db if mode is not None else 0,
        "sentinel_username": (sentinel.sentinel_username or "") if sentinel else "",
        "redis_tls": redis_tls is not None,
        "redis_ca_file": str(secrets.expand_path(redis_tls.ca_file, loaded.folder, state))
        if redis_tls is not None and redis_tls.ca_file else "",
        "tls_proxy_kind": target.tls_proxy.kind,
        "tls_names": tuple(target.tls_proxy.names),
        "tls_reload": _reload(target),
        "resolver_may_fault": bool(target.resolver and target.resolver.may_fault),
        "prometheus_url": monitoring.prometheus_url if monitoring else "",
        "alertmanager_url": monitoring.alertmanager_url if monitoring else "",
        "pushgateway_url": monitoring.pushgateway_url if monitoring else "",
        "receiver_url": monitoring.receiver_url if monitoring else "",
        "ingress_rtmp_url": target.ingress.rtmp_url if target.ingress else "",
        "ingress_whip_url": target.ingress.whip_url if target.ingress else "",
    }
    if target.voice is not None and target.voice.agent_name is not None:
        values["agent_name"] = target.voice.agent_name  # "" is a value: automatic dispatch
    if target.tls_proxy.ca_file:
        values["ca_file"] = str(secrets.expand_path(target.tls_proxy.ca_file, loaded.folder,
                                                    state))
    if resolve_secrets:
        found = sentinel or direct
        if found is not None and found.password_ref is not None:
            values["redis_password"] = secrets.resolve(found.password_ref, loaded.folder,
                                                       state=state)  # fmt: skip
        if sentinel is not None and sentinel.sentinel_password_ref is not None:
            values["sentinel_password"] = secrets.resolve(sentinel.sentinel_password_ref,
                                                          loaded.folder, state=state)
        values["livekit_api_key"] = secrets.resolve(target.livekit.api_key, loaded.folder,
                                                    state=state)
        values["livekit_api_secret"] = secrets.resolve(target.livekit.api_secret,
                                                       loaded.folder, state=state)
    return values


def _runtime(target: Target) -> str:
    if target.runtime.compose is not None:
        return "compose"
    assert target.runtime.docker is not None
    return f"docker-{target.runtime.docker.by}"


def _reload(target: Target) -> dict[str, Any]:
    reload = target.tls_proxy.reload
    if reload is None:
        return {}
    if reload.command is not None:
        return {"command": tuple(reload.command)}
    if reload.signal is not None:
        return {"signal": reload.signal}
    return {"admin_api": reload.admin_api}
