"""Chaos Toolkit discovery, driven by one table of activity modules."""

from __future__ import annotations

from typing import Any

from chaoslib.discovery.discover import discover_activities, initialize_discovery_result

from lkchaos import __version__

#: Every module holding activities, with the kind of activity it holds.
ACTIVITY_MODULES: tuple[tuple[str, str], ...] = (
    ("lkchaos.controls.probes", "probe"),
    ("lkchaos.docker.actions", "action"),
    ("lkchaos.docker.probes", "probe"),
    ("lkchaos.livekit.actions", "action"),
    ("lkchaos.livekit.probes", "probe"),
    ("lkchaos.network.actions", "action"),
    ("lkchaos.redis.actions", "action"),
    ("lkchaos.redis.probes", "probe"),
    ("lkchaos.safety.actions", "action"),
    ("lkchaos.safety.probes", "probe"),
    ("lkchaos.voice.probes", "probe"),
    ("lkchaos.toxiproxy.probes", "probe"),
    ("lkchaos.toxiproxy.actions", "action"),
    ("lkchaos.tls.actions", "action"),
    ("lkchaos.tls.probes", "probe"),
    ("lkchaos.dns.actions", "action"),
    ("lkchaos.dns.probes", "probe"),
)


def discover(discover_system: bool = True) -> dict[str, Any]:
    result: dict[str, Any] = initialize_discovery_result("lkchaos", __version__, "lkchaos")
    for module, kind in ACTIVITY_MODULES:
        result["activities"].extend(discover_activities(module, kind))
    return result
