"""Ctrl-C (or SIGTERM) while an activity runs ends its ``pauses.after`` at once.

Chaos Toolkit's library (chaostoolkit-lib 1.44, ``chaoslib.activity.execute_activity``)
sleeps an activity's ``pauses.after`` in the ``finally`` clause around the activity. A
``KeyboardInterrupt`` raised while the activity itself runs (Ctrl-C while a fault is being
injected and verified, which takes about a second) therefore waits out the whole pause
before it reaches the run: the experiment's fault window. Measured on a game day entry with
a 60 s window: SIGINT during the injection, rollbacks 60 s later; SIGINT a second later,
during the pause itself, rollbacks at once. Every shipped experiment expresses its fault
window as the injecting action's ``pauses.after``, so a person's Ctrl-C would leave the fault
in effect for up to its window while the run looked hung.

:func:`install` replaces the ``time`` module that ``chaoslib.activity`` sees with
:class:`PauseClock`, whose ``sleep`` returns at once when an exception is propagating
through the frame that called it (the activity was interrupted, or a control raised), and
otherwise sleeps as before. A pause after an activity that failed (``ActivityFailed`` is
caught by chaoslib before its ``finally``), a rollback's pause after an interrupted method,
and every other pause are unchanged. The safety control installs it when a run starts.
"""

from __future__ import annotations

import logging
import sys
import time
from types import FrameType, TracebackType
from typing import Any

logger = logging.getLogger("chaostoolkit")


class PauseClock:
    """The ``time`` module, but for a ``sleep`` that an exception propagating through its
    caller's frame skips (see the module docstring). Every other attribute is ``time``'s."""

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    def sleep(self, seconds: float) -> None:
        """``time.sleep(seconds)``, unless the caller is unwinding from an exception."""
        exc = sys.exc_info()[1]
        if exc is not None and _passes_through(exc.__traceback__, sys._getframe(1)):
            logger.info(f"{type(exc).__name__} during the activity: its pause of "
                        f"{seconds}s is skipped")  # fmt: skip
            return
        time.sleep(seconds)


def _passes_through(tb: TracebackType | None, frame: FrameType) -> bool:
    """Whether the traceback ``tb`` holds ``frame``: the exception is unwinding through it."""
    while tb is not None:
        if tb.tb_frame is frame:
            return True
        tb = tb.tb_next
    return False


def install() -> bool:
    """Give ``chaoslib.activity`` a :class:`PauseClock` (idempotent). Returns False, and
    changes nothing, when that module no longer sleeps through a module-level ``time``
    (another chaostoolkit-lib version): its pauses are then as the library makes them."""
    from chaoslib import activity

    current = getattr(activity, "time", None)
    if isinstance(current, PauseClock):
        return True
    if current is not time:
        logger.debug("chaoslib.activity has no module-level time: pauses left as they are")
        return False
    activity.time = PauseClock()
    return True
