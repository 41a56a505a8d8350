"""One experiment at a time per stack: a lock file in the stack's state folder.

The file names the holder (pid, experiment title, start time). A lock whose process is gone
(a runner killed with ``kill -9``) is stale and is taken over, with a note.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass
from pathlib import Path

from lkchaos.errors import LkChaosError


class LockHeld(LkChaosError):
    """Another experiment is running against this stack."""


@dataclass(frozen=True)
class Holder:
    pid: int
    title: str
    started: str


def lock_path(state_dir: str | Path) -> Path:
    return Path(state_dir) / "run.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read(path: Path) -> Holder | None:
    try:
        data = json.loads(path.read_text())
        return Holder(int(data["pid"]), str(data["title"]), str(data["started"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def holder(state_dir: str | Path) -> Holder | None:
    """Who holds the lock, if a live process does."""
    current = _read(lock_path(state_dir))
    return current if current is not None and _alive(current.pid) else None


def acquire(state_dir: str | Path, title: str) -> str | None:
    """Take the lock for this process; returns a note if a stale lock was taken over.

    Raises LockHeld naming the running experiment when a live process holds it.
    """
    path = lock_path(state_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps({
        "pid": os.getpid(), "title": title,
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    })
    note = None
    for _ in range(2):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            current = holder(state_dir)
            if current is not None and current.pid == os.getpid():
                path.unlink(missing_ok=True)  # this process again: refresh the title
                continue
            if current is not None:
                raise LockHeld(
                    f"another experiment is running against this stack: {current.title!r} "
                    f"(pid {current.pid}, since {current.started}). Wait for it to end; if "
                    "that process is gone, run `lkchaos recover`."
                ) from None
            note = "took over a stale lock left by a runner that is gone"
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as handle:
            handle.write(body)
        return note
    raise LockHeld(f"could not take the lock {path}: another runner raced for it")


def release(state_dir: str | Path) -> None:
    """Drop the lock if this process holds it."""
    path = lock_path(state_dir)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    if data.get("pid") == os.getpid():
        path.unlink(missing_ok=True)


def force_release(state_dir: str | Path) -> Holder | None:
    """Remove the lock whoever holds it (recovery after a crash); returns the old holder."""
    path = lock_path(state_dir)
    old = _read(path)
    path.unlink(missing_ok=True)
    return old
