"""Held calls against a real livekit-server (``--dev`` on loopback) with no agent in it.

With no agent to answer, every turn must be judged ``no_agent`` within the dispatch bound,
the caller must stay joined between turns, calls must end when told, when out of turns, or
when nobody reads them, and none may leave its participant in the room. The probes' argument
checks and the prober's HTTP endpoints are tested here too; turns that an agent answers are
in the integration tests (tests/integration/test_held_calls.py).
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from chaoslib.exceptions import ActivityFailed
from livekit import api

from lkchaos.voice import calls, held, prober
from lkchaos.voice.credential import authorization
from lkchaos.voice.session import HeldCall, Options
from tests.unit.livekit_dev import KEY, SECRET, dev_server

FAST = Options(duration_s=30, max_turns=3, dispatch_s=0.5, turn_gap_s=0.05, join_s=5)
#: Longest a call that left may still be listed in its room (seconds).
LEAVE_S = 5.0


@pytest.fixture(scope="module")
def livekit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with dev_server(tmp_path_factory.mktemp("livekit")) as url:
        yield url


async def _participants(url: str, room: str) -> list[str]:
    async with api.LiveKitAPI(url, KEY, SECRET) as lk:
        try:
            found = await lk.room.list_participants(api.ListParticipantsRequest(room=room))
        except api.TwirpError:
            return []  # the room is gone
        return [p.identity for p in found.participants]


async def _left(url: str, room: str, wait_s: float = LEAVE_S) -> list[str]:
    """Who is still in ``room`` once nobody is, or after ``wait_s`` seconds: LiveKit removes
    a participant that left a moment after its leave (a list taken at once may hold it)."""
    deadline = time.monotonic() + wait_s
    while (found := await _participants(url, room)) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    return found


def test_a_held_call_without_an_agent_judges_each_turn_no_agent(livekit: str) -> None:
    async def go() -> tuple[dict[str, Any], list[str], list[str]]:
        call = HeldCall(livekit.replace("http", "ws"), KEY, SECRET, "nobody", FAST)
        task = asyncio.ensure_future(call.run())
        while not call.turns:
            await asyncio.sleep(0.05)
        during = await _participants(livekit, call.room_name)
        summary = await task
        return summary, during, await _left(livekit, call.room_name)

    summary, during, after = asyncio.run(go())
    assert during == [f"caller-{summary['room'][-10:]}"]  # joined, and held between turns
    assert after == []  # left its room
    assert summary["turns"] == 3 and summary["answered"] == 0
    assert summary["stages"] == {"no_agent": 3} and summary["end_reason"] == "3 turns"
    assert [e["event"] for e in summary["events"]][:1] == ["joined"]


def test_a_call_that_cannot_join_says_why(livekit: str) -> None:
    call = HeldCall("ws://127.0.0.1:9", KEY, SECRET, "nobody", Options(join_s=1))
    summary = asyncio.run(call.run())
    assert summary["turns"] == 0 and "could not join ws://127.0.0.1:9" in summary["end_reason"]


def test_the_registry_ends_calls_on_request_and_when_nobody_reads_them(livekit: str) -> None:
    async def go() -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any], list[Any]]:
        registry = calls.Registry(idle_s=0.5)
        options = Options(duration_s=60, dispatch_s=2.0, turn_gap_s=0.05)
        url = livekit.replace("http", "ws")
        kept = registry.start(url, KEY, SECRET, "nobody", options)
        idle = registry.start(url, KEY, SECRET, "nobody", options)
        # A turn takes over dispatch_s, four times idle_s: a reader waiting for it is reading.
        first = await registry.turns(kept, 0, wait_s=10)
        for _ in range(100):  # read one, leave the other unread for over idle_s
            await registry.turns(kept, 0)
            if all(c["id"] != idle for c in registry.status()):
                break
            await asyncio.sleep(0.1)
        status = registry.status()
        ended = await registry.end(kept)
        return first, status, ended, [kept, idle]

    first, status, ended, (kept, idle) = asyncio.run(go())
    assert first["turns"] and first["turns"][0]["stage"] == "no_agent"
    assert [(c["id"], c["state"]) for c in status] == [(kept, "talking")]  # the unread one ended
    assert ended["state"] == "ended" and ended["end_reason"] == "stopped"


def test_the_registry_ends_unread_calls_side_by_side(
    livekit: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A runner that died with several calls: each is told to stop before any has ended (one
    after the other, they would stay in the deployment a turn each)."""
    order: list[str] = []
    stop = HeldCall.stop
    monkeypatch.setattr(HeldCall, "stop",
                        lambda self, *a: (order.append("stop"), stop(self, *a))[1])

    async def go() -> list[dict[str, Any]]:
        registry = calls.Registry(idle_s=0.3)
        options = Options(duration_s=60, dispatch_s=1.5, turn_gap_s=0.05)
        url = livekit.replace("http", "ws")
        started = [registry.start(url, KEY, SECRET, "nobody", options) for _ in range(3)]
        entries = [registry._calls[i] for i in started]
        read_at = min(e.read_at for e in entries)
        tasks = []
        for entry in entries:  # last read at the same moment: idle at the same check
            entry.read_at = read_at
            tasks.append(entry.task)
        for task in tasks:
            task.add_done_callback(lambda _: order.append("ended"))
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
        return [t.result() for t in tasks]

    summaries = asyncio.run(go())
    # At once: nobody reads them, so the wait for the agent under way is dropped.
    assert [s["end_reason"] for s in summaries] == ["stopped at once"] * 3
    assert order == ["stop"] * 3 + ["ended"] * 3, order


def test_a_call_stopped_at_once_drops_the_wait_under_way_and_leaves(livekit: str) -> None:
    """Told to stop at once while it waits 30 s for an agent, the call ends without waiting
    it out, and leaves its room; told to stop after its turn, it finishes that turn first."""

    async def go(at_once: bool) -> tuple[dict[str, Any], list[str], list[str]]:
        options = Options(duration_s=60, max_turns=5, dispatch_s=30 if at_once else 1.0,
                          join_s=5)  # fmt: skip
        call = HeldCall(livekit.replace("http", "ws"), KEY, SECRET, "nobody", options)
        task = asyncio.ensure_future(call.run())
        while (call.waiting() or {}).get("for") != "agent":
            await asyncio.sleep(0.05)
        during = await _participants(livekit, call.room_name)
        call.stop(at_once)
        summary = await asyncio.wait_for(task, 10)  # far below the 30 s wait
        return summary, during, await _left(livekit, call.room_name)

    summary, during, after = asyncio.run(go(at_once=True))
    assert during == [f"caller-{summary['room'][-10:]}"] and after == []
    assert summary["end_reason"] == "stopped at once" and summary["turns"] == 0, summary
    assert summary["media_path"] == {}  # not read: nobody waits for it
    summary, _during, after = asyncio.run(go(at_once=False))
    assert summary["end_reason"] == "stopped" and summary["stages"] == {"no_agent": 1}
    assert after == []


def test_the_registry_refuses_past_its_limit_and_unknown_ids(livekit: str) -> None:
    async def go() -> None:
        registry = calls.Registry(max_calls=1)
        url = livekit.replace("http", "ws")
        first = registry.start(url, KEY, SECRET, "nobody", FAST)
        with pytest.raises(calls.CallError, match="limit is 1"):
            registry.start(url, KEY, SECRET, "nobody", FAST)
        with pytest.raises(calls.CallError, match="no held call 'nope'"):
            await registry.turns("nope")
        await registry.end(first)

    asyncio.run(go())


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"duration_s": 0}, "duration_s"),
        ({"max_turns": 0}, "max_turns"),
        ({"transcribe_every": -1}, "transcribe_every"),
        ({"turn_gap_s": 61}, "turn_gap_s"),
        ({"silence_s": 0}, "silence_s"),
        ({"colour": "red"}, "unknown held-call options"),
    ],
)
def test_options_refuse_what_cannot_be_held(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Options.from_dict(values)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"caller": ""}, "caller must be a short name"),
        ({"timeout": 0}, "timeout must be more than 0"),
        ({"callers": 9}, "callers must be a whole number from 1 to 8"),
        ({"duration_s": -1}, "held call: duration_s"),
    ],
)
def test_the_turn_probe_refuses_bad_arguments_before_calling(
    arguments: dict[str, Any], message: str
) -> None:
    with pytest.raises(ActivityFailed, match=message):
        held.turn(**arguments)


def test_ending_a_caller_that_was_never_started_says_so() -> None:
    assert held.end("never-started") == {
        "ended": False, "caller": "never-started", "reason": "no held call by that name"}


def test_the_prober_serves_held_calls(livekit: str, tmp_path: Path) -> None:
    config = {"url": livekit.replace("http", "ws"), "key": KEY, "secret": SECRET,
              "agent": "nobody"}  # fmt: skip
    headers = {"Authorization": authorization(SECRET)}

    async def go() -> None:
        async with TestClient(TestServer(prober.make_app(config))) as client:
            bad = await client.post("/calls", json={"max_turns": 0}, headers=headers)
            assert bad.status == 400 and "max_turns" in (await bad.json())["error"]
            assert (await client.post("/calls", json={})).status == 401
            started = await client.post("/calls", headers=headers, json={
                "max_turns": 2, "dispatch_s": 0.3, "turn_gap_s": 0.05, "agent_name": "mine"})
            body = await started.json()
            assert started.status == 200 and body["room"].startswith("lkchaos-held-")
            # The request's agent (the target's voice.agent_name), not the prober's own,
            # is the one LiveKit was asked to dispatch to the call's room.
            assert (body["agent_name"], body["livekit_url"]) == ("mine", config["url"])
            lkapi = api.LiveKitAPI(livekit, KEY, SECRET)
            try:
                for _ in range(50):
                    dispatches = await lkapi.agent_dispatch.list_dispatch(body["room"])
                    if dispatches:
                        break
                    await asyncio.sleep(0.1)
            finally:
                await lkapi.aclose()
            assert [d.agent_name for d in dispatches] == ["mine"]
            turns = await client.get(f"/calls/{body['id']}?after=0&wait_s=10", headers=headers)
            data = await turns.json()
            assert data["turns"][0]["stage"] == "no_agent", json.dumps(data)
            assert (await client.get("/calls/x?wait_s=nope", headers=headers)).status == 400
            ended = await client.delete(f"/calls/{body['id']}", headers=headers)
            assert (await ended.json())["state"] == "ended"
            gone = await client.get(f"/calls/{body['id']}", headers=headers)
            assert gone.status == 404
            waiting = await client.post("/calls", headers=headers, json={"dispatch_s": 30})
            call_id = (await waiting.json())["id"]
            bad = await client.delete(f"/calls/{call_id}?at_once=yes", headers=headers)
            assert bad.status == 400 and "at_once" in (await bad.json())["error"]
            now = await client.delete(f"/calls/{call_id}?at_once=1", headers=headers)
            assert (await now.json())["end_reason"] in ("stopped at once",
                                                        "stopped before joining")

    asyncio.run(go())


def _waits(call: HeldCall) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any] | None]:
    """What ``call`` said it waited for, sampled until its first turn or its end."""

    async def go() -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any] | None]:
        assert call.waiting() is None  # not started
        task = asyncio.ensure_future(call.run())
        seen: list[dict[str, Any]] = []
        while not call.turns and not task.done():
            if (waiting := call.waiting()) is not None:
                seen.append(waiting)
            await asyncio.sleep(0.05)
        return seen, await task, call.waiting()

    return asyncio.run(go())


def test_a_call_says_it_waits_to_join_and_since_when() -> None:
    silent = socket.socket()  # accepts connections (the kernel's backlog), never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    url = f"ws://127.0.0.1:{silent.getsockname()[1]}"
    try:
        seen, summary, after = _waits(HeldCall(url, KEY, SECRET, "nobody", Options(join_s=1.5)))
    finally:
        silent.close()
    assert summary["end_reason"] == f"could not join {url}: timed out", summary
    assert {w["for"] for w in seen} == {"join"}, seen
    waits = [w["s"] for w in seen]
    assert waits == sorted(waits) and 1.0 < waits[-1] <= 2.0, waits  # since it began to join
    assert after is None  # ended: it waits for nothing


def test_a_call_says_it_waits_for_the_agent_and_since_when(livekit: str) -> None:
    options = Options(duration_s=30, max_turns=1, dispatch_s=2.0, join_s=5)
    seen, summary, after = _waits(HeldCall(livekit.replace("http", "ws"), KEY, SECRET, "nobody",
                                           options))  # fmt: skip
    assert summary["stages"] == {"no_agent": 1}, summary
    kinds = [w["for"] for w in seen]
    # Joining may end before the first sample; once joined, the call waits for the agent.
    assert kinds and kinds[-1] == "agent" and "join" not in kinds[kinds.index("agent"):], kinds
    waits = [w["s"] for w in seen if w["for"] == "agent"]
    assert waits == sorted(waits) and 1.5 < waits[-1] <= 2.5, waits  # since it joined
    assert after is None  # ended: it waits for nothing


def test_the_turn_probe_reports_a_session_overdue_between_turns(livekit: str) -> None:
    """No agent comes for 20 s; the probe says so every every_s once overdue_s has passed,
    long before the turn itself ends no_agent. Joining may itself take over overdue_s on a
    busy machine: the call is then overdue to join first, and for the agent once joined."""
    configuration = {"livekit_url": livekit.replace("http", "ws"), "voice_prober_url": "",
                     "agent_name": "nobody"}  # fmt: skip
    secrets = {"livekit": {"api_key": KEY, "api_secret": SECRET}}
    agent = "for the agent to be there and listen, over 1 s"
    samples: list[dict[str, Any]] = []
    try:
        while len(samples) < 12 and sum(agent in s["reason"] for s in samples) < 2:
            samples.append(held.turn("overdue", timeout=30, overdue_s=1.0, every_s=0.5,
                                     configuration=configuration, secrets=secrets))  # fmt: skip
    finally:
        summary = held.end("overdue", configuration, secrets)
    for sample in samples:
        assert sample["ok"] is False and sample["stage"] == "overdue", sample
        assert sample["room"] == samples[0]["room"], sample
        assert sample["room"].startswith("lkchaos-held-"), sample
        assert sample["started_at"] == sample["ended_at"], sample  # when seen
    joining = [s for s in samples if "for its room to be joined, over 1 s" in s["reason"]]
    waiting = [s for s in samples if agent in s["reason"]]
    assert samples == joining + waiting and len(waiting) == 2, [s["reason"] for s in samples]
    for kind in (joining, waiting):  # each wait counted from its own start
        waits = [s["waited_s"] for s in kind]
        assert waits == sorted(waits) and all(1.0 < w < 10 for w in waits), waits
    assert waiting[0]["waited_s"] < waiting[1]["waited_s"]
    starts = [s["started_at"] for s in samples]
    assert starts == sorted(starts) and len(set(starts)) == len(starts), starts
    assert summary["answered"] == 0 and summary["calls"] == 1  # the same call all along


def test_overdue_samples_need_a_bound_and_a_pace_in_range() -> None:
    with pytest.raises(ActivityFailed, match="every_s needs overdue_s"):
        held.turn(every_s=1.0)
    with pytest.raises(ActivityFailed, match="overdue_s must be more than 0"):
        held.turn(overdue_s=0)
    with pytest.raises(ActivityFailed, match="every_s must be more than 0 and at most 60"):
        held.turn(overdue_s=5, every_s=61)
