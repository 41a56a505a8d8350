"""Probes that publish through LiveKit Ingress and check what reaches the room.

``rtmp_publish`` creates an RTMP ingress (IngressService, ``livekit-api``), pushes a test
stream (test video and a sine tone) from this machine with ``gst-launch-1.0`` or ``ffmpeg``
(``pusher``; ``auto`` takes the first found), waits until the ingress participant and its
audio and video tracks are in the room (RoomService), keeps publishing ``duration_s`` more
seconds, reads the ingress state, then stops the push and deletes the ingress.
``whip_publish`` does the same through WHIP with aiortc (``lkchaos[ingress]``). Both clean up
what they created (the push and the ingress), whatever happens. Both return::

    {"ok": true, "kind": "rtmp", "room": "lkchaos-ingress-rtmp", "ingress_id": "IN_...",
     "identity": "lkchaos-rtmp-1a2b3c4d", "endpoint": "rtmp://127.0.0.1:21935/x",
     "pusher": "gst-launch-1.0", "time_to_participant_s": 1.9, "time_to_tracks_s": 2.4,
     "tracks": [{"type": "audio", "mime_type": "audio/opus", "muted": false}, ...],
     "state": "ENDPOINT_PUBLISHING", "state_error": "", "stage": null, "reason": "",
     "deleted": true, "took_s": 8.1, "attempts": 1, "refused_for_capacity": 0}

``ok`` is true when the participant appeared with an audio and a video track within
``timeout`` seconds, was still there ``duration_s`` seconds later, and the ingress was
``ENDPOINT_PUBLISHING`` then. Otherwise ``stage`` says what failed first: ``create`` (no node
created the ingress: LiveKit or its Ingress service did not answer), ``push`` (the push was
refused or ended early: ``reason`` has the pusher's error), ``participant``, ``tracks``,
``held`` (the participant or a track left during ``duration_s``) or ``state``; a WHIP
offer the endpoint answered with an error status gives that status in ``answered``. An ingress
that could not be deleted leaves ``deleted`` false and says why in ``delete_error``. While
Ingress refuses the stream as "server capacity exceeded" (it admits a session only while
enough CPU is idle), the probe publishes again every 2 s within ``timeout``, as an encoder
reconnects; ``attempts`` and ``refused_for_capacity`` count them, and a stream refused at
every attempt says so in ``reason``, with what to do.
Tolerance::

    {"type": "jsonpath", "path": "$.ok", "expect": true}

Where the push goes: ``endpoint`` when given (the base URL, without the stream key), else
the ``ingress_rtmp_url`` / ``ingress_whip_url`` setting when the deployment sets one (the
reference stack's RTMP port as this machine reaches it), else the URL LiveKit's
CreateIngress returns (its ``ingress.rtmp_base_url`` / ``whip_base_url``). The stream key is
appended and never returned. A WHIP endpoint over https is checked against the deployment's
CA (``ca_file``).

Errors: missing API keys, no pusher (``gst-launch-1.0``/``ffmpeg``) or no aiortc raise
``ActivityFailed`` saying what to install; a failed publish is ``ok`` false, so a tolerance
decides.
"""

import time
import uuid
from collections.abc import Callable
from typing import Any, Dict, Protocol

from chaoslib.exceptions import ActivityFailed
from chaoslib.types import Configuration, Secrets

from lkchaos.errors import ConfigError
from lkchaos.ingress import client, push, whip
from lkchaos.settings import Settings
from lkchaos.values import check_number, check_text

__all__ = ["rtmp_publish", "whip_publish"]

#: How often RoomService is asked whether the participant and its tracks are there.
POLL_S = 0.25
#: Each IngressService/RoomService request.
API_TIMEOUT = 5.0
WANTED_KINDS = {"audio", "video"}


class Publisher(Protocol):
    def running(self) -> bool: ...

    def error(self) -> str: ...

    def stop(self) -> None: ...


class _Rtmp:
    def __init__(self, pusher: str, url: str, seconds: float) -> None:
        self.push = push.start(pusher, url, seconds)

    def running(self) -> bool:
        return self.push.running()

    def error(self) -> str:
        code = self.push.process.poll()
        return f"{self.push.pusher} exited with {code}: {self.push.error() or 'no message'}"

    def stop(self) -> None:
        self.push.stop()


class _Whip:
    def __init__(self, url: str, ca_file: str, timeout: float) -> None:
        self.session = whip.WhipPush(url, ca_file, timeout)
        try:
            self.session.start()
        except BaseException:
            self.session.stop()
            raise

    def running(self) -> bool:
        return self.session.connection_state() not in ("failed", "closed")

    def error(self) -> str:
        return f"the WebRTC connection is {self.session.connection_state()}"

    def stop(self) -> None:
        self.session.stop()


def _check(room: Any, duration_s: Any, timeout: Any, endpoint: Any) -> None:
    """The arguments both probes share, as their preflight checks them."""
    check_text("room", room)
    check_number("duration_s", duration_s, "seconds", maximum=600)
    check_number("timeout", timeout, "seconds", strict=True, maximum=600)
    if endpoint is not None:
        check_text("endpoint", endpoint)
        if "://" not in endpoint:
            raise ActivityFailed(f"endpoint must be a URL such as rtmp://127.0.0.1:21935/x or "
                                 f"https://whip.chaos.test/w, not {endpoint!r}")  # fmt: skip


def _check_pusher_name(pusher: Any) -> str:
    """``pusher`` is one lkchaos knows (whether it is installed is checked when it runs)."""
    if pusher not in ("auto", *push.PUSHERS):
        raise ActivityFailed(f"pusher must be auto, {' or '.join(push.PUSHERS)}, not {pusher!r}")
    return str(pusher)


#: Stages at which a publish the ingress accepted stopped short of the room: no participant,
#: a track missing, a track gone while held, the ingress not publishing.
SHORT = ("participant", "tracks", "held", "state")


def _check_publishes(publishes: Any) -> int:
    """``publishes`` is 1 or 2."""
    if isinstance(publishes, bool) or publishes not in (1, 2):
        raise ActivityFailed(f"publishes must be 1 or 2, not {publishes!r}")
    return int(publishes)


def _again(result: Dict[str, Any]) -> bool:
    """Whether an encoder would publish again after ``result``: it was accepted but stopped
    short of the room (a stage of :data:`SHORT`), or the WHIP endpoint answered its offer
    with a server error (5xx: the ingress failed to start the session, or a LiveKit node did
    not answer it in time), not a refusal (a 4xx: an unknown stream key is the answer)."""
    return result.get("stage") in SHORT or (
        result.get("stage") == "push" and int(result.get("answered") or 0) >= 500)


def _publishing(once: Callable[[], Dict[str, Any]], publishes: int) -> Dict[str, Any]:
    """``once()``, and once more when ``publishes`` is 2 and an encoder would publish again
    (:func:`_again`): the second's result carries the first's under ``earlier``."""
    first = once()
    if publishes < 2 or not _again(first):
        return first
    return {**once(), "earlier": first}


def _check_pusher(pusher: Any) -> str:
    """The installed pusher to use, or ActivityFailed saying what to install."""
    try:
        return push.check_pusher(_check_pusher_name(pusher))
    except push.PusherMissing as exc:
        raise ActivityFailed(str(exc)) from exc


def _endpoint(given: str | None, settings: Settings, setting: str, created: str) -> str:
    configured = getattr(settings, setting, "") or ""
    return (given or configured or created).rstrip("/")


def _settings(configuration: Configuration, secrets: Secrets) -> Settings:
    settings = Settings.load(configuration, secrets)
    try:
        settings.require_keys()
    except ConfigError as exc:
        raise ActivityFailed(str(exc)) from exc
    return settings


def _watch(
    result: Dict[str, Any], settings: Settings, publisher: Publisher, started: float,
    duration_s: float, timeout: float,
) -> None:
    """Wait for the participant and its tracks, hold ``duration_s``, read the state."""
    room, identity = result["room"], result["identity"]
    deadline = started + timeout
    seen = client.Seen()
    while True:
        try:
            seen = client.participant(settings, room, identity, API_TIMEOUT)
        except client.IngressApiError as exc:
            result["reason"] = f"RoomService: {exc}"
        now = time.monotonic()
        if seen.present and result["time_to_participant_s"] is None:
            result["time_to_participant_s"] = round(now - started, 2)
        if seen.present and WANTED_KINDS <= seen.kinds:
            result["time_to_tracks_s"] = round(now - started, 2)
            result["tracks"] = seen.tracks
            break
        if not publisher.running():
            result.update(stage="push", reason=publisher.error())
            return
        if now >= deadline:
            result["tracks"] = seen.tracks
            missing = sorted(WANTED_KINDS - seen.kinds)
            result.update(stage="tracks" if seen.present else "participant",
                          reason=(f"no {' or '.join(missing)} track from {identity} within "
                                  f"{timeout:g} s" if seen.present else
                                  f"{identity} did not join {room} within {timeout:g} s"))
            return
        time.sleep(POLL_S)
    time.sleep(duration_s)
    if not publisher.running():
        result.update(stage="push", reason=publisher.error())
        return
    try:
        held = client.participant(settings, room, identity, API_TIMEOUT)
        now_state = client.state(settings, result["ingress_id"], API_TIMEOUT)
        result.update(state=now_state["status"], state_error=now_state["error"])
    except client.IngressApiError as exc:
        result.update(stage="held", reason=f"RoomService/IngressService: {exc}")
        return
    if not (held.present and WANTED_KINDS <= held.kinds):
        result.update(stage="held", reason=f"{identity} or one of its tracks left {room} "
                                           f"within {duration_s:g} s")  # fmt: skip
    elif result["state"] != "ENDPOINT_PUBLISHING":
        result.update(stage="state", reason=f"the ingress is {result['state']}"
                      + (f": {result['state_error']}" if result["state_error"] else ""))


def _publish(
    kind: str, room: str, duration_s: float, timeout: float, endpoint: str | None,
    settings: Settings, start: Any, pusher: str = "",
) -> Dict[str, Any]:
    identity = f"lkchaos-{kind}-{uuid.uuid4().hex[:8]}"
    began = time.monotonic()
    result: Dict[str, Any] = {
        "ok": False, "kind": kind, "room": room, "ingress_id": None, "identity": identity,
        "endpoint": None, "pusher": pusher or None, "time_to_participant_s": None,
        "time_to_tracks_s": None, "tracks": [], "state": None, "state_error": "",
        "stage": None, "reason": "", "deleted": False, "took_s": None,
    }
    try:
        created = client.create(settings, kind, room, identity, API_TIMEOUT)
    except client.IngressApiError as exc:
        result.update(stage="create", reason=f"CreateIngress: {exc}",
                      took_s=round(time.monotonic() - began, 2))
        return result
    result["ingress_id"] = created.ingress_id
    publisher: Publisher | None = None
    try:
        base = _endpoint(endpoint, settings, f"ingress_{kind}_url", created.url)
        result["endpoint"] = base
        if not base:
            result.update(stage="create", reason=(
                f"CreateIngress returned no {kind.upper()} URL: set ingress.{kind}_base_url in "
                f"LiveKit's config, or give the endpoint (or the ingress_{kind}_url setting)"))
            return result
        started = time.monotonic()
        try:
            publisher = start(f"{base}/{created.stream_key}")
        except (OSError, whip.WhipError, TimeoutError) as exc:
            result.update(stage="push", reason=str(exc).replace(created.stream_key, "<key>"))
            if isinstance(exc, whip.WhipError) and exc.status is not None:
                result["answered"] = exc.status
            return result
        _watch(result, settings, publisher, started, duration_s, timeout)
        result["reason"] = str(result["reason"]).replace(created.stream_key, "<key>")
        result["ok"] = result["stage"] is None
        if result["ok"]:
            result["reason"] = ""
        return result
    finally:
        if result["state"] is None and result["stage"] not in (None, "create"):
            try:  # what the ingress says of the failure, before it is deleted
                seen = client.state(settings, created.ingress_id, API_TIMEOUT)
                result.update(state=seen["status"], state_error=seen["error"])
            except client.IngressApiError:
                pass
        try:
            if publisher is not None:
                publisher.stop()
                _settled(settings, created.ingress_id)
        finally:  # the ingress is deleted even if stopping the push failed
            try:
                client.delete(settings, created.ingress_id, API_TIMEOUT)
                result["deleted"] = True
            except client.IngressApiError as exc:
                result["delete_error"] = str(exc)
            result["took_s"] = round(time.monotonic() - began, 2)


#: How long the ingress may take to report its stream ended before it is deleted anyway.
SETTLE_S = 10.0
#: States of an ingress whose stream has not ended yet.
_LIVE = ("ENDPOINT_BUFFERING", "ENDPOINT_PUBLISHING")


def _settled(settings: Settings, ingress_id: str) -> None:
    """Wait (at most :data:`SETTLE_S`) until the ingress reports its stream ended, before it
    is deleted. LiveKit 1.13.5 crashes on a state update racing a DeleteIngress (a nil
    pointer in ``IOInfoService.UpdateIngressState``, pkg/service/ioservice_ingress.go:81,
    seen here killing a node), so a client must let the last update land first."""
    deadline = time.monotonic() + SETTLE_S
    while time.monotonic() < deadline:
        try:
            if client.state(settings, ingress_id, API_TIMEOUT)["status"] not in _LIVE:
                return
        except client.IngressApiError:
            return  # nothing to wait for that can be asked: the delete says the rest
        time.sleep(0.3)


#: Seconds between attempts while Ingress answers "server capacity exceeded".
CAPACITY_RETRY_S = 2.0


def _retrying(publish: Any, timeout: float) -> Dict[str, Any]:
    """Publish again while Ingress refuses the stream for capacity, as a broadcaster's
    encoder reconnects, within ``timeout`` seconds; ``attempts`` counts the publishes and
    ``refused_for_capacity`` the refusals (Ingress admits a session only while enough CPU is
    idle, and holds the cost of a session that just ended for a moment)."""
    deadline = time.monotonic() + timeout
    attempts = refused = 0
    while True:
        attempts += 1
        result: Dict[str, Any] = publish()
        full = result.get("stage") == "push" and "capacity" in str(result.get("state_error"))
        refused += full
        if not full or time.monotonic() + CAPACITY_RETRY_S >= deadline:
            if full:  # any other answer returned at once: every attempt was refused
                result["reason"] = (
                    f"{result.get('reason') or 'server capacity exceeded'}; refused for "
                    f"capacity at all {attempts} attempts: Ingress admits a session only "
                    "while its host's idle CPU exceeds the session's cpu_cost plus "
                    "min_idle_ratio of every core (Ingress's cpu_cost settings); free CPU "
                    "on that host or lower those costs")  # fmt: skip
            return {**result, "attempts": attempts, "refused_for_capacity": refused}
        time.sleep(CAPACITY_RETRY_S)


def rtmp_publish(
    room: str = "lkchaos-ingress-rtmp",
    duration_s: float = 5.0,
    timeout: float = 30.0,
    endpoint: str = None,  # type: ignore[assignment]
    pusher: str = "auto",
    publishes: int = 1,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Dict[str, Any]:
    """Publish a test stream into ``room`` through an RTMP ingress; see the module docstring.

    Waits up to ``timeout`` seconds for the participant and its audio and video tracks, then
    holds ``duration_s`` seconds. ``pusher``: ``auto``, ``gst-launch-1.0`` or ``ffmpeg`` (one
    must be installed where lkchaos runs). ``endpoint``: the RTMP base URL to push to
    (``rtmp://HOST:PORT/x``) instead of the configured or announced one. ``publishes=2``:
    publish a second time when the first was accepted but stopped short of the room (no
    participant, a track missing or gone, the ingress not publishing), or (WHIP) the
    endpoint answered the offer with a server error (5xx), as an encoder reconnects; the
    result is the second's, with the first's under ``earlier`` (up to twice the time).
    """
    _check(room, duration_s, timeout, endpoint)
    count = _check_publishes(publishes)
    chosen = _check_pusher(pusher)
    settings = _settings(configuration, secrets)
    seconds = timeout + duration_s + 5.0

    return _publishing(lambda: _retrying(lambda: _publish(
        "rtmp", room, duration_s, timeout, endpoint, settings,
        lambda url: _Rtmp(chosen, url, seconds), chosen), timeout), count)  # fmt: skip


def whip_publish(
    room: str = "lkchaos-ingress-whip",
    duration_s: float = 5.0,
    timeout: float = 30.0,
    endpoint: str = None,  # type: ignore[assignment]
    publishes: int = 1,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Dict[str, Any]:
    """Publish test audio (Opus) and video (VP8) into ``room`` through a WHIP ingress with
    aiortc; see the module docstring.

    Waits up to ``timeout`` seconds for the participant and its audio and video tracks, then
    holds ``duration_s`` seconds. ``endpoint``: the WHIP base URL (``https://HOST/w``) instead
    of the configured or announced one. ``publishes``: as ``rtmp_publish``'s. Needs aiortc
    (``lkchaos[ingress]``).
    """
    _check(room, duration_s, timeout, endpoint)
    count = _check_publishes(publishes)
    if whip.aiortc_missing():
        raise ActivityFailed(whip.NEEDED)
    settings = _settings(configuration, secrets)

    return _publishing(lambda: _retrying(lambda: _publish(
        "whip", room, duration_s, timeout, endpoint, settings,
        lambda url: _Whip(url, settings.ca_file, min(timeout, 15.0)), "aiortc"), timeout),
        count)  # fmt: skip
