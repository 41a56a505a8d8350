"""A held call judges a reply while its caller asks the next question.

The room, the agent, the caller's voice and Whisper are stand-ins here (what a turn does
with a real agent is in tests/integration/test_held_calls.py): a question is "spoken" in
0.2 s, the agent's report of the turn appears as it does from the reference agent, and a
transcription takes 0.4 s in a thread, as Whisper's does, so the order of events shows
whether the next question waited for the last verdict.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Any

import pytest

from lkchaos.voice import audio, roundtrip, session
from lkchaos.voice.questions import expected_answers
from lkchaos.voice.session import HeldCall, Options

QUESTIONS = ("What is two plus three?", "What is nine plus twelve?", "What is four times six?")


class Agent:
    """The agent participant as a held call reads it: its sid and attributes."""

    sid = "PA_agent"

    def __init__(self) -> None:
        self.attributes: dict[str, str] = {roundtrip.AGENT_STATE: "listening"}
        self.turn = 0

    def answer(self, question: str) -> None:
        self.turn += 1
        reply = f"The answer is {expected_answers(question)[0]}."
        self.attributes[roundtrip.TURN_ATTRIBUTE] = json.dumps(
            {"turn": self.turn, "heard": question, "reply": reply})


class Speaker:
    def __init__(self, agent: Agent, log: list[tuple[str, float]]) -> None:
        self.agent, self.log = agent, log

    async def say(self, question: str) -> float:
        self.log.append(("ask", time.monotonic()))
        await asyncio.sleep(0.2)
        self.agent.answer(question)
        # The end of speech as the call is told it: a sleep may end late on a busy machine.
        self.log.append(("spoken", time.monotonic()))
        return self.log[-1][1]


class Room:
    """The room as a turn uses it: its events, which nobody raises here."""

    def on(self, event: str, handler: Any) -> None:
        pass

    def off(self, event: str, handler: Any) -> None:
        pass


class Listener:
    """A reply 0.1 s after the question, whose "audio" is what the agent said."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def heard_since(self, after: float) -> bool:
        return False  # the agent is quiet between its replies

    async def reply(self, after: float, *args: Any, **kwargs: Any) -> tuple[float, float, str]:
        await asyncio.sleep(0.15)
        said = json.loads(self.agent.attributes[roundtrip.TURN_ATTRIBUTE])["reply"]
        return after + 0.1, after + 0.15, said


@pytest.fixture
def log(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, float]]:
    events: list[tuple[str, float]] = []
    questions = itertools.cycle(QUESTIONS)
    monkeypatch.setattr(session, "random_question", lambda: next(questions))
    monkeypatch.setattr(audio, "speech", lambda text: text)

    def transcribe(pcm: Any, prompt: str | None = None) -> str:
        time.sleep(0.4)
        events.append(("transcribed", time.monotonic()))
        return str(pcm)

    monkeypatch.setattr(audio, "transcribe", transcribe)
    return events


def _call(every: int = 1) -> HeldCall:
    return HeldCall("ws://unused", "key", "secret", "agent", Options(transcribe_every=every))


async def _turns(call: HeldCall, n: int, log: list[tuple[str, float]]) -> None:
    agent = Agent()
    speaker, listener = Speaker(agent, log), Listener(agent)
    for _ in range(n):
        await call._turn(Room(), agent, speaker, listener)  # type: ignore[arg-type]
    await call._judged(None)


def test_the_next_question_is_asked_while_the_last_reply_is_transcribed(
    log: list[tuple[str, float]],
) -> None:
    call = _call()
    asyncio.run(_turns(call, 3, log))
    kinds = [kind for kind, _ in sorted(log, key=lambda e: e[1]) if kind != "spoken"]
    # Each reply's transcription (0.4 s) ends after the next question began.
    assert kinds == ["ask", "ask", "transcribed", "ask", "transcribed", "transcribed"], kinds
    assert [t["turn"] for t in call.turns] == [1, 2, 3]
    assert [t["question"] for t in call.turns] == list(QUESTIONS)
    assert all(t["ok"] and t["checked_by"] == "audio" for t in call.turns), call.turns
    assert [t["heard"] for t in call.turns] == [
        "The answer is 5.", "The answer is 21.", "The answer is 24."]


def test_every_nth_reply_is_transcribed_counting_the_one_still_being_judged(
    log: list[tuple[str, float]],
) -> None:
    call = _call(every=2)
    asyncio.run(_turns(call, 4, log))
    assert [t["checked_by"] for t in call.turns] == ["audio", "agent", "audio", "agent"]
    assert [t["turn"] for t in call.turns] == [1, 2, 3, 4]


def test_a_call_stopped_at_once_drops_the_reply_being_judged() -> None:
    async def go() -> tuple[tuple[None] | None, asyncio.Future[None]]:
        call = _call()
        never = asyncio.ensure_future(asyncio.sleep(3600))
        call._judging = never
        call.stop(at_once=True)
        waited = await asyncio.wait_for(call._unless_stopped_at_once(call._judged(None)), 2)
        await asyncio.sleep(0)
        return waited, never

    waited, judging = asyncio.run(go())
    assert waited is None and judging.cancelled()


def test_a_failure_to_judge_is_raised_at_the_next_turn_and_stops_it() -> None:
    async def go() -> list[str]:
        call = _call()

        async def fails() -> None:
            raise RuntimeError("Whisper's model could not be loaded")

        started: list[str] = []

        async def next_verdict() -> None:
            started.append("next")

        await call._judged(fails())
        with pytest.raises(RuntimeError, match="could not be loaded"):
            await call._judged(next_verdict())
        return started

    assert asyncio.run(go()) == []  # the next turn's verdict never started


def test_a_turn_is_placed_at_the_end_of_its_question_when_its_reply_became_due(
    log: list[tuple[str, float]],
) -> None:
    """Each question takes 0.2 s to say: the wall-clock span a turn reports for itself
    (which the sampling control places it by) starts when the caller stopped speaking."""
    call = _call()
    before = time.time()
    asyncio.run(_turns(call, 2, log))
    spoken = [at for kind, at in log if kind == "spoken"]
    wall = time.time() - time.monotonic()  # monotonic to wall clock, to the millisecond
    for turn, end_of_speech in zip(call.turns, spoken, strict=True):
        assert "due" not in turn
        assert turn["started_at"] == pytest.approx(end_of_speech + wall, abs=0.05), turn
        assert before < turn["started_at"] < turn["ended_at"]
        assert turn["took_s"] > turn["ended_at"] - turn["started_at"]  # it began earlier
