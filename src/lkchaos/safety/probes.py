"""``baseline``: proof that the deployment is back as it was before any fault.

Returns ``{"ok", "unhealthy_services": [...], "toxics": ["proxy/toxic"], "disabled_proxies":
[...], "pending_faults": ["kind on target"], "nodes_ready": n, "nodes": n}``; ``ok`` is true
when every service is healthy, no toxic or disabled proxy remains, the fault ledger is empty
and every LiveKit node is ready::

    {"type": "probe", "name": "back-to-baseline",
     "tolerance": {"type": "jsonpath", "path": "$.ok", "expect": true},
     "provider": {"type": "python", "module": "lkchaos.safety.probes", "func": "baseline"}}
"""

from typing import Any, Dict

from chaoslib.types import Configuration, Secrets

from lkchaos.docker.probes import services_health
from lkchaos.errors import LkChaosError
from lkchaos.livekit.probes import nodes_health
from lkchaos.safety import ledger
from lkchaos.settings import Settings
from lkchaos.toxiproxy.client import ToxiproxyClient

__all__ = ["baseline"]


def baseline(configuration: Configuration = None, secrets: Secrets = None) -> Dict[str, Any]:
    """Every service healthy, no toxic, no disabled proxy, no pending fault, nodes ready."""
    settings = Settings.load(configuration, secrets)
    health = services_health(configuration=configuration, secrets=secrets)
    toxics: list[str] = []
    disabled: list[str] = []
    try:
        if settings.toxiproxy_url:  # a target without Toxiproxy has none to look at
            with ToxiproxyClient(settings.toxiproxy_url) as toxi:
                for name, proxy in toxi.proxies().items():
                    toxics += [f"{name}/{t['name']}" for t in proxy.get("toxics") or []]
                    if not proxy.get("enabled", True):
                        disabled.append(name)
    except LkChaosError as exc:
        disabled.append(f"toxiproxy unreachable: {exc}")
    pending = [fault.describe() for fault in ledger.pending(settings.state_dir)]
    nodes = nodes_health(configuration=configuration, secrets=secrets)
    return {
        "ok": bool(health["ok"] and not toxics and not disabled and not pending and nodes["ok"]),
        "unhealthy_services": health["unhealthy"],
        "toxics": toxics,
        "disabled_proxies": disabled,
        "pending_faults": pending,
        "nodes_ready": nodes["healthy"],
        "nodes": len(nodes["nodes"]),
    }
