"""How a caller reads an agent's turn from its audio and its ``lk.agent.state``, for agents
that do what real voice agents do: say "let me check" and call a tool before answering,
greet the caller as the session starts, or report no state at all.

The agent's audio is fed into the listener's log in real time (loud 10 ms frames where it
speaks), its state set as livekit-agents sets it; the listener is the one the round trip
and held calls use, without a room."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import numpy as np
import pytest

from lkchaos.voice import audio, roundtrip

#: Agents scripted in real time (a reply 0.3-1.0 s after a question, a question 2.5 s long)
#: and judged on those margins: run with the host's CPU free, one worker per core (a turn
#: judged wrong once with four workers on two cores and the stack starting beside them).
pytestmark = pytest.mark.idle_cpu

LOUD = np.full(480, 3000, dtype=np.int16)
QUIET = np.zeros(480, dtype=np.int16)


class Agent:
    def __init__(self, state: str | None = "listening") -> None:
        self.attributes: dict[str, str] = {}
        self.set(state)

    def set(self, state: str | None) -> None:
        if state is None:
            self.attributes.pop(roundtrip.AGENT_STATE, None)
        else:
            self.attributes[roundtrip.AGENT_STATE] = state


def _listener() -> audio.Listener:
    listener = object.__new__(audio.Listener)
    listener._threshold = 300.0
    listener._log = audio.AudioLog()
    return listener


def listens_thinks_speaks(listens: float, thinks: float, speaks: float
                          ) -> Callable[[float], tuple[bool, str | None]]:  # fmt: skip
    """An agent's script (see :func:`_play`): listening until ``listens`` s, thinking until
    ``thinks``, speaking aloud until ``speaks``, then listening again."""
    def script(t: float) -> tuple[bool, str | None]:
        if t < listens:
            return False, "listening"
        if t < thinks:
            return False, "thinking"
        return (True, "speaking") if t < speaks else (False, "listening")

    return script


async def _play(listener: audio.Listener, agent: Agent, until: float,
                script: Callable[[float], tuple[bool, str | None]]) -> None:  # fmt: skip
    """Feed the agent's audio and state: ``script(t)`` -> (speaking loud?, state) at ``t``
    seconds from now, every 10 ms, until ``until``."""
    t0 = time.monotonic()
    while (t := time.monotonic() - t0) < until:
        loud, state = script(t)
        agent.set(state)
        listener._log.add(time.monotonic(), LOUD if loud else QUIET)
        await asyncio.sleep(0.01)


def test_a_reply_with_a_tool_call_in_its_middle_is_heard_to_its_end() -> None:
    # "Let me check that" (0.3-1.3 s), a tool call (thinking, 2.5 s of silence), then the
    # answer (3.8-5.0 s): longer than any silence that ends a reply, but the agent said it
    # was at work.
    def script(t: float) -> tuple[bool, str | None]:
        if 0.3 <= t < 1.3 or 3.8 <= t < 5.0:
            return True, "speaking"
        return False, "thinking" if t < 3.8 else "listening"

    async def go() -> tuple[float, float]:
        listener, agent = _listener(), Agent("thinking")
        asked = time.monotonic()
        playing = asyncio.ensure_future(_play(listener, agent, 6.0, script))
        found = await listener.reply(asked, 10, 10, silence=1.2,
                                     finished=roundtrip.finished_speaking(agent),
                                     busy=roundtrip.at_work(agent))
        await playing
        assert found is not None
        return found[0] - asked, found[1] - asked

    first, last = asyncio.run(go())
    assert 0.25 < first < 0.45 and 4.9 < last < 5.15, (first, last)


def test_a_silence_ends_the_reply_of_an_agent_that_reports_no_state() -> None:
    def script(t: float) -> tuple[bool, str | None]:
        return (0.3 <= t < 1.3 or 3.8 <= t < 5.0), None

    async def go() -> float:
        listener, agent = _listener(), Agent(None)
        asked = time.monotonic()
        playing = asyncio.ensure_future(_play(listener, agent, 4.0, script))
        found = await listener.reply(asked, 10, 10, silence=1.2,
                                     finished=roundtrip.finished_speaking(agent),
                                     busy=roundtrip.at_work(agent))
        playing.cancel()
        assert found is not None
        return found[1] - asked

    assert asyncio.run(go()) < 1.5  # nothing says it is still at work: the pause ends it


def test_a_greeting_plays_out_before_the_first_question() -> None:
    # livekit-agents enters "listening" as the session starts, then greets: thinking at
    # 0.1 s, speaking 0.6-2.6 s, listening again after.
    script = listens_thinks_speaks(0.1, 0.6, 2.6)

    async def go() -> tuple[str | None, float]:
        listener, agent = _listener(), Agent("listening")
        began = time.monotonic()
        playing = asyncio.ensure_future(_play(listener, agent, 4.0, script))
        why = await roundtrip.ready_to_ask(agent, listener, 10.0)
        playing.cancel()
        return why, time.monotonic() - began

    why, at = asyncio.run(go())
    assert why is None
    assert 2.6 + roundtrip.SETTLE_S - 0.05 < at < 3.4, at  # after the greeting, not at 0 s


def test_an_agent_that_reports_no_state_is_asked_once_it_is_quiet() -> None:
    async def go() -> tuple[str | None, float]:
        listener, agent = _listener(), Agent(None)
        began = time.monotonic()
        playing = asyncio.ensure_future(_play(listener, agent, 6.0, lambda t: (False, None)))
        why = await roundtrip.ready_to_ask(agent, listener, 10.0)
        playing.cancel()
        return why, time.monotonic() - began

    why, at = asyncio.run(go())
    assert why is None and roundtrip.NO_STATE_S <= at < roundtrip.NO_STATE_S + 1.0


def test_an_agent_that_never_stops_speaking_is_not_asked_and_says_so() -> None:
    async def go() -> str | None:
        listener, agent = _listener(), Agent("speaking")
        playing = asyncio.ensure_future(_play(listener, agent, 3.0,
                                              lambda t: (True, "speaking")))
        why = await roundtrip.ready_to_ask(agent, listener, 1.5)
        playing.cancel()
        return why

    assert asyncio.run(go()) == ("the agent was still speaking 1.5 s after it joined (a "
                                 "greeting that does not end, or a session that never "
                                 "listens)")


class Speaker:
    """Says a question in ``seconds`` of real time; counts the questions."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.said = seconds, 0

    async def say(self, samples: object) -> float:
        await asyncio.sleep(self.seconds)
        self.said += 1
        return time.monotonic()


def test_a_greeting_that_begins_over_the_question_has_it_asked_again() -> None:
    # The agent seemed settled (listening, quiet), then greets: its speech took 0.5 s to
    # synthesise, so it is speaking 0.5-2.6 s, over the 1.5 s question. A greeting is no
    # turn: its turn report does not move.
    script = listens_thinks_speaks(0.2, 0.5, 2.6)

    async def go() -> tuple[roundtrip.Asked, float, int]:
        listener, agent, speaker = _listener(), Agent("listening"), Speaker(1.5)
        began = time.monotonic()
        playing = asyncio.ensure_future(_play(listener, agent, 6.0, script))
        asked = await roundtrip.ask(speaker, np.zeros(1), agent, listener,  # type: ignore[arg-type]
                                    10.0)
        playing.cancel()
        return asked, (asked.end_of_speech or 0) - began, speaker.said

    asked, at, said = asyncio.run(go())
    assert asked.twice and asked.cut_short is None and said == 2
    # asked again once the greeting had ended and the agent listened SETTLE_S on end
    assert 2.6 + roundtrip.SETTLE_S + 1.5 - 0.1 < at < 2.6 + roundtrip.SETTLE_S + 1.5 + 0.6, at


def test_a_question_the_agent_answered_a_part_of_is_not_asked_past() -> None:
    # A gap in the caller's audio ended its turn: the agent answers "What is seven" while
    # the rest is still being said, and reports that turn.
    script = listens_thinks_speaks(0.6, 0.9, 2.0)

    async def go() -> tuple[roundtrip.Asked, int]:
        listener, agent, speaker = _listener(), Agent("listening"), Speaker(1.5)
        agent.attributes[roundtrip.TURN_ATTRIBUTE] = '{"turn": 3}'

        async def reports() -> None:
            await asyncio.sleep(2.0)
            agent.attributes[roundtrip.TURN_ATTRIBUTE] = (
                '{"turn": 4, "heard": "What is seven", "reply": "Seven what?"}')

        playing = asyncio.ensure_future(_play(listener, agent, 4.0, script))
        reporting = asyncio.ensure_future(reports())
        asked = await roundtrip.ask(speaker, np.zeros(1), agent, listener,  # type: ignore[arg-type]
                                    10.0)
        playing.cancel()
        await reporting
        return asked, speaker.said

    asked, said = asyncio.run(go())
    assert asked.end_of_speech is None and said == 1 and not asked.twice
    assert asked.cut_short is not None and asked.cut_short["heard"] == "What is seven"
    stage, reason, misheard = roundtrip.cut_short("What is seven minus two?", asked.cut_short)
    assert (stage, misheard) == ("misheard", True)
    assert reason == ("the agent answered before the question ended: it heard 'What is seven' "
                      "and said 'Seven what?'")


def test_an_agent_listening_through_the_question_is_asked_once() -> None:
    async def go() -> tuple[bool, int]:
        listener, agent, speaker = _listener(), Agent("listening"), Speaker(0.5)
        playing = asyncio.ensure_future(_play(listener, agent, 2.0,
                                              lambda t: (False, "listening")))
        asked = await roundtrip.ask(speaker, np.zeros(1), agent, listener,  # type: ignore[arg-type]
                                    10.0)
        playing.cancel()
        assert asked.end_of_speech is not None
        return asked.twice, speaker.said

    assert asyncio.run(go()) == (False, 1)


def test_an_agent_that_talks_over_the_question_and_never_stops_is_asked_anyway() -> None:
    # As before its first question: its reply then says what is wrong.
    async def go() -> tuple[roundtrip.Asked, float, int]:
        listener, agent, speaker = _listener(), Agent("speaking"), Speaker(0.3)
        playing = asyncio.ensure_future(_play(listener, agent, 3.0,
                                              lambda t: (True, "speaking")))
        began = time.monotonic()
        asked = await roundtrip.ask(speaker, np.zeros(1), agent, listener,  # type: ignore[arg-type]
                                    1.0)
        playing.cancel()
        return asked, time.monotonic() - began, speaker.said

    asked, took, said = asyncio.run(go())
    assert asked.twice and asked.end_of_speech is not None and said == 2
    assert 0.3 + 1.0 + 0.3 - 0.05 < took < 0.3 + 1.0 + 0.3 + 0.5


# -- a reply that goes on after the agent said it was listening ----------------------------
async def _speak(listener: audio.Listener, agent: Agent,
                 parts: list[tuple[float, str | None, str]]) -> None:  # fmt: skip
    """Feed an agent's words in real time: each part is (silence before it in seconds, the
    state reported during that silence, the words then spoken with state ``speaking``); the
    agent is ``listening`` after the last."""
    for pause, state, words in parts:
        agent.set(state)
        await _play(listener, agent, pause, lambda t, state=state: (False, state))
        agent.set("speaking")
        samples = audio.speech(words)
        samples = samples[np.flatnonzero(np.abs(samples) > 300)[0]:]  # no leading silence
        for i in range(0, len(samples) - audio.FRAME + 1, audio.FRAME):
            listener._log.add(time.monotonic(), samples[i:i + audio.FRAME])
            await asyncio.sleep(0.01)
    agent.set("listening")
    await _play(listener, agent, 0.1, lambda t: (False, "listening"))


def _render(texts: list[str]) -> None:
    """Speech for ``texts`` rendered now (and kept by :func:`audio.speech`): not while the
    agent is timed, where espeak-ng on a busy machine would delay its words by seconds."""
    for text in texts:
        audio.speech(text)


def _reply_heard_on(parts: list[tuple[float, str | None, str]], state: str | None,
                    after_s: float) -> tuple[roundtrip.Outcome, float]:  # fmt: skip
    """A round trip's judging of the reply ``parts`` (see :func:`_speak`) to "What is two
    plus three?": the reply as the round trip finds it, judged, then heard on for
    ``after_s`` seconds when judged wrong. Returns the outcome and when the reply was
    found to have ended (seconds from the first words)."""
    _render([words for _p, _s, words in parts])

    async def go() -> tuple[roundtrip.Outcome, float]:
        listener, agent = _listener(), Agent(state)
        asked = time.monotonic()
        speaking = asyncio.ensure_future(_speak(listener, agent, parts))
        reply = await listener.reply(asked, 10, 10, silence=1.2,
                                     finished=roundtrip.finished_speaking(agent),
                                     busy=roundtrip.at_work(agent))
        assert reply is not None
        ended = time.monotonic() - reply[0]
        question = "What is two plus three?"
        out = roundtrip.Outcome(question, roundtrip.expected_answers(question), "room")
        await roundtrip._judge_reply(out, reply[2])
        if out.stage == "wrong_reply":
            more = await roundtrip.continued(listener, agent, reply, after_s, 10)
            if more is not None:
                out.reply_paused_s = more[1]
                await roundtrip._judge_reply(out, more[0][2])
        await speaking
        return out, ended

    return asyncio.run(go())


def test_an_answer_after_a_filler_that_ended_in_listening_is_heard() -> None:
    # livekit/agents#6904: "let me check", then listening while the tool runs, then the answer
    out, ended = _reply_heard_on([(0.2, "thinking", "Let me check that for you."),
                                  (3.0, "listening", "Two plus three is five.")],
                                 "listening", after_s=8)  # fmt: skip
    assert ended < 3.0  # the reply seemed to end with the filler
    assert out.ok and out.stage == "ok", (out.stage, out.heard)
    assert "let me check" in out.heard.lower() and "5" in out.heard.replace("five", "5")
    assert out.reply_paused_s is not None and 2.8 < out.reply_paused_s < 5.0


def test_an_answer_after_a_long_pause_from_an_agent_that_reports_no_state_is_heard() -> None:
    out, _ended = _reply_heard_on([(0.2, None, "One moment."),
                                   (2.5, None, "Two plus three is five.")],
                                  None, after_s=8)  # fmt: skip
    assert out.ok, (out.stage, out.heard)


def test_a_wrong_answer_with_nothing_after_it_stays_wrong() -> None:
    started = time.monotonic()
    out, _ended = _reply_heard_on([(0.2, "thinking", "Two plus three is seven.")],
                                  "listening", after_s=2)  # fmt: skip
    assert not out.ok and out.stage == "wrong_reply" and out.reply_paused_s is None
    assert time.monotonic() - started > 2.0  # it was listened to on, and nothing came


def test_a_filler_with_no_answer_within_the_pause_is_wrong() -> None:
    out, _ended = _reply_heard_on([(0.2, "thinking", "Let me check that for you."),
                                   (3.0, "listening", "Two plus three is five.")],
                                  "listening", after_s=1.5)  # fmt: skip
    assert not out.ok and out.stage == "wrong_reply" and out.reply_paused_s is None


class _HeldAgent(Agent):
    sid = "PA_agent"


class _Caller:
    """A held caller's voice: each question takes ``seconds`` to say; ``ended`` is told."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.ended: asyncio.Queue[float] = asyncio.Queue()

    async def say(self, samples: object) -> float:
        await asyncio.sleep(self.seconds)
        self.ended.put_nowait(time.monotonic())
        return time.monotonic()


class _Room:
    def on(self, event: str, handler: object) -> None:
        pass

    def off(self, event: str, handler: object) -> None:
        pass


def _held_turns(replies: list[list[tuple[float, str | None, str]]],
                question_s: float) -> list[dict[str, object]]:  # fmt: skip
    """Two turns of a held call (questions "What is two plus three?", then "What is four
    times six?", each ``question_s`` to say) with an agent that speaks ``replies`` in turn
    (see :func:`_speak`), each to a question that ended while it was idle; one that ended
    while it spoke it does not hear."""
    from lkchaos.voice import session

    questions = ["What is two plus three?", "What is four times six?"]
    _render([*questions, *(words for parts in replies for _p, _s, words in parts)])

    async def go() -> list[dict[str, object]]:
        listener, agent, caller = _listener(), _HeldAgent("listening"), _Caller(question_s)
        scripts = iter(replies)

        async def answer() -> None:
            speaking: asyncio.Future[None] | None = None
            while True:
                await caller.ended.get()
                if speaking is None or speaking.done():
                    speaking = asyncio.ensure_future(_speak(listener, agent, next(scripts)))

        answering = asyncio.ensure_future(answer())
        call = session.HeldCall("ws://unused", "key", "secret", "agent",
                                session.Options(transcribe_every=1, reply_pause_s=8))
        try:
            for _ in range(2):
                await call._turn(_Room(), agent, caller, listener)  # type: ignore[arg-type]
            await call._judged(None)
        finally:
            answering.cancel()
        return call.turns

    asked = iter(questions)
    original = session.random_question
    session.random_question = lambda: next(asked)  # type: ignore[assignment]
    try:
        return asyncio.run(go())
    finally:
        session.random_question = original  # type: ignore[assignment]


def _said(turn: dict[str, object]) -> str:
    """A turn whole, for a failure message (pytest shortens a dict's repr there, which hid the
    stage and what was heard of a turn that failed in CI)."""
    return json.dumps(turn, default=str)


def test_a_held_turn_hears_the_answer_an_agent_gave_after_it_said_listening() -> None:
    # The answer comes while the next question is being asked: it is the first turn's, and
    # the next question, talked over, is asked again.
    # (The next question ends 0.5 s after the filler at the earliest, then 2.5 s to say.)
    turns = _held_turns([[(0.3, "thinking", "Let me check that."),
                          (1.0, "listening", "Two plus three is five.")],
                         [(0.3, "thinking", "Four times six is twenty four.")]], 2.5)
    first, second = turns
    assert first["ok"] and first["stage"] == "ok", _said(first)
    assert first["reply_paused_s"] is not None and 0.9 < first["reply_paused_s"] < 2.0, \
        _said(first)
    assert second["ok"] and second["asked_twice"], _said(second)


def test_what_an_agent_says_after_the_next_question_ended_is_not_the_last_turns() -> None:
    # The next question, 1 s to say, has ended well before the answer 6 s after the filler.
    turns = _held_turns([[(0.3, "thinking", "Let me check that."),
                          (6.0, "listening", "Two plus three is five.")],
                         [(0.3, "thinking", "Four times six is twenty four.")]], 1.0)
    first, second = turns
    assert first["stage"] == "wrong_reply" and first["reply_paused_s"] is None, _said(first)
    assert not second["ok"], _said(second)  # its reply was the first question's answer
