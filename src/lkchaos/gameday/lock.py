"""One game day at a time per deployment: an exclusive ``flock`` on ``gameday.lock`` in the
run folder of the target in use (``Settings.run_dir``: the state folder for the reference
stack, ``targets/<file>-<hash>/`` in it for another target file), so game days on two
deployments driven from one checkout run side by side.

The holder writes its game day name, pid and start time into the file; the kernel releases
the lock when the process ends, however it ends, so a stale file never blocks a new game day.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from lkchaos.errors import LkChaosError


class GamedayRunning(LkChaosError):
    """Another game day holds the lock; ``holder`` says which (None if it could not be read)."""

    def __init__(self, holder: Holder | None) -> None:
        self.holder = holder
        who = str(holder) if holder else "another game day"
        super().__init__(f"{who} is running against this deployment; wait for it to end "
                         "(or stop it with Ctrl-C / SIGTERM) and start this one again")


@dataclass(frozen=True)
class Holder:
    gameday: str
    pid: int
    started: str

    def __str__(self) -> str:
        return f"game day {self.gameday!r} (pid {self.pid}, since {self.started})"


def lock_path(state_dir: str | Path) -> Path:
    return Path(state_dir) / "gameday.lock"


def _parse(text: str) -> Holder | None:
    try:
        data = json.loads(text)
        return Holder(str(data["gameday"]), int(data["pid"]), str(data["started"]))
    except (ValueError, KeyError, TypeError):
        return None


def holder(state_dir: str | Path) -> Holder | None:
    """The running game day, or None when the lock is free (probed without taking it)."""
    path = lock_path(state_dir)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _parse(path.read_text(errors="replace")) or Holder("unknown", 0, "?")
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


class GamedayLock:
    """``with GamedayLock(state_dir, name):`` holds the lock; raises :class:`GamedayRunning`
    at once (no waiting) when another game day holds it."""

    def __init__(self, state_dir: str | Path, gameday: str) -> None:
        self.path = lock_path(state_dir)
        self.gameday = gameday
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise GamedayRunning(_parse(self.path.read_text(errors="replace"))) from None
        started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        body = json.dumps({"gameday": self.gameday, "pid": os.getpid(), "started": started})
        os.ftruncate(fd, 0)
        os.pwrite(fd, body.encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> GamedayLock:
        self.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:  # fmt: skip
        self.release()
