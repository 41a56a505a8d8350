"""SIGINT and SIGTERM while a game day runs: stop it, forward once to the running child."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

#: Seconds between polls of a running child (and of an interrupted sleep).
POLL_S = 0.2


def interrupt(process: subprocess.Popen[bytes]) -> None:
    """SIGINT to a running child's process group, as Ctrl-C at a terminal would send it (its
    rollbacks and lkchaos's recovery follow); nothing when it has already exited."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGINT)
        except ProcessLookupError:
            pass


class Interrupts:
    """SIGINT and SIGTERM while the game day runs: the first stops it (and is forwarded once
    to the running child's process group); later ones say it is still rolling back."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self.say = say
        self.count = 0
        self.child: subprocess.Popen[bytes] | None = None
        self._previous: dict[int, Any] = {}

    @property
    def interrupted(self) -> bool:
        return self.count > 0

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        if self.count == 1:
            self.say(f"{signal.Signals(signum).name}: stopping the game day; the running "
                     "experiment is interrupted and plays its rollbacks")
            self.forward()
        else:
            self.say("still rolling back: waiting for the experiment's rollbacks and "
                     "lkchaos's recovery to finish")

    def forward(self) -> None:
        if self.child is not None:
            interrupt(self.child)

    def sleep(self, seconds: float) -> None:
        """Sleep, ending early when interrupted."""
        deadline = time.monotonic() + seconds
        while not self.interrupted and time.monotonic() < deadline:
            time.sleep(min(POLL_S, max(0.0, deadline - time.monotonic())))

    def __enter__(self) -> Interrupts:
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not the main thread: signals stay with the caller
                pass
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
