"""The LiveKit checks' media session: two participants, a tone (and a moving picture) sent
by one and received by the other, the room's state in Redis, and a room capped at its
participant limit (:mod:`lkchaos.validate.checks.livekit` uses them)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from livekit import api

from lkchaos.livekit import client as lk
from lkchaos.livekit.background import SourceStalled, capture, close_source, new_room
from lkchaos.settings import Settings

# --- the media session (shared by joins, audio, video, Redis session data and cleanup) -----

TONE_HZ = 440.0
RATE = 48000
FRAME = RATE // 100
#: Audible: RMS over this (int16) in a 10 ms frame; the tone is sent at about 8000.
LOUD_RMS = 500.0
#: Frames the subscriber must get before the stream counts as working (0.2 s of audio).
WANTED_FRAMES = 20
WANTED_VIDEO_FRAMES = 5


def tone(index: int) -> bytes:
    """10 ms of a 440 Hz tone (int16, 48 kHz, mono), the ``index``-th frame of it."""
    t = (np.arange(FRAME) + index * FRAME) / RATE
    return (np.sin(2 * np.pi * TONE_HZ * t) * 8000).astype(np.int16).tobytes()


def peak_hz(pcm: np.ndarray, rate: int) -> float:
    """The strongest frequency of ``pcm``."""
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64)))
    return float(np.argmax(spectrum[1:]) + 1) * rate / len(pcm)


async def _wait(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def _api(settings: Settings, url: str, timeout: float,
               fn: Callable[[api.LiveKitAPI], Any]) -> Any:  # fmt: skip
    return await lk.with_api(url, settings, fn, timeout)


async def media_run(settings: Settings, url: str, video: bool, timeout: float,
                    room: str) -> dict[str, Any]:  # fmt: skip
    """Two participants in ``room`` on the node at ``url``: one publishes a tone (and a moving
    picture when ``video``), the other must receive them. While both are in, Redis's
    participants of the room are read; after both left and the room is deleted, the room's
    keys in Redis must be gone (both recorded as ``redis_*``, or the error as text)."""
    from livekit import rtc

    out: dict[str, Any] = {"node": url, "room": room, "joined": False, "reason": ""}
    started = time.monotonic()
    deadline = started + timeout
    await _api(settings, url, timeout, lambda c: c.room.create_room(
        api.CreateRoomRequest(name=room, empty_timeout=10)))
    pub, sub = new_room(), new_room()
    audio: dict[str, Any] = {"frames": 0, "loud_frames": 0, "first_ms": None, "pcm": []}
    picture: dict[str, Any] = {"frames": 0, "first_ms": None, "size": ""}
    tasks: list[asyncio.Task[None]] = []
    sources: list[Any] = []  # closed after both left, each bounded (close_source)

    async def read_audio(track: Any) -> None:
        stream = rtc.AudioStream.from_track(track=track, sample_rate=RATE, num_channels=1)
        try:
            async for event in stream:
                pcm = np.frombuffer(bytes(event.frame.data), dtype=np.int16)
                audio["frames"] += 1
                if math.sqrt(float(np.mean(pcm.astype(np.float64) ** 2))) > LOUD_RMS:
                    audio["loud_frames"] += 1
                    audio["first_ms"] = audio["first_ms"] or (time.monotonic() - started) * 1000
                    if len(audio["pcm"]) < 50:
                        audio["pcm"].append(pcm)
        finally:
            await stream.aclose()

    async def read_video(track: Any) -> None:
        stream = rtc.VideoStream(track)
        try:
            async for event in stream:
                picture["frames"] += 1
                picture["first_ms"] = picture["first_ms"] or (time.monotonic() - started) * 1000
                picture["size"] = f"{event.frame.width}x{event.frame.height}"
        finally:
            await stream.aclose()

    def subscribed(track: Any, *_: Any) -> None:
        if track.kind == rtc.TrackKind.KIND_AUDIO:
            tasks.append(asyncio.ensure_future(read_audio(track)))
        elif track.kind == rtc.TrackKind.KIND_VIDEO:
            tasks.append(asyncio.ensure_future(read_video(track)))

    sub.on("track_subscribed", subscribed)
    try:
        try:
            ws = lk.http_url(url).replace("http", "ws", 1)
            await asyncio.gather(
                sub.connect(ws, lk.access_token(settings, "lkchaos-validate-listener", room, 120)),
                pub.connect(ws, lk.access_token(settings, "lkchaos-validate-speaker", room, 120)))
        except Exception as exc:  # the SDK raises its own ConnectError and others
            out["reason"] = f"{type(exc).__name__}: {exc}"[:300]
            return out
        both = await _wait(lambda: bool(sub.remote_participants) and bool(pub.remote_participants),
                           max(0.5, deadline - time.monotonic()))  # fmt: skip
        out["join_ms"] = round((time.monotonic() - started) * 1000, 1)
        if not both:
            out["reason"] = "the participants did not see each other"
            return out
        out["joined"] = True
        out["redis_participants"] = await asyncio.to_thread(_redis_participants, settings, room,
                                                            timeout)  # fmt: skip
        source = rtc.AudioSource(RATE, 1)
        sources.append(source)
        await pub.local_participant.publish_track(
            rtc.LocalAudioTrack.create_audio_track("tone", source),
            rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE))
        vsource = rtc.VideoSource(64, 64) if video else None
        if vsource is not None:
            sources.append(vsource)
            await pub.local_participant.publish_track(
                rtc.LocalVideoTrack.create_video_track("picture", vsource),
                rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_CAMERA))
        index = 0
        while time.monotonic() < deadline - 1.0:
            try:
                await capture(source, rtc.AudioFrame(tone(index), RATE, 1, FRAME))
            except SourceStalled as exc:
                out["reason"] = str(exc)
                break
            if vsource is not None and index % 3 == 0:
                shade = (index * 7) % 256
                vsource.capture_frame(rtc.VideoFrame(64, 64, rtc.VideoBufferType.RGBA,
                                                     bytes([shade, 80, 160, 255]) * 64 * 64))
            index += 1
            enough_video = vsource is None or picture["frames"] >= WANTED_VIDEO_FRAMES
            if audio["loud_frames"] >= WANTED_FRAMES and enough_video:
                break
        pcm = np.concatenate(audio["pcm"]) if audio["pcm"] else np.zeros(0, dtype=np.int16)
        out["audio"] = {"received": audio["loud_frames"] >= WANTED_FRAMES,
                        "frames": audio["frames"], "loud_frames": audio["loud_frames"],
                        "first_ms": audio["first_ms"] or 0.0,
                        "peak_hz": peak_hz(pcm, RATE) if len(pcm) else 0.0,
                        "sent_frames": index}  # fmt: skip
        if audio["loud_frames"] < WANTED_FRAMES:
            out["audio"]["reason"] = (f"{audio['loud_frames']} audible frames of "
                                      f"{audio['frames']} received, {index} sent")
        if video:
            out["video"] = {"received": picture["frames"] >= WANTED_VIDEO_FRAMES, **picture}
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for participant in (pub, sub):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(participant.disconnect(), 5)
        for closing in sources:
            await close_source(closing)
        out["redis_after"] = await asyncio.to_thread(_delete_and_watch, settings, url, room,
                                                     timeout)  # fmt: skip
    return out


def _redis_participants(settings: Settings, room: str, timeout: float) -> dict[str, Any]:
    """The identities Redis holds for ``room`` (``room_participants:<room>``)."""
    from lkchaos.livekit import state

    try:
        store = state.read_store(settings, min(timeout, 5.0))
    except Exception as exc:  # reported by the Redis items, not raised here
        return {"error": f"{type(exc).__name__}: {exc}"[:300]}
    return {"identities": sorted(store.participants.get(room, {})),
            "room_listed": room in store.rooms}  # fmt: skip


def room_keys(settings: Settings, room: str, timeout: float) -> list[str]:
    """Where Redis still holds ``room``: keys named after it, and fields of LiveKit's hashes."""
    from lkchaos.livekit import keys
    from lkchaos.redis import client as redis_client

    r = redis_client.primary(settings, min(timeout, 5.0))
    try:
        found = [k.decode() for k in r.scan_iter(match=f"*{room}*", count=500)]
        for name in keys.HASHES:
            if r.type(name) == b"hash" and r.hexists(name, room):
                found.append(f"{name}[{room}]")
        return sorted(found)
    finally:
        r.close()


def _delete_and_watch(settings: Settings, url: str, room: str, timeout: float) -> dict[str, Any]:
    """Delete ``room``, then wait (bounded) until Redis holds nothing of it."""
    try:
        lk.call(url, settings, lambda c: c.room.delete_room(api.DeleteRoomRequest(room=room)),
                timeout)  # fmt: skip
    except Exception as exc:  # the room may already be gone (empty timeout)
        deleted = f"{type(exc).__name__}: {exc}"[:200]
    else:
        deleted = "ok"
    started = time.monotonic()
    try:
        left = room_keys(settings, room, timeout)
        while left and time.monotonic() - started < min(timeout, 5.0):
            time.sleep(0.2)
            left = room_keys(settings, room, timeout)
    except Exception as exc:  # reported by the Redis items
        return {"error": f"{type(exc).__name__}: {exc}"[:300], "delete": deleted}
    return {"left": left, "waited_s": round(time.monotonic() - started, 2), "delete": deleted}


async def capped_room(settings: Settings, url: str, timeout: float,
                      room: str) -> dict[str, Any]:  # fmt: skip
    """A room created with ``max_participants=1``: the second participant must be refused."""

    await _api(settings, url, timeout, lambda c: c.room.create_room(
        api.CreateRoomRequest(name=room, empty_timeout=10, max_participants=1)))
    first, second = new_room(), new_room()
    ws = lk.http_url(url).replace("http", "ws", 1)
    try:
        await first.connect(ws, lk.access_token(settings, "lkchaos-validate-first", room, 120))
        try:
            await asyncio.wait_for(second.connect(
                ws, lk.access_token(settings, "lkchaos-validate-second", room, 120)), timeout)
        except Exception as exc:  # the refusal is what the check wants
            return {"room": room, "second_refused": True, "reason": f"{exc}"[:200]}
        return {"room": room, "second_refused": False, "reason": "joined"}
    finally:
        await second.disconnect()
        await first.disconnect()
        with contextlib.suppress(Exception):
            await _api(settings, url, timeout, lambda c: c.room.delete_room(
                api.DeleteRoomRequest(room=room)))


async def media_path(settings: Settings, url: str, timeout: float, room: str,
                     node_id: str = "") -> dict[str, Any]:
    """The path one participant's published audio takes, all within ``timeout`` seconds (the
    SDK's connect included): create the room through the node at ``url`` (on the LiveKit node
    ``node_id`` when given: ``CreateRoomRequest.node_id``, else where LiveKit's node selector
    puts it), join, publish a tone until the publisher connection has a selected candidate
    pair, leave, delete the room. Never raises: ``{"node", "room", "node_id", "path": {as
    :func:`lkchaos.voice.mediapath.path_of`} or None, "reason"}`` (``reason`` when no path
    was found)."""
    from livekit import rtc

    from lkchaos.voice import mediapath

    out: dict[str, Any] = {"node": url, "room": room, "node_id": node_id, "path": None,
                           "reason": ""}  # fmt: skip
    deadline = time.monotonic() + timeout

    def left() -> float:
        return max(0.5, deadline - time.monotonic())

    try:
        await _api(settings, url, left(), lambda c: c.room.create_room(
            api.CreateRoomRequest(name=room, empty_timeout=10, node_id=node_id)))
    except Exception as exc:  # aiohttp's, the SDK's: the node cannot be asked at all
        out["reason"] = f"could not create a room: {type(exc).__name__}: {exc}"[:300]
        return out
    speaker, source = new_room(), rtc.AudioSource(RATE, 1)
    try:
        ws = lk.http_url(url).replace("http", "ws", 1)
        # The SDK bounds its own connect; cancelling it could abort the process.
        await speaker.connect(ws, lk.access_token(settings, "lkchaos-validate-udp", room, 60),
                              rtc.RoomOptions(connect_timeout=left()))  # fmt: skip
        await speaker.local_participant.publish_track(
            rtc.LocalAudioTrack.create_audio_track("tone", source),
            rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE))
        index = 0
        while time.monotonic() < deadline:
            await capture(source, rtc.AudioFrame(tone(index), RATE, 1, FRAME))
            index += 1
            if index % 25 == 0:
                stats = await asyncio.wait_for(speaker.get_rtc_stats(), min(3.0, left()))
                found = mediapath.path_of(stats.publisher_stats)
                if found.get("path"):
                    out["path"] = found
                    if found.get("remote"):  # the remote candidate's stats can come later
                        return out
        if out["path"] is None:
            out["reason"] = f"no ICE candidate pair was selected within {timeout:g} s"
        return out
    except Exception as exc:  # the SDK raises its own ConnectError, TimeoutError and others
        out["reason"] = out["reason"] or f"{type(exc).__name__}: {exc}"[:300]
        return out
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(speaker.disconnect(), 5)
        await close_source(source)  # after leaving: the track is unpublished first
        with contextlib.suppress(Exception):
            await _api(settings, url, 5.0, lambda c: c.room.delete_room(
                api.DeleteRoomRequest(room=room)))
