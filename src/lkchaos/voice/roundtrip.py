"""One spoken round trip through the whole stack, stage by stage, never hanging.

Stages, each with its own timeout, and the name reported when it fails:

``join``        connect to LiveKit as a caller (TLS, DNS and signalling all count here)
``dispatch``    the agent, dispatched by the caller's token, joins and starts listening
``no_reply``    after the question, no reply audio arrives: the agent stayed silent
``misheard``    the reply is not the expected answer, and the agent's own transcript of the
                question (its ``lkchaos.turn`` report) does not ask what was asked
``apology``     the agent heard the question but apologised instead of answering
``reply_misheard`` the caller's transcription of the reply (listened to twice) lacks the
                answer that the agent reports having said: one utterance misheard by the
                caller, or its audio damaged on the way (set apart when alone, like
                ``misheard``: see :mod:`lkchaos.controls.figures`)
``wrong_reply`` a reply came, the agent heard the question right (or did not report what it
                heard), but the expected answer is not the reply's
``extra_agent`` a right reply, but more than one agent spoke in the caller's room while it
                was asked and answered (``lk.agent.state`` ``speaking``): each was given a
                job and answers the caller (a duplicate dispatch: an automatic and an
                explicit one, or a job taken twice). An agent left behind by a cut link
                says nothing and is not counted
``timeout``     the whole round trip took longer than its overall limit

(``slow_reply``, a right answer over the latency budget, is judged by the caller of
:func:`run`.) A right answer is ``ok`` whatever the agent reports having heard.

When a round trip fails after reply audio came, the result also carries that audio as a WAV
file, base64-encoded, under ``reply_wav_b64`` (16-bit mono, at most ``REPLY_AUDIO_RATE`` Hz and
``REPLY_AUDIO_MAX_S`` seconds): what the caller heard, for the report. The voice probe takes it
out of the result and keeps it as a file (``lkchaos.voice.probes``).

The result is a plain dict (see :func:`run`); the room is always left and freed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import difflib
import io
import json
import logging
import time
import uuid
import wave
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from livekit import api, rtc

from lkchaos.livekit.background import new_room
from lkchaos.voice import audio, mediapath
from lkchaos.voice.questions import (
    check_reply,
    expected_answers,
    is_apology,
    random_question,
    same_question,
    words_said,
)

AGENT_STATE = "lk.agent.state"
TURN_ATTRIBUTE = "lkchaos.turn"
#: The agent's turn outcomes that are apologies rather than answers.
APOLOGY_OUTCOMES = frozenset({"tools_unavailable", "stt_unavailable", "llm_unavailable"})
AGENT_TIMINGS = ("stt_ms", "transcription_delay_ms", "tool_ms", "llm_ttft_ms",
                 "tts_first_audio_ms", "e2e_ms")

#: The reply audio kept from a failed round trip: sample rate (Hz) and length (s) at most.
REPLY_AUDIO_RATE = 16000
REPLY_AUDIO_MAX_S = 20.0

T = TypeVar("T")
log = logging.getLogger("lkchaos.voice")


@dataclass(frozen=True)
class Timeouts:
    """Seconds allowed per stage, and for the whole round trip."""

    join: float = 10.0
    dispatch: float = 15.0
    first_reply_audio: float = 15.0
    reply: float = 15.0
    #: how long a reply judged wrong is listened to on for more (see :func:`continued`); 0:
    #: not at all
    reply_pause: float = 8.0
    total: float = 45.0

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if name == "reply_pause" and value == 0:
                continue  # a reply judged wrong is not listened to on
            if not value > 0:
                raise ValueError(f"timeout {name} must be a positive number of seconds")


@dataclass
class Outcome:
    question: str
    expected: list[str]
    room: str
    ok: bool = False
    stage: str = "join"
    reason: str = ""
    heard: str = ""
    misheard: bool | None = None
    second_listen: str | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    agent: dict[str, Any] = field(default_factory=dict)
    media: dict[str, Any] = field(default_factory=dict)
    agents: list[str] = field(default_factory=list)  # agents that spoke during the turn
    asked_twice: bool = False  # the agent talked over the first asking (a late greeting)
    reply_paused_s: float | None = None  # the reply went on after a pause (`continued`)
    reply_pcm: np.ndarray | None = None  # the reply audio, 48 kHz int16; not in the result

    def as_dict(self) -> dict[str, Any]:
        first = self.timings_ms.get("end_of_speech_to_first_audio")
        return {
            "ok": self.ok,
            "stage": "ok" if self.ok else self.stage,
            "reason": self.reason,
            "question": self.question,
            "expected": self.expected,
            "heard": self.heard,
            "agent_heard": self.agent.get("heard"),
            "misheard": self.misheard,
            "second_listen": self.second_listen,
            "latency_s": round(first / 1000, 3) if first is not None else None,
            "timings_ms": {k: round(v, 1) for k, v in self.timings_ms.items()},
            "agent": self.agent,
            "media_path": self.media,
            "agents": self.agents,
            "asked_twice": self.asked_twice,
            "reply_paused_s": (round(self.reply_paused_s, 3)
                               if self.reply_paused_s is not None else None),
            "room": self.room,
        }


#: Seconds LiveKit keeps a round trip's room open once the caller has left (its
#: ``departure_timeout``; the server's default is 20 s). A round trip's room is used once:
#: closing it sooner frees it in Redis and ends its webhooks (``room_finished``) sooner. Not
#: sooner than this: agents do not count as participants for it, and the agent leaves by
#: itself about 2 s after the caller; a room closed before that disconnects the agent in the
#: middle of its shutdown, which it logs as errors (seen with 1 s).
ROUND_TRIP_DEPARTURE_S = 5


def dispatched(agent_name: str) -> str:
    """How the agent was asked for, for a message that none came: ``of the dispatch of
    "my-agent"``, or, with no agent name, of LiveKit's automatic dispatch (with what to
    check)."""
    if agent_name:
        return f"of the dispatch of {agent_name!r}"
    return ("of the room's creation (automatic dispatch: no agent name is set, so only a "
            "worker registered without an agent_name is sent; if yours has one, set the "
            "target's voice.agent_name to it)")


def caller_token(
    key: str, secret: str, room: str, identity: str, agent_name: str, ttl_s: float = 300.0,
    departure_timeout_s: int | None = None,
) -> str:  # fmt: skip
    """A caller's join token that also dispatches ``agent_name`` to the room, valid for
    ``ttl_s`` seconds (a held call rejoining after a node loss needs it still valid). An
    empty ``agent_name`` dispatches no agent by name: the room the token creates is left to
    LiveKit's automatic dispatch (an agent worker registered without an agent name is sent
    to every new room; a dispatch by name in the token would turn that off for the room).
    With ``departure_timeout_s`` (whole seconds, at least 1), the room the token creates
    closes that long after its last participant other than agents left (LiveKit does not
    count agents), instead of after the server's default."""
    config = api.RoomConfiguration(
        agents=[api.RoomAgentDispatch(agent_name=agent_name)] if agent_name else [])
    if departure_timeout_s is not None:
        if isinstance(departure_timeout_s, bool) or not (
            isinstance(departure_timeout_s, int) and departure_timeout_s >= 1
        ):
            raise ValueError(
                f"departure_timeout_s must be a whole number of seconds, at least 1, not "
                f"{departure_timeout_s!r}"
            )
        config.departure_timeout = departure_timeout_s
    return (
        api.AccessToken(key, secret)
        .with_identity(identity)
        .with_ttl(dt.timedelta(seconds=ttl_s))
        .with_grants(api.VideoGrants(room_join=True, room=room))
        .with_room_config(config)
        .to_jwt()
    )


def finished_speaking(agent: rtc.RemoteParticipant) -> Callable[[], bool]:
    """A predicate, true once the agent has been seen speaking since it was made and is
    listening again (its ``lk.agent.state``): its reply has played out. Only ``listening``
    ends it: an agent that says a few words, then calls a tool (``thinking``), then answers,
    has not finished. Never true for an agent that does not report its state."""
    spoke = False

    def finished() -> bool:
        nonlocal spoke
        state = agent.attributes.get(AGENT_STATE)
        spoke = spoke or state == "speaking"
        return spoke and state == "listening"

    return finished


def at_work(agent: rtc.RemoteParticipant) -> Callable[[], bool]:
    """A predicate, true while the agent says it is at work on a reply (``lk.agent.state``
    ``thinking``: a tool call or the LLM, or ``speaking``): a silence in its audio then is a
    pause in the reply (the filler "let me check", then a tool call, then the answer), not its
    end. Never true for an agent that does not report its state."""
    return lambda: agent.attributes.get(AGENT_STATE) in ("thinking", "speaking")


#: Seconds the agent must have been listening, its audio quiet, before a question: an agent
#: that greets its caller enters ``listening`` as its session starts, then ``thinking`` and
#: ``speaking`` for the greeting (livekit-agents/#2567); asked at once, the greeting would
#: play over the question and be taken for its answer.
SETTLE_S = 0.3
#: Seconds after which an agent that publishes no ``lk.agent.state`` at all is asked anyway,
#: once its audio is quiet (an agent framework other than livekit-agents').
NO_STATE_S = 3.0


async def ready_to_ask(agent: rtc.RemoteParticipant, listener: audio.Listener,
                       timeout: float, settle_s: float = SETTLE_S) -> str | None:  # fmt: skip
    """Wait until the agent may be asked: it listens and its audio is quiet, both for
    ``settle_s`` on end (a greeting it begins meanwhile plays out first), or, for an agent
    that reports no state, its audio quiet after :data:`NO_STATE_S`. None when it may be
    asked; else why not, after ``timeout`` seconds."""
    began = time.monotonic()
    calm_since: float | None = None
    state: str | None = None
    while (now := time.monotonic()) - began < timeout:
        state = agent.attributes.get(AGENT_STATE)
        settled = state == "listening" or (state is None and now - began >= NO_STATE_S)
        if settled and not listener.heard_since(now - settle_s):
            calm_since = now if calm_since is None else calm_since
            if now - calm_since >= settle_s:
                return None
        else:
            calm_since = None
        await asyncio.sleep(0.05)
    if state in (None, "initializing"):
        return "the agent joined but never started listening"
    return (f"the agent was still {state} {timeout:g} s after it joined (a greeting that "
            "does not end, or a session that never listens)")


def talked_over(agent: rtc.RemoteParticipant) -> bool:
    """Whether the agent was at work (``lk.agent.state`` ``thinking`` or ``speaking``) as the
    caller's question ended. No agent can be at work on a reply to a question it has not
    heard end (its end of turn waits for a silence after it), so it was busy with something
    else: a greeting it began after it seemed settled (a ``say`` whose speech took a while
    to synthesise), played over the question; or a part of the question it took for all of
    it (a gap in the caller's audio long enough to end a turn)."""
    return agent.attributes.get(AGENT_STATE) in ("thinking", "speaking")


@dataclass(frozen=True)
class Asked:
    """How a question went (:func:`ask`): ``end_of_speech``, the last asking's, as played out
    (``time.monotonic()``), None when the agent answered a part of it (``cut_short``, its
    turn report then); ``twice``: asked again after the agent talked over it."""

    end_of_speech: float | None
    twice: bool = False
    cut_short: dict[str, Any] | None = None


async def ask(speaker: audio.Speaker, samples: np.ndarray, agent: rtc.RemoteParticipant,
              listener: audio.Listener, timeout: float,
              said: Callable[[float], None] | None = None) -> Asked:
    """Say a question, and say it once more when the agent talked over it
    (:func:`talked_over`) with something that was not a turn of this caller's: once it may
    be asked again (:func:`ready_to_ask`; after ``timeout`` s it is asked anyway, its reply
    then says what is wrong), if its turn report (``lkchaos.turn``) did not move meanwhile. A
    greeting is no turn; a report that moved says the agent answered a part of the question
    (``cut_short``), a failure to judge, not to ask past. An agent that publishes no turn
    report is always asked again. ``said``, if given, is told when the first asking ended
    (as played out, ``time.monotonic()``)."""
    before = _turn_report(agent).get("turn", 0)
    end_of_speech = await speaker.say(samples)
    if said is not None:
        said(end_of_speech)
    if not talked_over(agent):
        return Asked(end_of_speech)
    await ready_to_ask(agent, listener, timeout)
    report = _turn_report(agent)
    if report.get("turn", 0) > before:
        return Asked(None, cut_short=report)
    return Asked(await speaker.say(samples), twice=True)


def cut_short(question: str, report: dict[str, Any]) -> tuple[str, str, bool | None]:
    """``(stage, reason, misheard)`` of a question the agent answered a part of (see
    :func:`ask`), judged as a reply that lacks the answer."""
    stage, reason, misheard = judge(question, False, "", "", report)
    return stage, ("the agent answered before the question ended" + (
        f": it heard {report.get('heard')!r}" if report.get("heard") else "")
        + (f" and said {report.get('reply')!r}" if report.get("reply") else "")), misheard


async def _wait(predicate: Callable[[], T | None], timeout: float) -> T | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.05)
    return None


def _agent(room: rtc.Room) -> rtc.RemoteParticipant | None:
    for participant in room.remote_participants.values():
        if participant.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT:
            return participant
    return None


class SpeakingAgents:
    """The agents seen ``speaking`` (their ``lk.agent.state``) in a room from when it is made
    until :meth:`close`: the identities, in ``seen``."""

    def __init__(self, room: rtc.Room) -> None:
        self.seen: set[str] = set()
        self._room = room
        room.on("participant_attributes_changed", self._changed)

    def _changed(self, changed: dict[str, str], participant: rtc.Participant) -> None:
        if (getattr(participant, "kind", None) == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
                and changed.get(AGENT_STATE) == "speaking"):  # fmt: skip
            self.seen.add(participant.identity)

    def close(self) -> list[str]:
        """Stop watching; the identities seen speaking, sorted."""
        self._room.off("participant_attributes_changed", self._changed)
        return sorted(self.seen)


def extra_agents(ok: bool, stage: str, reason: str, agents: Sequence[str]
                 ) -> tuple[bool, str, str]:  # fmt: skip
    """``(ok, stage, reason)`` once the agents that spoke in the caller's room during the
    turn are known: more than one fails a right reply (``extra_agent``) and is added to
    another failure's reason."""
    if len(agents) < 2:
        return ok, stage, reason
    note = (f"{len(agents)} agents spoke in the caller's room ({', '.join(agents)}): each "
            "was given a job and answers the caller; look for a duplicate dispatch (a worker "
            "registered without agent_name is dispatched to every room, besides the token's "
            "or the API's dispatch)")  # fmt: skip
    if ok:
        return False, "extra_agent", note
    return ok, stage, f"{reason}; {note}" if reason else note


def _audio_track(participant: rtc.RemoteParticipant) -> rtc.RemoteAudioTrack | None:
    for publication in participant.track_publications.values():
        if isinstance(publication.track, rtc.RemoteAudioTrack):
            return publication.track
    return None


def _kept(report: dict[str, Any]) -> dict[str, Any]:
    """What a round trip keeps of the agent's turn report (its ``agent`` result)."""
    return {k: report.get(k) for k in ("outcome", "heard", "reply", "tools", *AGENT_TIMINGS)}


def _turn_report(participant: rtc.RemoteParticipant) -> dict[str, Any]:
    raw = participant.attributes.get(TURN_ATTRIBUTE)
    if not raw:
        return {}
    with contextlib.suppress(ValueError):
        report = json.loads(raw)
        if isinstance(report, dict):
            return report
    return {}


async def _media_path(room: rtc.Room) -> dict[str, Any]:
    """The call's media path (:mod:`lkchaos.voice.mediapath`), or why it is unknown."""
    try:
        stats = await asyncio.wait_for(room.get_rtc_stats(), 3.0)
    except Exception as exc:  # the SDK raises RuntimeError or its own; a path is a bonus
        return {"error": f"{type(exc).__name__}: {exc}"}
    return mediapath.paths(stats.publisher_stats, stats.subscriber_stats)


async def _converse(
    out: Outcome, url: str, token: str, timeouts: Timeouts, room: rtc.Room,
    speaker: audio.Speaker, listeners: list[audio.Listener], joining: list[asyncio.Task[None]],
    agent_name: str = "lkchaos-agent",
) -> None:  # fmt: skip
    started = time.perf_counter()
    deadline = time.monotonic() + timeouts.total  # run() bounds the whole of this
    # Never cancel Room.connect: the SDK's native side must see it through, or it aborts the
    # whole process. The SDK bounds it itself; past our limit we stop waiting, and run()
    # lets it finish before leaving the room.
    options = rtc.RoomOptions(connect_timeout=timeouts.join)
    connecting = asyncio.ensure_future(room.connect(url, token, options))
    joining.append(connecting)
    done, _ = await asyncio.wait({connecting}, timeout=timeouts.join)
    if not done:
        out.reason = f"could not join {url} within {timeouts.join:g} s"
        return
    if connecting.exception() is not None:
        exc = connecting.exception()
        out.reason = f"could not join {url}: {type(exc).__name__}: {exc}".rstrip(": ")
        return
    try:
        await asyncio.wait_for(speaker.publish(room), timeouts.join)
    except TimeoutError:
        out.reason = f"joined {url} but could not publish audio within {timeouts.join:g} s"
        return
    out.timings_ms["join"] = (time.perf_counter() - started) * 1000

    out.stage = "dispatch"
    started = time.perf_counter()
    agent = await _wait(lambda: _agent(room), timeouts.dispatch)
    if agent is None:
        out.reason = f"no agent joined within {timeouts.dispatch:g} s {dispatched(agent_name)}"
        return
    track = await _wait(lambda: _audio_track(agent), timeouts.dispatch)
    if track is None:
        out.reason = "the agent joined but published no audio"
        return
    listener = audio.Listener(track)
    listeners.append(listener)
    # The agent listens (its subscription to our track settles meanwhile), and any greeting
    # it began has played out.
    not_ready = await ready_to_ask(agent, listener, timeouts.dispatch + timeouts.reply)
    if not_ready:
        out.reason = not_ready
        return
    out.timings_ms["dispatch"] = (time.perf_counter() - started) * 1000 - SETTLE_S * 1000

    out.stage = "no_reply"
    previous_turn = _turn_report(agent).get("turn", 0)
    samples = audio.speech(out.question)
    speaking = SpeakingAgents(room)
    asked = await ask(speaker, samples, agent, listener, timeouts.dispatch + timeouts.reply)
    out.asked_twice = asked.twice
    if asked.end_of_speech is None:
        answered = asked.cut_short or {}
        out.agent = _kept(answered)
        out.stage, out.reason, out.misheard = cut_short(out.question, answered)
        out.agents = speaking.close()
        return
    end_of_speech = asked.end_of_speech
    reply = await listener.reply(end_of_speech, timeouts.first_reply_audio, timeouts.reply,
                                 finished=finished_speaking(agent), busy=at_work(agent))
    out.agents = speaking.close()
    if reply is None:
        out.reason = f"no reply audio within {timeouts.first_reply_audio:g} s of the question"
        return
    first_at, last_at, pcm = reply
    out.reply_pcm = pcm
    out.timings_ms["end_of_speech_to_first_audio"] = (first_at - end_of_speech) * 1000
    out.timings_ms["end_of_speech_to_reply_end"] = (last_at - end_of_speech) * 1000
    # The reply is transcribed while the media path and the agent's turn report are read:
    # neither changes what the audio says.
    hearing = _hearing(pcm)
    out.media = await _media_path(room)

    out.stage = "wrong_reply"
    report = await _wait(
        lambda: (r := _turn_report(agent)) and r.get("turn", 0) > previous_turn and r, 3.0
    )
    if report:
        out.agent = _kept(report)
    await _judge_reply(out, pcm, hearing)
    left = deadline - time.monotonic() - CONTINUATION_RESERVE_S
    if out.stage != "wrong_reply" or left <= 1.0 or timeouts.reply_pause == 0:
        return
    # An agent may say "let me check", go back to listening while its tool still runs, and
    # answer after: the reply judged is then only its first words.
    more = await continued(listener, agent, reply, min(timeouts.reply_pause, left / 2),
                           left / 2)  # fmt: skip
    if more is None:
        return
    (_, last_at, pcm), paused = more
    out.reply_pcm, out.reply_paused_s = pcm, paused
    out.timings_ms["end_of_speech_to_reply_end"] = (last_at - end_of_speech) * 1000
    await _judge_reply(out, pcm)


def _hearing(pcm: np.ndarray) -> asyncio.Future[tuple[str, float]]:
    """The reply audio ``pcm`` being transcribed: ``(transcript, seconds it took)``."""
    return asyncio.ensure_future(asyncio.to_thread(_timed, audio.transcribe, pcm))


async def _judge_reply(
    out: Outcome, pcm: np.ndarray, hearing: asyncio.Future[tuple[str, float]] | None = None,
) -> None:  # fmt: skip
    """Judge the reply audio ``pcm`` against the question (and the agent's report, in
    ``out.agent``) into ``out``. ``hearing``: its transcription when already under way
    (:func:`_hearing`)."""
    first, first_s = await (hearing or _hearing(pcm))
    claimed = str(out.agent.get("reply") or "")
    started = time.perf_counter()
    out.heard, check, out.second_listen = await asyncio.to_thread(
        listen, pcm, out.expected, claimed, audio.transcribe, first
    )
    out.timings_ms["transcription"] = (first_s + time.perf_counter() - started) * 1000
    out.ok, out.reason = check.ok, check.reason
    out.stage, out.reason, out.misheard = judge(out.question, check.ok, check.reason,
                                                out.heard, out.agent)  # fmt: skip
    out.ok, out.stage, out.reason = extra_agents(out.ok, out.stage, out.reason, out.agents)


#: Seconds of the round trip's bound kept for judging a reply heard on (its transcription).
CONTINUATION_RESERVE_S = 5.0


async def continued(
    listener: audio.Listener, agent: rtc.RemoteParticipant,
    reply: tuple[float, float, np.ndarray], within_s: float, reply_s: float,
    before: Callable[[], float | None] | None = None,
) -> tuple[tuple[float, float, np.ndarray], float] | None:  # fmt: skip
    """The ``reply`` (``(first_at, last_at, samples)``, from :meth:`audio.Listener.reply`)
    with what the agent went on to say unasked, and the pause before it in seconds; None when
    its audio did not come again within ``within_s`` seconds of the reply's end.

    For a reply that seemed to end but did not: an agent that says "let me check", reports
    ``listening`` while its tool still runs (livekit/agents#6904: filler speech ends in
    ``listening``; an asynchronous tool leaves it listening throughout, #6883), or reports no
    state at all, then answers. What it goes on to say is heard to its end as a reply is (at
    most ``reply_s`` more seconds); the samples returned run from the first words to the
    last. ``before``: a held call's next question, once asked, as :func:`ask` told it
    (``time.monotonic()``, None until then): what the agent begins to say after that
    answers the next question, and is not taken.
    """
    first_at, last_at, _ = reply
    left = max(0.0, within_s - (time.monotonic() - last_at))  # judging the reply took some
    more = await listener.reply(last_at, left, reply_s, finished=finished_speaking(agent),
                                busy=at_work(agent))  # fmt: skip
    if more is None or more[0] - last_at > within_s:
        return None
    bound = before() if before is not None else None
    if bound is not None and more[0] > bound:
        return None
    return (first_at, more[1], listener.audio(first_at - 0.3, more[1] + 0.3)), more[0] - last_at


def _timed(transcribe: Callable[[Any], str], pcm: Any) -> tuple[str, float]:
    """``(transcribe(pcm), seconds it took)``."""
    started = time.perf_counter()
    return transcribe(pcm), time.perf_counter() - started


def listen(
    pcm: Any, expected: list[str], claimed: str, transcribe: Callable[..., str],
    heard: str | None = None,
) -> tuple[str, Any, str | None]:
    """What the caller heard in the reply audio ``pcm``: ``(transcript, check, second)``.

    When the transcript lacks the answer and the agent ``claimed`` (its turn report) to have
    said it, or claimed nothing (no report came: its attributes are late or lost, and
    nothing but the audio tells what it said), the same audio is listened to once more,
    unprompted (``transcribe(pcm, None)``), and judged by that: the probe's Whisper mishears
    about one reply in a hundred (BENCHMARKS.md), and a reply misheard once is no evidence of
    a wrong answer. An apology heard without a claim is not listened to again. The claim only
    triggers the second listening; the verdict is always what the audio says. ``second`` is
    the second transcript, or None. ``heard``: the first transcript when it was already made
    (``transcribe(pcm)`` is then not called again).
    """
    if heard is None:
        heard = transcribe(pcm)
    check = check_reply(heard, expected)
    if check.ok:
        return heard, check, None
    if claimed.strip():
        if not check_reply(claimed, expected).ok:
            return heard, check, None  # it said something else: the audio agrees
    elif is_apology(heard):
        return heard, check, None
    again = transcribe(pcm, None)
    second = check_reply(again, expected)
    return (again, second, again) if second.ok else (heard, check, again)


def judge(
    question: str, ok: bool, reason: str, reply: str, agent: dict[str, Any]
) -> tuple[str, str, bool | None]:
    """``(stage, reason, misheard)`` of a round trip whose reply audio came.

    ``misheard`` is None when the agent reported no transcript (no report, or its Whisper
    failed), else whether its transcript asks something else than ``question``.
    """
    heard = agent.get("heard")
    misheard = None
    if isinstance(heard, str) and heard.strip():
        misheard = not same_question(question, heard)
    if ok:
        return "ok", reason, misheard
    if misheard:
        return "misheard", f"the agent heard {heard!r} for {question!r}; {reason}", True
    outcome = agent.get("outcome")
    if is_apology(reply) or outcome in APOLOGY_OUTCOMES:
        why = f" ({outcome})" if outcome and outcome != "answered" else ""
        return "apology", f"the agent apologised{why}: {reply!r}", misheard
    claimed = str(agent.get("reply") or "")
    if (claimed and check_reply(claimed, expected_answers(question)).ok
            and _alike(claimed, reply)):  # fmt: skip
        return "reply_misheard", (f"the agent reports saying {claimed!r}; the caller heard "
                                  f"{reply!r}"), misheard  # fmt: skip
    return "wrong_reply", reason, misheard


#: How alike (difflib's ratio over their words) what the agent reports having said and what
#: the caller heard must be for a missing answer to count as a mishearing: "10 times 6 is
#: 60." heard as "10 times 6 is 16." is 0.8; another sentence altogether is far under.
ALIKE_RATIO = 0.6


def _alike(said: str, heard: str) -> bool:
    """Whether ``heard`` is ``said`` with a few words misheard (see :data:`ALIKE_RATIO`);
    a number is one word however written ("56", "fifty-six")."""
    a, b = words_said(said), words_said(heard)
    return bool(a and b) and difflib.SequenceMatcher(None, a, b).ratio() >= ALIKE_RATIO


async def run(
    url: str,
    api_key: str,
    api_secret: str,
    question: str | None,
    expected: list[str] | None = None,
    agent_name: str = "lkchaos-agent",
    timeouts: Timeouts | None = None,
    leave_later: Callable[[Coroutine[Any, Any, None]], None] | None = None,
) -> dict[str, Any]:
    """Ask ``question`` (None: a random one) as a caller in a fresh room and check the
    spoken answer.

    A join that fails its stage's bound is still under way in the SDK, which retries it
    and must never be cancelled: leaving the room waits for it (up to four join bounds).
    With ``leave_later`` (a long-lived event loop's way to run a coroutine in the
    background), that wait and the leaving are handed to it instead, and the result comes
    within the join's bound: a deployment that refuses connections is reported as fast as
    one that answers.

    Returns ``{"ok", "stage", "reason", "question", "expected", "heard", "agent_heard",
    "misheard", "latency_s",
    "timings_ms": {"join", "dispatch", "end_of_speech_to_first_audio",
    "end_of_speech_to_reply_end", "transcription"}, "agent": {the agent's own report},
    "media_path", "agents": [identities of the agents that spoke], "asked_twice" (the
    agent talked over the question, which was asked again once it listened), "room"}``, plus
    ``"reply_wav_b64"`` (see the module docstring) when it failed after reply audio came.
    ``stage`` is ``ok`` or where it failed. Raises ``QuestionError`` only for a question whose
    answer cannot be worked out when ``expected`` is not given.
    """
    timeouts = timeouts or Timeouts()
    question = audio.check_text(question or random_question())
    out = Outcome(
        question=question,
        expected=list(expected) if expected else expected_answers(question),
        room=f"lkchaos-probe-{uuid.uuid4().hex[:10]}",
    )
    token = caller_token(api_key, api_secret, out.room, f"caller-{out.room[-10:]}", agent_name,
                         departure_timeout_s=ROUND_TRIP_DEPARTURE_S)
    room, speaker = new_room(), audio.Speaker()
    listeners: list[audio.Listener] = []
    joining: list[asyncio.Task[None]] = []
    try:
        await asyncio.wait_for(
            _converse(out, url, token, timeouts, room, speaker, listeners, joining, agent_name),
            timeouts.total,
        )
    except TimeoutError:
        out.reason = f"the round trip took longer than {timeouts.total:g} s (at {out.stage})"
        out.stage = "timeout"
    finally:
        leaving = _leave(room, speaker, listeners, joining, timeouts.join)
        if leave_later is not None and joining and not joining[0].done():
            leave_later(leaving)
        else:
            await leaving
    return result_of(out)


async def _leave(
    room: rtc.Room, speaker: audio.Speaker, listeners: Sequence[audio.Listener],
    joining: Sequence[asyncio.Future[None]], join_s: float,
) -> None:  # fmt: skip
    """Stop listening and speaking, wait for a join still under way (never cancelled: the
    SDK bounds it), leave the room. A round trip's and a held call's end alike."""
    for listener in listeners:
        await listener.aclose()
    await speaker.aclose()
    if joining and not joining[0].done():
        # The SDK retries a few times, each bounded by connect_timeout.
        await asyncio.wait(joining, timeout=4 * join_s + 5)
    for task in joining:
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: reported in the result, not an "unretrieved" warning
    with contextlib.suppress(Exception):
        await asyncio.wait_for(room.disconnect(), 5)


def result_of(out: Outcome) -> dict[str, Any]:
    """The result of a finished round trip: ``out.as_dict()``, plus ``reply_wav_b64`` when it
    failed after reply audio came (and the audio could be encoded)."""
    result = out.as_dict()
    if not out.ok and out.reply_pcm is not None:
        encoded = _encoded_reply(out.reply_pcm)
        if encoded is not None:
            result["reply_wav_b64"] = encoded
    return result


def reply_wav(
    pcm: np.ndarray, rate: int = audio.RATE, max_s: float = REPLY_AUDIO_MAX_S,
    to_rate: int = REPLY_AUDIO_RATE,
) -> bytes:  # fmt: skip
    """``pcm`` (mono int16 samples at ``rate`` Hz) as a WAV file's bytes: 16-bit mono,
    resampled to ``to_rate`` Hz when ``rate`` is higher, cut to its first ``max_s`` seconds."""
    samples = np.asarray(pcm, dtype=np.int16)[: int(max_s * rate)]
    if rate > to_rate and samples.size:
        samples = audio._resample(samples.tobytes(), rate, to_rate)
        rate = to_rate
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype("<i2").tobytes())
    return buffer.getvalue()


def _encoded_reply(pcm: np.ndarray) -> str | None:
    """The reply as base64 WAV, or None when it cannot be encoded: keeping the audio must
    never change the round trip's verdict."""
    try:
        return base64.b64encode(reply_wav(pcm)).decode("ascii")
    except Exception as exc:  # any failure here only loses the recording
        log.warning("could not keep the reply audio of a failed round trip: %s", exc)
        return None
