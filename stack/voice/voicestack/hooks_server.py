"""Receiver for LiveKit's webhooks and Alertmanager's notifications, readable over HTTP.

The reference stack sends LiveKit's webhooks here (through a Toxiproxy link, so the link can
be cut or slowed) and Alertmanager's webhook notifications, and lkchaos reads what arrived.

Endpoints:

- ``POST /livekit``: a LiveKit webhook. The ``Authorization`` header is checked with
  livekit-api's ``WebhookReceiver`` (JWT signed with the API secret, carrying the body's
  SHA-256); a bad or missing signature is 401 and counted, never recorded as an event.
- ``POST /alertmanager``: an Alertmanager webhook (version 4 payload); each alert in it is
  recorded with its status (``firing`` / ``resolved``). With ``HOOKS_ALERTMANAGER_TOKEN``
  set, a delivery must carry ``Authorization: Bearer <token>`` (Alertmanager's
  ``http_config.authorization``), else it is 401 and not recorded.
- ``GET /events?room=&since=``: LiveKit events in arrival order: ``seq``, ``id``, ``event``,
  ``room``, ``participant``, ``track``, ``created_at`` (LiveKit's, Unix seconds),
  ``received_at`` (this server's wall clock, Unix seconds, fractional).
- ``GET /alerts?alertname=&since=``: Alertmanager deliveries: ``seq``, ``alertname``,
  ``status``, ``labels``, ``starts_at``, ``ends_at``, ``received_at``.
  ``since`` (both) is a ``received_at`` lower bound.
- ``GET /health`` and ``GET /metrics`` (Prometheus: deliveries by source and event, rejected
  deliveries).

Deliveries are kept in memory, the newest ``HOOKS_KEEP`` (default 20000) per source; a
restart forgets them. Run: ``python -m voicestack.hooks_server --host 0.0.0.0 --port 8200``
with ``LIVEKIT_API_KEY`` and ``LIVEKIT_API_SECRET`` set.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from collections import deque
from typing import Any

from aiohttp import web
from google.protobuf.json_format import MessageToDict
from livekit.api import TokenVerifier, WebhookReceiver
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest

log = logging.getLogger("voicestack.hooks")

DELIVERIES = Counter("hooks_deliveries_total", "Deliveries received and recorded",
                     ["source", "event"])
REJECTED = Counter("hooks_rejected_total", "Deliveries refused (bad signature or body)",
                   ["source"])


class Store:
    """The recorded deliveries, bounded, with a sequence number per source."""

    def __init__(self, keep: int) -> None:
        self.events: deque[dict[str, Any]] = deque(maxlen=keep)
        self.alerts: deque[dict[str, Any]] = deque(maxlen=keep)
        self._seq = 0

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq


def _event_record(event: dict[str, Any], seq: int, received_at: float) -> dict[str, Any]:
    room = event.get("room") or {}
    participant = event.get("participant") or {}
    track = event.get("track") or {}
    return {
        "seq": seq,
        "id": event.get("id", ""),
        "event": event.get("event", ""),
        "room": room.get("name", ""),
        "participant": participant.get("identity", ""),
        "track": track.get("sid", ""),
        "created_at": int(event.get("createdAt", 0) or 0),
        "received_at": received_at,
    }


def build_app(receiver: WebhookReceiver, keep: int = 20000,
              token: str = "") -> web.Application:
    """The receiver; with ``token``, Alertmanager's deliveries must carry it as a bearer
    token (LiveKit's are signed with the API key either way)."""
    store = Store(keep)

    async def livekit(request: web.Request) -> web.Response:
        body = await request.text()
        auth = request.headers.get("Authorization", "")
        try:
            message = receiver.receive(body, auth)
        except Exception as exc:  # the SDK raises bare Exceptions for every refusal
            REJECTED.labels("livekit").inc()
            log.warning("refused a LiveKit webhook: %s", exc)
            return web.json_response({"error": f"refused: {exc}"}, status=401)
        event = MessageToDict(message)
        record = _event_record(event, store.next_seq(), time.time())
        store.events.append(record)
        DELIVERIES.labels("livekit", record["event"]).inc()
        return web.json_response({"ok": True})

    async def alertmanager(request: web.Request) -> web.Response:
        if token and request.headers.get("Authorization", "") != f"Bearer {token}":
            REJECTED.labels("alertmanager").inc()
            return web.json_response({"error": "missing or wrong bearer token"}, status=401)
        try:
            payload = json.loads(await request.text())
            alerts = payload["alerts"]
            if not isinstance(alerts, list) or not all(
                    isinstance(a, dict) and isinstance(a.get("labels", {}), dict)
                    for a in alerts):
                raise TypeError("alerts must be a list of objects with label maps")
        except (ValueError, KeyError, TypeError) as exc:
            REJECTED.labels("alertmanager").inc()
            return web.json_response({"error": f"not an Alertmanager payload: {exc}"},
                                     status=400)
        now = time.time()
        for alert in alerts:
            labels = {str(k): str(v) for k, v in (alert.get("labels") or {}).items()}
            status = str(alert.get("status", ""))
            store.alerts.append({
                "seq": store.next_seq(),
                "alertname": labels.get("alertname", ""),
                "status": status,
                "labels": labels,
                "starts_at": str(alert.get("startsAt", "")),
                "ends_at": str(alert.get("endsAt", "")),
                "received_at": now,
            })
            # A bounded label: what a sender writes never grows the metric's series.
            DELIVERIES.labels("alertmanager",
                              status if status in ("firing", "resolved") else "other").inc()
        return web.json_response({"ok": True, "alerts": len(alerts)})

    def _since(request: web.Request) -> float:
        try:
            return float(request.query.get("since", "0"))
        except ValueError as exc:
            raise web.HTTPBadRequest(text="since must be Unix seconds") from exc

    async def events(request: web.Request) -> web.Response:
        since, room = _since(request), request.query.get("room", "")
        found = [e for e in store.events
                 if e["received_at"] >= since and (not room or e["room"] == room)]
        return web.json_response({"events": found})

    async def alerts(request: web.Request) -> web.Response:
        since, name = _since(request), request.query.get("alertname", "")
        found = [a for a in store.alerts
                 if a["received_at"] >= since and (not name or a["alertname"] == name)]
        return web.json_response({"alerts": found})

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "events": len(store.events),
                                  "alerts": len(store.alerts)})

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application(client_max_size=1024 * 1024)
    app.router.add_post("/livekit", livekit)
    app.router.add_post("/alertmanager", alertmanager)
    app.router.add_get("/events", events)
    app.router.add_get("/alerts", alerts)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8200)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    key, secret = os.environ.get("LIVEKIT_API_KEY"), os.environ.get("LIVEKIT_API_SECRET")
    if not key or not secret:
        raise SystemExit("set LIVEKIT_API_KEY and LIVEKIT_API_SECRET: webhooks are verified "
                         "with the key pair LiveKit signs them with")
    receiver = WebhookReceiver(TokenVerifier(key, secret))
    keep = int(os.environ.get("HOOKS_KEEP", "20000"))
    token = os.environ.get("HOOKS_ALERTMANAGER_TOKEN", "")
    web.run_app(build_app(receiver, keep, token), host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
