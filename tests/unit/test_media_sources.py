"""Closing a LiveKit media source and feeding it frames are bounded, whatever the native side
does: a real source closes at once; one whose close or capture never returns (the stall
livekit/rust-sdks#1289 describes, seen here as a capture thread spinning for minutes) is left
behind after the bound instead of holding the process."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from livekit import rtc

from lkchaos.livekit.background import SourceStalled, capture, close_source


def test_a_real_source_closes_at_once() -> None:
    async def go() -> tuple[bool, float]:
        source = rtc.AudioSource(48000, 1)
        await capture(source, rtc.AudioFrame(bytes(960), 48000, 1, 480))
        began = time.monotonic()
        return await close_source(source), time.monotonic() - began

    closed, took = asyncio.run(go())
    assert closed and took < 2.0


class _Stuck:
    """A source whose native side never returns (the stall, as the SDK's calls see it)."""

    def __init__(self) -> None:
        self.release = threading.Event()

    async def aclose(self) -> None:
        self.release.wait(30)  # blocks its thread, as the SDK's dispose does

    async def capture_frame(self, _frame: Any) -> None:
        await asyncio.sleep(30)


def test_a_close_that_never_returns_is_left_behind_after_its_bound() -> None:
    stuck = _Stuck()
    began = time.monotonic()
    closed = asyncio.run(close_source(stuck, timeout_s=0.3))  # type: ignore[arg-type]
    stuck.release.set()
    assert closed is False and time.monotonic() - began < 2.0


def test_a_capture_that_never_returns_raises_source_stalled() -> None:
    with pytest.raises(SourceStalled, match="took no frame for 0.2 s"):
        asyncio.run(capture(_Stuck(), object(), timeout_s=0.2))  # type: ignore[arg-type]


class _Counted:
    """A source whose close takes 0.1 s and counts the closes running at once."""

    lock = threading.Lock()
    running = 0
    most = 0

    async def aclose(self) -> None:
        with _Counted.lock:
            _Counted.running += 1
            _Counted.most = max(_Counted.most, _Counted.running)
        time.sleep(0.1)  # in the native call, as the SDK's dispose is
        with _Counted.lock:
            _Counted.running -= 1


def test_closes_run_one_at_a_time_and_a_stalled_one_holds_those_after_it() -> None:
    """Two native closes at once crashed a process: a stalled close makes the next wait (and
    give up at its bound), and once it returns the next one runs."""
    stuck, later = _Stuck(), _Counted()

    async def go() -> tuple[bool, bool, list[bool]]:
        first = await close_source(stuck, timeout_s=0.2)  # type: ignore[arg-type]
        behind = await close_source(later, timeout_s=0.3)  # type: ignore[arg-type]
        stuck.release.set()
        many = await asyncio.gather(*(close_source(_Counted(), timeout_s=5)  # type: ignore[arg-type]
                                      for _ in range(4)))  # fmt: skip
        return first, behind, list(many)

    first, behind, many = asyncio.run(go())
    assert first is False and behind is False  # the second waited behind the stalled one
    assert many == [True] * 4 and _Counted.most == 1  # never two at once
