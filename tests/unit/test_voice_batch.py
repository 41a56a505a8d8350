"""Batched transcription of the load judge's sampled replies (:mod:`lkchaos.voice.batch`).

The transcribers here are stand-ins that read the audio they are given: each reply is a run
of one sample value (its number), so a batch's "words" are where those runs are, timed as
Whisper times words. Whisper itself, batched, is measured against replies one by one in
``bench/mishearing.py --replies --batch``.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from lkchaos.voice import batch
from lkchaos.voice.batch import Batcher, split_words

RATE = 1000  # samples per second: small arrays, times easy to read


def reply(number: int, seconds: float) -> np.ndarray:
    return np.full(int(seconds * RATE), number, dtype=np.int16)


class Hearing:
    """Transcribers over the test's audio: a word per run of one value, said as ``r<value>``."""

    def __init__(self, shift_s: float = 0.0, extra: list[batch.Word] | None = None,
                 fail: Exception | None = None) -> None:  # fmt: skip
        self.shift_s, self.extra, self.fail = shift_s, extra or [], fail
        self.batches: list[float] = []  # seconds of audio in each batch
        self.until: list[float | None] = []  # where each batch's reading was to stop
        self.alone: list[int] = []  # the values transcribed one by one
        self.lock = threading.Lock()

    def words(self, pcm: np.ndarray, until_s: float | None = None) -> list[batch.Word]:
        with self.lock:
            self.batches.append(len(pcm) / RATE)
            self.until.append(until_s)
        if self.fail:
            raise self.fail
        found: list[batch.Word] = []
        values = np.asarray(pcm)
        edges = np.flatnonzero(np.diff(values) != 0) + 1
        for start, end in zip(np.r_[0, edges], np.r_[edges, len(values)], strict=True):
            if values[start]:
                found.append((start / RATE + self.shift_s, end / RATE + self.shift_s,
                              f" r{values[start]}"))  # fmt: skip
        return sorted(found + self.extra)

    def one(self, pcm: np.ndarray) -> str:
        with self.lock:
            self.alone.append(int(pcm[0]))
        return f"r{int(pcm[0])}"


def batcher(hearing: Hearing, **knobs: float) -> Batcher:
    return Batcher(hearing.words, hearing.one, rate=RATE, **knobs)  # type: ignore[arg-type]


# split_words -----------------------------------------------------------------------------


def test_each_word_goes_to_the_reply_it_was_spoken_in() -> None:
    spans = [(0.0, 2.0), (3.2, 5.0), (6.2, 9.0)]
    words = [(0.1, 0.5, " 7"), (0.6, 2.9, " times"),  # stretched into the silence after it
             (3.0, 3.6, " 4"),  # 0.2 s early: within the slack
             (6.3, 8.9, " 12"), (8.95, 9.3, " is")]  # fmt: skip
    assert split_words(words, spans) == ["7 times", "4", "12 is"]


def test_a_word_in_a_gap_leaves_both_neighbours_to_be_heard_alone() -> None:
    spans = [(0.0, 2.0), (3.2, 5.0), (6.2, 9.0)]
    words = [(0.1, 0.5, " 7"), (2.6, 2.8, " thank"), (3.3, 4.0, " 4"), (6.3, 7.0, " 9")]
    assert split_words(words, spans) == [None, None, "9"]


def test_a_word_across_a_replys_edge_leaves_it_and_its_neighbour_alone() -> None:
    spans = [(0.0, 2.0), (3.2, 5.0), (6.2, 9.0)]
    words = [(0.1, 0.5, " 7"), (4.8, 7.0, " fifty"), (3.3, 4.0, " 4")]
    assert split_words(words, spans) == ["7", None, None]


def test_a_reply_with_no_word_is_heard_alone() -> None:
    assert split_words([(0.1, 0.5, " 7")], [(0.0, 2.0), (3.2, 5.0)]) == ["7", None]


# Batcher ---------------------------------------------------------------------------------


def test_replies_queued_together_are_transcribed_in_one_window() -> None:
    hearing = Hearing(shift_s=0.2)  # Whisper's times, a little late
    b = batcher(hearing, wait_s=30)
    futures = [b.submit(reply(n, 2.5)) for n in (1, 2, 3)]
    b.flush()
    assert [f.result(5) for f in futures] == ["r1", "r2", "r3"]
    b.close()
    # One window: three replies and two gaps of silence between them.
    assert hearing.batches == [pytest.approx(3 * 2.5 + 2 * batch.GAP_S)]
    assert hearing.alone == [] and b.counts == {"replies": 3, "batches": 1, "alone": 0}


def test_a_closing_word_ends_each_window_and_is_never_a_replys() -> None:
    hearing = Hearing()
    b = batcher(hearing, wait_s=30, window_s=12, closing=reply(99, 0.5))
    futures = [b.submit(reply(n, 3.0)) for n in (1, 2, 3)]  # 3 + 1.2 + 3 + 1.2 + 0.5 fit
    b.flush()
    assert [f.result(5) for f in futures] == ["r1", "r2", "r3"]
    b.close()
    # Two replies and the closing word in the first window (three would need 13.1 s).
    assert hearing.batches == [pytest.approx(3 + 1.2 + 3 + 1.2 + 0.5)]
    assert hearing.until == [pytest.approx(3 + 1.2 + 3 + 1.2 - batch.SLACK_S)]
    assert hearing.alone == [3]


def test_a_window_holds_no_more_than_its_seconds() -> None:
    hearing = Hearing()
    b = batcher(hearing, wait_s=30, window_s=10)
    futures = [b.submit(reply(n, 3.0)) for n in range(1, 6)]  # 15 s of replies
    b.flush()
    assert [f.result(5) for f in futures] == [f"r{n}" for n in range(1, 6)]
    b.close()
    assert all(seconds <= 10 for seconds in hearing.batches)
    assert len(hearing.batches) >= 2 and b.counts["replies"] == 5


def test_a_window_is_transcribed_once_the_queue_overflows_it() -> None:
    hearing = Hearing()
    b = batcher(hearing, wait_s=60, window_s=8)
    futures = [b.submit(reply(n, 3.0)) for n in (1, 2, 3)]  # two fit in 8 s, not three
    assert [f.result(5) for f in futures[:2]] == ["r1", "r2"]  # without a flush
    time.sleep(0.2)
    assert not futures[2].done()  # waits for others, or its bound
    b.flush()
    assert futures[2].result(5) == "r3"
    b.close()
    assert hearing.batches == [pytest.approx(7.2)] and hearing.alone == [3]


def test_a_reply_waits_no_longer_than_its_bound_for_others() -> None:
    hearing = Hearing()
    b = batcher(hearing, wait_s=0.3)
    started = time.monotonic()
    assert b.submit(reply(4, 1.0)).result(5) == "r4"  # no flush, no other reply
    waited = time.monotonic() - started
    b.close()
    assert waited >= 0.3
    assert hearing.batches == [] and hearing.alone == [4]  # alone: one reply needs no window


def test_replies_whose_words_cannot_be_told_apart_are_heard_alone() -> None:
    hearing = Hearing(extra=[(3.1, 3.3, " thank")])  # in the gap after the first reply
    b = batcher(hearing, wait_s=30)
    futures = [b.submit(reply(n, 2.5)) for n in (1, 2, 3)]
    b.flush()
    assert [f.result(5) for f in futures] == ["r1", "r2", "r3"]
    b.close()
    assert sorted(hearing.alone) == [1, 2] and b.counts["alone"] == 2


def test_a_failed_transcription_reaches_every_reply_of_its_batch() -> None:
    hearing = Hearing(fail=RuntimeError("model gone"))
    b = batcher(hearing, wait_s=30)
    futures = [b.submit(reply(n, 1.0)) for n in (1, 2)]
    b.flush()
    for future in futures:
        with pytest.raises(RuntimeError, match="model gone"):
            future.result(5)
    b.close()


def test_closing_transcribes_what_is_queued_then_refuses_more() -> None:
    hearing = Hearing()
    b = batcher(hearing, wait_s=60)
    futures = [b.submit(reply(n, 1.0)) for n in (5, 6)]
    b.close()
    assert [f.result(0) for f in futures] == ["r5", "r6"]
    with pytest.raises(RuntimeError, match="closed"):
        b.submit(reply(7, 1.0))


# With Whisper ------------------------------------------------------------------------------


def test_whisper_hears_each_reply_of_a_window_and_nothing_after_it() -> None:
    from lkchaos.voice import audio
    from lkchaos.voice.questions import check_reply

    said = ["7 times 8 is 56.", "4 plus 9 is 13.", "12 minus 5 is 7."]
    b = Batcher(audio.transcribe_words, audio.transcribe, closing=audio.speech("Goodbye."))
    futures = [b.submit(audio.speech(text)) for text in said]
    b.flush()
    heard = [f.result(120) for f in futures]
    b.close()
    for text, transcript in zip(said, heard, strict=True):
        assert check_reply(transcript, [text.rstrip(".").rsplit(" ", 1)[1]]).ok, heard
    assert b.counts == {"replies": 3, "batches": 1, "alone": 0}, heard
    # The words of one window, up to the closing word: the silence after it is never read.
    spoken = audio.speech(said[0])
    window = np.concatenate([spoken, np.zeros(48000, dtype=np.int16)])
    words = audio.transcribe_words(window)
    assert [w for _s, _e, w in words] == [" 7", " times", " 8", " is", " 56."], words
    words = audio.transcribe_words(window, until_s=len(spoken) / audio.RATE - 1.0)
    assert [w for _s, _e, w in words][-1] == " 56.", words
