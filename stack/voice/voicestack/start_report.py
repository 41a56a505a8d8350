"""A start that hangs, diagnosed from the container's log: if the worker has not registered
with LiveKit some time after start-up, a warning and where each thread of the process is."""

from __future__ import annotations

import faulthandler
import logging
import sys
import threading
from pathlib import Path

log = logging.getLogger("voicestack.agent")


def report_if_unregistered(ready_file: Path, after_s: float) -> threading.Timer:
    """In ``after_s`` seconds, if ``ready_file`` (written on registration) is still missing,
    log a warning and write each thread's stack to stderr
    (:func:`faulthandler.dump_traceback`). It runs on a thread of its own, so an event loop
    that is blocked is reported too. Returns the started timer (a daemon)."""

    def report() -> None:
        if ready_file.exists():
            return
        log.warning("the worker has not registered with LiveKit %.0f s after start-up; "
                    "where each thread is follows", after_s)  # fmt: skip
        for handler in logging.getLogger().handlers:
            handler.flush()
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)

    timer = threading.Timer(after_s, report)
    timer.daemon = True
    timer.start()
    return timer
