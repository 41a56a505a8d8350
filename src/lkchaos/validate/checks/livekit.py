"""Checks of the LiveKit items: health, signalling, rooms, media, API latency, resources,
error handling and limits.

Every node of the target (``Settings.livekit_node_urls``, each node's own HTTP port) is asked
directly, so that a finding names the node. Rooms made by a check are named
``lkchaos-validate-*`` and deleted before the check returns. Audio and video go through
LiveKit's rtc SDK: one participant publishes a tone (or a moving picture), another must
receive it. Measurements several items share (the signalling session, the media session, the
resource samples, LiveKit's configuration) run once per run (:meth:`Context.fact`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import secrets as pysecrets
import statistics
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import httpx
from livekit import api

from lkchaos.httpclient import shared_client
from lkchaos.livekit import client as lk
from lkchaos.livekit.background import LEAVE_SLACK_S
from lkchaos.livekit.isolated import run_isolated
from lkchaos.settings import Settings
from lkchaos.validate.checks._livekit_media import capped_room, media_run
from lkchaos.validate.checks._livekit_resources import (
    judge_cpu,
    judge_memory,
    livekit_config,
    samples,
)
from lkchaos.validate.model import Context, Finding, Status, alone, check, early

#: Rooms a check creates start with this, so a person can tell them apart.
ROOM_PREFIX = "lkchaos-validate-"
#: Twirp calls timed for the API's p95, and the signal pings for the WebSocket round trip.
API_CALLS = 20
PINGS = 5
API_P95_MS = 200.0
WS_RTT_MS = 100.0
TWIRP = "/twirp/livekit.RoomService/"


def room_name(kind: str) -> str:
    """A fresh room name for a check (``lkchaos-validate-<kind>-<hex>``)."""
    return f"{ROOM_PREFIX}{kind}-{pysecrets.token_hex(4)}"


def nodes(ctx: Context) -> tuple[str, ...]:
    """Each node's HTTP URL; a ValueError saying where to set them when there is none."""
    urls = ctx.settings.livekit_node_urls
    if not urls:
        raise ValueError("no LiveKit node URLs: set the target's livekit.nodes (or "
                         "LKCHAOS_LIVEKIT_NODE_URLS)")  # fmt: skip
    return urls


def admin_token(settings: Settings, room: str = "", ttl_s: int = 300) -> str:
    """A RoomService token (list, create, admin of ``room`` when given)."""
    import datetime as dt

    key, secret = settings.require_keys()
    grants = api.VideoGrants(room_list=True, room_create=True, room_admin=True, room=room)
    return (api.AccessToken(key, secret).with_identity("lkchaos-validate")
            .with_ttl(dt.timedelta(seconds=ttl_s)).with_grants(grants).to_jwt())  # fmt: skip


def twirp(url: str, method: str, token: str | None, timeout: float, *,
          json: Any = None, content: bytes | None = None,
          content_type: str = "application/json") -> httpx.Response:  # fmt: skip
    """POST one RoomService Twirp call to the node at ``url``."""
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    endpoint = lk.http_url(url).rstrip("/") + TWIRP + method
    if json is not None:
        return shared_client().post(endpoint, json=json, headers=headers, timeout=timeout)
    return shared_client().post(endpoint, content=content or b"", headers=headers,
                                timeout=timeout)  # fmt: skip


def error_of(exc: BaseException) -> Finding:
    """A check that could not run, saying why."""
    return Finding("error", f"{type(exc).__name__}: {exc}"[:400])


def guarded(func: Callable[[Context], Finding]) -> Callable[[Context], Finding]:
    """``func``, with any exception it raises turned into an ``error`` finding."""

    @functools.wraps(func)
    def run(ctx: Context) -> Finding:
        try:
            return func(ctx)
        except Exception as exc:  # a check reports; it never raises into the runner
            return error_of(exc)

    return run


# --- health, rooms ------------------------------------------------------------------------


@check("livekit.health-endpoint-responds")
@guarded
def health_endpoint(ctx: Context) -> Finding:
    """``GET /`` on every node answers 200 (LiveKit's health endpoint)."""
    answers: dict[str, str] = {}
    bad = []
    for url in nodes(ctx):
        started = time.monotonic()
        try:
            response = shared_client().get(lk.http_url(url).rstrip("/") + "/",
                                           timeout=ctx.timeout_s)  # fmt: skip
        except httpx.HTTPError as exc:
            answers[url] = f"no answer ({type(exc).__name__})"
            bad.append(url)
            continue
        ms = (time.monotonic() - started) * 1000
        answers[url] = f"{response.status_code} {response.text.strip()[:20]} in {ms:.0f} ms"
        if response.status_code != 200:
            bad.append(url)
    text = "; ".join(f"{u}: {a}" for u, a in answers.items())
    if bad:
        return Finding("fail", f"{len(bad)} of {len(answers)} nodes unhealthy: {text}",
                       {"nodes": answers})  # fmt: skip
    return Finding("pass", f"every node answers: {text}", {"nodes": answers})


def _room_cycle(ctx: Context) -> dict[str, Any]:
    url = nodes(ctx)[0]
    name = room_name("room")
    token = admin_token(ctx.settings)
    started = time.monotonic()
    created = twirp(url, "CreateRoom", token, ctx.timeout_s, json={"name": name,
                                                                    "empty_timeout": 10})
    create_ms = (time.monotonic() - started) * 1000
    try:
        listed = twirp(url, "ListRooms", token, ctx.timeout_s, json={"names": [name]})
        names = ([r.get("name") for r in listed.json().get("rooms") or []]
                 if listed.status_code == 200 else [])  # fmt: skip
    finally:
        deleted = twirp(url, "DeleteRoom", token, ctx.timeout_s, json={"room": name})
    return {"node": url, "room": name, "create_status": created.status_code,
            "create_ms": round(create_ms, 1), "listed": name in names,
            "delete_status": deleted.status_code, "body": created.text[:200]}


@check("livekit.room-creation-working")
@guarded
def room_creation(ctx: Context) -> Finding:
    """A room is created (CreateRoom), listed (ListRooms) and deleted (DeleteRoom)."""
    seen = ctx.fact("livekit.room-cycle", lambda: _room_cycle(ctx))
    where = f"{seen['room']} on {seen['node']}"
    if seen["create_status"] != 200:
        return Finding("fail", f"CreateRoom {where} answered {seen['create_status']}: "
                       f"{seen['body']}", seen)  # fmt: skip
    if not seen["listed"]:
        return Finding("fail", f"room {where} created but not listed by ListRooms", seen)
    if seen["delete_status"] != 200:
        return Finding("fail", f"room {where} created and listed, but DeleteRoom answered "
                       f"{seen['delete_status']}", seen)  # fmt: skip
    return Finding("pass", f"room {where} created in {seen['create_ms']:.0f} ms, listed, "
                   "deleted", seen)  # fmt: skip


# --- signalling ---------------------------------------------------------------------------


async def _signal(url: str, token: str, pings: int, timeout: float,
                  ice: bool = False) -> dict[str, Any]:  # fmt: skip
    """Join over LiveKit's signalling WebSocket, then time ``pings`` ping/pong round trips.
    With ``ice``, also ``"ice_servers"``: the STUN/TURN servers and credentials the join
    response hands a client (``[{"urls": [...], "username", "credential"}]``; secrets:
    never put in a finding)."""
    from livekit.protocol import rtc as proto

    ws_url = lk.http_url(url).replace("https://", "wss://", 1).replace("http://", "ws://", 1)
    params = {"access_token": token, "auto_subscribe": "0", "protocol": "16", "sdk": "python"}
    limit = aiohttp.ClientTimeout(total=timeout)
    async with aiohttp.ClientSession(timeout=limit) as session:
        started = time.monotonic()
        async with session.ws_connect(ws_url.rstrip("/") + "/rtc", params=params) as ws:
            first = await ws.receive(timeout=timeout)
            if first.type != aiohttp.WSMsgType.BINARY:
                return {"joined": False, "reason": f"first message was {first.type.name}: "
                        f"{str(first.data)[:200]}"}  # fmt: skip
            answer = proto.SignalResponse()
            answer.ParseFromString(first.data)
            kind = answer.WhichOneof("message")
            if kind != "join":
                return {"joined": False, "reason": f"first message was {kind}, not join"}
            join_ms = (time.monotonic() - started) * 1000
            codecs = [c.mime for c in answer.join.enabled_publish_codecs]
            rtts: list[float] = []
            for _ in range(pings):
                stamp = int(time.time() * 1000) + len(rtts)
                sent = time.monotonic()
                await ws.send_bytes(proto.SignalRequest(
                    ping_req=proto.Ping(timestamp=stamp)).SerializeToString())
                while True:
                    message = await ws.receive(timeout=timeout)
                    if message.type != aiohttp.WSMsgType.BINARY:
                        raise ConnectionError(f"signalling closed: {message.type.name}")
                    reply = proto.SignalResponse()
                    reply.ParseFromString(message.data)
                    if (reply.WhichOneof("message") == "pong_resp"
                            and reply.pong_resp.last_ping_timestamp == stamp):  # fmt: skip
                        rtts.append((time.monotonic() - sent) * 1000)
                        break
            await ws.send_bytes(proto.SignalRequest(leave=proto.LeaveRequest()).SerializeToString())
            joined = {"joined": True, "join_ms": round(join_ms, 1),
                      "rtt_ms": [round(r, 2) for r in rtts], "codecs": codecs,
                      "server_version": answer.join.server_info.version}  # fmt: skip
            if ice:
                joined["ice_servers"] = [
                    {"urls": list(s.urls), "username": s.username, "credential": s.credential}
                    for s in answer.join.ice_servers]  # fmt: skip
            return joined


def _join(ctx: Context, url: str, kind: str, pings: int, ice: bool = False) -> dict[str, Any]:
    """One signalling join on node ``url`` (:func:`_signal`) as ``lkchaos-validate-<kind>``
    in a room of its own, deleted after it: its result, or ``{"joined": False, "reason"}``."""
    room = room_name(kind)
    token = lk.access_token(ctx.settings, f"lkchaos-validate-{kind}", room, ttl_seconds=120)
    try:
        return asyncio.run(_signal(url, token, pings, ctx.timeout_s, ice=ice))
    except (aiohttp.ClientError, OSError, TimeoutError, ConnectionError) as exc:
        return {"joined": False, "reason": f"{type(exc).__name__}: {exc}"[:300]}
    finally:  # the join created the room: leave nothing behind
        delete_once_left(ctx, url, room)


#: How long a check's room waits for its participants' leave to be recorded before it is
#: deleted anyway (seconds).
LEAVE_S = 3.0


def delete_once_left(ctx: Context, url: str, room: str, leave_s: float = LEAVE_S) -> None:
    """Delete ``room`` once ListParticipants lists no one in it (at most ``leave_s`` seconds,
    each call bounded by what is left of them). A room deleted while its participant's leave
    was still being recorded left that participant's entry in Redis
    (``room_participants:<room>`` with no room, which LiveKit did not remove: an orphan that
    the room-state probe then reports). Best effort: a node that does not answer the listing
    in time is not asked to delete, and an error from either call leaves the room to
    LiveKit's empty timeout."""
    token = admin_token(ctx.settings, room)  # admin of the room, and may delete rooms
    deadline = time.monotonic() + leave_s
    try:
        while (left := deadline - time.monotonic()) > 0:
            listed = twirp(url, "ListParticipants", token, min(ctx.timeout_s, left),
                           json={"room": room})  # fmt: skip
            if listed.status_code != 200 or not listed.json().get("participants"):
                break
            time.sleep(0.1)
    except httpx.TimeoutException:
        return
    except (httpx.HTTPError, ValueError):
        pass
    with contextlib.suppress(httpx.HTTPError):
        twirp(url, "DeleteRoom", token, ctx.timeout_s, json={"room": room})


def ice_servers(ctx: Context) -> list[dict[str, Any]]:
    """The ICE servers (STUN and TURN, with credentials) LiveKit's join response hands a
    client, from the first node that lets a participant join; ``[]`` when none does. Once
    per run; the room the join made is deleted. Holds secrets: never put in a finding."""

    def compute() -> list[dict[str, Any]]:
        for url in nodes(ctx):
            joined = _join(ctx, url, "ice", 0, ice=True)
            if joined.get("joined"):
                return list(joined.get("ice_servers") or [])
        return []

    found: list[dict[str, Any]] = ctx.fact("livekit.ice-servers", compute)
    return found


def signal_sessions(ctx: Context) -> dict[str, Any]:
    """Per node: a signalling join and its ping round trips (or the error, as text)."""

    def compute() -> dict[str, Any]:
        return {url: _join(ctx, url, "signal", PINGS) for url in nodes(ctx)}

    result: dict[str, Any] = ctx.fact("livekit.signal", compute)
    return result


@check("livekit.websocket-connections-successful")
@guarded
def websocket_connections(ctx: Context) -> Finding:
    """A participant joins over each node's signalling WebSocket (``/rtc``) and gets LiveKit's
    join answer."""
    sessions = signal_sessions(ctx)
    failed = {u: s["reason"] for u, s in sessions.items() if not s["joined"]}
    if failed:
        return Finding("fail", "signalling failed on " + "; ".join(f"{u}: {r}" for u, r in
                                                                    failed.items()), sessions)
    text = ", ".join(f"{u} in {s['join_ms']:.0f} ms (LiveKit {s['server_version']})"
                     for u, s in sessions.items())  # fmt: skip
    return Finding("pass", f"joined over WebSocket: {text}", sessions)


@check("livekit.websocket-latency-100ms")
@guarded
def websocket_latency(ctx: Context) -> Finding:
    """The signal ping/pong round trip on every node is under 100 ms: the median of
    :data:`PINGS` per node fails over it; a single ping over it (the worst) only warns, as a
    moment of load on the machine can delay one."""
    sessions = signal_sessions(ctx)
    failed = {u: s["reason"] for u, s in sessions.items() if not s["joined"] or not s["rtt_ms"]}
    if failed:
        return Finding("error", "no signalling session to time: " + "; ".join(
            f"{u}: {r}" for u, r in failed.items()), sessions)  # fmt: skip
    worst = {u: max(s["rtt_ms"]) for u, s in sessions.items()}
    text = ", ".join(f"{u} max {w:.1f} ms (median {statistics.median(sessions[u]['rtt_ms']):.1f})"
                     for u, w in worst.items())  # fmt: skip
    slow = [u for u, s in sessions.items() if statistics.median(s["rtt_ms"]) >= WS_RTT_MS]
    spikes = [u for u, w in worst.items() if w >= WS_RTT_MS]
    status: Status = "fail" if slow else "warn" if spikes else "pass"
    return Finding(status, f"signal ping round trip over {PINGS} pings: {text} "
                   f"(limit {WS_RTT_MS:.0f} ms on the median)",
                   {"worst_ms": worst, "sessions": sessions})  # fmt: skip


# --- media --------------------------------------------------------------------------------


def media_session(ctx: Context) -> dict[str, Any]:
    """The shared media session (:func:`media_run`): audio, and video when enabled (when
    signalling could not tell, audio only: the video item then reports why)."""
    try:
        video = video_enabled(ctx)
    except ConnectionError:
        video = False

    def compute() -> dict[str, Any]:
        return run_isolated(media_run, ctx.settings, nodes(ctx)[0], video, ctx.timeout_s,
                            room_name("media"), timeout_s=ctx.timeout_s + LEAVE_SLACK_S)

    result: dict[str, Any] = ctx.fact("livekit.media", compute)
    return result


def video_enabled(ctx: Context) -> bool:
    """Whether the server offers any video codec to publishers (from the signalling join)."""
    sessions = signal_sessions(ctx)
    for session in sessions.values():
        if session.get("joined"):
            return any(c.lower().startswith("video/") for c in session["codecs"])
    raise ConnectionError("no node accepted a signalling join, so whether video is enabled is "
                          "unknown")  # fmt: skip


@early
@check("livekit.participant-joins-successful")
@guarded
def participant_joins(ctx: Context) -> Finding:
    """Two participants join one room through the rtc SDK and each sees the other."""
    seen = media_session(ctx)
    if not seen["joined"]:
        return Finding("fail", f"participants could not join {seen['room']}: {seen['reason']}",
                       seen)  # fmt: skip
    return Finding("pass", f"2 participants joined {seen['room']} on {seen['node']} in "
                   f"{seen['join_ms']:.0f} ms and saw each other", seen)  # fmt: skip


@check("livekit.audio-streaming-functional")
@guarded
def audio_streaming(ctx: Context) -> Finding:
    """A 440 Hz tone published by one participant is received by the other."""
    seen = media_session(ctx)
    audio = seen.get("audio") or {}
    if not seen["joined"]:
        return Finding("fail", f"no audio: participants could not join ({seen['reason']})", seen)
    if not audio.get("received"):
        return Finding("fail", f"the tone published in {seen['room']} was not received "
                       f"({audio.get('reason', 'no frames')})", seen)  # fmt: skip
    return Finding("pass", f"tone received after {audio['first_ms']:.0f} ms: {audio['frames']} "
                   f"frames, {audio['loud_frames']} audible, peak at {audio['peak_hz']:.0f} Hz",
                   seen)  # fmt: skip


@check("livekit.video-streaming-functional")
@guarded
def video_streaming(ctx: Context) -> Finding:
    """Video published by one participant is received by the other (n/a when the server
    offers no video codec)."""
    if not video_enabled(ctx):
        return Finding("n/a", "the server offers no video codec to publishers (signalling "
                       "join's enabled codecs)")  # fmt: skip
    seen = media_session(ctx)
    video = seen.get("video") or {}
    if not seen["joined"]:
        return Finding("fail", f"no video: participants could not join ({seen['reason']})", seen)
    if not video.get("received"):
        return Finding("fail", f"the video published in {seen['room']} was not received "
                       f"({video.get('reason', 'no frames')})", seen)  # fmt: skip
    return Finding("pass", f"video received after {video['first_ms']:.0f} ms: "
                   f"{video['frames']} frames of {video['size']}", seen)  # fmt: skip


@check("livekit.recording-capability-working")
def recording(ctx: Context) -> Finding:
    """Recording needs LiveKit Egress: n/a unless the target names an egress service."""
    if not ctx.settings.roles.get("egress"):
        return Finding("n/a", "the target has no Egress service (recording needs LiveKit "
                       "Egress; the reference stack has none)")  # fmt: skip
    return Finding("manual", "Egress is configured: start a room composite recording and "
                   "confirm the file is written")  # fmt: skip


# --- API latency --------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0-1) by nearest rank."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


@alone
@check("livekit.response-times-200ms")
@guarded
def response_times(ctx: Context) -> Finding:
    """p95 of :data:`API_CALLS` RoomService ``ListRooms`` calls, spread over the nodes, is
    under 200 ms."""
    token = admin_token(ctx.settings)
    urls = nodes(ctx)
    times: list[float] = []
    failures: list[str] = []
    deadline = time.monotonic() + ctx.timeout_s
    for index in range(API_CALLS):
        if time.monotonic() > deadline:
            break
        url = urls[index % len(urls)]
        started = time.monotonic()
        try:
            response = twirp(url, "ListRooms", token, ctx.timeout_s, json={})
        except httpx.HTTPError as exc:
            failures.append(f"{url}: {type(exc).__name__}")
            continue
        if response.status_code != 200:
            failures.append(f"{url}: {response.status_code}")
            continue
        times.append(round((time.monotonic() - started) * 1000, 2))
    data = {"calls": len(times) + len(failures), "failures": failures,
            "times_ms": times}  # fmt: skip
    if not times:
        return Finding("fail", f"no ListRooms call succeeded: {'; '.join(failures[:3])}", data)
    p95 = percentile(times, 0.95)
    data |= {"p95_ms": p95, "p50_ms": percentile(times, 0.5)}
    text = (f"p95 {p95:.1f} ms, p50 {data['p50_ms']:.1f} ms over {len(times)} ListRooms calls "
            f"to {len(urls)} node(s) (limit {API_P95_MS:.0f} ms)")
    if failures:
        return Finding("fail", f"{len(failures)} of {data['calls']} calls failed "
                       f"({'; '.join(failures[:3])}); {text}", data)  # fmt: skip
    return Finding("pass" if p95 < API_P95_MS else "fail", text, data)


# --- error handling -----------------------------------------------------------------------

#: Malformed or wrong requests, and what each must not get: name -> (method, body, auth).
_INVALID: tuple[tuple[str, str, bytes, bool, str], ...] = (
    ("malformed JSON", "ListRooms", b"{not json", True, "application/json"),
    ("wrong field type", "ListParticipants", b'{"room": 123}', True, "application/json"),
    ("unknown method", "NoSuchMethod", b"{}", True, "application/json"),
    ("unexpected content type", "ListRooms", b"rooms please", True, "text/plain"),
    ("no credentials", "ListRooms", b"{}", False, "application/json"),
    ("garbage token", "ListRooms", b"{}", True, "garbage"),
    ("unknown room", "DeleteRoom", b'{"room": "lkchaos-validate-no-such-room"}', True,
     "application/json"),
)  # fmt: skip


def invalid_requests(ctx: Context) -> dict[str, Any]:
    """Each of :data:`_INVALID` sent to the first node: status and Twirp message."""

    def compute() -> dict[str, Any]:
        url = nodes(ctx)[0]
        token = admin_token(ctx.settings)
        out: dict[str, Any] = {"node": url, "answers": {}}
        for name, method, body, auth, kind in _INVALID:
            given = "not-a-jwt" if kind == "garbage" else token if auth else None
            content_type = "application/json" if kind == "garbage" else kind
            response = twirp(url, method, given, ctx.timeout_s, content=body,
                             content_type=content_type)  # fmt: skip
            try:
                message = str(response.json().get("msg") or "")
            except ValueError:
                message = response.text.strip()
            out["answers"][name] = {"status": response.status_code, "message": message[:160]}
        health = shared_client().get(lk.http_url(url).rstrip("/") + "/", timeout=ctx.timeout_s)
        out["healthy_after"] = health.status_code == 200
        return out

    result: dict[str, Any] = ctx.fact("livekit.invalid", compute)
    return result


@check("livekit.graceful-handling-invalid")
@guarded
def graceful_invalid(ctx: Context) -> Finding:
    """Malformed requests get a 4xx (never a 5xx or a dropped connection) and the node stays
    healthy."""
    seen = invalid_requests(ctx)
    answers = seen["answers"]
    bad = {n: a["status"] for n, a in answers.items() if not 400 <= a["status"] < 500}
    listing = ", ".join(f"{n} {a['status']}" for n, a in answers.items())
    if bad or not seen["healthy_after"]:
        why = f"not a 4xx: {bad}" if bad else "the node was unhealthy afterwards"
        return Finding("fail", f"{why} ({listing})", seen)
    return Finding("pass", f"{len(answers)} invalid requests to {seen['node']} each got a 4xx "
                   f"({listing}); node healthy after", seen)  # fmt: skip


@check("livekit.proper-error-messages")
@guarded
def error_messages(ctx: Context) -> Finding:
    """Each refused request carries a message saying what was wrong."""
    seen = invalid_requests(ctx)
    silent = [n for n, a in seen["answers"].items() if a["status"] >= 400 and not a["message"]]
    sample = "; ".join(f"{n}: {a['status']} {a['message']!r}" for n, a in
                       list(seen["answers"].items())[:3])  # fmt: skip
    if silent:
        return Finding("fail", f"refused without a message: {', '.join(silent)}", seen)
    return Finding("pass", f"every refusal says why, e.g. {sample}", seen)


# --- limits (from LiveKit's configuration) -------------------------------------------------


@check("livekit.rate-limiting-working")
@guarded
def rate_limiting(ctx: Context) -> Finding:
    """LiveKit's ``limit`` section (bytes per second, tracks, subscriptions): n/a when unset."""
    config, source = livekit_config(ctx)
    limits = {k: v for k, v in (config.get("limit") or {}).items() if v}
    if not limits:
        return Finding("n/a", f"LiveKit's config ({source}) has no `limit` section: no rate "
                       "limit is configured (LiveKit has none by default)")  # fmt: skip
    return Finding("manual", f"configured in {source}: {limits}; exercising them needs load "
                   "(see load.rate-limiting-effectiveness)", {"limit": limits})  # fmt: skip


@check("livekit.connection-limits-enforced")
@guarded
def connection_limits(ctx: Context) -> Finding:
    """With ``room.max_participants`` or a ``limit`` configured: a room capped at one
    participant refuses the second."""
    config, source = livekit_config(ctx)
    configured = {k: v for k, v in (config.get("limit") or {}).items() if v}
    if (config.get("room") or {}).get("max_participants"):
        configured["room.max_participants"] = config["room"]["max_participants"]
    if not configured:
        return Finding("n/a", f"LiveKit's config ({source}) sets no connection limit "
                       "(room.max_participants, limit.*)")  # fmt: skip
    seen = ctx.fact("livekit.capped-room", lambda: run_isolated(
        capped_room, ctx.settings, nodes(ctx)[0], ctx.timeout_s, room_name("capped"),
        timeout_s=ctx.timeout_s + LEAVE_SLACK_S))
    data = {"configured": configured, **seen}
    if seen["second_refused"]:
        return Finding("pass", f"configured {configured}; a room capped at 1 refused the second "
                       f"participant ({seen['reason']})", data)  # fmt: skip
    return Finding("fail", f"configured {configured}; a room capped at 1 let a second "
                   "participant in", data)  # fmt: skip


# --- resources ----------------------------------------------------------------------------


@check("livekit.cpu-usage-50")
@guarded
def cpu_usage(ctx: Context) -> Finding:
    """Each node's CPU use (share of the host's cores) is under 50 %."""
    return judge_cpu(samples(ctx))


@check("livekit.memory-usage-stable")
@guarded
def memory_stable(ctx: Context) -> Finding:
    """Each node's memory does not grow over the sampling window."""
    return judge_memory(samples(ctx), leak=False)


@check("livekit.memory-leaks-detected")
@guarded
def memory_leaks(ctx: Context) -> Finding:
    """No sustained memory growth (judged over minutes of Prometheus history; a window of a
    few seconds is too short and says so)."""
    return judge_memory(samples(ctx), leak=True)


# --- recovery -----------------------------------------------------------------------------


@check("livekit.recovery-temporary-failures")
@guarded
def recovery(ctx: Context) -> Finding:
    """From the run history: the latest run of an experiment that broke LiveKit or its Redis
    and held (recovered)."""
    from lkchaos.validate.checks import recovery as dr

    return dr.from_history(ctx, dr.LIVEKIT_FAULTS, "a LiveKit or Redis fault")


__all__ = ["ROOM_PREFIX", "admin_token", "guarded", "nodes", "room_name", "twirp"]
