"""What each activity of the catalogue needs of a target, in one table.

:data:`NEEDS` maps every activity function (``module.func``) to the needs below; a test holds
that every function of every ``lkchaos.*.actions`` and ``lkchaos.*.probes`` module is in it.
:func:`missing` says, for one activity and one target, exactly what is missing.

Needs (what the target must have):

- ``runtime``: the containers, through the runtime (compose or docker)
- ``livekit``: LiveKit's nodes and API keys
- ``redis``: Redis, direct or behind Sentinel
- ``sentinel``: Redis behind Sentinel
- ``redis_primary``: ``roles.redis_primary``, the primary's runtime name
- ``tls_proxy``: the TLS proxy's address and names
- ``tls_reload``: a TLS proxy lkchaos can swap certificates on: Caddy or nginx, a way to
  reload its certificates, and its container (not needed with Caddy's admin API)
- ``resolver``: a resolver's address
- ``resolver_faultable``: a dnsmasq resolver lkchaos may fault, and its container
- ``toxiproxy``: Toxiproxy's API
- ``voice``: the ``voice`` section (the agent name callers dispatch)
- ``prometheus``: ``monitoring.prometheus_url``
- ``alertmanager``: ``monitoring.alertmanager_url``
- ``ingress``: the ``ingress`` section (LiveKit Ingress, where to push RTMP and WHIP)
- ``receiver``: ``monitoring.receiver_url`` (the receiver of webhooks and notifications)
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import pkgutil
from collections.abc import Callable
from typing import Literal

import lkchaos
from lkchaos.target.model import Target

Need = Literal["runtime", "livekit", "redis", "sentinel", "redis_primary", "tls_proxy",
               "tls_reload", "resolver", "resolver_faultable", "toxiproxy", "voice",
               "prometheus", "alertmanager", "receiver", "ingress"]  # fmt: skip

#: Which component's reachability each need depends on (see :mod:`lkchaos.target.reach`).
COMPONENT: dict[Need, str] = {
    "runtime": "docker", "livekit": "livekit", "redis": "redis", "sentinel": "redis",
    "redis_primary": "docker", "tls_proxy": "tls_proxy", "tls_reload": "tls_proxy",
    "resolver": "resolver", "resolver_faultable": "resolver", "toxiproxy": "toxiproxy",
    "voice": "voice", "prometheus": "prometheus", "alertmanager": "alertmanager",
    "receiver": "receiver", "ingress": "ingress",
}  # fmt: skip


def _group(module: str, needs: tuple[Need, ...], *funcs: str) -> dict[str, tuple[Need, ...]]:
    return {f"lkchaos.{module}.{func}": needs for func in funcs}


#: Activity function -> what it needs of the target (an empty tuple: nothing).
NEEDS: dict[str, tuple[Need, ...]] = {
    **_group("controls.probes", (), "answered_during_fault", "recovery", "sampled",
             "sessions_answered"),
    # each item whose component the target lacks is n/a or error, never a refusal
    **_group("validate.probes", (), "checklist"),
    **_group("docker.actions", ("runtime",), "kill_service", "crash_service", "stop_service",
             "pause_service", "restart_service", "start_service", "unpause_service"),
    **_group("docker.probes", ("runtime",), "services_health", "all_services_healthy",
             "service_health", "service_restarts"),
    **_group("stress.actions", ("runtime",), "cpu_pressure", "memory_pressure", "end_pressure",
             "fill_disk", "free_disk"),
    **_group("livekit.actions", ("livekit",), "create_room", "delete_room",
             "hold_participants", "release_participants"),
    **_group("livekit.actions", ("runtime", "livekit", "redis"), "kill_node_hosting"),
    **_group("livekit.probes", ("livekit",), "nodes_health", "roomservice_latency",
             "join_token_skew"),
    **_group("livekit.probes", ("runtime", "livekit"), "node_drained"),
    **_group("livekit.probes", ("livekit", "redis"), "room_state", "snapshot_room_state",
             "compare_room_state"),
    **_group("network.actions", ("runtime",), "partition", "heal_partition",
             "media_packet_loss", "limit_bandwidth", "block_udp", "clear_network_faults"),
    **_group("redis.actions", ("runtime", "redis", "redis_primary"), "kill_primary",
             "restore_old_primary"),
    **_group("redis.actions", ("sentinel",), "sentinel_failover"),
    **_group("redis.actions", ("redis",), "stall_primary", "unstall_primary"),
    **_group("redis.probes", ("sentinel",), "sentinel_master", "remember_primary",
             "primary_kept"),
    **_group("redis.probes", ("redis",), "replication"),
    **_group("safety.actions", ("runtime",), "recover"),
    **_group("safety.probes", ("runtime", "livekit"), "baseline"),
    **_group("voice.probes", ("livekit", "voice"), "voice_round_trip", "voice_round_trips",
             "held_call_turn", "end_held_call", "held_conversation"),
    **_group("toxiproxy.probes", ("toxiproxy",), "proxies_state", "link_latency"),
    **_group("toxiproxy.actions", ("toxiproxy",), "add_toxic", "add_latency", "add_bandwidth",
             "add_timeout", "add_reset_peer", "add_slow_close", "add_limit_data",
             "remove_toxic", "remove_all_toxics", "disable_proxy", "enable_proxy", "reset"),
    **_group("tls.actions", ("runtime", "tls_reload"), "swap_certificate",
             "restore_certificate"),
    **_group("tls.probes", ("tls_proxy",), "certificate", "certificate_expiry",
             "protocol_versions", "cipher_strength", "hsts"),
    **_group("dns.actions", ("runtime", "resolver_faultable"), "stop_resolver",
             "start_resolver", "nxdomain_name", "wrong_address", "servfail_name",
             "restore_name", "restore_dns"),
    **_group("dns.probes", ("resolver",), "resolve_names"),
    **_group("prometheus.probes", ("prometheus",), "query", "alert_state", "wait_for_alert",
             "targets_up"),
    **_group("prometheus.probes", ("alertmanager",), "alertmanager_alerts"),
    **_group("hooks.probes", ("receiver",), "room_webhooks", "alert_delivered"),
    **_group("hooks.probes", ("receiver", "livekit", "voice"), "webhooks_for_call"),
    **_group("ingress.probes", ("livekit", "ingress"), "rtmp_publish", "whip_publish"),
}


#: The TLS proxies whose certificate files lkchaos can find (see :mod:`lkchaos.tls.rotation`).
SWAPPABLE_PROXIES = ("caddy", "nginx")


def _tls_reload(target: Target) -> str | None:
    proxy = target.tls_proxy
    reload = proxy.reload
    if reload is None:
        return ("needs a way to reload the TLS proxy's certificates: the target's tls_proxy "
                "has reload: none")
    if proxy.kind not in SWAPPABLE_PROXIES:
        return (f"needs a TLS proxy whose certificate files lkchaos can find (caddy or nginx): "
                f"the target's tls_proxy is {proxy.kind}")  # fmt: skip
    if reload.admin_api is not None and proxy.kind != "caddy":
        return (f"needs a reload {proxy.kind} understands: admin_api is Caddy's admin API; "
                "use reload: {signal: SIGHUP}")  # fmt: skip
    if reload.admin_api is None and target.roles.tls_proxy is None:
        return "needs the TLS proxy's container: roles.tls_proxy is not set"
    return None


def _resolver_faultable(target: Target) -> str | None:
    if target.resolver is None:
        return "needs a resolver lkchaos may fault: the target has none"
    if not target.resolver.may_fault:
        return "needs a resolver lkchaos may fault: the target's resolver has may_fault: false"
    if target.roles.resolver is None:
        return "needs the resolver's container: roles.resolver is not set"
    return None


def _voice(target: Target) -> str | None:
    if target.voice is None:
        return "needs the voice section (the agent name callers dispatch): the target has none"
    if target.voice.prober_url == "":
        from lkchaos.voice import extra

        absent = extra.missing()
        if absent:
            return ("needs lkchaos[voice] to run the voice round trip from this machine (the "
                    f"target's voice.prober_url is \"\"; not installed: {', '.join(absent)}): "
                    "pip install '/path/to/lkchaos[voice]', or give a prober_url")  # fmt: skip
    return None


#: Need -> what is missing on a target, or None when the target has it.
CHECKS: dict[Need, Callable[[Target], str | None]] = {
    "runtime": lambda t: None,  # the schema requires a runtime
    "livekit": lambda t: None,  # the schema requires nodes and keys
    "redis": lambda t: None,  # the schema requires Redis
    "tls_proxy": lambda t: None,  # the schema requires the TLS proxy
    "sentinel": lambda t: None if t.redis.sentinel is not None else
    "needs Redis Sentinel: the target's Redis is direct",
    "redis_primary": lambda t: None if t.roles.redis_primary else
    "needs the Redis primary's container: roles.redis_primary is not set",
    "tls_reload": _tls_reload,
    "resolver": lambda t: None if t.resolver is not None else
    "needs a resolver: the target has none",
    "resolver_faultable": _resolver_faultable,
    "toxiproxy": lambda t: None if t.toxiproxy is not None else
    "needs Toxiproxy: the target has none",
    "voice": lambda t: _voice(t),
    "ingress": lambda t: None if t.ingress is not None else
    "needs LiveKit Ingress: the target has no ingress section",
    "prometheus": lambda t: None if t.monitoring and t.monitoring.prometheus_url else
    "needs Prometheus: the target has no monitoring.prometheus_url",
    "alertmanager": lambda t: None if t.monitoring and t.monitoring.alertmanager_url else
    "needs Alertmanager: the target has no monitoring.alertmanager_url",
    "receiver": lambda t: None if t.monitoring and t.monitoring.receiver_url else
    "needs a webhook receiver: the target has no monitoring.receiver_url",
}


def missing(target: Target, activity: str, *, known_only: bool = True) -> list[str]:
    """What ``activity`` (``module.func``) lacks on ``target``: one sentence per missing need;
    empty when it can run. Raises KeyError for a function that is not in :data:`NEEDS`,
    unless ``known_only`` is false: then such a function lacks nothing here (whoever checks
    the experiment reports an unknown function)."""
    if not known_only and activity not in NEEDS:
        return []
    found = [CHECKS[need](target) for need in NEEDS[activity]]
    return [reason for reason in found if reason is not None]


def unreachable(activity: str, failed: frozenset[str] | set[str]) -> list[str]:
    """Why ``activity`` cannot run with the components in ``failed`` (``COMPONENT`` values
    that failed ``lkchaos target check``'s reachability check), one reason each, sorted."""
    down = {COMPONENT[need] for need in NEEDS.get(activity, ())} & set(failed)
    return [f"{component} failed a check (see above)" for component in sorted(down)]


def catalogue() -> list[str]:
    """Every activity function (``module.func``) of every ``lkchaos.*.actions`` and
    ``lkchaos.*.probes`` module: its ``__all__``, else its public functions. Sorted."""
    found: list[str] = []
    for package in pkgutil.iter_modules(lkchaos.__path__):
        if not package.ispkg:
            continue
        for kind in ("actions", "probes"):
            name = f"lkchaos.{package.name}.{kind}"
            if importlib.util.find_spec(name) is None:
                continue
            module = importlib.import_module(name)
            names = getattr(module, "__all__", None)
            if names is None:
                names = [key for key, value in vars(module).items() if not key.startswith("_")
                         and inspect.isfunction(value) and value.__module__ == name]
            found += [f"{name}.{func}" for func in names]
    return sorted(found)
