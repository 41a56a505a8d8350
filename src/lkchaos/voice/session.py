"""A held conversation: one caller joins once and keeps asking, turn after turn.

A round trip (:mod:`lkchaos.voice.roundtrip`) is a whole new call per sample; a held call
stays in its room and asks a new question every few seconds, so the voice signal has the
resolution of a turn, and a session that never recovers (an agent deaf after its speech
recognition came back, silent after its signalling connection resumed) shows as turns that
keep failing in the same room.

Each turn is judged like a round trip (``ok``, or the stage it failed at: ``no_reply``,
``misheard``, ``apology``, ``reply_misheard``, ``wrong_reply``, ``extra_agent`` when a second
agent spoke during the turn, ``no_agent`` when no agent is in the room to ask) with its
latency: the end of the caller's speech as played out to the first
audio of the reply, on the monotonic clock. A turn's reply is checked by transcribing its audio
(every ``transcribe_every``-th turn; the others by the agent's own report of what it said,
``checked_by`` says which). A reply is judged while the caller asks its next question (the
transcription takes about a second of the turn's eight otherwise); verdicts are kept in the
order the turns were asked. Room events (signalling reconnects, the agent leaving or a new
one arriving) are kept with their times, and the media path the call ended on.

A call ends when told (:meth:`HeldCall.stop`: after the turn under way and its verdict, or at
once, dropping the turn under way and a reply still being judged), after ``max_turns`` turns
or ``duration_s`` seconds, or when its room is lost for good; it always leaves its room.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from livekit import rtc

from lkchaos.livekit.background import new_room
from lkchaos.voice import audio, roundtrip
from lkchaos.voice.questions import check_reply, expected_answers, random_question

T = TypeVar("T")
#: When each group of held calls (``Options.group``) last began a question (monotonic).
_LAST_ASKED: dict[str, float] = {}
_LAST_ASKED_LOCK = threading.Lock()
#: A group silent this long (seconds) is forgotten.
_GROUP_IDLE_S = 3600.0
#: Bounds of one held call (also the prober's limits on what a request may ask).
MAX_DURATION_S = 3600.0
MAX_TURNS = 2000


@dataclass(frozen=True)
class Options:
    """How a held call behaves: bounds, pacing and checking (seconds unless named)."""

    duration_s: float = 600.0
    max_turns: int = 200
    turn_gap_s: float = 0.3
    transcribe_every: int = 1
    first_reply_s: float = 8.0
    reply_s: float = 10.0
    join_s: float = 10.0
    dispatch_s: float = 15.0
    silence_s: float = 0.8
    #: A reply judged wrong by its audio is listened to on this long for more, unasked
    #: (:func:`roundtrip.continued`); 0: not at all.
    reply_pause_s: float = 8.0
    start_delay_s: float = 0.0
    #: Calls of one ``group`` begin their questions at least ``spacing_s`` apart: a call
    #: ready to ask sooner waits (its own pacing, not a wait on the agent). Calls that wait for
    #: the same thing (a fault's end) are otherwise ready at once and stay in step.
    group: str = ""
    spacing_s: float = 0.0

    def __post_init__(self) -> None:
        if not 0 < self.duration_s <= MAX_DURATION_S:
            raise ValueError(f"duration_s must be in (0, {MAX_DURATION_S:g}] seconds")
        if isinstance(self.max_turns, bool) or not 1 <= self.max_turns <= MAX_TURNS:
            raise ValueError(f"max_turns must be a whole number from 1 to {MAX_TURNS}")
        if isinstance(self.transcribe_every, bool) or not 0 <= self.transcribe_every <= 1000:
            raise ValueError("transcribe_every must be a whole number from 0 (never) to 1000")
        for name in ("turn_gap_s", "start_delay_s", "reply_pause_s"):
            if not 0 <= getattr(self, name) <= 60:
                raise ValueError(f"{name} must be from 0 to 60 seconds")
        if not isinstance(self.group, str) or len(self.group) > 100:
            raise ValueError("group must be a name of at most 100 characters")
        if isinstance(self.spacing_s, bool) or not isinstance(self.spacing_s, int | float) or \
                not 0 <= self.spacing_s <= 60:
            raise ValueError("spacing_s must be from 0 to 60 seconds")
        for name in ("first_reply_s", "reply_s", "join_s", "dispatch_s", "silence_s"):
            if not 0 < getattr(self, name) <= 120:
                raise ValueError(f"{name} must be more than 0 and at most 120 seconds")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Options:
        """Options from a request or an activity's arguments; unknown names are refused."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown held-call options {unknown}; known: {sorted(known)}")
        try:
            return cls(**values)
        except TypeError as exc:
            raise ValueError(f"held-call options: {exc}") from exc


def agent_replaced(room: rtc.Room, agent: rtc.RemoteParticipant, track_sid: str) -> bool:
    """Whether ``agent``, whose audio track ``track_sid`` a call listens to, is no longer
    what the room has under its identity: it left, or rejoined as a new participant (a new
    sid: livekit-agents restarts a job's connection when resuming it fails, as after a
    signalling outage of more than a few seconds, and LiveKit replaces the participant with
    the same identity), or its audio track was replaced. Its old track then carries nothing,
    and the replacement hears the caller's next question but answers on a track the call
    does not listen to."""
    present = room.remote_participants.get(agent.identity)
    if present is None or present.sid != agent.sid:
        return True
    track = roundtrip._audio_track(present)
    return track is None or track.sid != track_sid


def claim_question(group: str, spacing_s: float, now: float) -> float:
    """Claim the group's next question at ``now`` (monotonic seconds): 0.0 when claimed,
    else the seconds to wait until ``spacing_s`` has passed since the group's last question
    began (then claim again: another call may have claimed it meanwhile)."""
    with _LAST_ASKED_LOCK:
        last = _LAST_ASKED.get(group)
        if last is not None and now - last < spacing_s:
            return last + spacing_s - now
        _LAST_ASKED[group] = now
        for idle in [g for g, at in _LAST_ASKED.items() if now - at > _GROUP_IDLE_S]:
            del _LAST_ASKED[idle]
        return 0.0


@dataclass
class HeldCall:
    """One caller held in one room; :meth:`run` until it ends, :meth:`stop` to end it."""

    url: str
    api_key: str
    api_secret: str
    agent_name: str
    options: Options = field(default_factory=Options)
    room_name: str = field(default_factory=lambda: f"lkchaos-held-{uuid.uuid4().hex[:10]}")
    turns: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    media: dict[str, Any] = field(default_factory=dict)
    state: str = "starting"  # starting, talking, ended
    end_reason: str = ""

    def __post_init__(self) -> None:
        self._t0 = time.monotonic()
        self._stop = asyncio.Event()
        self._at_once = asyncio.Event()  # stop without finishing the turn under way
        # What the call waits for, since when (monotonic): "join", "agent" (to be in the
        # room, with audio, listening) or "reply" (its first audio after the question).
        self._waiting: tuple[str, float] | None = None
        self._listener: audio.Listener | None = None
        # The verdict of the last reply, judged while the next question is asked.
        self._judging: asyncio.Future[None] | None = None
        # The agent last asked (its participant sid): a new one may greet first.
        self._asked_agent: str | None = None
        # For the reply last heard: when the first asking of the question after it ended
        # (monotonic), once it has (what the agent says after that answers that question).
        # One list per reply, kept by its judging: the next reply has a list of its own.
        self._next_asked: list[float] = []

    def now(self) -> float:
        """Seconds since the call started (monotonic)."""
        return time.monotonic() - self._t0

    def waiting(self) -> dict[str, Any] | None:
        """What the call has been waiting for, and for how long: ``{"for": "join" | "agent" |
        "reply", "s": seconds}`` (to join its room; for the agent to be there, with audio,
        listening; for the first audio of its reply); None while it waits for nothing
        (before its start delay ends, asking, hearing a reply, judging it, between turns,
        ended)."""
        if self._waiting is None:  # reset when the call ends
            return None
        kind, since = self._waiting
        if kind == "reply" and self._listener is not None and self._listener.heard_since(since):
            return None  # the reply has begun
        return {"for": kind, "s": round(max(0.0, time.monotonic() - since), 3)}

    def stop(self, at_once: bool = False) -> None:
        """Ask the call to end after the turn under way and its verdict, or ``at_once``: the
        turn under way (or the wait for the agent) and a reply still being judged are
        dropped, unjudged, and the call leaves its room
        without reading its media path. Safe from the call's own loop."""
        self._stop.set()
        if at_once:
            self._at_once.set()

    def _event(self, kind: str, **fields: Any) -> None:
        self.events.append({"t": round(self.now(), 3), "event": kind, **fields})

    def summary(self) -> dict[str, Any]:
        """``{"room", "state", "end_reason", "turns", "answered", "answered_pct",
        "latency_p50_s", "latency_p95_s", "reconnects", "agents_seen", "events",
        "media_path", "stages"}`` of the call so far."""
        return {
            "room": self.room_name,
            "state": self.state,
            "end_reason": self.end_reason,
            "duration_s": round(self.now(), 3),
            **call_figures(self.turns, self.events),
            "media_path": self.media,
        }

    # -- the call ------------------------------------------------------------------------------
    async def run(self) -> dict[str, Any]:
        """Join, talk until the call ends, leave; returns :meth:`summary`."""
        room, speaker = new_room(), audio.Speaker()
        listener: audio.Listener | None = None
        listened: str | None = None
        connecting: asyncio.Future[None] | None = None
        self._watch(room)
        try:
            await self._pause(self.options.start_delay_s)  # staggers the calls of a group
            if self._stop.is_set():
                self.end_reason = "stopped before joining"
                return self.summary()
            self._waiting = ("join", time.monotonic())
            token = roundtrip.caller_token(self.api_key, self.api_secret, self.room_name,
                                           f"caller-{self.room_name[-10:]}", self.agent_name)
            options = rtc.RoomOptions(connect_timeout=self.options.join_s)
            # Never cancel Room.connect (see roundtrip): wait for it, bounded, and keep it.
            connecting = asyncio.ensure_future(room.connect(self.url, token, options))
            done, _ = await asyncio.wait({connecting}, timeout=self.options.join_s)
            if not done or connecting.exception() is not None:
                why = "timed out" if not done else repr(connecting.exception())
                self.end_reason = f"could not join {self.url}: {why}"
                return self.summary()
            await asyncio.wait_for(speaker.publish(room), self.options.join_s)
            self.state = "talking"
            self._event("joined")
            while not self._stop.is_set():
                if self._asked() >= self.options.max_turns:
                    self.end_reason = f"{self.options.max_turns} turns"
                    break
                if self.now() >= self.options.duration_s:
                    self.end_reason = f"{self.options.duration_s:g} s"
                    break
                if room.connection_state == rtc.ConnectionState.CONN_DISCONNECTED:
                    self.end_reason = "the room was lost (disconnected, not resumed)"
                    break
                self._waiting = ("agent", time.monotonic())
                found = await self._unless_stopped_at_once(self._agent_with_audio(room))
                if found is None:
                    break
                agent, track = found[0]
                if agent is None or track is None:
                    self._waiting = None
                    if await self._unless_stopped_at_once(self._judged(None)) is None:
                        break
                    self._record(self._failed("no_agent", "no agent with audio in the room "
                                              f"within {self.options.dispatch_s:g} s"))
                    continue
                if listener is None or listened != track.sid:
                    if listener is not None:
                        await listener.aclose()
                    listener, listened = audio.Listener(track), track.sid
                    self._listener = listener
                if await self._unless_stopped_at_once(self._turn(
                    room, agent, speaker, listener,
                    replaced=functools.partial(agent_replaced, room, agent, track.sid),
                )) is None:
                    break
                await self._pause(self.options.turn_gap_s)
            # The last reply's verdict, unless the call was stopped at once.
            await self._unless_stopped_at_once(self._judged(None))
            if not self.end_reason:
                self.end_reason = "stopped at once" if self._at_once.is_set() else "stopped"
            if not self._at_once.is_set():
                self.media = await roundtrip._media_path(room)
        finally:
            if self._judging is not None and not self._judging.done():
                self._judging.cancel()  # stopped at once (or failed): dropped, unjudged
            self.state, self._waiting = "ended", None
            self._event("ended", reason=self.end_reason)
            # A join's failure is retrieved there, and reported in end_reason.
            await roundtrip._leave(room, speaker, [listener] if listener else [],
                                   [connecting] if connecting else [], self.options.join_s)
        return self.summary()

    async def _unless_stopped_at_once(self, work: Coroutine[Any, Any, T]) -> tuple[T] | None:
        """``(work's result,)``, or None once the call is stopped at once: ``work`` is then
        cancelled (its exception, if it raised meanwhile, dropped with it)."""
        task = asyncio.ensure_future(work)
        stopped = asyncio.ensure_future(self._at_once.wait())
        try:
            await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            raise
        finally:
            stopped.cancel()
        if task.done():
            return (task.result(),)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        return None

    async def _agent_with_audio(
        self, room: rtc.Room
    ) -> tuple[rtc.RemoteParticipant | None, rtc.RemoteAudioTrack | None]:
        agent = await roundtrip._wait(lambda: roundtrip._agent(room), self.options.dispatch_s)
        if agent is None:
            return None, None
        found = agent
        track = await roundtrip._wait(lambda: roundtrip._audio_track(found),
                                      self.options.dispatch_s)  # fmt: skip
        return agent, track

    def _watch(self, room: rtc.Room) -> None:
        room.on("reconnecting", lambda: self._event("reconnecting"))
        room.on("reconnected", lambda: self._event("reconnected"))
        room.on("disconnected", lambda reason=None: self._event("disconnected",
                                                                 reason=str(reason)))

        def joined(participant: rtc.RemoteParticipant) -> None:
            if participant.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT:
                self._event("agent_joined", identity=participant.identity)

        def left(participant: rtc.RemoteParticipant) -> None:
            if participant.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT:
                self._event("agent_left", identity=participant.identity)

        room.on("participant_connected", joined)
        room.on("participant_disconnected", left)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    def _failed(self, stage: str, reason: str) -> dict[str, Any]:
        return {"ok": False, "stage": stage, "reason": reason, "latency_s": None}

    def _asked(self) -> int:
        """Turns asked so far: those judged, and one whose reply is still being judged."""
        return len(self.turns) + (self._judging is not None and not self._judging.done())

    async def _judged(self, then: Coroutine[Any, Any, None] | None) -> None:
        """Wait for the verdict of the reply being judged, if any (its failure raised here);
        then, with ``then``, start judging the next reply in the background."""
        if self._judging is not None:
            try:
                await self._judging  # cancelled with this wait (a call stopped at once)
            except BaseException:
                if then is not None:
                    then.close()
                raise
        self._judging = asyncio.ensure_future(then) if then is not None else None

    def _record(self, turn: dict[str, Any]) -> None:
        turn["turn"] = len(self.turns) + 1
        turn.setdefault("t", round(self.now(), 3))
        turn["took_s"] = round(self.now() - turn["t"], 3)
        # Wall clock, for whoever reads the turn later to place it in time (the sampling
        # control does) and to order the turns of several calls. A turn that asked is placed
        # at the end of its question (``due``, monotonic): from then on the reply is due, and
        # its latency is counted; what came before (waiting for the agent to listen, keeping
        # apart from the other calls, speaking) says nothing of the agent's answer.
        due = turn.pop("due", None)
        turn["ended_at"] = time.time()
        since = time.monotonic() - due if due is not None else turn["took_s"]
        turn["started_at"] = turn["ended_at"] - min(since, turn["took_s"])
        self.turns.append(turn)

    async def _turn(
        self, room: rtc.Room, agent: rtc.RemoteParticipant, speaker: audio.Speaker,
        listener: audio.Listener, replaced: Callable[[], bool] | None = None,
    ) -> None:
        """Ask one question and judge its reply. ``replaced()``: whether the agent this turn
        listens to is no longer the one in the room (see :func:`agent_replaced`); then the turn
        asks nothing (the next one asks the agent now there), or, asked already, fails
        ``no_reply`` as soon as that is seen."""
        started = self.now()
        # Ask only once the agent listens again (it may still be finishing its last reply),
        # its audio quiet; before the first question, listening a moment on end (a greeting
        # it begins as its session starts plays out first). An agent that never listens is
        # asked anyway after first_reply_s: its reply then says what is wrong.
        first = self._asked_agent != agent.sid  # a new agent may greet first
        await roundtrip.ready_to_ask(agent, listener, self.options.first_reply_s,
                                     settle_s=roundtrip.SETTLE_S if first else 0.0)
        self._asked_agent = agent.sid
        if replaced is not None and replaced():
            # The agent rejoined as a new participant (its signalling restarted after an
            # outage: LiveKit replaces a duplicate identity) or left while this turn waited
            # to ask: the question would go to the new one and its reply be missed here.
            self._event("agent_replaced", identity=agent.identity)
            return
        question = random_question()
        expected = expected_answers(question)
        previous = roundtrip._turn_report(agent).get("turn", 0)
        self._waiting = None  # its own pacing (a group's calls kept apart), then asking
        if self.options.group and self.options.spacing_s > 0:
            while (wait := claim_question(self.options.group, self.options.spacing_s,
                                          time.monotonic())) > 0:  # fmt: skip
                await asyncio.sleep(wait)
        # as played out; asked again once if the agent talked over it (a late greeting)
        # (the agents seen speaking meanwhile: more than one is a duplicate dispatch)
        speaking = roundtrip.SpeakingAgents(room)
        reply: tuple[float, float, Any] | None = None
        try:
            asked = await roundtrip.ask(speaker, audio.speech(question), agent, listener,
                                        self.options.first_reply_s,
                                        said=self._next_asked.append)
            end_of_speech = asked.end_of_speech
            if end_of_speech is not None:
                self._waiting = ("reply", end_of_speech)
                reply = await listener.reply(end_of_speech, self.options.first_reply_s,
                                             self.options.reply_s, silence=self.options.silence_s,
                                             finished=roundtrip.finished_speaking(agent),
                                             busy=roundtrip.at_work(agent),
                                             gone=replaced)  # fmt: skip
        finally:
            agents = speaking.close()
        if end_of_speech is None:  # the agent answered a part of the question
            stage, reason, misheard = roundtrip.cut_short(question, asked.cut_short or {})
            await self._judged(None)  # the turn before it is recorded first
            self._record({"t": round(started, 3), "question": question,
                          **self._failed(stage, reason), "misheard": misheard})
            return
        self._waiting = None  # the reply came (or will not): judging it
        next_asked = self._next_asked = []
        base = {"t": round(started, 3), "question": question, "due": end_of_speech,
                "agents": agents, "asked_twice": asked.twice}
        if reply is None:
            await self._judged(None)
            why = f"no reply audio within {self.options.first_reply_s:g} s"
            if replaced is not None and replaced():
                why = ("no reply audio: the agent left the room or rejoined it as a new "
                       "participant before replying")
            self._record({**base, **self._failed("no_reply", why)})
            return
        every = self.options.transcribe_every
        by_audio = every > 0 and self._asked() % every == 0
        # Judged while the next question is asked; recorded after the turn before it.
        await self._judged(self._judge(base, agent, listener, previous, expected, end_of_speech,
                                       reply, by_audio, next_asked))  # fmt: skip

    async def _judge(
        self, base: dict[str, Any], agent: rtc.RemoteParticipant, listener: audio.Listener,
        previous: int, expected: Any, end_of_speech: float, reply: tuple[float, float, Any],
        by_audio: bool, next_asked: list[float],
    ) -> None:
        """Judge one reply and record its turn: by its transcription (``by_audio``, or when
        the agent reported nothing of the turn) or by the agent's own report. A reply judged
        wrong by its audio is listened to on (``reply_pause_s``): what the agent goes on to
        say unasked, begun before the next question ended, is its reply too (an agent that
        says "let me check" and reports ``listening`` while its tool runs; the next question,
        talked over, is asked again). ``next_asked``: filled with the end of the next
        question's first asking once it has ended."""
        verdict = await self._verdict(base, agent, previous, expected, reply, by_audio)
        paused = None
        if verdict["by_audio"] and verdict["stage"] == "wrong_reply" and \
                self.options.reply_pause_s > 0:
            more = await roundtrip.continued(listener, agent, reply, self.options.reply_pause_s,
                                             self.options.reply_s,
                                             before=lambda: next(iter(next_asked), None))
            if more is not None:
                reply, paused = more
                verdict = await self._verdict(base, agent, previous, expected, reply, True,
                                              known=(verdict["report"],))  # fmt: skip
        first_at, last_at, _pcm = reply
        report = verdict["report"]
        self._record({
            **base, "ok": verdict["ok"], "stage": verdict["stage"], "reason": verdict["reason"],
            "latency_s": round(first_at - end_of_speech, 3),
            "reply_s": round(last_at - first_at, 3), "heard": verdict["heard"],
            "agent_heard": (report or {}).get("heard"), "misheard": verdict["misheard"],
            "checked_by": "audio" if verdict["by_audio"] else "agent",
            "reply_paused_s": round(paused, 3) if paused is not None else None,
            "agent_ms": {key: (report or {}).get(key) for key in HELD_AGENT_TIMINGS},
        })  # fmt: skip

    async def _verdict(
        self, base: dict[str, Any], agent: rtc.RemoteParticipant, previous: int,
        expected: Any, reply: tuple[float, float, Any], by_audio: bool,
        known: tuple[dict[str, Any] | None] | None = None,
    ) -> dict[str, Any]:
        """The verdict on one reply: ``{"ok", "stage", "reason", "heard", "misheard",
        "by_audio", "report"}``. ``known``: ``(the agent's turn report,)`` when already read
        (None in it: the agent sent none); else the report is waited for."""
        _first_at, _last_at, pcm = reply
        question = base["question"]
        # The transcription and the wait for the agent's report of the turn, side by side.
        heard_first = asyncio.ensure_future(asyncio.to_thread(audio.transcribe, pcm)) \
            if by_audio else None
        report: dict[str, Any] | None = known[0] if known is not None else None
        if known is None:
            try:
                report = await roundtrip._wait(
                    lambda: (r := roundtrip._turn_report(agent)) and r.get("turn", 0) > previous
                    and r,
                    2.0,
                )  # fmt: skip
            except BaseException:
                if heard_first is not None:
                    heard_first.cancel()
                raise
        agent_said = str((report or {}).get("reply") or "")
        if heard_first is None and not agent_said:  # nothing to check it by but the audio
            by_audio = True
            heard_first = asyncio.ensure_future(asyncio.to_thread(audio.transcribe, pcm))
        if heard_first is not None:
            first_text = await heard_first

            def transcribe(samples: Any, prompt: str | None = audio.REPLY_PROMPT) -> str:
                if prompt == audio.REPLY_PROMPT:
                    return first_text
                return audio.transcribe(samples, prompt)

            heard, check, _second = await asyncio.to_thread(
                roundtrip.listen, pcm, expected, agent_said, transcribe
            )
        else:
            heard, check = agent_said, check_reply(agent_said, expected)
        stage, reason, misheard = roundtrip.judge(
            question, check.ok, check.reason, heard, dict(report or {})
        )
        ok, stage, reason = roundtrip.extra_agents(check.ok, stage, reason, base["agents"])
        return {"ok": ok, "stage": stage, "reason": reason, "heard": heard,
                "misheard": misheard, "by_audio": by_audio, "report": report}


#: The agent's own timings of a turn (its ``lkchaos.turn`` report, milliseconds) kept in
#: each held turn: the Whisper request, end of speech to transcript, end of speech to its
#: audio. ``None`` where the agent reported none. (A round trip keeps more of them:
#: ``roundtrip.AGENT_TIMINGS``.)
HELD_AGENT_TIMINGS = ("stt_ms", "transcription_delay_ms", "e2e_ms")


def call_figures(turns: list[dict[str, Any]], events: list[dict[str, Any]]) -> dict[str, Any]:
    """What a held call's summary says of its ``turns`` and room ``events``, whatever kind of
    caller held it: ``{"turns", "answered", "answered_pct", "latency_p50_s",
    "latency_p95_s", "reconnects", "agents_seen", "stages", "events"}``."""
    answered = [t for t in turns if t["ok"]]
    latencies = sorted(t["latency_s"] for t in answered if t.get("latency_s") is not None)
    stages: dict[str, int] = {}
    for turn in turns:
        stages[turn["stage"]] = stages.get(turn["stage"], 0) + 1
    return {
        "turns": len(turns),
        "answered": len(answered),
        "answered_pct": round(100.0 * len(answered) / len(turns), 2) if turns else None,
        "latency_p50_s": _percentile(latencies, 50),
        "latency_p95_s": _percentile(latencies, 95),
        "reconnects": sum(1 for e in events if e["event"] == "reconnected"),
        "agents_seen": len({e.get("identity") for e in events
                            if e["event"] == "agent_joined"}),  # fmt: skip
        "stages": stages,
        "events": list(events),
    }


def _percentile(values: list[float], pct: float) -> float | None:
    """The ``pct`` percentile of sorted ``values`` (nearest rank), or None when empty."""
    if not values:
        return None
    rank = max(1, -(-len(values) * pct // 100))
    return round(values[int(rank) - 1], 3)
