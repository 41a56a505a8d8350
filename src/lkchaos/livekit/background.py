"""LiveKit rooms in this process, and an exit that cannot abort the process.

The LiveKit SDK runs WebRTC in a native runtime whose threads call back into Python. It
disposes that runtime in an ``atexit`` hook registered when its client is first created. Two
things can still abort a process at exit ("panic in a function that cannot unwind", status
134, after every test passed):

- a room still connected when the runtime is disposed: held participants and held calls
  outlive the activity that started them, in a loop of their own (:class:`BackgroundLoop`);
- a callback already under way when the dispose returns: once the interpreter finalises, a
  native thread that asks for the GIL is ended by Python, which the runtime cannot survive.

Rooms on several event loops in several threads at once is a third way: the runtime has one
client per process and delivers its events into every subscribing loop from its own threads
(livekit/python-sdks#627 reports aborts from that race; closing a loop with ``asyncio.run``
while its rooms' handles live on was another, #218). A validation run that joined rooms in
three checks at once, each in ``asyncio.run`` in a thread of its own, once ended with no
output in a fresh-clone CI run (not reproduced since: 110 rounds of three such loops at once
against a LiveKit server, idle and with both cores busy, all passed). Short-lived room work
from threads runs on this process's one rtc loop (:func:`run_rtc`), as the SDK is meant to be
used, never in an ``asyncio.run`` of its own.

So every room this package creates comes from :func:`new_room`, and every other use of the
runtime (the resampler a transcription uses) calls :func:`guard_exit` first: it registers one
exit hook *after* the SDK's (``atexit`` runs hooks last-registered first). At exit the hook leaves
every room held by a :class:`BackgroundLoop`, stops the loops, disposes the runtime itself
while the interpreter is whole, and waits :data:`SETTLE_S` for callbacks under way to return.
The SDK's own hook then finds the runtime disposed and does nothing.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import queue
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from livekit import rtc
from livekit.rtc._ffi_client import FfiClient

#: How long the exit hook waits for a loop's rooms to be left, then for its thread (seconds).
EXIT_TIMEOUT_S = 10.0
#: How long the exit hook waits after disposing the runtime for callbacks under way (seconds).
SETTLE_S = 0.5
#: How long closing a media source may take before it is left to close alone (seconds).
CLOSE_SOURCE_S = 5.0
#: How long an audio source may take to accept one frame (seconds): a frame of 10-50 ms into
#: a queue of at most a second.
CAPTURE_S = 3.0

T = TypeVar("T")
logger = logging.getLogger("lkchaos")

_loops: list[BackgroundLoop] = []
_guard = threading.Lock()
_hooked = False


def guard_exit() -> None:
    """Create the SDK's client (registering its exit hook) and then ours, once per process."""
    global _hooked
    with _guard:
        if _hooked:
            return
        FfiClient.instance  # noqa: B018 - the SDK's exit hook must be registered before ours
        atexit.register(_exit)
        _hooked = True


def new_room() -> rtc.Room:
    """A new :class:`livekit.rtc.Room`, with this process's exit guarded (:func:`guard_exit`)."""
    guard_exit()
    return rtc.Room()


class _Closer:
    """One daemon thread that closes media sources, one at a time, in the order asked: two
    native closes never run at once. A fresh-clone CI run crashed (a segmentation fault)
    when a second source's close started in a thread of its own while the first was still
    stalled in the SDK's dispose; a stalled close now holds the ones after it instead."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[Any, threading.Event]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def close(self, source: Any) -> threading.Event:
        """Queue ``source`` to be closed; the event is set once it was."""
        done = threading.Event()
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="lkchaos-close-source",
                                                daemon=True)  # fmt: skip
                self._thread.start()
        self._queue.put((source, done))
        return done

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        while True:
            source, done = self._queue.get()
            try:
                loop.run_until_complete(source.aclose())
            except Exception as exc:  # logged: the caller goes on either way
                logger.warning("closing a LiveKit media source failed: %s: %s",
                               type(exc).__name__, exc)  # fmt: skip
            finally:
                done.set()


_closer = _Closer()


async def close_source(source: rtc.AudioSource | rtc.VideoSource,
                       timeout_s: float = CLOSE_SOURCE_S) -> bool:  # fmt: skip
    """Close a media source's native handle without letting it hold this process: in this
    process's one closing thread (never two native closes at once), waited for at most
    ``timeout_s`` seconds. The SDK's close joins the source's capture thread, and that
    thread can stall spinning on a loaded machine (seen here at full CPU for minutes, the
    close never returning; livekit/rust-sdks#1289 bounds the capture for the same stall).
    True when it closed in time; else it is left to close later (after any close stalled
    before it), logged, and False returned."""
    done = _closer.close(source)
    waited = 0.0
    while not done.is_set() and waited < timeout_s:
        await asyncio.sleep(0.05)
        waited += 0.05
    if not done.is_set():
        logger.warning("a LiveKit media source did not close within %g s (a native capture "
                       "thread stalled); left to close later", timeout_s)  # fmt: skip
    return done.is_set()


async def capture(source: rtc.AudioSource, frame: rtc.AudioFrame,
                  timeout_s: float = CAPTURE_S) -> None:  # fmt: skip
    """``source.capture_frame(frame)``, bounded: raises :class:`SourceStalled` when the
    source has not taken the frame within ``timeout_s`` seconds (its native queue stopped
    draining: see :func:`close_source`). Not for a task that is cancelled from outside, such
    as a pump: on Python 3.11 ``asyncio.wait_for`` can swallow that cancellation."""
    try:
        await asyncio.wait_for(source.capture_frame(frame), timeout_s)
    except TimeoutError:
        raise SourceStalled(f"the audio source took no frame for {timeout_s:g} s: its native "
                            "capture stalled (a loaded machine?)") from None


class SourceStalled(RuntimeError):
    """A LiveKit audio source stopped taking frames (see :func:`capture`)."""


def _exit() -> None:
    with _guard:
        loops = list(_loops)
    for loop in loops:
        loop.close()
    try:
        FfiClient.instance._dispose()  # the SDK's own exit step, while the interpreter is whole
    except Exception as exc:
        logger.warning("disposing LiveKit's native runtime failed: %s: %s",
                       type(exc).__name__, exc)  # fmt: skip
    time.sleep(SETTLE_S)


class LoopClosed(RuntimeError):
    """The loop was stopped (the process is exiting); nothing more runs on it."""


class BackgroundLoop:
    """A named event loop in a daemon thread; at exit (before the SDK's runtime is disposed)
    ``on_exit()`` runs on it, bounded by :data:`EXIT_TIMEOUT_S`, and the loop stops."""

    def __init__(self, name: str, on_exit: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        guard_exit()
        self.name = name
        self.loop = asyncio.new_event_loop()
        self._on_exit = on_exit
        self._closed = False
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()
        with _guard:
            _loops.append(self)

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the loop; its future. Raises :class:`LoopClosed` (``coro``
        closed unrun) once the loop is stopped."""
        if self._closed:
            coro.close()
            raise LoopClosed(f"{self.name}: the process is exiting; nothing more runs")
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run ``coro`` on the loop and wait up to ``timeout`` seconds for its result.

        Raises :class:`LoopClosed` once the loop is stopped, ``TimeoutError`` past
        ``timeout``, or whatever ``coro`` raised."""
        return self.submit(coro).result(timeout)

    def close(self) -> None:
        """Run ``on_exit()``, then stop the loop and its thread (idempotent)."""
        if self._closed:
            return
        try:
            self.run(self._on_exit(), EXIT_TIMEOUT_S)
        except Exception as exc:  # exiting: say what was left, do not raise
            logger.warning("%s: leaving the rooms at exit failed: %s: %s",
                           self.name, type(exc).__name__, exc)  # fmt: skip
        self._closed = True
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(EXIT_TIMEOUT_S)


#: Seconds room work may run past its own bound (leaving its rooms, deleting them) before
#: :func:`run_rtc` cancels it: add it to the work's bound for ``timeout_s``.
LEAVE_SLACK_S = 15.0
#: This process's one loop for short-lived room work (:func:`run_rtc`), made when first used.
_rtc: BackgroundLoop | None = None
_rtc_lock = threading.Lock()
#: The work :func:`run_rtc` runs, as tasks on that loop (the rooms' own tasks are not in it).
_rtc_work: set[asyncio.Task[Any]] = set()


async def _tracked(coro: Coroutine[Any, Any, T]) -> T:
    task = asyncio.current_task()
    assert task is not None
    _rtc_work.add(task)
    try:
        return await coro
    finally:
        _rtc_work.discard(task)


async def _cancel_all() -> None:
    """At exit: cancel the work still running on the rtc loop, so its rooms are left (its own
    ``finally``) before the runtime is disposed. Only that work: a room's own tasks must
    live on for its ``disconnect()``, and work cancelled past its bound is leaving already."""
    tasks = list(_rtc_work)
    for task in tasks:
        if not task.cancelling():
            task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def run_rtc(coro: Coroutine[Any, Any, T], timeout_s: float) -> T:
    """Run ``coro`` (work that joins LiveKit rooms and leaves them) on this process's one rtc
    loop, from any thread, and return its result; coroutines from several threads run on
    it concurrently. Past ``timeout_s`` seconds the coroutine is cancelled (its ``finally``
    leaves its rooms) and ``TimeoutError`` raised; :class:`LoopClosed` once the process is
    exiting; whatever ``coro`` raised is raised. Never call it from a coroutine running on
    that loop."""
    global _rtc
    with _rtc_lock:
        if _rtc is None:
            _rtc = BackgroundLoop("lkchaos-rtc", _cancel_all)
        loop = _rtc
    try:
        future = loop.submit(_tracked(coro))
    except LoopClosed:
        coro.close()  # the wrapper was closed unrun, and with it never started this
        raise
    try:
        return future.result(timeout_s)
    except concurrent.futures.CancelledError:  # only the exit cancels from outside
        raise LoopClosed(f"{loop.name}: the process is exiting; the work was ended") from None
    except concurrent.futures.TimeoutError:
        if future.done():  # the coroutine's own TimeoutError
            raise
        future.cancel()
        raise TimeoutError(f"LiveKit room work did not finish in {timeout_s:g} s") from None
