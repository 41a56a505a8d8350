"""Held calls by id: started, read turn by turn, ended; none outlives its readers for long.

The registry runs on one asyncio loop (the prober's: the reference stack's, or one lkchaos
starts as a child process, :mod:`lkchaos.voice.local_prober`). A call nobody has read for
``idle_s`` seconds is ended, so a runner that died leaves no caller behind in the deployment
for longer than that; a reader waiting for a turn is reading, however long it waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from lkchaos.voice.session import HeldCall, Options

#: At most this many held calls at once (each is a WebRTC participant and a Whisper user).
MAX_CALLS = 256
#: A call not read for this long is ended (seconds).
IDLE_S = 45.0


class CallError(Exception):
    """A request about held calls that cannot be met (unknown id, too many calls)."""


@dataclass
class _Entry:
    call: HeldCall
    task: asyncio.Task[dict[str, Any]]
    read_at: float = field(default_factory=time.monotonic)
    #: Reads under way (a reader waiting for a turn is reading: the call is not idle).
    readers: int = 0
    #: Being ended on request: the reaper leaves it be (it would end it at once instead).
    ending: bool = False


class Registry:
    """Held calls of one process, by id."""

    def __init__(self, max_calls: int = MAX_CALLS, idle_s: float = IDLE_S) -> None:
        self.max_calls = max_calls
        self.idle_s = idle_s
        self._calls: dict[str, _Entry] = {}
        self._reaper: asyncio.Task[None] | None = None

    def start(self, url: str, key: str, secret: str, agent: str, options: Options) -> str:
        """Start a held call; returns its id. Raises CallError past ``max_calls``."""
        live = [e for e in self._calls.values() if not e.task.done()]
        if len(live) >= self.max_calls:
            raise CallError(f"{len(live)} held calls already (the limit is {self.max_calls}); "
                            "end some first")  # fmt: skip
        call = HeldCall(url, key, secret, agent, options)
        call_id = uuid.uuid4().hex[:12]
        self._calls[call_id] = _Entry(call, asyncio.ensure_future(call.run()))
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.ensure_future(self._reap())
        return call_id

    def _entry(self, call_id: str) -> _Entry:
        entry = self._calls.get(call_id)
        if entry is None:
            raise CallError(f"no held call {call_id!r} (ended and read, or never started)")
        entry.read_at = time.monotonic()
        return entry

    async def turns(self, call_id: str, after: int = 0, wait_s: float = 0.0) -> dict[str, Any]:
        """The call's turns numbered above ``after``, waiting up to ``wait_s`` seconds for
        one: ``{"id", "room", "state", "end_reason", "turns": [...], "waiting", "summary"}``
        (``waiting``: what the call waits for from the agent and since how long, see
        :meth:`lkchaos.voice.session.HeldCall.waiting`)."""
        entry = self._entry(call_id)
        deadline = time.monotonic() + max(0.0, wait_s)
        entry.readers += 1
        try:
            while (len(entry.call.turns) <= after and not entry.task.done()
                   and time.monotonic() < deadline):  # fmt: skip
                await asyncio.sleep(0.05)
        finally:
            entry.readers -= 1
            entry.read_at = time.monotonic()
        call = entry.call
        return {
            "id": call_id, "room": call.room_name, "state": call.state,
            "end_reason": call.end_reason, "turns": call.turns[after:],
            "waiting": call.waiting(),
            "summary": {k: v for k, v in call.summary().items() if k != "events"},
        }  # fmt: skip

    async def end(
        self, call_id: str, timeout: float = 30.0, at_once: bool = False
    ) -> dict[str, Any]:
        """End the call (after its turn under way, or ``at_once``: that turn dropped) and
        forget it; returns its summary."""
        entry = self._entry(call_id)
        entry.ending = True
        entry.call.stop(at_once)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(entry.task), timeout)
        if not entry.task.done():
            entry.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await entry.task
        self._calls.pop(call_id, None)
        return entry.call.summary()

    async def end_all(self, timeout: float = 5.0) -> None:
        """End every call at once, side by side (nobody is left to read a turn under way),
        each given ``timeout`` seconds to leave its room."""
        await asyncio.gather(*(self.end(call_id, timeout, at_once=True)
                               for call_id in list(self._calls)),
                             return_exceptions=True)  # fmt: skip
        if self._reaper is not None:
            self._reaper.cancel()

    def status(self) -> list[dict[str, Any]]:
        return [{"id": i, "room": e.call.room_name, "state": e.call.state,
                 "turns": len(e.call.turns)} for i, e in self._calls.items()]  # fmt: skip

    async def _reap(self) -> None:
        while self._calls:
            await asyncio.sleep(min(5.0, self.idle_s))
            now = time.monotonic()
            idle = [call_id for call_id, entry in self._calls.items()
                    if entry.readers == 0 and not entry.ending
                    and now - entry.read_at > self.idle_s]  # fmt: skip
            # At once, side by side: nobody reads them, so a turn under way is dropped, and a
            # runner that died with many calls (a load step) leaves none behind for long.
            await asyncio.gather(*(self.end(call_id, at_once=True) for call_id in idle),
                                 return_exceptions=True)  # fmt: skip
