"""The voice prober run as a child process of this one, for a deployment without a prober.

Voice round trips, held calls and held participants join LiveKit rooms with the LiveKit SDK,
whose WebRTC runtime is native code. Now and then it aborts the process it runs in
(``Fatal Python error: Aborted``, status 134; seen in this project's CI while a media source
was disposed). In the process of ``chaos run`` that would end the run in the middle of its
method, its faults still injected until ``lkchaos recover``. So where no prober is configured
(``voice_prober_url`` empty) that work runs in the same prober the reference stack runs
(:mod:`lkchaos.voice.prober`), started here as a child process listening on 127.0.0.1 on a
port of its own choosing, with this process's LiveKit URL, keys and agent name: a crash ends
the child, never this process. The next request starts a new child (:attr:`generation`
counts them); what the dead one held (held calls, held participants) is gone with it, and
each caller of this module says so where it matters.

The child exits when this process does, however it ends: it stops when its standard input
closes (``--with-parent``), leaving its rooms first. Its log (standard error) is appended to
``local-prober.log`` in the state folder.
"""

from __future__ import annotations

import atexit
import logging
import os
import selectors
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TypeVar

from chaoslib.exceptions import ActivityFailed

from lkchaos.livekit.isolated import how_it_ended
from lkchaos.settings import Settings, default_state_dir

__all__ = ["Died", "LocalProber", "local", "running"]

#: What the prober prints on its standard output once it listens, followed by its URL.
READY = "lkchaos prober listening on"
#: Seconds the child may take to listen (importing the SDK, loading Whisper).
START_S = 90.0
#: Seconds a child that dropped a request is given to be reported dead (see LocalProber.died).
DYING_S = 3.0
#: Seconds the child may take to leave its rooms and exit once told to, before it is killed.
STOP_S = 30.0
LOG_NAME = "local-prober.log"
#: How a child told to stop (:meth:`LocalProber.close`) ended.
STOPPED = "was stopped by lkchaos"
logger = logging.getLogger("lkchaos")
T = TypeVar("T")


@dataclass(frozen=True)
class Died:
    """What :meth:`LocalProber.attempt` returns when the child it asked died: ``how`` it
    ended, in words (``"was ended by SIGABRT"``)."""

    how: str


class LocalProber:
    """One prober child for one LiveKit deployment (URL, keys, agent name): started on the
    first :meth:`url`, started again by the next one after it died."""

    def __init__(self, settings: Settings) -> None:
        key, secret = settings.require_keys()
        self.secret = secret
        self._env = {**os.environ, "LIVEKIT_URL": settings.livekit_url, "LIVEKIT_API_KEY": key,
                     "LIVEKIT_API_SECRET": secret, "AGENT_NAME": settings.agent_name}  # fmt: skip
        self.log_path = Path(settings.state_dir or default_state_dir()) / LOG_NAME
        self._process: subprocess.Popen[str] | None = None
        self._url = ""
        self._lock = threading.Lock()
        #: Children started so far; a value kept with a held call tells whether its child is
        #: the one running now.
        self.generation = 0
        #: How each child that is gone ended, by its generation.
        self._ends: dict[int, str] = {}

    def url(self) -> str:
        """The running child's URL (``http://127.0.0.1:<port>``), started first if none runs.
        Raises ``ActivityFailed`` when it does not start within :data:`START_S` seconds."""
        return self._running()[0]

    def _running(self) -> tuple[str, int]:
        """The running child's URL and generation, started first if none runs."""
        with self._lock:
            if self._process is not None and self._process.poll() is None:
                return self._url, self.generation
            if self._process is not None:
                _close_stdin(self._process)
                how = how_it_ended(self._process.returncode)
                self._ends[self.generation] = how
                logger.warning("lkchaos's local voice prober %s; starting another (its log: "
                               "%s)", how, self.log_path)  # fmt: skip
            self._start()
            return self._url, self.generation

    def died(self, generation: int | None = None, wait_s: float = 0.0) -> str | None:
        """How the child ``generation`` (default: the latest) ended, if it died; else None.
        ``wait_s``: seconds to give a child that is still there to finish dying (after a
        request it dropped: its connections close before the system reports its end)."""
        with self._lock:
            if generation is not None and generation != self.generation:
                return self._ends.get(generation, "is gone")
            process = self._process
        if process is None:
            return None
        try:
            process.wait(wait_s)
        except subprocess.TimeoutExpired:
            return None
        return how_it_ended(process.returncode)

    def attempt(self, request: Callable[[str], T], generation: int | None = None) -> T | Died:
        """``request(url)`` against the child ``generation`` (default: the running one,
        started first if none runs): its result, or :class:`Died` when that child is gone,
        before the request or during it (given :data:`DYING_S` to be reported dead). An
        ``ActivityFailed`` from a request whose child is alive is the request's own failure,
        raised as is."""
        asked = generation
        if asked is not None and (how := self.died(asked)) is not None:
            return Died(how)
        url, generation = self._running()
        if asked is not None and generation != asked:  # it died just now, and was replaced
            return Died(self.died(asked) or "is gone")
        try:
            return request(url)
        except ActivityFailed:
            how = self.died(generation, wait_s=DYING_S)
            if how is None:
                raise
            return Died(how)

    @property
    def deaths(self) -> list[str]:
        """How each child that died before it was told to stop ended, oldest first."""
        with self._lock:
            return [how for _, how in sorted(self._ends.items()) if how != STOPPED]

    def is_running(self) -> bool:
        with self._lock:
            return self._process is not None and self._process.poll() is None

    def close(self, timeout_s: float = STOP_S) -> None:
        """Tell the child to stop (it leaves its rooms and exits), killed past ``timeout_s``."""
        with self._lock:
            process, self._process = self._process, None
            if process is not None:
                self._ends[self.generation] = STOPPED
        if process is None:
            return
        _close_stdin(process)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    # -- internals ---------------------------------------------------------------------------
    def _start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "a") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "lkchaos.voice.prober", "--host", "127.0.0.1",
                 "--port", "0", "--with-parent"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
                env=self._env, start_new_session=True,  # Ctrl-C is this process's to handle
            )  # fmt: skip
        assert process.stdout is not None
        url = _ready_url(process, process.stdout, START_S)
        if url is None:
            if process.poll() is None:
                process.kill()
                process.wait(5)
                why = f"did not listen within {START_S:g} s"
            else:
                why = how_it_ended(process.returncode)
            _close_stdin(process)
            process.stdout.close()
            raise ActivityFailed(
                f"lkchaos's local voice prober (run because voice_prober_url is empty) {why}; "
                f"its log: {self.log_path}{_tail(self.log_path)}"
            )
        # Anything it prints later is kept in its log, never left to fill the pipe.
        threading.Thread(target=_drain, args=(process.stdout, self.log_path),
                         name="lkchaos-local-prober", daemon=True).start()  # fmt: skip
        self._process, self._url = process, url
        self.generation += 1


def _ready_url(process: subprocess.Popen[str], stdout: IO[str], timeout_s: float) -> str | None:
    """The URL the child printed after :data:`READY`, or None when it exited or the time ran
    out first."""
    deadline = time.monotonic() + timeout_s
    with selectors.DefaultSelector() as selector:
        selector.register(stdout, selectors.EVENT_READ)
        while (left := deadline - time.monotonic()) > 0:
            if not selector.select(min(left, 0.5)):
                if process.poll() is not None:
                    return None
                continue
            line = stdout.readline()
            if not line:  # its output closed: it exited
                return None
            if line.startswith(READY):
                return line[len(READY):].strip()
    return None


def _drain(stdout: IO[str], log_path: Path) -> None:
    try:
        for line in stdout:
            with open(log_path, "a") as log:
                log.write(line)
    except (OSError, ValueError):  # closed under it: the child is gone
        pass
    finally:
        stdout.close()


def _close_stdin(process: subprocess.Popen[str]) -> None:
    """Close the child's standard input: a live child takes it as the order to stop."""
    if process.stdin is not None:
        try:
            process.stdin.close()
        except OSError:  # it is gone: nothing to tell
            pass


def _tail(path: Path, lines: int = 5) -> str:
    try:
        last = path.read_text(errors="replace").strip().splitlines()[-lines:]
    except OSError:
        return ""
    return (": ..." + " | ".join(line.strip() for line in last)) if last else ""


_probers: dict[tuple[str, str, str, str, str], LocalProber] = {}
_guard = threading.Lock()


def _key(settings: Settings) -> tuple[str, str, str, str, str]:
    key, secret = settings.require_keys()
    return settings.livekit_url, key, secret, settings.agent_name, str(settings.state_dir)


def local(settings: Settings) -> LocalProber:
    """This process's prober child for the deployment ``settings`` name (one per deployment;
    started on its first :meth:`LocalProber.url`)."""
    with _guard:
        prober = _probers.get(_key(settings))
        if prober is None:
            prober = _probers[_key(settings)] = LocalProber(settings)
        return prober


def running(settings: Settings) -> LocalProber | None:
    """The prober child for ``settings`` if one is running now, else None (nothing started)."""
    with _guard:
        prober = _probers.get(_key(settings))
    return prober if prober is not None and prober.is_running() else None


@atexit.register
def _close_all() -> None:
    """Stop every child at exit, side by side (each leaves its rooms first)."""
    with _guard:
        probers = list(_probers.values())
    threads = [threading.Thread(target=p.close, daemon=True) for p in probers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(STOP_S + 10)
