"""Rooms left without their agent after the worker's link to LiveKit came back: found and
given a new agent.

LiveKit dispatches an agent to a room once, when the dispatch is created (here, with the
room, from the caller's token); the open-source server (v1.13) never dispatches it again,
whatever the dispatch's ``restart_policy`` says (it is stored, not acted on). Two ways a
caller is then left talking to nobody, both seen when the agent's link to LiveKit is cut for
a few seconds (``experiments/held-agent-signalling-cut.json``):

- a job whose signalling cannot resume within the LiveKit SDK's reconnect budget (ten
  attempts, 7-20 s in all) loses its room for good and ends, while its caller stays;
- a room created while the worker is not registered gets no job at all.

A third, at rest: a job's process that dies (a crash in native code, exit code -11, seen
on a loaded two-core host; an out-of-memory kill) leaves its caller alone the same way;
:func:`watch_job_processes` opens the same window then.

:class:`StrandedRooms` runs in the worker's process. For ``window_s`` seconds after each
registration of the worker (its link is back), every ``every_s`` seconds, it looks for rooms
that hold a caller (a standard or SIP participant present for over ``grace_s``), no agent
participant at all, and a dispatch of this agent that will bring none (:func:`judge_room`),
and creates a new dispatch of this agent there (with the old one's metadata). A dispatch a
worker took is given ``join_s`` for its agent to arrive, so a slow agent is not doubled.
Rooms with no dispatch of this agent (a load test's, an ingress's) are never touched.

The LiveKit server API is reached at the worker's own ``LIVEKIT_URL`` (the same link, so the
sweep sees LiveKit when the worker does), each call bounded by ``timeout_s``; a sweep that
fails is logged and retried on the next tick.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import aiohttp
from livekit import api
from livekit.protocol import agent_dispatch, models

log = logging.getLogger("voicestack.stranded")

#: Participants who make a room worth an agent: people, on WebRTC or on the phone.
CALLER_KINDS = (models.ParticipantInfo.Kind.STANDARD, models.ParticipantInfo.Kind.SIP)
AGENT_KIND = models.ParticipantInfo.Kind.AGENT


@dataclass(frozen=True)
class Verdict:
    """Whether a room needs a new agent (``redispatch``), and why (``reason``)."""

    redispatch: bool
    reason: str
    metadata: str = ""


def judge_room(
    agent_name: str,
    participants: Sequence[models.ParticipantInfo],
    dispatches: Sequence[agent_dispatch.AgentDispatch],
    now_s: float,
    grace_s: float,
    *,
    join_s: float = 20.0,
    registered_at_s: float | None = None,
) -> Verdict:
    """Whether a room with these ``participants`` and ``dispatches`` needs a new dispatch of
    ``agent_name`` at ``now_s`` (all times unix seconds).

    Yes when it holds a caller (present for over ``grace_s``) and no agent participant, and
    its newest dispatch of ``agent_name`` will bring none: one a worker took (it has a job)
    over ``join_s`` ago (its agent left, or never came), or one no worker took, made over
    ``grace_s`` ago or before the worker's latest registration (``registered_at_s``: no
    worker could take it then, and LiveKit does not offer it again). A dispatch made here is
    among ``dispatches`` as soon as it is made (the room stores it before it answers), so it
    is judged like any other."""
    if any(p.kind == AGENT_KIND for p in participants):
        return Verdict(False, "an agent is in the room")
    callers = [p for p in participants if p.kind in CALLER_KINDS]
    if not callers:
        return Verdict(False, "no caller in the room")
    ours = [d for d in dispatches if d.agent_name == agent_name]
    if not ours:
        return Verdict(False, f"no dispatch of {agent_name}")
    newest = max(ours, key=lambda d: d.state.created_at)
    dispatched_s = newest.state.created_at / 1e9
    age = now_s - dispatched_s
    unserved = registered_at_s is not None and dispatched_s < registered_at_s
    if newest.state.jobs:
        if age < join_s:
            return Verdict(False, f"its agent was sent {age:.1f} s ago")
    elif age < grace_s and not unserved:
        return Verdict(False, f"dispatched {age:.1f} s ago, to no worker yet")
    longest = max(now_s - _joined_s(p) for p in callers)
    if longest < grace_s:
        return Verdict(False, f"its caller joined {longest:.1f} s ago")
    taken = "taken by a worker" if newest.state.jobs else "taken by no worker"
    return Verdict(
        True, f"a caller for {longest:.0f} s and no agent; dispatched {age:.0f} s ago, {taken}",
        newest.metadata,
    )  # fmt: skip


def _joined_s(participant: models.ParticipantInfo) -> float:
    """When the participant joined, in unix seconds."""
    if participant.joined_at_ms:
        return participant.joined_at_ms / 1000.0
    return float(participant.joined_at)


class StrandedRooms:
    """Gives a new agent to rooms left without one (see the module docstring).

    ``url``: LiveKit (``ws(s)://`` or ``http(s)://``); ``agent_name``: this worker's;
    ``window_s``, ``every_s``, ``grace_s``, ``join_s``, ``timeout_s``: seconds (see
    :func:`judge_room`); ``window_s`` 0 turns it off. ``clock``: unix seconds (tests)."""

    def __init__(
        self,
        url: str,
        api_key: str,
        api_secret: str,
        agent_name: str,
        *,
        window_s: float = 90.0,
        every_s: float = 3.0,
        grace_s: float = 8.0,
        join_s: float = 20.0,
        timeout_s: float = 3.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url, self.api_key, self.api_secret = url, api_key, api_secret
        self.agent_name = agent_name
        self.window_s, self.every_s, self.grace_s = window_s, every_s, grace_s
        self.join_s = join_s
        self.timeout_s = timeout_s
        self._clock = clock
        self._until = 0.0
        self._task: asyncio.Task[None] | None = None
        self._registered_at: float | None = None

    def watch(self, *, registered: bool = True) -> None:
        """Sweep every ``every_s`` for the next ``window_s`` seconds (from the event loop):
        call it when the worker registers, and with ``registered`` False when a job's
        process died (the worker stayed registered: dispatches it has not taken yet are not
        judged unserved)."""
        if self.window_s <= 0:
            return
        if registered:
            self._registered_at = self._clock()
        self._until = time.monotonic() + self.window_s
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        async with self._client() as lk:
            while time.monotonic() < self._until:
                try:
                    await self.sweep(lk)
                except (aiohttp.ClientError, api.TwirpError, TimeoutError) as exc:
                    log.info("could not look for rooms without their agent: %r", exc)
                except Exception:  # noqa: BLE001 - a sweep's bug must not end the window
                    log.exception("looking for rooms without their agent failed")
                await asyncio.sleep(self.every_s)

    def _client(self) -> api.LiveKitAPI:
        return api.LiveKitAPI(
            self.url, self.api_key, self.api_secret,
            timeout=aiohttp.ClientTimeout(total=self.timeout_s),
        )  # fmt: skip

    async def sweep(self, lk: api.LiveKitAPI) -> list[str]:
        """One look at every room; returns the rooms given a new dispatch."""
        rooms = await lk.room.list_rooms(api.ListRoomsRequest())
        done: list[str] = []
        for room in rooms.rooms:  # num_participants lags: every room is looked into
            try:
                found = await lk.room.list_participants(
                    api.ListParticipantsRequest(room=room.name)
                )
                dispatches = await lk.agent_dispatch.list_dispatch(room.name)
            except api.TwirpError:
                continue  # the room ended meanwhile
            verdict = judge_room(
                self.agent_name, found.participants, dispatches, self._clock(),
                self.grace_s, join_s=self.join_s,
                registered_at_s=self._registered_at,
            )  # fmt: skip
            if not verdict.redispatch:
                continue
            await lk.agent_dispatch.create_dispatch(
                api.CreateAgentDispatchRequest(
                    agent_name=self.agent_name, room=room.name, metadata=verdict.metadata
                )
            )
            log.warning("room %s was left without its agent (%s): dispatched %s again",
                        room.name, verdict.reason, self.agent_name)  # fmt: skip
            done.append(room.name)
        return done


class _ProcessPool(Protocol):
    def on(self, event: str, callback: Callable[..., object]) -> object: ...


def watch_job_processes(pool: _ProcessPool | None, stranded: StrandedRooms) -> bool:
    """Open ``stranded``'s window whenever a process of the worker's ``pool`` closes with a
    non-zero exit code the framework did not cause by killing it: a job's process that died
    under its caller. ``pool`` is livekit-agents' process pool (``AgentServer._proc_pool``
    in 1.8, there once the worker started; its ``process_closed`` event passes the job
    executor, with ``exitcode`` and ``killed``). Returns False, logging a warning, when
    there is none to watch (the framework changed)."""
    if pool is None or not callable(getattr(pool, "on", None)):
        log.warning("cannot watch the job processes (no process pool): a room whose job's "
                    "process dies gets no new agent")  # fmt: skip
        return False

    def closed(proc: object) -> None:
        code = getattr(proc, "exitcode", None)
        if code in (0, None) or getattr(proc, "killed", False):
            return
        log.warning("a job process exited with code %s: looking for rooms left without "
                    "their agent", code)  # fmt: skip
        stranded.watch(registered=False)

    pool.on("process_closed", closed)
    return True
