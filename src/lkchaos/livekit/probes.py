"""Probes on the LiveKit nodes.

``nodes_health`` returns ``{"ok": bool, "healthy": int, "nodes": {url: {"status": int,
"body": str}}}``. A node answers ``200 OK``, or ``406 Not Ready`` when its stats are stale
(it lost Redis); a node that does not answer has ``status`` 0. Example tolerance::

    {"type": "jsonpath", "path": "$.healthy", "expect": 2}
"""

from typing import Any, List

import httpx
from chaoslib.types import Configuration, Secrets

from lkchaos.settings import Settings

__all__ = ["nodes_health"]


def nodes_health(
    urls: List[str] = None,  # type: ignore[assignment]
    timeout: float = 2.0,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """GET ``/`` on each node's HTTP port (the configured nodes by default)."""
    settings = Settings.load(configuration, secrets)
    nodes: dict[str, dict[str, Any]] = {}
    for url in urls or settings.livekit_node_urls:
        try:
            response = httpx.get(url.rstrip("/") + "/", timeout=timeout)
            nodes[url] = {"status": response.status_code, "body": response.text.strip()}
        except httpx.HTTPError as exc:
            nodes[url] = {"status": 0, "body": f"{type(exc).__name__}: {exc}"}
    healthy = sum(1 for n in nodes.values() if n["status"] == 200)
    return {"ok": healthy == len(nodes) and healthy > 0, "healthy": healthy, "nodes": nodes}
