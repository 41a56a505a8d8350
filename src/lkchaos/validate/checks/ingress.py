"""Checks of the Ingress/Egress items: n/a where the target has none, else short publishes
through LiveKit Ingress (RTMP and WHIP, :mod:`lkchaos.ingress.probes`).

A target has Ingress when it names an ``ingress`` runtime (its ``roles``) or an RTMP or WHIP
URL (its ``ingress`` section). The checks that publish run after the run's other checks,
one at a time (:func:`~lkchaos.validate.model.alone`): Ingress admits a session only while
its host has idle CPU (its ``cpu_cost`` settings, judged on the last second), and a run's
own checks in parallel (a scan, media, handshakes) kept two slow cores busy enough for it to
refuse every attempt. Each publish lasts :data:`HOLD_S` seconds once the ingress
participant and its tracks are in the room, and cleans up what it created (the push and the
ingress). ``ingress-egress.turn-integration`` is a TURN item (its check lives with the TURN
checks). Egress is not part of the target model (nor of the reference stack): its items are
n/a unless the target names an ``egress`` runtime, and then manual; "webhook notifications
sent" is judged, without Egress, on the webhooks LiveKit sends for the RTMP publish's room,
as the target's receiver recorded them (:mod:`lkchaos.hooks`).
"""

from __future__ import annotations

import re
import socket
import time
from typing import Any
from urllib.parse import urlsplit

from lkchaos.validate.checks.livekit import guarded, room_name
from lkchaos.validate.model import Context, Finding, alone, check

#: Seconds each publish is held once its tracks are in the room.
HOLD_S = 1.0
#: How long a push with a wrong stream key may run before it counts as accepted.
REFUSE_S = 4.0
#: Publishes a check makes at most: a second follows one that the ingress accepted but that
#: stopped short of the room (``lkchaos.ingress.probes.SHORT``) or whose WHIP offer was
#: answered with a server error (5xx), and the item is a warning if only that one got through.
PUBLISHES = 2
#: Seconds a TCP connection to the RTMP endpoint may take to open.
CONNECT_S = 5.0
#: The stream key of the push that must be refused.
WRONG_KEY = "lkchaos-wrong-key"
#: What a pusher writes when the server answered its publish with an error status (the stream
#: key refused): gst-launch-1.0's rtmp2sink, then ffmpeg. Any other end of the push (no
#: connection, no name, a timeout, TLS, a handshake cut short) says nothing of the key.
REFUSALS = ("'publish' cmd failed", "Server error: ")
#: Ingress states of a stream it took (buffering or publishing it).
TAKEN = ("ENDPOINT_BUFFERING", "ENDPOINT_PUBLISHING")
#: How a WHIP session's failure begins once its POST was answered and the answer set
#: (``lkchaos.ingress.probes._Whip.error``).
WHIP_STARTED = "the WebRTC connection is"


def has_ingress(ctx: Context) -> bool:
    s = ctx.settings
    return bool(s.roles.get("ingress") or s.ingress_rtmp_url or s.ingress_whip_url)


def _none(ctx: Context) -> Finding | None:
    if not has_ingress(ctx):
        return Finding("n/a", "the target has no Ingress (no ingress role, RTMP or WHIP URL)")
    return None


def attempt_s(timeout_s: float) -> float:
    """Seconds one publish waits for the ingress participant and its tracks: two publishes
    and their clean-up fit in a check's ``timeout_s`` (at least 4 s each; a healthy
    ingress shows both tracks within about 2 s of the push)."""
    return max((timeout_s - 4.0) / PUBLISHES, 4.0)


def publish(ctx: Context, kind: str) -> dict[str, Any]:
    """One short publish (``rtmp`` or ``whip``) into a fresh room, run once per run; a
    second one when the first was accepted but did not reach the room whole (a stage of
    ``lkchaos.ingress.probes.SHORT``) or its WHIP offer was answered with a server error, as
    a broadcaster's encoder reconnects. The second's result carries the first's under
    ``earlier``."""

    def once() -> dict[str, Any]:
        from lkchaos.ingress import probes, whip

        settings = ctx.settings
        settings.require_keys()
        room = room_name(f"ingress-{kind}")
        timeout = attempt_s(ctx.timeout_s)
        if kind == "rtmp":
            pusher = probes._check_pusher("auto")
            seconds = timeout + HOLD_S + 5.0
            return probes._retrying(lambda: probes._publish(
                "rtmp", room, HOLD_S, timeout, None, settings,
                lambda url: probes._Rtmp(pusher, url, seconds), pusher), timeout)
        if whip.aiortc_missing():
            raise ModuleNotFoundError(whip.NEEDED)
        return probes._retrying(lambda: probes._publish(
            "whip", room, HOLD_S, timeout, None, settings,
            lambda url: probes._Whip(url, settings.ca_file, min(timeout, 15.0)), "aiortc"),
            timeout)  # fmt: skip

    def compute() -> dict[str, Any]:
        from lkchaos.ingress import probes

        return probes._publishing(once, PUBLISHES)

    result: dict[str, Any] = ctx.fact(f"ingress.{kind}", compute)
    return result


def _brief(seen: dict[str, Any]) -> str:
    tracks = ", ".join(f"{t.get('type')} {t.get('mime_type')}" for t in seen.get("tracks") or [])
    return (f"{seen['kind'].upper()} to {seen.get('endpoint')}: participant after "
            f"{seen.get('time_to_participant_s')} s, tracks ({tracks or 'none'}) after "
            f"{seen.get('time_to_tracks_s')} s, state {seen.get('state')}, cleaned up "
            f"{seen.get('deleted')}")


def _failed(seen: dict[str, Any]) -> str:
    why = seen.get("reason") or seen.get("state_error") or "no reason given"
    state = seen.get("state")
    if state and seen.get("stage") != "state":  # what the ingress said of it, if it said
        why += f" (the ingress was {state}" + (
            f": {seen['state_error']})" if seen.get("state_error") and
            seen["state_error"] not in why else ")")
    return f"{seen['kind'].upper()} publish failed at {seen.get('stage')}: {why}"


def _stage(seen: dict[str, Any]) -> str | None:
    """The stage a publish (:func:`publish`'s result) stopped at, as the items judge it:
    ``post`` for a WHIP offer whose POST got no HTTP answer (the endpoint could not be
    reached, or did not answer in time: nothing answered, so nothing was refused), ``push``
    for an RTMP push that ran while its ingress never took the stream (no participant, the
    ingress neither buffering nor publishing: a push that never got through), else its
    ``stage`` (``None``: it got through)."""
    stage: str | None = seen.get("stage")
    if (stage == "push" and seen.get("kind") == "whip" and seen.get("answered") is None
            and not str(seen.get("reason") or "").startswith(WHIP_STARTED)):
        return "post"
    if stage == "participant" and seen.get("kind") == "rtmp" and seen.get("state") not in TAKEN:
        return "push"
    return stage


def _judge(ctx: Context, kind: str, stages: tuple[str, ...]) -> Finding:
    """Pass when the publish got past every stage in ``stages`` (as :func:`_stage` names
    them; fail when it stopped at one of them); ``stages == ()`` means the whole publish must
    succeed. A warning when only the second publish got past them."""
    if (none := _none(ctx)) is not None:
        return none
    seen = publish(ctx, kind)
    stopped = _stage(seen)
    earlier = seen.get("earlier")
    if stopped is None and earlier and (not stages or _stage(earlier) in stages):
        return Finding("warn", f"{_brief(seen)}; at the second publish only, the first "
                       f"{_failed(earlier)[len(kind) + 1:]}", seen)  # fmt: skip
    if stopped is None:
        return Finding("pass", _brief(seen), seen)
    if not stages or stopped in stages:
        if stopped == "post":
            return Finding("fail", f"Ingress's WHIP endpoint could not be reached (its POST "
                           f"got no answer): {_failed(seen)}", seen)  # fmt: skip
        return Finding("fail", _failed(seen), seen)
    return Finding("pass", f"{kind.upper()} got past {', '.join(stages)}; it stopped later "
                   f"({_failed(seen)})", seen)  # fmt: skip


@alone
@check("ingress-egress.rtmp-streams-accepted")
@guarded
def rtmp_accepted(ctx: Context) -> Finding:
    """An RTMP push with the ingress's stream key is accepted."""
    return _judge(ctx, "rtmp", ("create", "push"))


@alone
@check("ingress-egress.stream-forwarding-livekit")
@guarded
def rtmp_forwarded(ctx: Context) -> Finding:
    """The RTMP stream reaches the room: the ingress participant with audio and video."""
    return _judge(ctx, "rtmp", ())


def _reach(url: str, timeout: float) -> str:
    """Why a TCP connection to ``url``'s host and port (RTMP's 1935, or RTMPS's 443, when it
    names none) did not open within ``timeout`` seconds, as ``"ExceptionName: message"``;
    ``""`` when it opened."""
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "rtmps" else 1935)
        with socket.create_connection((parts.hostname or "", port), timeout=timeout):
            return ""
    except (OSError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"


def _said(error: str) -> str:
    """What a pusher's error (``probes._Rtmp.error``) says, on one line: without GStreamer's
    element path and debug info, nor the wrong stream key."""
    said = re.sub(r"ERROR: from element \S+: ", "", error.split("\n", 1)[0])
    return said.replace(WRONG_KEY, "<wrong key>")[:200]


@alone
@check("ingress-egress.authentication-working")
@guarded
def rtmp_auth(ctx: Context) -> Finding:
    """A push with a wrong stream key is refused: the RTMP server answers its publish with an
    error within a few seconds, while the push with the right key was accepted. An error
    (nothing learned of authentication) when the right key was not accepted either, the
    endpoint could not be reached (refused, no such name, a timeout), or the push ended
    without the server answering its publish (TLS, a handshake cut short)."""
    if (none := _none(ctx)) is not None:
        return none
    from lkchaos.ingress import probes

    seen = publish(ctx, "rtmp")
    endpoint = seen.get("endpoint") or ctx.settings.ingress_rtmp_url
    if not endpoint:
        return Finding("error", "no RTMP endpoint known to push to: set the target's "
                       "ingress.rtmp_url")  # fmt: skip
    data: dict[str, Any] = {"endpoint": endpoint, "refused": False}
    if _stage(seen) in ("create", "push"):
        return Finding("error", f"nothing learned of authentication: the push with the right "
                       f"stream key was not accepted either ({_failed(seen)})", data)
    unreached = _reach(endpoint, min(ctx.timeout_s, CONNECT_S))
    if unreached:
        return Finding("error", f"Ingress's RTMP endpoint {endpoint} could not be reached "
                       f"({unreached}): nothing learned of authentication", data)
    pusher = probes._Rtmp(probes._check_pusher("auto"), f"{endpoint}/{WRONG_KEY}",
                          REFUSE_S + 2)  # fmt: skip
    started = time.monotonic()
    try:
        while pusher.running() and time.monotonic() - started < REFUSE_S:
            time.sleep(0.1)
        ended = not pusher.running()
        said = pusher.error() if ended else ""
    finally:
        pusher.stop()
    why = _said(said)
    data.update(refused=any(r in said for r in REFUSALS), ended=ended,
                after_s=round(time.monotonic() - started, 2))
    if not ended:
        return Finding("fail", f"a push to {endpoint} with a wrong stream key was still "
                       f"running after {REFUSE_S:.0f} s", data)  # fmt: skip
    if not data["refused"]:
        return Finding("error", f"a push to {endpoint} with a wrong stream key ended after "
                       f"{data['after_s']} s without the server answering its publish "
                       f"(Ingress could not be reached, or the connection failed first: "
                       f"{why}): nothing learned of authentication", data)  # fmt: skip
    return Finding("pass", f"a push with a wrong stream key was refused after "
                   f"{data['after_s']} s ({why})", data)  # fmt: skip


@alone
@check("ingress-egress.whip-endpoint-accessible")
@guarded
def whip_accessible(ctx: Context) -> Finding:
    """The WHIP endpoint takes an offer (the ingress is created and the POST answered, with
    any HTTP status); a POST that got no answer (refused, no such name, a timeout, TLS)
    fails."""
    return _judge(ctx, "whip", ("create", "post"))


@alone
@check("ingress-egress.sdp-negotiation-successful")
@guarded
def whip_sdp(ctx: Context) -> Finding:
    """The WHIP offer gets an SDP answer (the push stage passes)."""
    return _judge(ctx, "whip", ("create", "post", "push"))


@alone
@check("ingress-egress.media-streaming-working", "ingress-egress.ice-candidate-handling")
@guarded
def whip_media(ctx: Context) -> Finding:
    """Audio and video published over WHIP reach the room (which needs ICE to connect)."""
    return _judge(ctx, "whip", ())


_MANUAL = {
    "ingress-egress.multiple-concurrent-streams": "publish several streams at once and "
    "confirm each reaches its room (Ingress admits sessions by CPU cost: size it first)",
    "ingress-egress.stream-quality-preserved": "compare a published stream's resolution, "
    "frame rate and audio with what subscribers receive",
    "ingress-egress.metadata-handling-correct": "publish with a participant name and "
    "metadata and confirm subscribers see them",
}
_EGRESS = ("ingress-egress.recording-functionality-working",
           "ingress-egress.export-formats-supported", "ingress-egress.file-storage-integration",
           "ingress-egress.cleanup-after-recording")
#: Seconds to wait for the webhooks of the RTMP publish's room.
WEBHOOK_WAIT_S = 10.0


def judge_webhooks(events: list[dict[str, Any]]) -> dict[str, Any]:
    """LiveKit's webhooks of one ingress room (:func:`lkchaos.hooks.probes.judge`: one
    participant, the room not finished yet)."""
    from lkchaos.hooks.probes import judge

    return judge(events, False, late_s=5.0, participants=1)


@alone
@check("ingress-egress.webhook-notifications-sent")
@guarded
def webhooks(ctx: Context) -> Finding:
    """LiveKit's webhooks reach the receiver: without Egress, those of the RTMP publish's room
    (room started, the ingress participant joined and left, its tracks); n/a without Ingress
    or without a receiver to read them from."""
    if ctx.settings.roles.get("egress"):
        return Finding("manual", "Egress is configured: record a room and confirm the "
                       "egress_started and egress_ended webhooks arrive")  # fmt: skip
    if not has_ingress(ctx):
        return Finding("n/a", "the target has neither Egress nor Ingress to send webhooks for")
    receiver = ctx.settings.receiver_url
    if not receiver:
        return Finding("n/a", "the target has no webhook receiver to read LiveKit's webhooks "
                       "from (monitoring.receiver_url)")  # fmt: skip
    from lkchaos.hooks import client as hooks

    seen = publish(ctx, "rtmp")
    if _stage(seen) in ("create", "push"):
        return Finding("error", f"no stream to get webhooks for: {_failed(seen)}", seen)
    room = str(seen["room"])
    started = time.monotonic()
    while True:
        events = hooks.livekit_events(receiver, room=room, timeout=min(ctx.timeout_s, 5.0))
        verdict = judge_webhooks(events)
        if verdict["ok"] or time.monotonic() - started > min(WEBHOOK_WAIT_S, ctx.timeout_s):
            break
        time.sleep(0.5)
    data = {"room": room, **verdict}
    text = f"{room} (no Egress here: the RTMP ingress's room): {', '.join(verdict['events'])}"
    if not verdict["ok"]:
        problems = verdict["lost"] + verdict["duplicates"] + verdict["reordered"]
        return Finding("fail", f"webhooks of {text}; wrong: {'; '.join(problems)}", data)
    return Finding("pass", f"webhooks of {text}", data)


def _register() -> None:
    for item, what in _MANUAL.items():
        def manual(ctx: Context, what: str = what) -> Finding:
            if (none := _none(ctx)) is not None:
                return none
            return Finding("manual", what)

        manual.__name__ = "ingress_" + item.rsplit(".", 1)[1].replace("-", "_")
        manual.__doc__ = f"n/a without Ingress; else manual: {what}."
        check(item)(manual)
    for item in _EGRESS:
        def egress(ctx: Context) -> Finding:
            if not ctx.settings.roles.get("egress"):
                return Finding("n/a", "the target has no Egress (the reference stack has "
                               "none; LiveKit Egress is a separate service)")  # fmt: skip
            return Finding("manual", "Egress is configured: record a room and confirm the "
                           "file, its format, its storage, the webhooks and the cleanup")

        egress.__name__ = "egress_" + item.rsplit(".", 1)[1].replace("-", "_")
        egress.__doc__ = "n/a without Egress; else manual."
        check(item)(egress)


_register()
