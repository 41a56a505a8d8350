"""Held calls end when told, and stay ended; a held turn follows its agent when the agent is
replaced in the room.

The first two are tested with a backend that records every call it starts and ends, the
prober's way: a call ended by ``end_held_call`` (or when the process exits) while a sample
is waiting for its next turn must not be replaced by a new call, which would stay in its room,
with an agent in it, until the prober's idle end 45 s later, under the next experiment. The
last is tested on a turn with stand-ins for the room, the agent, the caller's voice and the
listener (as in test_held_judging), and on :func:`lkchaos.voice.session.agent_replaced` with
the room's participants as the LiveKit SDK keeps them.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from lkchaos.voice import audio, held, roundtrip
from lkchaos.voice.session import HeldCall, Options, agent_replaced

CONFIGURATION = {"livekit_url": "ws://127.0.0.1:1", "voice_prober_url": ""}
SECRETS = {"livekit": {"api_key": "k", "api_secret": "s"}}
NAME = "ending"


class _Recording:
    """Calls that never finish a turn until ended; every start and end recorded."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.ended: list[str] = []
        self.polled = threading.Event()

    def start(self, options: Options) -> tuple[str, str]:
        call_id = f"c{len(self.started) + 1}"
        self.started.append(call_id)
        return call_id, f"room-{call_id}"

    def turns(self, call_id: str, after: int, wait_s: float) -> dict[str, Any]:
        self.polled.set()
        state = "ended" if call_id in self.ended else "talking"
        return {"turns": [], "state": state, "end_reason": "stopped"}

    def end(self, call_id: str, at_once: bool = False) -> dict[str, Any]:
        self.ended.append(call_id)
        return {"turns": 0}


@pytest.fixture
def recording(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Recording]:
    backend = _Recording()
    monkeypatch.setattr(held, "backend", lambda _settings: backend)
    monkeypatch.setattr(held, "_exiting", False)  # put back after the test that exits
    yield backend
    held._handles.pop(NAME, None)


def _sample_in_thread(**arguments: Any) -> tuple[threading.Thread, list[dict[str, Any]]]:
    """One ``held_call_turn`` sample taken in a thread, as the sampling control takes it."""
    out: list[dict[str, Any]] = []
    thread = threading.Thread(target=lambda: out.append(held.turn(
        NAME, timeout=10, configuration=CONFIGURATION, secrets=SECRETS, **arguments)))
    thread.start()
    return thread, out


def test_a_call_ended_while_a_sample_waits_is_not_replaced(recording: _Recording) -> None:
    thread, out = _sample_in_thread(callers=2, stagger_s=0.5)
    assert recording.polled.wait(5)
    summary = held.end(NAME, configuration=CONFIGURATION, secrets=SECRETS)
    thread.join(10)
    assert not thread.is_alive()
    assert summary["ended"] and summary["calls"] == 2
    assert out[0]["stage"] == "call_ended" and "end_held_call" in out[0]["reason"], out
    # Both calls ended, and none started after: nothing is left in a room.
    assert recording.started == ["c1", "c2"] and sorted(recording.ended) == ["c1", "c2"]


def test_calls_ended_at_exit_are_not_replaced_and_no_new_one_starts(
    recording: _Recording,
) -> None:
    thread, out = _sample_in_thread()
    assert recording.polled.wait(5)
    held._end_all()
    thread.join(10)
    assert out[0]["stage"] == "call_ended", out
    assert recording.started == ["c1"] and recording.ended == ["c1"]
    with pytest.raises(Exception, match="process is exiting"):
        held.turn(NAME, timeout=1, configuration=CONFIGURATION, secrets=SECRETS)
    assert recording.started == ["c1"]


def test_a_call_that_ended_by_itself_is_still_replaced(recording: _Recording) -> None:
    recording.ended.append("c1")  # the prober reports it ended (its room was lost, say)
    result = held.turn(NAME, timeout=5, configuration=CONFIGURATION, secrets=SECRETS)
    assert result["stage"] == "call_ended" and "by itself" in result["reason"], result
    assert recording.started == ["c1", "c2"]  # the next sample asks the new one
    held.end(NAME, configuration=CONFIGURATION, secrets=SECRETS)
    assert recording.ended.count("c2") == 1


# -- a turn whose agent is replaced ------------------------------------------------------


@dataclass
class Track:
    sid: str


@dataclass
class Publication:
    track: Any


@dataclass
class Participant:
    """A remote participant as the SDK keeps it: identity, sid, publications."""

    identity: str
    sid: str
    track_publications: dict[str, Publication] = field(default_factory=dict)
    attributes: dict[str, str] = field(
        default_factory=lambda: {roundtrip.AGENT_STATE: "listening"})


@dataclass
class Room:
    remote_participants: dict[str, Participant] = field(default_factory=dict)

    def on(self, event: str, handler: Any) -> None:
        pass

    def off(self, event: str, handler: Any) -> None:
        pass


def _agent(sid: str, track_sid: str) -> Participant:
    track = Track(track_sid)
    return Participant("agent-AJ_1", sid, {track_sid: Publication(track)})


@pytest.fixture
def audio_track(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stand-in tracks count as the agent's audio track."""
    monkeypatch.setattr(roundtrip, "_audio_track", lambda p: next(
        (pub.track for pub in p.track_publications.values() if pub.track is not None), None))


def test_an_agent_that_rejoined_as_a_new_participant_is_replaced(audio_track: None) -> None:
    old = _agent("PA_old", "TR_old")
    room = Room({old.identity: old})
    assert not agent_replaced(room, old, "TR_old")  # type: ignore[arg-type]
    # LiveKit replaced the duplicate identity: same identity, a new sid and a new track.
    room.remote_participants[old.identity] = _agent("PA_new", "TR_new")
    assert agent_replaced(room, old, "TR_old")  # type: ignore[arg-type]


def test_an_agent_that_left_or_changed_its_track_is_replaced(audio_track: None) -> None:
    old = _agent("PA_old", "TR_old")
    assert agent_replaced(Room(), old, "TR_old")  # type: ignore[arg-type]
    same = _agent("PA_old", "TR_other")
    assert agent_replaced(Room({old.identity: same}), old, "TR_old")  # type: ignore[arg-type]
    bare = Participant(old.identity, "PA_old")
    assert agent_replaced(Room({old.identity: bare}), old, "TR_old")  # type: ignore[arg-type]


class Speaker:
    def __init__(self) -> None:
        self.asked: list[str] = []

    async def say(self, question: str) -> float:
        self.asked.append(question)
        await asyncio.sleep(0.05)
        return time.monotonic()


class SilentListener:
    """An agent's old track: nothing comes on it any more."""

    def __init__(self) -> None:
        self.gave_up_after: float | None = None

    def heard_since(self, after: float) -> bool:
        return False

    async def reply(self, after: float, first_timeout: float, *args: Any,
                    gone: Any = None, **kwargs: Any) -> None:  # fmt: skip
        start = time.monotonic()
        while time.monotonic() - start < first_timeout:
            if gone is not None and gone():
                break
            await asyncio.sleep(0.02)
        self.gave_up_after = time.monotonic() - start
        return None


@pytest.fixture
def stand_ins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audio, "speech", lambda text: text)
    monkeypatch.setattr(roundtrip, "SETTLE_S", 0.0)


def _call() -> HeldCall:
    return HeldCall("ws://unused", "key", "secret", "agent",
                    Options(first_reply_s=3.0))


def test_a_turn_whose_agent_was_replaced_before_it_asked_asks_nothing(
    stand_ins: None,
) -> None:
    call, speaker, agent = _call(), Speaker(), _agent("PA_old", "TR_old")
    asyncio.run(call._turn(Room(), agent, speaker, SilentListener(),  # type: ignore[arg-type]
                           replaced=lambda: True))  # fmt: skip
    assert speaker.asked == [] and call.turns == []  # the next turn asks the agent now there
    assert [e["event"] for e in call.events][-1] == "agent_replaced"


def test_a_turn_whose_agent_was_replaced_after_it_asked_fails_at_once_and_says_why(
    stand_ins: None,
) -> None:
    call, speaker, agent = _call(), Speaker(), _agent("PA_old", "TR_old")
    listener = SilentListener()
    asked_at: list[float] = []

    def replaced() -> bool:  # the agent rejoins 0.3 s after the question was asked
        if speaker.asked and not asked_at:
            asked_at.append(time.monotonic())
        return bool(asked_at) and time.monotonic() - asked_at[0] > 0.3

    asyncio.run(call._turn(Room(), agent, speaker, listener,  # type: ignore[arg-type]
                           replaced=replaced))  # fmt: skip
    assert len(speaker.asked) == 1
    [turn] = call.turns
    assert turn["stage"] == "no_reply" and "rejoined" in turn["reason"], turn
    assert listener.gave_up_after is not None and listener.gave_up_after < 2.0
