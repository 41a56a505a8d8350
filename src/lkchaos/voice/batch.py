"""Many short replies transcribed in one Whisper window, for the load generator's judge.

Whisper's encoder reads a whole window whatever the audio's length (faster-whisper pads
shorter audio to it: 30 s, or :data:`lkchaos.voice.audio.WINDOW_S` for a reply alone): of
the 0.8 CPU-second a 3 s reply cost alone in the 30 s window, 0.6 was the encoder
(``BENCHMARKS.md``, "Generator CPU"; 0.5 CPU-s alone in the 10 s window against about 0.2
six to a window, "Mishearing" and "Whisper's window"). A load run's sampled replies are
therefore laid end to end, :data:`GAP_S` of silence apart, up to :data:`WINDOW_S`,
transcribed once with word timestamps, and each word given back to the reply it was spoken
in. A reply whose words
cannot be told apart from its neighbours' (a word in a gap, or none at all) is transcribed
alone, as before, so a batch never costs a verdict: at worst it costs its own window.
A closing word follows the last reply (``closing``): Whisper's reading stops once it reaches
it, before faster-whisper would read the silence after the last word again as a window of
its own (see :func:`lkchaos.voice.audio.transcribe_words`).

:class:`Batcher` queues replies from any thread and transcribes them on one thread of its
own: as many as fit in a window, once the queue holds more than one window, the oldest has
waited :data:`WAIT_S`, or :meth:`flush` is called.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

__all__ = ["GAP_S", "WAIT_S", "WINDOW_S", "Batcher", "Word", "split_words"]

#: Seconds of audio in one batch, gaps included: under Whisper's 30 s window, so the batch is
#: one window (a longer one would be cut in two, and a reply with it).
WINDOW_S = 28.0
#: Silence between two replies (seconds): Whisper's word times are off by a few tenths at
#: most, so a word is given to a reply when it starts within :data:`SLACK_S` of it.
GAP_S = 1.2
SLACK_S = 0.55
#: Longest a queued reply waits for others before its batch is transcribed (seconds).
WAIT_S = 30.0

#: A word as Whisper timed it: ``(start_s, end_s, text)`` from the batch's start.
Word = tuple[float, float, str]


def split_words(words: Sequence[Word], spans: Sequence[tuple[float, float]],
                slack_s: float = SLACK_S) -> list[str | None]:  # fmt: skip
    """Each span's text from a batch's ``words``: ``spans`` are the replies' ``(start_s,
    end_s)`` in the batch, in order and apart. A word belongs to the span it starts in, give
    or take ``slack_s``, if it ends before the next span starts (again give or take
    ``slack_s``): Whisper stretches a sentence's last word into the silence after it. A word
    no span holds (it starts in a gap, or runs into the next reply) makes the texts of the
    spans on either side of it None (they must be transcribed alone), as does a span with
    no word."""
    texts: list[list[str]] = [[] for _ in spans]
    unsure: set[int] = set()
    nexts = [s for s, _e in spans[1:]] + [math.inf]
    for start, end, text in words:
        holders = [
            i for i, (s, e) in enumerate(spans)
            if s - slack_s <= start <= e + slack_s and end <= nexts[i] + slack_s
        ]  # fmt: skip
        if len(holders) == 1:
            texts[holders[0]].append(text)
            continue
        # In a gap, or across an edge: the replies on either side of it.
        before = [i for i, (s, _e) in enumerate(spans) if s <= end]
        after = [i for i, (_s, e) in enumerate(spans) if e >= start]
        unsure.update(before[-1:] + after[:1])
    return [None if i in unsure or not t else "".join(t).strip() for i, t in enumerate(texts)]


@dataclass
class _Reply:
    pcm: Any
    duration_s: float
    queued_at: float
    future: Future[str] = field(default_factory=Future)


class Batcher:
    """Replies queued from any thread, transcribed in batches on a thread of its own.

    ``transcribe_words(audio, until_s=...)`` returns a batch's :data:`Word` list (``until_s``
    given with ``closing`` only: where the closing word's span starts, less the slack),
    ``transcribe_one(audio)`` one reply's text; both take int16 audio at ``rate`` Hz (48 kHz:
    ``lkchaos.voice.audio``). ``closing``: audio laid after each batch's last reply (a word
    Whisper hears reliably), whose words are dropped. :meth:`submit` returns a future of the
    reply's text (its exception: the transcription's).
    """

    def __init__(
        self,
        transcribe_words: Callable[..., list[Word]],
        transcribe_one: Callable[[Any], str],
        rate: int = 48000,
        window_s: float = WINDOW_S,
        gap_s: float = GAP_S,
        wait_s: float = WAIT_S,
        closing: Any = None,
    ) -> None:
        import numpy as np

        self._words, self._one = transcribe_words, transcribe_one
        self._closing = None if closing is None else np.asarray(closing, dtype=np.int16)
        self.rate, self.gap_s, self.wait_s = rate, gap_s, wait_s
        #: The replies' share of a window: the closing word and its gap are the rest.
        self.window_s = window_s - (0.0 if closing is None else gap_s + len(closing) / rate)
        self._queue: list[_Reply] = []
        self._changed = threading.Condition()
        self._flush = False
        self._closed = False
        #: Replies transcribed, batches run, and replies a batch had to transcribe alone.
        self.counts = {"replies": 0, "batches": 0, "alone": 0}
        self._thread = threading.Thread(target=self._run, name="lkchaos-batcher", daemon=True)
        self._thread.start()

    def submit(self, pcm: Any) -> Future[str]:
        """Queue one reply (a 1-D int16 array at ``rate``); its text comes in the future."""
        reply = _Reply(pcm, len(pcm) / self.rate, time.monotonic())
        with self._changed:
            if self._closed:
                raise RuntimeError("the batcher is closed")
            self._queue.append(reply)
            self._changed.notify_all()
        return reply.future

    def flush(self) -> None:
        """Transcribe what is queued now instead of waiting for more."""
        with self._changed:
            self._flush = True
            self._changed.notify_all()

    def close(self, timeout: float = 120.0) -> None:
        """Transcribe what is queued, then stop the thread (within ``timeout`` seconds)."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        self._thread.join(timeout)

    # -- internals ---------------------------------------------------------------------------
    def _take(self) -> list[_Reply] | None:
        """The next batch, once it is due; None when closed and empty."""
        with self._changed:
            while True:
                if not self._queue:
                    if self._closed:
                        return None
                    self._flush = False
                    self._changed.wait()
                    continue
                waited = time.monotonic() - self._queue[0].queued_at
                total = sum(r.duration_s for r in self._queue) + self.gap_s * (
                    len(self._queue) - 1)
                if self._closed or self._flush or total > self.window_s or (
                        waited >= self.wait_s):  # fmt: skip
                    break
                self._changed.wait(self.wait_s - waited)
            batch: list[_Reply] = []
            used = 0.0
            for reply in self._queue:
                need = reply.duration_s + (self.gap_s if batch else 0.0)
                if batch and used + need > self.window_s:
                    break
                batch.append(reply)
                used += need
            del self._queue[: len(batch)]
            if not self._queue:
                self._flush = False
            return batch

    def _run(self) -> None:
        while (batch := self._take()) is not None:
            try:
                self._transcribe(batch)
            except BaseException as exc:  # every waiting reply hears why
                for reply in batch:
                    if not reply.future.done():
                        reply.future.set_exception(exc)

    def _transcribe(self, batch: list[_Reply]) -> None:
        import numpy as np

        self.counts["replies"] += len(batch)
        if len(batch) == 1:  # one reply, or one longer than a window (_take)
            self._alone(batch[0])
            return
        self.counts["batches"] += 1
        gap = np.zeros(int(self.gap_s * self.rate), dtype=np.int16)
        parts, spans, at = [], [], 0.0
        for i, reply in enumerate(batch):
            if i:
                parts.append(gap)
                at += len(gap) / self.rate
            parts.append(np.asarray(reply.pcm, dtype=np.int16))
            spans.append((at, at + reply.duration_s))
            at += reply.duration_s
        if self._closing is None:
            words = self._words(np.concatenate(parts))
        else:
            closing_at = at + len(gap) / self.rate
            parts += [gap, self._closing]
            spans.append((closing_at, closing_at + len(self._closing) / self.rate))
            words = self._words(np.concatenate(parts), until_s=closing_at - SLACK_S)
        texts = split_words(words, spans)[: len(batch)]  # the closing word's text dropped
        for reply, text in zip(batch, texts, strict=True):
            if text is None:
                self.counts["alone"] += 1
                self._alone(reply)
            else:
                reply.future.set_result(text)

    def _alone(self, reply: _Reply) -> None:
        try:
            reply.future.set_result(self._one(reply.pcm))
        except Exception as exc:
            reply.future.set_exception(exc)
