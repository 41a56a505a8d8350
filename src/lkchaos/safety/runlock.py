"""One experiment at a time per stack: a lock file in the stack's state folder.

The runner holds an exclusive ``flock`` on ``run.lock`` for the whole run, so two runners
started at the same moment cannot both take it: the kernel grants the lock to one of them,
and releases it when its process ends, however it ends. The file names the holder (pid,
experiment title, start time). A file that names a process that is gone (a runner killed
with ``kill -9``) is stale and is taken over, with a note; one that names a live process is
respected even without a ``flock`` (a runner of an earlier lkchaos).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import time
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


#: Locks this process holds: lock file path -> open descriptor carrying the flock.
_held: dict[str, int] = {}


def lock_path(state_dir: str | Path) -> Path:
    return Path(state_dir) / "run.lock"


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a running process. A zombie (ended, not yet reaped by its parent:
    a runner killed by a CI job that never waited for it) is not: it holds no lock and never
    will run again."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no procfs (not Linux) or the process just ended
        return False
    # "pid (comm) state ...": comm may hold spaces and parentheses, the state follows the last ")".
    return stat[stat.rfind(")") + 2:stat.rfind(")") + 3] == "Z"


def _parse(text: str) -> Holder | None:
    try:
        data = json.loads(text)
        return Holder(int(data["pid"]), str(data["title"]), str(data["started"]))
    except (ValueError, KeyError, TypeError):
        return None


def _read(path: Path) -> Holder | None:
    try:
        return _parse(path.read_text())
    except OSError:
        return None


def _read_fd(fd: int) -> Holder | None:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return _parse(b"".join(chunks).decode(errors="replace"))


def _write_fd(fd: int, body: str) -> None:
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, body.encode())
    os.fsync(fd)


def _flocked_elsewhere(path: Path) -> bool:
    """True when another open file (another runner) holds the flock on ``path``."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops the shared lock just taken, if any
    return False


def held_here(state_dir: str | Path) -> bool:
    """True when this process holds the lock (an experiment of this process is running)."""
    return str(lock_path(state_dir)) in _held


def holder(state_dir: str | Path) -> Holder | None:
    """Who holds the lock, if a live process does."""
    path = lock_path(state_dir)
    current = _read(path)
    if str(path) in _held:
        return current or Holder(os.getpid(), "", "")
    if _flocked_elsewhere(path):
        return current or Holder(0, "(a runner taking the lock)", "")
    return current if current is not None and _alive(current.pid) else None


def _held_message(current: Holder | None) -> str:
    if current is None:
        return ("another runner is taking the lock on this stack right now. Wait for its "
                "experiment to end and try again.")
    return (f"another experiment is running against this stack: {current.title!r} "
            f"(pid {current.pid}, since {current.started}). Wait for it to end; if "
            "that process is gone, run `lkchaos recover`.")


def acquire(state_dir: str | Path, title: str) -> str | None:
    """Take the lock for this process and hold it until :func:`release` or the process ends;
    returns a note if a stale lock was taken over.

    Raises LockHeld naming the running experiment when another live process holds it.
    """
    path = lock_path(state_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps({
        "pid": os.getpid(), "title": title,
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    })
    key = str(path)
    if key in _held:  # this process again: refresh the title
        _write_fd(_held[key], body)
        return None
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + 0.5
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                current = _read(path)
                # The holder may be between taking the lock and naming itself: ask again.
                if current is None and time.monotonic() < deadline:
                    time.sleep(0.02)
                    continue
                raise LockHeld(_held_message(current)) from None
        previous = _read_fd(fd)
        note = None
        if previous is not None and previous.pid != os.getpid():
            if _alive(previous.pid):
                raise LockHeld(_held_message(previous))
            note = "took over a stale lock left by a runner that is gone"
        _write_fd(fd, body)
    except BaseException:
        os.close(fd)  # also drops the flock, if it was taken
        raise
    _held[key] = fd
    return note


def named(state_dir: str | Path) -> Holder | None:
    """Whoever the lock file names, alive or not (a stale lock names a runner that is gone)."""
    return _read(lock_path(state_dir))


def release(state_dir: str | Path) -> None:
    """Drop the lock if this process holds it."""
    fd = _held.pop(str(lock_path(state_dir)), None)
    if fd is None:
        return
    try:
        os.ftruncate(fd, 0)  # nobody holds it now; the file stays (its inode is the lock)
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def force_release(state_dir: str | Path) -> Holder | None:
    """Clear the lock whoever named themselves in it (recovery after a crash); returns the
    old holder. A live runner's flock is not broken: the kernel drops it when it ends."""
    path = lock_path(state_dir)
    old = _read(path)
    if str(path) in _held:
        release(state_dir)
        return old
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return old
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None  # a live runner holds it
        os.ftruncate(fd, 0)
    finally:
        os.close(fd)
    return old
