"""The reference agent's search for rooms left without their agent
(stack/voice/voicestack/stranded.py): the rule on real LiveKit records, then sweeps against a
real livekit-server (``--dev`` on loopback) with callers joined over WebRTC and no worker
registered, so that no dispatch ever gets its agent."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from livekit import api, rtc
from livekit.protocol import agent, agent_dispatch, models
from voicestack.stranded import StrandedRooms, judge_room, watch_job_processes

from lkchaos.voice.roundtrip import caller_token
from tests.unit.livekit_dev import KEY, SECRET, dev_server

AGENT = "stranded-test-agent"
NOW = 1_800_000_000.0
Kind = models.ParticipantInfo.Kind


def person(joined_s_ago: float, kind: int = Kind.STANDARD) -> models.ParticipantInfo:
    return models.ParticipantInfo(
        identity=f"p-{uuid.uuid4().hex[:6]}", kind=kind,  # type: ignore[arg-type]
        joined_at_ms=int((NOW - joined_s_ago) * 1000),
    )  # fmt: skip


def dispatch(s_ago: float, name: str = AGENT, metadata: str = "",
             taken: bool = False) -> agent_dispatch.AgentDispatch:  # fmt: skip
    """A dispatch made ``s_ago`` seconds before NOW; ``taken``: a worker took it (a job)."""
    jobs = [agent.Job(id="AJ_test")] if taken else []
    return agent_dispatch.AgentDispatch(
        agent_name=name, metadata=metadata,
        state=agent_dispatch.AgentDispatchState(created_at=int((NOW - s_ago) * 1e9), jobs=jobs),
    )  # fmt: skip


def test_a_caller_left_alone_long_enough_gets_the_newest_dispatchs_agent_again() -> None:
    verdict = judge_room(AGENT, [person(30)], [dispatch(40, metadata="old"),
                                               dispatch(21, metadata="new", taken=True)],
                         NOW, 8.0)  # fmt: skip
    assert verdict.redispatch and verdict.metadata == "new"
    assert verdict.reason == (
        "a caller for 30 s and no agent; dispatched 21 s ago, taken by a worker"
    )


def test_a_dispatch_made_before_the_worker_registered_is_made_again_at_once() -> None:
    """No worker could take it, and LiveKit never offers it again: no grace to wait."""
    fresh = [dispatch(3)]
    assert not judge_room(AGENT, [person(30)], fresh, NOW, 8.0).redispatch
    assert judge_room(AGENT, [person(30)], fresh, NOW, 8.0, registered_at_s=NOW - 1).redispatch
    # the same for one made here a moment ago (it is the newest), before the registration
    made_here = [dispatch(30, taken=True), dispatch(3)]
    assert judge_room(AGENT, [person(30)], made_here, NOW, 8.0,
                      registered_at_s=NOW - 1).redispatch  # fmt: skip


@pytest.mark.parametrize(
    ("participants", "dispatches", "why"),
    [
        ([person(30), person(30, Kind.AGENT)], [dispatch(30)], "an agent is in the room"),
        ([person(30, Kind.INGRESS)], [dispatch(30)], "no caller in the room"),
        ([], [dispatch(30)], "no caller in the room"),
        ([person(30)], [dispatch(30, name="another-agent")],
         f"no dispatch of {AGENT}"),
        ([person(30)], [], f"no dispatch of {AGENT}"),
        ([person(30)], [dispatch(30), dispatch(3)],
         "dispatched 3.0 s ago, to no worker yet"),
        # a worker took it: its agent gets join_s (20 s) to arrive, and is not doubled
        ([person(30)], [dispatch(30), dispatch(12, taken=True)],
         "its agent was sent 12.0 s ago"),
        # one dispatched again here 2 s ago, not yet taken: judged from the server's list
        ([person(30)], [dispatch(30, taken=True), dispatch(2)],
         "dispatched 2.0 s ago, to no worker yet"),
        ([person(5), person(2)], [dispatch(30)], "its caller joined 5.0 s ago"),
    ],
)
def test_rooms_that_have_or_should_not_have_an_agent_are_left_alone(
    participants: list[models.ParticipantInfo],
    dispatches: list[agent_dispatch.AgentDispatch],
    why: str,
) -> None:
    verdict = judge_room(AGENT, participants, dispatches, NOW, 8.0)
    assert not verdict.redispatch and verdict.reason == why


def test_a_sip_caller_counts_as_a_caller() -> None:
    assert judge_room(AGENT, [person(30, Kind.SIP)], [dispatch(30)], NOW, 8.0).redispatch


@pytest.fixture(scope="module")
def livekit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with dev_server(tmp_path_factory.mktemp("livekit")) as url:
        yield url


def _token(room: str, identity: str, *, agent: str | None = None, kind: str = "") -> str:
    if agent is not None:
        return caller_token(KEY, SECRET, room, identity, agent)
    token = (api.AccessToken(KEY, SECRET).with_identity(identity)
             .with_grants(api.VideoGrants(room_join=True, room=room)))  # fmt: skip
    if kind:
        token = token.with_kind(kind)  # type: ignore[arg-type]
    return token.to_jwt()


def test_a_sweep_dispatches_again_only_to_the_room_left_without_its_agent(livekit: str) -> None:
    ws = livekit.replace("http", "ws")
    tag = uuid.uuid4().hex[:6]
    stranded, not_ours, attended = (f"stranded-{tag}", f"no-dispatch-{tag}",
                                    f"attended-{tag}")  # fmt: skip

    async def go() -> tuple[list[str], list[str], list[str], int, int]:
        rooms = [rtc.Room() for _ in range(4)]
        joins = [
            (stranded, "caller-1", _token(stranded, "caller-1", agent=AGENT)),
            (not_ours, "caller-2", _token(not_ours, "caller-2")),
            (attended, "caller-3", _token(attended, "caller-3", agent=AGENT)),
            (attended, "agent-3", _token(attended, "agent-3", kind="agent")),
        ]
        # Each sweep judges at the moment set here: joining four rooms over WebRTC, or a
        # sweep's own calls, may take most of the grace on a busy machine.
        at = {"s": 0.0}
        keeper = StrandedRooms(ws, KEY, SECRET, AGENT, grace_s=1.0, timeout_s=5.0,
                               clock=lambda: at["s"])  # fmt: skip
        # Before the stranded caller joins: its join and its dispatch come after this (a join
        # that took over the grace on a busy machine made them look old when read after it).
        joined_s = time.time()
        for room, (_, _, token) in zip(rooms, joins, strict=True):
            await room.connect(ws, token)
        try:
            async with api.LiveKitAPI(livekit, KEY, SECRET) as lk:
                at["s"] = joined_s
                early = await keeper.sweep(lk)  # as the stranded caller has just joined
                await asyncio.sleep(1.2)
                at["s"] = time.time()  # every caller joined, and dispatched, over 1.2 s ago
                first = await keeper.sweep(lk)
                at["s"] = time.time()
                again = await keeper.sweep(lk)  # the new dispatch is too fresh to judge
                kept = len(await lk.agent_dispatch.list_dispatch(stranded))
                other = len(await lk.agent_dispatch.list_dispatch(attended))
        finally:
            for room in rooms:
                await room.disconnect()
        return early, first, again, kept, other

    early, first, again, kept, other = asyncio.run(go())
    assert early == [] and again == []
    assert first == [stranded]
    assert kept == 2 and other == 1


def test_watching_sweeps_until_the_window_ends_and_survives_an_unreachable_server() -> None:
    async def go() -> float:
        keeper = StrandedRooms("http://127.0.0.1:9", KEY, SECRET, AGENT, window_s=0.5,
                               every_s=0.1, timeout_s=0.5)  # fmt: skip
        started = time.monotonic()
        keeper.watch()
        assert keeper._task is not None
        await asyncio.wait_for(keeper._task, 5.0)
        return time.monotonic() - started

    took = asyncio.run(go())
    assert took >= 0.5  # kept trying, through refused connections, for the whole window


def test_a_window_of_zero_never_sweeps() -> None:
    async def go() -> object:
        keeper = StrandedRooms("http://127.0.0.1:9", KEY, SECRET, AGENT, window_s=0)
        keeper.watch()
        return keeper._task

    assert asyncio.run(go()) is None


def test_a_job_process_that_died_opens_the_window_without_moving_the_registration() -> None:
    async def go() -> list[str]:
        keeper = StrandedRooms("http://127.0.0.1:9", KEY, SECRET, AGENT, window_s=0.3,
                               every_s=0.1, timeout_s=0.5, clock=lambda: NOW)  # fmt: skip
        pool = rtc.EventEmitter[str]()  # the framework's process pool emits the same way
        assert watch_job_processes(pool, keeper)
        opened: list[str] = []
        for name, proc in (
            ("ended well", SimpleNamespace(exitcode=0, killed=False)),
            ("killed by the framework", SimpleNamespace(exitcode=-9, killed=True)),
            ("segmentation fault", SimpleNamespace(exitcode=-11, killed=False)),
        ):
            pool.emit("process_closed", proc)
            if keeper._task is not None and not opened:
                opened.append(name)  # the first close that opened the window
        assert keeper._registered_at is None  # the worker never registered again
        if keeper._task is not None:
            await asyncio.wait_for(keeper._task, 5.0)  # swept through its window, then ended
        return opened

    assert asyncio.run(go()) == ["segmentation fault"]


def test_without_a_process_pool_nothing_is_watched() -> None:
    keeper = StrandedRooms("http://127.0.0.1:9", KEY, SECRET, AGENT)
    assert not watch_job_processes(None, keeper)
    assert not watch_job_processes(SimpleNamespace(), keeper)  # type: ignore[arg-type]
