"""How often the stack's Whisper mishears the voice probe's questions, per number word.

    .venv/bin/python bench/mishearing.py [--repeats 3] [--url http://127.0.0.1:28000]
                                         [--prompt agent|none|TEXT] [--bitrate 24000]
                                         [--replies [--batch 6]]

Speaks every question the probe's default can ask (``lkchaos.voice.questions``) the way the
probe does (``lkchaos.voice.audio.speech``: same espeak-ng voice, rate, word gap and
padding), passes it through what the call path does to it, and posts it to the stack's
Whisper (``/v1/audio/transcriptions``, read only) with the agent's request: its vocabulary
``prompt`` (``stack/voice/voicestack/vocabulary.py``), ``language=en``, a WAV at 24 kHz.

The call path, as modelled here: the probe's 48 kHz track is Opus-encoded by WebRTC
(libopus through PyAV, ``voip`` application, 20 ms frames, 24 kbit/s: LiveKit's speech
preset) and decoded by the agent, which takes the room's audio at 24 kHz (livekit-agents'
default input rate); its VAD hands Whisper the utterance with up to 0.5 s of audio before
speech starts and 0.5 s of silence after it ends. Each repetition moves the speech by a
random offset (0-0.5 s, so Opus frames fall differently) and a random trailing silence (0.4-
0.7 s): Whisper is deterministic, so repetitions without that variation would all agree.

With ``--replies`` it measures the other direction instead: the agent's answer ("7 times 8
is 56.") spoken as the agent's TTS does, through Opus to the caller, transcribed by the
probe's own Whisper as ``lkchaos.voice.audio.transcribe`` does, and checked as the probe
checks it; a failure there would be a false ``wrong_reply``. With ``--batch N`` the replies
go N at a time through the load judge's batcher (``lkchaos.voice.batch``: several replies to
one Whisper window) instead of one by one; both print the CPU-seconds a reply cost.

A question counts as misheard when the transcript does not ask the same operands and
operation (``questions.same_question``); each operand word of a misheard question whose
value was not heard counts against that word. Prints the rate per number word, per
operation, overall, and the misheard transcripts. Needs the reference stack's Whisper up
(`lkchaos stack up`); nothing in the stack is changed.
"""

from __future__ import annotations

import argparse
import collections
import io
import os
import platform
import random
import sys
import time
import wave
from pathlib import Path

import av
import httpx
import numpy as np
from livekit import rtc

from lkchaos.load.ramp import percentile
from lkchaos.voice import audio
from lkchaos.voice.questions import (
    OPERAND_MAX,
    OPERAND_MIN,
    OPERATIONS,
    check_reply,
    expected_answers,
    heard_question,
    parse_question,
    question_text,
    spoken,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "stack" / "voice"))
from voicestack.vocabulary import DEFAULT_STT_PROMPT  # noqa: E402

AGENT_RATE = 24000
#: The agent's TTS (``TTS_WPM``, ``TTS_GAP`` in stack/voice/voicestack/agent.py).
REPLY_WPM = 150
REPLY_GAP = 2
FRAME = 960  # 20 ms at 48 kHz


def opus_round_trip(samples: np.ndarray, bitrate: int) -> np.ndarray:
    """48 kHz int16 through a libopus encoder and decoder, as on a WebRTC call."""
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate = audio.RATE
    encoder.layout = "mono"
    encoder.format = "s16"
    encoder.bit_rate = bitrate
    encoder.options = {"application": "voip", "frame_duration": "20"}
    decoder = av.CodecContext.create("libopus", "r")
    decoder.sample_rate = audio.RATE
    decoder.layout = "mono"
    padded = np.pad(samples, (0, -len(samples) % FRAME))
    out: list[np.ndarray] = []

    def decode(packets: list[av.Packet]) -> None:
        for packet in packets:
            for frame in decoder.decode(packet):
                pcm = frame.to_ndarray().reshape(-1)
                if pcm.dtype != np.int16:
                    pcm = np.clip(pcm * 32768.0, -32768, 32767).astype(np.int16)
                out.append(pcm)

    for i in range(0, len(padded), FRAME):
        frame = av.AudioFrame.from_ndarray(
            padded[i : i + FRAME].reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = audio.RATE
        frame.pts = i
        decode(encoder.encode(frame))
    decode(encoder.encode(None))
    return np.concatenate(out)


def resample(samples: np.ndarray, rate: int, to: int) -> np.ndarray:
    frame = rtc.AudioFrame(samples.tobytes(), rate, 1, len(samples))
    resampler = rtc.AudioResampler(rate, to, num_channels=1)
    frames = [*resampler.push(frame), *resampler.flush()]
    return np.concatenate([np.frombuffer(bytes(f.data), dtype=np.int16) for f in frames])


def utterance(question: str, rng: random.Random, bitrate: int, voice: str = audio.VOICE) -> bytes:
    """The WAV the agent would send Whisper for ``question``, one variation of it."""
    speech = audio.speech(question, voice)
    lead = np.zeros(int(rng.uniform(0.0, 0.5) * audio.RATE), dtype=np.int16)
    tail = np.zeros(int(rng.uniform(0.4, 0.7) * audio.RATE), dtype=np.int16)
    heard = resample(opus_round_trip(np.concatenate([lead, speech, tail]), bitrate),
                     audio.RATE, AGENT_RATE)  # fmt: skip
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(AGENT_RATE)
        w.writeframes(heard.tobytes())
    return buffer.getvalue()


def transcribe(client: httpx.Client, url: str, wav: bytes, prompt: str,
               took_ms: list[float] | None = None) -> str:  # fmt: skip
    """Whisper's transcript; waits up to 5 min for a Whisper that is busy, paused or down.
    ``took_ms`` gets the server's own time for it (its ``X-Processing-Ms``), where it says."""
    data = {"model": "tiny.en", "language": "en", "response_format": "json"}
    if prompt:
        data["prompt"] = prompt
    deadline = time.monotonic() + 300
    while True:
        try:
            response = client.post(
                url.rstrip("/") + "/v1/audio/transcriptions",
                files={"file": ("audio.wav", wav, "audio/wav")}, data=data, timeout=30.0,
            )  # fmt: skip
            if response.status_code != 503:
                response.raise_for_status()
                if took_ms is not None and "x-processing-ms" in response.headers:
                    took_ms.append(float(response.headers["x-processing-ms"]))
                return str(response.json()["text"])
            problem = "busy (503)"
        except httpx.TransportError as exc:
            problem = f"{type(exc).__name__}: {exc}"
        if time.monotonic() > deadline:
            raise SystemExit(f"Whisper at {url} did not answer for 5 min ({problem}): is the "
                             "stack up (`lkchaos stack status`)?")
        print(f"  Whisper: {problem}; retrying", file=sys.stderr, flush=True)
        time.sleep(3)


def reply_audio(
    question: str, rng: random.Random, bitrate: int, wpm: int = REPLY_WPM, gap: int = REPLY_GAP
) -> tuple[str, np.ndarray]:
    """The agent's reply to ``question`` as the probe receives it: ``(text, 48 kHz audio)``,
    espeak-ng as the agent's TTS speaks it (en-us, 150 wpm, 20 ms word gaps, text on stdin),
    Opus to the caller at 48 kHz, the 0.3 s the listener keeps either side."""
    import subprocess

    a, op, b = parse_question(question)
    answer = expected_answers(question)
    symbol = {"+": "plus", "-": "minus", "*": "times"}[op]
    text = f"{int(a)} {symbol} {int(b)} is {answer[0]}."
    wav = subprocess.run(["espeak-ng", "--stdout", "-v", "en-us", "-s", str(wpm), "-g", str(gap)],
                         input=text.encode(), capture_output=True, check=True,
                         timeout=10).stdout  # fmt: skip
    with wave.open(io.BytesIO(wav)) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
        rate = w.getframerate()
    speech = resample(pcm, rate, audio.RATE)
    lead = np.zeros(int(rng.uniform(0.3, 0.32) * audio.RATE), dtype=np.int16)
    tail = np.zeros(int(0.3 * audio.RATE), dtype=np.int16)
    return text, opus_round_trip(np.concatenate([lead, speech, tail]), bitrate)


def cpu_s() -> float:
    """CPU time of this process so far (user + system, seconds)."""
    times = os.times()
    return times.user + times.system


def replies(args: argparse.Namespace, questions: list[tuple[int, str, int]]) -> None:
    """Each reply transcribed alone (``audio.transcribe``), or with ``--batch N`` N at a time
    through the load judge's batcher (``lkchaos.voice.batch``): judged as the probe judges."""
    from lkchaos.load.gocallers import CLOSING_WORD
    from lkchaos.voice.batch import Batcher

    rng = random.Random(args.seed)
    wrong: list[tuple[str, str]] = []
    by_op: collections.Counter[str] = collections.Counter()
    op_wrong: collections.Counter[str] = collections.Counter()
    asked = [(op, question_text(a, op, b)) for _ in range(args.repeats) for a, op, b in questions]
    said = [(op, question, *reply_audio(question, rng, args.bitrate, args.reply_wpm,
                                        args.reply_gap))
            for op, question in asked]  # fmt: skip
    audio.whisper_model()  # loaded before the clock starts
    batcher = Batcher(audio.transcribe_words, audio.transcribe,
                      closing=audio.speech(CLOSING_WORD)) if args.batch > 1 else None
    started, cpu = time.perf_counter(), cpu_s()
    for first in range(0, len(said), max(1, args.batch)):
        group = said[first: first + max(1, args.batch)]
        if batcher is None:
            heard = [audio.transcribe(pcm) for *_said, pcm in group]
        else:
            futures = [batcher.submit(pcm) for *_said, pcm in group]
            batcher.flush()
            heard = [f.result() for f in futures]
        for (op, question, text, _pcm), transcript in zip(group, heard, strict=True):
            by_op[op] += 1
            if not check_reply(transcript, expected_answers(question)).ok:
                op_wrong[op] += 1
                wrong.append((text, transcript))
    total = sum(by_op.values())
    cpu = cpu_s() - cpu
    how = "alone" if batcher is None else f"{args.batch} to a window"
    print(f"replies as the probe hears them (TTS {args.reply_wpm} wpm, gap "
          f"{args.reply_gap * 10} ms, beam {audio.TRANSCRIBE_BEAM}, window "
          f"{audio.WINDOW_S:g} s, {how}): "
          f"{args.repeats} x {len(questions)}, "
          f"{time.perf_counter() - started:.0f} s, {cpu / max(1, total):.3f} CPU-s a reply")
    if batcher is not None:
        batcher.close()
        print(f"batches: {batcher.counts}")
    for op in by_op:
        print(f"{op:<12} {by_op[op]:>9} {op_wrong[op]:>8} "
              f"{100 * op_wrong[op] / by_op[op]:>6.2f}%")
    print(f"{'all':<12} {total:>9} {len(wrong):>8} {100 * len(wrong) / max(1, total):>6.2f}%")
    for text, heard in wrong:
        print(f"  {text!r:<24} -> {heard!r}")


def heard_operands(transcript: str) -> tuple[float | None, str | None, float | None]:
    return heard_question(transcript) or (None, None, None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("LKCHAOS_WHISPER_URL",
                                                        "http://127.0.0.1:28000"))
    parser.add_argument("--repeats", type=int, default=3, help="variations per question")
    parser.add_argument("--prompt", default="agent",
                        help="'agent' (the agent's vocabulary hint), 'none', or a text")
    parser.add_argument("--bitrate", type=int, default=24000, help="Opus bit rate, bit/s")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--ops", default=",".join(OPERATIONS))
    parser.add_argument("--voice", default=audio.VOICE, help="to try another espeak-ng voice")
    parser.add_argument("--wpm", type=int, default=audio.WORDS_PER_MINUTE,
                        help="to try another speaking rate")
    parser.add_argument("--gap", type=int, default=audio.WORD_GAP_10MS,
                        help="to try another gap between words (10 ms units)")
    parser.add_argument("--replies", action="store_true",
                        help="measure instead how the probe's own Whisper hears the answers")
    parser.add_argument("--phrase", default=None,
                        help="to try another phrasing, e.g. 'What is, {a} {op} {b}?'")
    parser.add_argument("--reply-wpm", type=int, default=REPLY_WPM)
    parser.add_argument("--reply-gap", type=int, default=REPLY_GAP)
    parser.add_argument("--batch", type=int, default=1,
                        help="--replies: transcribe this many replies to one Whisper window, "
                             "as the load judge does (1: each alone, as the probe does)")
    parser.add_argument("--beam", type=int, default=audio.TRANSCRIBE_BEAM,
                        help="beam width of the probe's own transcription (--replies)")
    parser.add_argument("--window", type=float, default=audio.WINDOW_S,
                        help="--replies: seconds of audio Whisper's encoder reads for a reply "
                             "that fits in them (30: Whisper's own window)")
    args = parser.parse_args()
    audio.TRANSCRIBE_BEAM = args.beam
    audio.WINDOW_S = args.window
    audio.WORDS_PER_MINUTE, audio.WORD_GAP_10MS = args.wpm, args.gap
    if not 1 <= args.repeats <= 50:
        parser.error("--repeats must be from 1 to 50")
    prompt = {"agent": DEFAULT_STT_PROMPT, "none": ""}.get(args.prompt, args.prompt)
    rng = random.Random(args.seed)
    ops = [op for op in args.ops.split(",") if op]
    questions = [
        (a, op, b) for op in ops
        for a in range(OPERAND_MIN, OPERAND_MAX + 1)
        for b in range(OPERAND_MIN, OPERAND_MAX + 1)
        if op != "minus" or a >= b
    ]  # fmt: skip
    if args.replies:
        replies(args, questions)
        return
    seen: collections.Counter[str] = collections.Counter()
    missed: collections.Counter[str] = collections.Counter()
    by_op: collections.Counter[str] = collections.Counter()
    op_missed: collections.Counter[str] = collections.Counter()
    wrong: list[tuple[str, str]] = []
    took_ms: list[float] = []
    started = time.perf_counter()
    with httpx.Client() as client:
        for _ in range(args.repeats):
            for a, op, b in questions:
                question = question_text(a, op, b)
                if args.phrase:
                    question = args.phrase.format(a=spoken(a), op=op, b=spoken(b))
                wav = utterance(question, rng, args.bitrate, args.voice)
                text = transcribe(client, args.url, wav, prompt, took_ms)
                ha, hop, hb = heard_operands(text)
                by_op[op] += 1
                seen[spoken(a)] += 1
                seen[spoken(b)] += 1
                if (ha, hop, hb) == (a, {"plus": "+", "minus": "-", "times": "*"}[op], b):
                    continue
                op_missed[op] += 1
                wrong.append((question, text))
                if ha != a:
                    missed[spoken(a)] += 1
                if hb != b:
                    missed[spoken(b)] += 1
    elapsed = time.perf_counter() - started
    total = sum(by_op.values())
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}")
    print(f"voice {args.voice}, {audio.WORDS_PER_MINUTE} wpm, word gap "
          f"{audio.WORD_GAP_10MS * 10} ms; Opus {args.bitrate} bit/s; {AGENT_RATE} Hz; "
          f"prompt {args.prompt!r}; {args.repeats} variations of {len(questions)} questions; "
          f"{elapsed:.0f} s")
    if took_ms:
        print(f"Whisper's own time a question (X-Processing-Ms): p50 "
              f"{percentile(took_ms, 50):.0f} ms, p95 {percentile(took_ms, 95):.0f} ms, "
              f"mean {sum(took_ms) / len(took_ms):.0f} ms")
    print(f"\n{'number word':<12} {'operands':>8} {'misheard':>8} {'rate':>7}")
    for n in range(OPERAND_MIN, OPERAND_MAX + 1):
        word = spoken(n)
        print(f"{word:<12} {seen[word]:>8} {missed[word]:>8} "
              f"{100 * missed[word] / max(1, seen[word]):>6.2f}%")
    operands = sum(seen.values())
    print(f"{'all':<12} {operands:>8} {sum(missed.values()):>8} "
          f"{100 * sum(missed.values()) / max(1, operands):>6.2f}%")
    print(f"\n{'operation':<12} {'questions':>9} {'misheard':>8} {'rate':>7}")
    for op in ops:
        print(f"{op:<12} {by_op[op]:>9} {op_missed[op]:>8} "
              f"{100 * op_missed[op] / max(1, by_op[op]):>6.2f}%")
    print(f"{'all':<12} {total:>9} {len(wrong):>8} {100 * len(wrong) / max(1, total):>6.2f}%")
    if wrong:
        print("\nmisheard:")
        for question, text in wrong:
            print(f"  {question!r:<34} -> {text!r}")


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    os._exit(0)  # the LiveKit SDK's native runtime can abort at interpreter teardown
