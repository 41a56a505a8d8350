"""Probes on a webhook receiver: did LiveKit's webhooks for a call arrive, once each, in order?

LiveKit sends a webhook for each room and participant event (``room_started``,
``participant_joined``, ``track_published``, ``participant_left``, ``room_finished``, ...),
queued per URL and retried a few times on failure (livekit/protocol ``webhook/
url_notifier.go``: a bounded queue that drops when full, retryablehttp's retries). A receiver
that is slow or unreachable for longer than those retries loses events; one that times out
after processing gets duplicates. These probes read what the receiver recorded for one room
and judge it::

    {"ok": false, "room": "lkchaos-probe-...", "events": ["room_started", ...],
     "lost": ["room_finished"], "duplicates": [], "reordered": [],
     "late": [{"event": "participant_left", "delay_s": 7.2}], "max_delay_s": 7.2,
     "finished": false}

- ``lost``: an expected event that did not arrive: ``room_started``; for every participant
  seen, ``participant_joined`` and ``participant_left`` (not for one whose connection
  aborted before it became active: LiveKit sends ``participant_connection_aborted`` alone
  for it); ``room_finished`` when the probe waited for the room to end.
- ``duplicates``: an event id received more than once.
- ``reordered``: an event that arrived after one LiveKit created later (by ``created_at``,
  whole seconds), or out of the room's logical order (started first, finished last, a
  participant's join before its tracks and its leave).
- ``late``: received more than ``late_s`` seconds after LiveKit created it (``created_at`` has
  whole seconds: a delay is counted from the end of that second).

``ok`` when nothing was lost, duplicated or reordered, and, with ``max_delay_s``, no event
came later than that. Settings: ``receiver_url`` (``LKCHAOS_RECEIVER_URL``; the target file's
``monitoring.receiver_url``); errors reaching the receiver raise ``ActivityFailed``.
"""

import time
from collections import Counter
from typing import Any, Dict, List

from chaoslib.exceptions import ActivityFailed
from chaoslib.types import Configuration, Secrets

from lkchaos.hooks import client
from lkchaos.settings import Settings
from lkchaos.values import check_number, check_text

__all__ = ["room_webhooks", "webhooks_for_call", "alert_delivered"]

POLL_S = 0.5
#: What LiveKit sends, alone, for a participant whose connection aborted before it became
#: active (its signalling or media never completed): no participant_joined, no
#: participant_left (livekit/livekit#4227).
ABORTED = "participant_connection_aborted"
#: Events whose order in a room is fixed (others are listed, not judged).
_LOGICAL = ("room_started", "participant_joined", "track_published", "participant_left",
            "room_finished")  # fmt: skip


def judge(events: List[Dict[str, Any]], finished_expected: bool, late_s: float,
          max_delay_s: float | None = None, participants: int = 0) -> Dict[str, Any]:
    """Judge one room's events (in arrival order); pure, see the module docstring. With
    ``participants``, that many must appear: a participant whose every event was lost is
    otherwise invisible."""
    ids = Counter(e.get("id", "") for e in events if e.get("id"))
    duplicates = sorted(i for i, n in ids.items() if n > 1)
    kinds = [str(e.get("event", "")) for e in events]
    lost: list[str] = []
    if "room_started" not in kinds:
        lost.append("room_started")
    people = sorted({str(e["participant"]) for e in events if e.get("participant")})
    for who in people:
        theirs = [k for e, k in zip(events, kinds, strict=True) if e.get("participant") == who]
        if ABORTED in theirs:
            continue  # never became active: LiveKit sends this event alone (no join, no leave)
        for needed in ("participant_joined", "participant_left"):
            if needed not in theirs:
                lost.append(f"{needed} ({who})")
    if len(people) < participants:
        lost.append(f"participant_joined ({participants} participants expected, "
                    f"{len(people)} seen)")
    finished = "room_finished" in kinds
    if finished_expected and not finished:
        lost.append("room_finished")

    reordered: list[str] = []
    latest = -1
    for event, kind in zip(events, kinds, strict=True):
        created = int(event.get("created_at", 0) or 0)
        if created < latest:
            reordered.append(f"{kind} (created {created}) arrived after an event created {latest}")
        latest = max(latest, created)
    first_seen = {k: kinds.index(k) for k in _LOGICAL if k in kinds}
    if "room_started" in first_seen and first_seen["room_started"] != 0:
        reordered.append(f"room_started arrived after {kinds[0]}")
    if finished and kinds[-1] != "room_finished":
        reordered.append(f"room_finished arrived before {kinds[-1]}")
    for who in people:
        mine = [(i, k) for i, (e, k) in enumerate(zip(events, kinds, strict=True))
                if e.get("participant") == who]
        joined = [i for i, k in mine if k == "participant_joined"]
        if joined:
            early = [k for i, k in mine if i < joined[0]]
            if early:
                reordered.append(f"{', '.join(early)} of {who} arrived before its join")

    late: list[dict[str, Any]] = []
    delays: list[float] = []
    for event, kind in zip(events, kinds, strict=True):
        stamp = event.get("created_at")
        if not stamp:
            continue
        delay = max(0.0, float(event.get("received_at", 0.0)) - (float(stamp) + 1.0))
        delays.append(delay)
        if delay > late_s:
            late.append({"event": kind, "participant": event.get("participant", ""),
                         "delay_s": round(delay, 3)})
    max_delay = round(max(delays), 3) if delays else None
    ok = not lost and not duplicates and not reordered
    if max_delay_s is not None and max_delay is not None and max_delay > max_delay_s:
        ok = False
    return {"ok": ok, "events": kinds, "participants": people, "lost": lost,
            "duplicates": duplicates, "reordered": reordered, "late": late,
            "max_delay_s": max_delay, "finished": finished}


def _receiver(settings: Settings) -> str:
    url = settings.receiver_url
    if not url:
        raise ActivityFailed(
            "this target names no webhook receiver: set monitoring.receiver_url in its target "
            "file (or LKCHAOS_RECEIVER_URL) to a receiver LiveKit's webhooks reach"
        )
    return url


def _collect(url: str, room: str, since: float, wait_finished_s: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + wait_finished_s
    while True:
        try:
            events = client.livekit_events(url, room=room, since=since)
        except client.ReceiverError as exc:
            raise ActivityFailed(str(exc)) from exc
        if any(e.get("event") == "room_finished" for e in events) or time.monotonic() >= deadline:
            return events
        time.sleep(POLL_S)


def _check_alert(alertname: Any, status: Any, within_s: Any, since_s: Any,
                 labels: Any) -> None:
    check_text("alertname", alertname)
    if status not in ("firing", "resolved"):
        raise ActivityFailed(f"status must be 'firing' or 'resolved', not {status!r}")
    check_number("within_s", within_s, "seconds", minimum=0, maximum=3600)
    check_number("since_s", since_s, "seconds", minimum=0, maximum=86400)
    if labels is not None and (not isinstance(labels, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in labels.items())):
        raise ActivityFailed(f"labels must map label names to values (strings), not {labels!r}")


def _check_room_args(room: Any, since_s: Any) -> None:
    check_text("room", room)
    check_number("since_s", since_s, "seconds", minimum=1, maximum=86400)


def _check_common(late_s: Any, max_delay_s: Any, wait_s: Any, wait_label: str) -> None:
    check_number("late_s", late_s, "seconds", minimum=0)
    if max_delay_s is not None:
        check_number("max_delay_s", max_delay_s, "seconds", minimum=0)
    check_number(wait_label, wait_s, "seconds", minimum=0, maximum=600)


def room_webhooks(
    room: str,
    since_s: float = 600.0,
    wait_finished_s: float = 0.0,
    late_s: float = 5.0,
    max_delay_s: float = None,  # type: ignore[assignment]
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Dict[str, Any]:
    """Judge the webhooks received for ``room`` in the last ``since_s`` seconds.

    With ``wait_finished_s`` > 0, waits up to that long for ``room_finished`` and counts it
    lost if it never came. Returns the shape in the module docstring, plus ``"room"``.
    """
    _check_room_args(room, since_s)
    _check_common(late_s, max_delay_s, wait_finished_s, "wait_finished_s")
    url = _receiver(Settings.load(configuration, secrets))
    events = _collect(url, room, time.time() - float(since_s), float(wait_finished_s))
    return {"room": room, **judge(events, wait_finished_s > 0, float(late_s), max_delay_s)}


def webhooks_for_call(
    timeout: float = 45.0,
    finish_wait_s: float = 60.0,
    late_s: float = 5.0,
    max_delay_s: float = None,  # type: ignore[assignment]
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Dict[str, Any]:
    """Make one voice call (``lkchaos.voice.probes.voice_round_trip``), wait up to
    ``finish_wait_s`` for its room to finish (LiveKit closes a room ``departure_timeout``
    after its last participant left), and judge the room's webhooks.

    Returns the shape in the module docstring plus ``"room"`` and ``"call"`` (the call's
    ``ok``, ``stage``, ``reason``). A call that never got a room fails with ``stage``.
    """
    _check_common(late_s, max_delay_s, finish_wait_s, "finish_wait_s")
    check_number("timeout", timeout, "seconds", strict=True, maximum=600)
    settings = Settings.load(configuration, secrets)
    url = _receiver(settings)
    from lkchaos.voice.probes import voice_round_trip

    call = voice_round_trip(timeout=timeout, configuration=configuration, secrets=secrets)
    summary = {k: call.get(k) for k in ("ok", "stage", "reason")}
    room = str(call.get("room") or "")
    if not room:
        return {"ok": False, "room": "", "call": summary, "events": [], "lost": [],
                "duplicates": [], "reordered": [], "late": [], "max_delay_s": None,
                "finished": False, "reason": "the call got no room, so no webhooks to judge"}
    # The room's name is new for every call: all its events count, whatever the receiver's
    # clock says. A call that reached the agent had two participants: the caller, the agent.
    events = _collect(url, room, 0.0, float(finish_wait_s))
    expected = 2 if call.get("stage") not in ("join", "dispatch") else 1
    return {"room": room, "call": summary,
            **judge(events, True, float(late_s), max_delay_s, participants=expected)}


def alert_delivered(
    alertname: str,
    status: str = "firing",
    within_s: float = 60.0,
    since_s: float = 120.0,
    labels: Dict[str, str] = None,  # type: ignore[assignment]
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Dict[str, Any]:
    """Wait up to ``within_s`` for Alertmanager to deliver ``alertname`` with ``status``
    (``firing`` or ``resolved``) to the receiver, counting deliveries received in the last
    ``since_s`` seconds; with ``labels``, only an alert carrying all of them counts.

    Returns ``{"ok", "alertname", "status", "waited_s", "delivered_at" (Unix s or null),
    "labels" (the delivered alert's), "seen": [statuses delivered for it, in order]}``.
    """
    _check_alert(alertname, status, within_s, since_s, labels)
    url = _receiver(Settings.load(configuration, secrets))
    since = time.time() - float(since_s)
    started = time.monotonic()
    deadline = started + float(within_s)
    while True:
        try:
            found = client.alert_deliveries(url, alertname=alertname, since=since)
        except client.ReceiverError as exc:
            raise ActivityFailed(str(exc)) from exc
        mine = [a for a in found
                if all((a.get("labels") or {}).get(k) == v for k, v in (labels or {}).items())]
        hit = next((a for a in mine if a.get("status") == status), None)
        if hit is not None or time.monotonic() >= deadline:
            return {"ok": hit is not None, "alertname": alertname, "status": status,
                    "waited_s": round(time.monotonic() - started, 3),
                    "delivered_at": hit.get("received_at") if hit else None,
                    "labels": hit.get("labels") if hit else None,
                    "seen": [a.get("status") for a in mine]}
        time.sleep(POLL_S)
