"""Participants held in a room through a fault, so that "no participant lost" means something.

A held participant joins a room with the LiveKit SDK (signalling and a peer connection, no
tracks) as ``lkchaos-held-<n>`` and stays connected, reconnecting as the SDK does, until it
is released or its ``duration_s`` ends. A room-state comparison after the fault then has
participants that must still be there.

:class:`Holds` keeps the held rooms in the prober's event loop (:mod:`lkchaos.voice.prober`):
the reference stack's, where callers resolve through the stack's DNS and trust its CA, or one
lkchaos starts as a child process (:mod:`lkchaos.voice.local_prober`) for a deployment this
machine reaches as callers do. Every hold is bounded in participants
(:data:`MAX_PARTICIPANTS`) and time (:data:`MAX_DURATION_S`), and ends by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import re
import time
from dataclasses import dataclass, field
from typing import Any

from livekit import api, rtc

from lkchaos.livekit.background import new_room

IDENTITY_PREFIX = "lkchaos-held-"
MAX_PARTICIPANTS = 20
MAX_DURATION_S = 3600.0
ROOM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


class HoldError(Exception):
    """A hold could not be made or its arguments are wrong; the message says which."""


def check(room: Any, count: Any, duration_s: Any) -> tuple[str, int, float]:
    """The hold's arguments, or HoldError naming the first bad one."""
    if not isinstance(room, str) or not ROOM_NAME.fullmatch(room):
        raise HoldError(f"room must be a room name of letters, digits, '.', '_' and '-' "
                        f"(at most 100), not {room!r}")  # fmt: skip
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_PARTICIPANTS:
        raise HoldError(f"count must be a whole number from 1 to {MAX_PARTICIPANTS}, "
                        f"not {count!r}")  # fmt: skip
    if (isinstance(duration_s, bool) or not isinstance(duration_s, int | float)
            or not 0 < duration_s <= MAX_DURATION_S):  # fmt: skip
        raise HoldError(f"duration_s must be more than 0 and at most {MAX_DURATION_S:g} "
                        f"seconds, not {duration_s!r}")  # fmt: skip
    return room, count, float(duration_s)


def identities(count: int) -> list[str]:
    return [f"{IDENTITY_PREFIX}{n}" for n in range(1, count + 1)]


def holder_token(key: str, secret: str, room: str, identity: str, ttl_s: float) -> str:
    """A join token for a held participant: no agent dispatched, may not publish."""
    return (
        api.AccessToken(key, secret)
        .with_identity(identity)
        .with_ttl(dt.timedelta(seconds=ttl_s + 60))
        .with_grants(api.VideoGrants(room_join=True, room=room, can_publish=False,
                                     can_publish_data=False))  # fmt: skip
        .to_jwt()
    )


@dataclass
class _Hold:
    room: str
    participants: dict[str, rtc.Room] = field(default_factory=dict)
    until: float = 0.0
    ender: asyncio.Task[None] | None = None


class Holds:
    """The rooms held by this process; every method runs in its event loop."""

    def __init__(self) -> None:
        self._held: dict[str, _Hold] = {}

    async def hold(
        self, url: str, key: str, secret: str, room: str, count: int, duration_s: float,
        join_timeout: float = 10.0,
    ) -> dict[str, Any]:  # fmt: skip
        """Join ``count`` participants to ``room``; all connected, or none stays."""
        room, count, duration_s = check(room, count, duration_s)
        if room in self._held:
            await self.release(room)
        held = _Hold(room, until=time.time() + duration_s)
        started = time.monotonic()
        try:
            for identity in identities(count):
                lk_room = new_room()
                held.participants[identity] = lk_room
                token = holder_token(key, secret, room, identity, duration_s)
                options = rtc.RoomOptions(auto_subscribe=False, connect_timeout=join_timeout)
                await asyncio.wait_for(lk_room.connect(url, token, options), join_timeout * 4)
        except Exception as exc:
            await _leave(held)
            raise HoldError(f"could not hold {count} participants in {room} at {url}: "
                            f"{type(exc).__name__}: {exc}") from exc  # fmt: skip
        held.ender = asyncio.ensure_future(self._end_after(room, duration_s))
        self._held[room] = held
        return {"room": room, "identities": list(held.participants),
                "joined_s": round(time.monotonic() - started, 3),
                "until": dt.datetime.fromtimestamp(held.until, dt.UTC).isoformat()}  # fmt: skip

    async def _end_after(self, room: str, duration_s: float) -> None:
        await asyncio.sleep(duration_s)
        held = self._held.pop(room, None)
        if held is not None:
            await _leave(held)

    async def release(self, room: str) -> dict[str, Any]:
        """Disconnect the participants held in ``room`` (none held is not an error)."""
        held = self._held.pop(room, None)
        if held is None:
            return {"room": room, "released": 0, "connected_at_release": 0}
        if held.ender is not None:
            held.ender.cancel()
        connected = _connected(held)
        await _leave(held)
        return {"room": room, "released": len(held.participants),
                "connected_at_release": connected}  # fmt: skip

    async def release_all(self) -> list[dict[str, Any]]:
        """Release every held room, side by side."""
        return list(await asyncio.gather(*(self.release(room) for room in list(self._held))))

    def status(self) -> dict[str, Any]:
        """``{room: {"identities", "connected", "until"}}`` for every held room."""
        return {
            room: {"identities": list(h.participants), "connected": _connected(h),
                   "until": dt.datetime.fromtimestamp(h.until, dt.UTC).isoformat()}
            for room, h in self._held.items()
        }  # fmt: skip


def _connected(held: _Hold) -> int:
    return sum(r.connection_state == rtc.ConnectionState.CONN_CONNECTED
               for r in held.participants.values())  # fmt: skip


async def _leave(held: _Hold) -> None:
    """Disconnect every participant of ``held`` side by side, each bounded by 5 s."""
    async def leave(lk_room: rtc.Room) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(lk_room.disconnect(), 5)

    await asyncio.gather(*(leave(r) for r in held.participants.values()))
