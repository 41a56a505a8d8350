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
    ("lkchaos.stress.actions", "action"),
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
    ("lkchaos.prometheus.probes", "probe"), ("lkchaos.hooks.probes", "probe"),
    ("lkchaos.ingress.probes", "probe"),
    ("lkchaos.validate.probes", "probe"),
)


def discover(discover_system: bool = True) -> dict[str, Any]:
    result: dict[str, Any] = initialize_discovery_result("lkchaos", __version__, "lkchaos")
    for module, kind in ACTIVITY_MODULES:
        result["activities"].extend(discover_activities(module, kind))
    return result


def wrong_kind(activity_type: object, module: str, func: str = "") -> str | None:
    """Why an activity of ``activity_type`` must not call ``module``, or None when it may.

    A probe must not call a function of an lkchaos ``*.actions`` module (it would change the
    deployment every time the probe runs, sampled or not) and an action must not call one of
    an lkchaos ``*.probes`` module (its tolerance and verdict would be lost)."""
    if module != "lkchaos" and not module.startswith("lkchaos."):
        return None
    name = f"{module}.{func}" if func else module
    if activity_type == "probe" and module.endswith(".actions"):
        return (f"{name} is an action (it changes the deployment), not a probe: declare it "
                f"as \"type\": \"action\" in the method or the rollbacks; probes call "
                f"functions of a *.probes module")  # fmt: skip
    if activity_type == "action" and module.endswith(".probes"):
        return (f"{name} is a probe (it only reads), not an action: declare it as "
                f"\"type\": \"probe\"; actions call functions of a *.actions module")
    return None
