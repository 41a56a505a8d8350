"""The receiver's read API (``GET /events``, ``GET /alerts``), one client, explicit timeouts."""

from __future__ import annotations

from typing import Any

import httpx

from lkchaos.errors import LkChaosError
from lkchaos.httpclient import shared_client

TIMEOUT = 5.0


class ReceiverError(LkChaosError):
    """The receiver did not answer, or answered something else than its API."""


def _get(base_url: str, path: str, params: dict[str, str], key: str,
         timeout: float) -> list[dict[str, Any]]:
    url = base_url.rstrip("/") + path
    try:
        response = shared_client().get(url, params=params, timeout=timeout)
    except httpx.HTTPError as exc:
        raise ReceiverError(
            f"the webhook receiver at {base_url} did not answer ({exc.__class__.__name__}: "
            f"{exc}); is it running? (`lkchaos stack status` on the reference stack; else "
            "check monitoring.receiver_url in the target file)"
        ) from exc
    if response.status_code != 200:
        raise ReceiverError(f"GET {url} answered {response.status_code}: {response.text[:200]}")
    try:
        found = response.json()[key]
    except (ValueError, KeyError, TypeError) as exc:
        raise ReceiverError(f"GET {url} did not answer a receiver's JSON ({exc})") from exc
    if not isinstance(found, list):
        raise ReceiverError(f"GET {url}: {key!r} is not a list")
    return [item for item in found if isinstance(item, dict)]


def livekit_events(base_url: str, room: str = "", since: float = 0.0,
                   timeout: float = TIMEOUT) -> list[dict[str, Any]]:
    """LiveKit webhook events received at or after ``since`` (Unix s), in arrival order:
    ``{"seq", "id", "event", "room", "participant", "track", "created_at", "received_at"}``."""
    params = {"since": repr(since)}
    if room:
        params["room"] = room
    return _get(base_url, "/events", params, "events", timeout)


def alert_deliveries(base_url: str, alertname: str = "", since: float = 0.0,
                     timeout: float = TIMEOUT) -> list[dict[str, Any]]:
    """Alertmanager notifications received at or after ``since``: ``{"seq", "alertname",
    "status" ("firing" | "resolved"), "labels", "starts_at", "ends_at", "received_at"}``."""
    params = {"since": repr(since)}
    if alertname:
        params["alertname"] = alertname
    return _get(base_url, "/alerts", params, "alerts", timeout)
