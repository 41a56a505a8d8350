"""Held callers on LiveKit's Go SDK: a load generator that is not what breaks first.

The Python held callers (:mod:`lkchaos.voice.session`) run WebRTC's whole audio pipeline per
caller: an Opus encoder, a 10 ms audio device, resampling, the SDK's frame queue (about 0.1 of a
core per caller here, ``BENCHMARKS.md``). These callers share one Go process
(``stack/tools/heldcallers``, on ``server-sdk-go`` and pion) and do the least a caller must:

- the questions are spoken (espeak-ng) and Opus-encoded **once**, here, and the Go process
  sends those packets as they are, 20 ms apart, and between questions a 3-byte Opus silence
  frame every 400 ms (as Opus DTX does); the SDK's two peer connections per call (publisher
  and subscriber), as a browser holds them;
- the agent's reply is found from its RTP packets, never decoded: by their audio level (RFC
  6464) where the SFU forwards it, else (LiveKit v1.13 forwards none to this subscriber) by
  a run of full-size packets 20 ms apart, an agent's silence being 1-3-byte DTX packets. The
  latency runs from the question's last packet as sent to the reply's first as received;
- what the agent said is read from its turn report (``lkchaos.turn``); every
  ``transcribe_every``-th reply's Opus packets, and those of any turn the agent did not
  report, come back here, are decoded (PyAV) and transcribed (the voice extra's Whisper),
  several to one Whisper window (:mod:`lkchaos.voice.batch`: a window's encoder is most of a
  transcription's cost), so the agent's claim is checked by what was heard. The sampled
  replies are transcribed within a CPU budget per caller (:mod:`lkchaos.load.budget`): past
  it, a sampled reply is judged by the agent's report like the others (``checked_by``
  ``agent``, ``sample`` ``over budget``), so the judge's cost does not grow past the calls'.

The class is a :class:`lkchaos.voice.held.Backend`, so :class:`lkchaos.load.ramp.Ramp` runs
either kind of caller. Each turn has the shape of a Python held call's turn (``ok``,
``stage``, ``reason``, ``latency_s``, ``checked_by`` ...), each summary the shape of
:meth:`lkchaos.voice.session.HeldCall.summary` (no ``media_path``: these callers do not read
their ICE pairs).

Needs Go (to build the tool once, :func:`lkchaos.stack.build.build_tool`) and the voice
extra (PyAV, numpy, Whisper): :class:`GoCallers` raises PrerequisiteError without them.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import random
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, Any
from urllib.parse import urlsplit

from lkchaos.errors import ConfigError, PrerequisiteError
from lkchaos.load.budget import DEFAULT_CORES_PER_CALLER, JudgeBudget
from lkchaos.settings import Settings
from lkchaos.voice import roundtrip
from lkchaos.voice.batch import Batcher
from lkchaos.voice.session import Options

__all__ = ["GoCallers", "caller_url", "decode_opus", "judge_turn", "opus_packets", "reported"]

#: Questions spoken and encoded once per run; each turn asks one of them at random.
QUESTIONS = 24
#: Opus as LiveKit's speech preset sends it: 20 ms frames, 24 kbit/s, VoIP.
OPUS_BITRATE = 24000
FRAME = 960  # 20 ms at 48 kHz
#: Threads judging turns (decoding the sampled replies; the batcher transcribes them).
JUDGES = 2
#: Longest :meth:`GoCallers.settle` waits for replies still being decoded before it has the
#: batcher transcribe what it holds (seconds): they join that batch.
UNBATCHED_WAIT_S = 2.0
#: Said after the last reply of each batch of replies transcribed together (a word
#: ``tiny.en`` hears reliably, none of the replies' words): :mod:`lkchaos.voice.batch`.
CLOSING_WORD = "Goodbye."
#: Longest the process may take to leave every room once told to stop (seconds).
EXIT_S = 30.0


#: libopus's options for those frames (PyAV's codec options).
OPUS_OPTIONS = {"application": "voip", "frame_duration": "20"}


def opus_frames(samples: Any) -> Iterator[Any]:
    """48 kHz mono int16 ``samples`` as PyAV audio frames of 20 ms (the last one padded with
    silence), each with its ``pts`` in samples: what an Opus encoder takes."""
    import av
    import numpy as np

    padded = np.pad(np.asarray(samples, dtype=np.int16), (0, -len(samples) % FRAME))
    for i in range(0, len(padded), FRAME):
        frame = av.AudioFrame.from_ndarray(padded[i : i + FRAME].reshape(1, -1), format="s16",
                                           layout="mono")  # fmt: skip
        frame.sample_rate = 48000
        frame.pts = i
        yield frame


def opus_packets(samples: Any, bitrate: int = OPUS_BITRATE) -> list[bytes]:
    """48 kHz mono int16 ``samples`` as Opus packets of 20 ms (libopus through PyAV)."""
    import av

    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate = 48000
    encoder.layout = "mono"
    encoder.format = "s16"
    encoder.bit_rate = bitrate
    encoder.options = dict(OPUS_OPTIONS)
    packets: list[bytes] = []
    for frame in opus_frames(samples):
        packets.extend(bytes(p) for p in encoder.encode(frame))
    packets.extend(bytes(p) for p in encoder.encode(None))
    return packets


def decode_opus(packets: list[bytes]) -> Any:
    """Opus packets back to 48 kHz mono int16 (what a caller would have played)."""
    import av
    import numpy as np

    decoder = av.CodecContext.create("libopus", "r")
    decoder.sample_rate = 48000
    decoder.layout = "mono"
    out = []
    for data in packets:
        for frame in decoder.decode(av.Packet(data)):
            pcm = frame.to_ndarray().reshape(-1)
            if pcm.dtype != np.int16:
                pcm = np.clip(pcm * 32768.0, -32768, 32767).astype(np.int16)
            out.append(pcm)
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int16)


def caller_url(settings: Settings) -> str:
    """Where the Go callers join: ``livekit_url`` when its host resolves from this machine,
    else the first LiveKit node's port (the reference stack's names resolve only inside it)."""
    host = urlsplit(settings.livekit_url).hostname or ""
    try:
        socket.getaddrinfo(host, None)
        return settings.livekit_url
    except OSError:
        pass
    if settings.livekit_node_urls:
        node = settings.livekit_node_urls[0]
        return "ws" + node[len("http"):] if node.startswith("http") else node
    raise ConfigError(f"{host} does not resolve from this machine and no LiveKit node URL is "
                      "set (LKCHAOS_LIVEKIT_NODE_URLS): the Go callers cannot join")


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


class _Call:
    def __init__(self, room: str, options: Options) -> None:
        self.room, self.options = room, options
        self.t0 = time.monotonic()
        self.turns: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.pending = 0  # turns being transcribed
        self.ended: dict[str, Any] | None = None
        self.changed = threading.Condition()


class GoCallers:
    """Held calls in one ``heldcallers`` process (a :class:`lkchaos.voice.held.Backend`)."""

    def __init__(self, settings: Settings, say: Any = None, transcribe: bool = True,
                 questions: int = QUESTIONS,
                 judge_cpu: float = DEFAULT_CORES_PER_CALLER) -> None:  # fmt: skip
        """``judge_cpu``: the cores per caller the sampled replies' transcription may use
        (0: no limit; :class:`lkchaos.load.budget.JudgeBudget`); ValueError outside 0-1."""
        from lkchaos.stack import build
        from lkchaos.voice import extra

        absent = extra.missing() + [m for m in ("av", "numpy") if not _importable(m)]
        if absent:
            raise PrerequisiteError(
                f"the Go callers need lkchaos[voice] (not installed: {', '.join(absent)}): PyAV "
                "encodes the questions as Opus, Whisper transcribes the sampled replies; pip "
                "install '/path/to/lkchaos[voice]', or run the Python SDK's callers in the "
                "stack's prober instead (lkchaos load --engine python)")
        from lkchaos.voice import audio
        from lkchaos.voice.questions import random_question

        say = say or (lambda _text: None)
        self.key, self.secret = settings.require_keys()
        self.agent_name = settings.agent_name
        self.url = caller_url(settings)
        try:
            binary = build.build_tool("heldcallers", say)
        except PrerequisiteError as exc:
            raise PrerequisiteError(f"{exc}; or run the Python SDK's callers in the stack's "
                                    "prober instead (lkchaos load --engine python)") from exc
        rng = random.Random()
        texts = sorted({random_question(rng) for _ in range(questions * 2)})[:questions]
        spoken = [{"text": t, "packets": [base64.b64encode(p).decode()
                                             for p in opus_packets(audio.speech(t))]}
                     for t in texts]  # fmt: skip
        self.transcribe = transcribe
        self.budget = JudgeBudget(judge_cpu)
        #: Whisper as the judge runs it: its CPU spent from the budget.
        self._transcribe = self.budget.timed(audio.transcribe)
        #: The sampled replies, transcribed several to a Whisper window (lkchaos.voice.batch).
        self.batcher: Batcher | None = None
        if transcribe:  # loaded now, not by the first sampled turn inside a measured step
            audio.whisper_model()
            self.batcher = Batcher(self.budget.timed(audio.transcribe_words), self._transcribe,
                                   closing=audio.speech(CLOSING_WORD))
        # Go's collector at a quarter of its default pace: the callers' heap is small and
        # churns per packet; measured here, 8 % less CPU for a few MiB more.
        env = {"GOGC": "400", **os.environ}
        if settings.ca_file and os.path.isfile(settings.ca_file):
            env["SSL_CERT_FILE"] = settings.ca_file
        self.process = subprocess.Popen(
            [str(binary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=None if env.get("HELDCALLERS_LOG") else subprocess.DEVNULL, text=True, bufsize=1,
            env=env,
        )  # fmt: skip
        self._write({"url": self.url, "questions": spoken})
        self.calls: dict[str, _Call] = {}
        self.errors: list[str] = []  # lines of the process about no call of ours
        self._lock = threading.Lock()
        # Turns handed to the judges and not yet recorded or in the batcher's queue.
        self._unbatched = 0
        self._batched = threading.Condition()
        # Decoding the sampled replies' Opus; their transcription is the batcher's.
        self._judges = ThreadPoolExecutor(JUDGES, thread_name_prefix="lkchaos-judge")
        self._reader = threading.Thread(target=self._read, name="lkchaos-heldcallers",
                                        daemon=True)  # fmt: skip
        self._reader.start()

    # -- the Backend protocol ----------------------------------------------------------------
    def start(self, options: Options) -> tuple[str, str]:
        call_id = uuid.uuid4().hex[:12]
        room = f"lkchaos-held-{uuid.uuid4().hex[:10]}"
        token = roundtrip.caller_token(
            self.key, self.secret, room, f"caller-{room[-10:]}", self.agent_name,
            ttl_s=options.start_delay_s + options.duration_s + 600)  # it may rejoin till then
        with self._lock:
            self.calls[call_id] = _Call(room, options)
        self.budget.join(call_id)
        wire = {k: getattr(options, k) for k in ("duration_s", "max_turns", "turn_gap_s",
                                                  "first_reply_s", "reply_s", "join_s",
                                                  "dispatch_s", "silence_s", "start_delay_s",
                                                  "reply_pause_s")}
        wire["keep_audio_every"] = options.transcribe_every if self.transcribe else 0
        self._write({"op": "start", "id": call_id, "token": token, "options": wire})
        return call_id, room

    def turns(self, call_id: str, after: int, wait_s: float) -> dict[str, Any]:
        call = self._call(call_id)
        deadline = time.monotonic() + wait_s
        with call.changed:
            while not any(t["turn"] > after for t in call.turns) and call.ended is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                call.changed.wait(left)
            return {"turns": [t for t in call.turns if t["turn"] > after],
                    "state": "ended" if call.ended is not None and not call.pending
                    else "talking"}

    def end(self, call_id: str, at_once: bool = False) -> dict[str, Any]:
        """End the call; a Go call stops at once whatever ``at_once`` says (its turn under
        way is given up, never reported), then leaves its room."""
        call = self._call(call_id)
        self._write({"op": "end", "id": call_id})
        deadline = time.monotonic() + call.options.reply_s + call.options.join_s + 15
        with call.changed:
            while (call.ended is None or call.pending) and time.monotonic() < deadline:
                if self.batcher is not None:  # its sampled replies judged now, not in a batch
                    self.batcher.flush()  # later (each time: one may still be decoding)
                call.changed.wait(0.5)
        return self._summary(call)

    def settle(self, wait_s: float) -> None:
        """Judge now the sampled turns held back for a batch, and wait (up to ``wait_s``
        seconds) until every turn reported so far is judged: a ramp's step then counts every
        turn that ended in it (:meth:`lkchaos.load.ramp.Ramp`)."""
        if self.batcher is None:
            return
        deadline = time.monotonic() + wait_s
        with self._lock:
            calls = list(self.calls.values())
        while time.monotonic() < deadline:
            # A reply still being decoded joins this batch rather than a window of its own
            # later (calls go on meanwhile, so the wait is short).
            with self._batched:
                self._batched.wait_for(lambda: self._unbatched == 0,
                                       min(UNBATCHED_WAIT_S, max(0.0, deadline - time.monotonic())))
            self.batcher.flush()  # again each time: a reply still being decoded comes later
            waiting = False
            for call in calls:
                with call.changed:
                    waiting = waiting or call.pending > 0
            if not waiting:
                return
            time.sleep(0.2)

    def close(self) -> None:
        """End every call and the process (it leaves every room first)."""
        try:
            if self.process.stdin:
                self.process.stdin.close()
        except OSError:
            pass
        try:
            self.process.wait(EXIT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self._reader.join(5)  # it reads until the process's output ends
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._judges.shutdown(wait=True)  # every sampled reply is in the batcher now
        if self.batcher is not None:
            self.batcher.close()

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time (user + system, seconds) used so far: ``media`` by the Go process (the
        calls themselves), ``judging`` by this process (judging turns, decoding and
        transcribing the sampled replies; also whatever else this process does)."""
        try:
            with open(f"/proc/{self.process.pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            media = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):  # the process has gone
            media = 0.0
        own = os.times()
        return {"media": media, "judging": own.user + own.system}

    def __enter__(self) -> GoCallers:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- internals -----------------------------------------------------------------------------
    def _call(self, call_id: str) -> _Call:
        with self._lock:
            call = self.calls.get(call_id)
        if call is None:
            raise KeyError(f"no held call {call_id}")
        return call

    def _write(self, message: dict[str, Any]) -> None:
        stdin: IO[str] | None = self.process.stdin
        if stdin is None or self.process.poll() is not None:
            raise PrerequisiteError(f"the heldcallers process exited ({self.process.returncode})")
        stdin.write(json.dumps(message) + "\n")
        stdin.flush()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                message = json.loads(line)
                call = self._call(str(message.get("id")))
            except (ValueError, KeyError, AttributeError):
                self.errors.append(line.strip()[:500])  # of no call: kept for whoever asks
                continue
            self._receive(call, message)
        with self._lock:
            calls = list(self.calls.values())
            ids = list(self.calls)
        for call_id in ids:
            self.budget.leave(call_id)
        for call in calls:  # the process is gone: every call it held has ended
            with call.changed:
                if call.ended is None:
                    call.ended = {"reason": "the heldcallers process exited"}
                call.changed.notify_all()

    def _receive(self, call: _Call, message: dict[str, Any]) -> None:
        kind = message.get("event")
        if kind == "turn":
            with call.changed:
                call.pending += 1
            with self._batched:
                self._unbatched += 1
            self._judges.submit(self._judge_one, call, message)
            return
        with call.changed:
            if kind == "ended":
                call.ended = message
                self.budget.leave(str(message.get("id")))
                call.events.append({"t": message["t"], "event": "ended",
                                    "reason": message.get("reason")})  # fmt: skip
            elif kind == "error":
                call.events.append({"t": 0.0, "event": "error", "reason": message.get("error")})
                if message.get("op") == "start":  # refused: the call never started
                    call.ended = {"t": 0.0, "reason": f"refused: {message.get('error')}"}
                    self.budget.leave(str(message.get("id")))
            else:
                extra = {k: v for k, v in message.items() if k not in ("id", "event", "t")}
                call.events.append({"t": message["t"], "event": kind, **extra})
            call.changed.notify_all()

    def _judge_one(self, call: _Call, raw: dict[str, Any]) -> None:
        try:
            self._judge(call, raw)
        finally:
            with self._batched:
                self._unbatched -= 1
                self._batched.notify_all()

    def _judge(self, call: _Call, raw: dict[str, Any]) -> None:
        """Judge a turn now, or once the batcher has transcribed its sampled reply."""
        packets = raw.get("audio")
        if self.batcher is None or raw.get("stage") or not (isinstance(packets, list)
                                                            and packets):  # fmt: skip
            self._record(call, raw)
            return
        # A sample is paid for from the budget; a reply the agent did not report is heard
        # whatever it costs (its verdict needs it).
        sampled = reported(raw)
        reserved = self.budget.take() if sampled else None
        if sampled and reserved is None:  # a sample the budget cannot pay for
            self._record(call, {**raw, "audio": None, "sample": "over budget"})
            return
        try:
            # libopus decodes on this thread: its own clock (two judges decode side by side,
            # and the process's clock would count each one's work twice).
            started = time.thread_time()
            try:
                pcm = decode_opus([base64.b64decode(p) for p in packets])
            finally:
                self.budget.spend(time.thread_time() - started)
            heard = self.batcher.submit(pcm)
        except Exception as exc:
            self.budget.release(reserved)
            self._record(call, raw, failed=exc)
            return
        # Recorded on the batcher's thread: judging a transcript is a few string checks (and,
        # for a rare reply the transcript lacks but the agent claimed, one more listening).
        def judged(done: Future[str]) -> None:
            try:
                self._record(call, raw, pcm, done)
            finally:
                self.budget.release(reserved)  # its real cost is spent by now

        heard.add_done_callback(judged)

    def _record(self, call: _Call, raw: dict[str, Any], pcm: Any = None,
                heard: Future[str] | None = None, failed: Exception | None = None) -> None:
        try:
            if failed is not None:
                raise failed
            turn = judge_turn(raw, self.transcribe, pcm=pcm,
                              heard=None if heard is None else heard.result(),
                              transcribe_fn=self._transcribe)
        except Exception as exc:  # a turn that cannot be judged is a failed turn, said why
            turn = {"ok": False, "stage": "judge_failed", "reason": f"{type(exc).__name__}: {exc}",
                    "latency_s": None}  # fmt: skip
        turn["t"] = round(float(raw.get("started") or 0.0), 3)
        turn["took_s"] = round(float(raw.get("t") or 0.0) - turn["t"], 3)
        turn["ended_at"] = call.t0 + float(raw.get("t") or 0.0) - time.monotonic() + time.time()
        turn["started_at"] = turn["ended_at"] - turn["took_s"]
        with call.changed:
            turn["turn"] = len(call.turns) + 1
            call.turns.append(turn)
            call.pending -= 1
            call.changed.notify_all()

    def _summary(self, call: _Call) -> dict[str, Any]:
        from lkchaos.voice.session import call_figures

        with call.changed:
            turns, events = list(call.turns), list(call.events)
            ended = call.ended
        return {
            "room": call.room,
            "state": "ended" if ended is not None else "talking",
            "end_reason": (ended or {}).get("reason", "did not end in time"),
            "duration_s": round(float((ended or {}).get("t") or 0.0), 3),
            **call_figures(turns, events),
            "media_path": {"note": "not read by the Go callers"},
        }


def reported(raw: dict[str, Any]) -> bool:
    """Whether the agent reported what it said in this turn (else its audio must be heard)."""
    report = raw.get("report")
    return isinstance(report, dict) and bool(report.get("reply"))


def judge_turn(raw: dict[str, Any], transcribe: bool = True, pcm: Any = None,
               heard: str | None = None,
               transcribe_fn: Any = None) -> dict[str, Any]:  # fmt: skip
    """A turn as the Go process reported it, judged as a Python held call judges its turns:
    by the reply's transcript when its audio came back (``audio``), else by the agent's report.
    ``pcm``: the reply's audio when already decoded; ``heard``: its transcript when already
    made (a batch's, :mod:`lkchaos.voice.batch`); ``transcribe_fn``: Whisper for a second
    listening (the voice extra's by default). A sample left to the agent's report for want of
    budget carries ``"sample": "over budget"``. A reply judged wrong by its audio that came
    with what the agent said unasked after it (``after``: the Go caller held the turn back
    until its next question ended) is heard again with that, and judged whole
    (``reply_paused_s``)."""
    from lkchaos.voice.questions import check_reply, expected_answers
    from lkchaos.voice.session import HELD_AGENT_TIMINGS

    question = str(raw.get("question") or "")
    if raw.get("stage"):  # failed before a reply: no_agent, no_reply
        return {"question": question, "ok": False, "stage": raw["stage"],
                "reason": str(raw.get("reason") or ""), "latency_s": None}  # fmt: skip
    if raw.get("cut_short"):  # the agent answered a part of the question
        answered = raw.get("report")
        stage, reason, misheard = roundtrip.cut_short(
            question, answered if isinstance(answered, dict) else {})
        return {"question": question, "ok": False, "stage": stage, "reason": reason,
                "latency_s": None, "misheard": misheard}  # fmt: skip
    expected = expected_answers(question)
    found = raw.get("report")
    report: dict[str, Any] = found if isinstance(found, dict) else {}
    agent_said = str(report.get("reply") or "")
    packets = raw.get("audio")
    by_audio = bool(transcribe and isinstance(packets, list) and packets)
    if by_audio:
        from lkchaos.voice import audio

        if pcm is None:
            pcm = decode_opus([base64.b64decode(p) for p in packets or []])
        heard, check, _second = roundtrip.listen(pcm, expected, agent_said,
                                                 transcribe_fn or audio.transcribe, heard)
    else:
        heard, check = agent_said, check_reply(agent_said, expected)
    stage, reason, misheard = roundtrip.judge(question, check.ok, check.reason, heard, report)
    first, last, eos = (float(raw[k]) for k in ("first_reply", "last_reply", "end_of_speech"))
    paused = None
    after = raw.get("after")
    if by_audio and stage == "wrong_reply" and isinstance(after, list) and after:
        # What the agent said unasked after its reply, before the next question was asked
        # (the Go caller holds such a turn back for it): the reply and it, heard together.
        from lkchaos.voice import audio

        whole = decode_opus([base64.b64decode(p) for p in [*(packets or []), *after]])
        heard, check, _second = roundtrip.listen(whole, expected, agent_said,
                                                 transcribe_fn or audio.transcribe)
        stage, reason, misheard = roundtrip.judge(question, check.ok, check.reason, heard,
                                                  report)  # fmt: skip
        paused = float(raw["after_first"]) - last
        last = float(raw["after_last"])
    spoke = raw.get("agents")
    ok, stage, reason = roundtrip.extra_agents(
        check.ok, stage, reason, [str(a) for a in spoke] if isinstance(spoke, list) else [])
    return {
        "question": question, "ok": ok, "stage": stage, "reason": reason,
        "latency_s": round(first - eos, 3), "reply_s": round(last - first, 3), "heard": heard,
        "agent_heard": report.get("heard"), "misheard": misheard,
        "checked_by": "audio" if by_audio else "agent",
        **({"asked_twice": True} if raw.get("asked_twice") else {}),
        **({"reply_paused_s": round(paused, 3)} if paused is not None else {}),
        **({"sample": str(raw["sample"])} if raw.get("sample") else {}),
        "agent_ms": {key: report.get(key) for key in HELD_AGENT_TIMINGS},
    }  # fmt: skip
