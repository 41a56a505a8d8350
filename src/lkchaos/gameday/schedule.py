"""``lkchaos gameday schedule``: a long-lived process that runs game days at their cron times.

APScheduler 3's ``BackgroundScheduler`` with one ``CronTrigger`` job per game day
(``max_instances=1``, ``coalesce``, ``misfire_grace_time``). The main thread waits for the end
(``--for``, ``--max-runs``, a signal) and alone shuts the scheduler down: a shutdown from one of
its own jobs races its main loop (APScheduler marks itself stopped before taking its lock, and
its loop then fails to remove the finished job), which crashed the process when ``--for``
elapsed. Each fire runs the game day in a
child process (``python -m lkchaos.gameday run --scheduled --plain FILE``) and waits for it.
Never two game days at once: a fire while another game day holds the lock (see
:mod:`lkchaos.gameday.lock`) is recorded ``skipped`` with the holder; a fire APScheduler could
not start in time is recorded ``missed``; every fire is recorded ``fired`` (run history
``record_schedule_event``, and a line on stderr).

SIGTERM or SIGINT stops the scheduler: it forwards SIGTERM to a running game day, which
interrupts its experiment, lets it roll back, recovers and writes its reports; the scheduler
waits for that, then exits 0.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from lkchaos.errors import ConfigError
from lkchaos.gameday import lock, record
from lkchaos.gameday.check import GamedayInvalid, load_gameday
from lkchaos.gameday.cron import parse_cron
from lkchaos.gameday.runner import EXIT

#: Seconds a fire may be late and still run (beyond: recorded missed).
MISFIRE_GRACE_S = 300
#: Seconds to wait for a running game day after SIGTERM (rollback, recovery, reports).
STOP_WAIT_S = 900.0
#: Seconds between the main thread's looks at the stop flags (``--for``, a signal, a stop).
POLL_S = 0.2
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
#: The longest ``--for`` (ten years): anything longer cannot be a date.
MAX_DURATION_S = 3650 * 86400


def parse_duration(text: str) -> float:
    """Seconds in ``30s``, ``10m``, ``2h``, ``7d`` or a plain number of seconds; raises
    ConfigError otherwise."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not match:
        raise ConfigError(f"duration {text!r} is not of the form 30s, 10m, 2h or 7d")
    if float(match[1]) <= 0:
        raise ConfigError(f"duration {text!r} must be more than 0 (e.g. 30s, 10m, 2h or 7d)")
    seconds = float(match[1]) * _UNITS[match[2] or "s"]
    if seconds > MAX_DURATION_S:
        raise ConfigError(f"duration {text!r} is too long: at most {MAX_DURATION_S // 86400}d "
                          "(or no --for, to run until stopped)")
    return seconds


def _stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Scheduler:
    """The scheduled game days of one process (see the module docstring)."""

    def __init__(self, files: list[Path], *, ci: bool, max_runs: int | None,
                 say: Callable[[str], None]) -> None:  # fmt: skip
        from apscheduler.schedulers.background import (  # type: ignore[import-untyped]
            BackgroundScheduler,
        )

        from lkchaos.settings import Settings

        self.files, self.ci, self.max_runs, self._say = files, ci, max_runs, say
        #: Where the game days of this process's target take their lock (see lock.py).
        self.run_dir = Path(Settings.load().run_dir)
        self.scheduler = BackgroundScheduler()
        self.recorder = record.open_recorder(self.say)
        self.runs = 0
        self.stopping = False
        self._signalled: int | None = None  # set by the signal handler
        self.child: subprocess.Popen[bytes] | None = None
        self._busy = threading.Lock()

    def say(self, text: str) -> None:
        self._say(f"{_stamp()} {text}")

    def _event(self, name: str, kind: str, reason: str = "",
               at: dt.datetime | None = None) -> None:  # fmt: skip
        self.say(f"{name}: {kind}" + (f" ({reason})" if reason else ""))
        self.recorder.schedule_event(name, kind, reason, at)

    def fire(self, name: str, path: Path) -> None:
        """One fire of a game day's schedule: run it unless another game day runs. The whole
        fire holds ``_busy``, so the scheduler's end waits for it, and a fire that finds the
        scheduler stopping starts nothing; a fire of another game day meanwhile is skipped."""
        if not self._busy.acquire(blocking=False):
            if not self.stopping:
                self._event(name, "fired")
                self._event(name, "skipped", "another scheduled game day is running")
            return
        try:
            if self.stopping:
                return
            self._event(name, "fired")
            running = lock.holder(self.run_dir)
            if running is not None:
                self._event(name, "skipped", f"{running} was running")
                return
            argv = [sys.executable, "-m", "lkchaos.gameday", "run", "--scheduled", "--plain",
                    *(["--ci"] if self.ci else []), str(path)]  # fmt: skip
            self.child = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                          start_new_session=True)  # fmt: skip
            if self.stopping:  # a stop asked for while it started: it rolls back at once
                self.child.send_signal(signal.SIGTERM)
            code = self.child.wait()
            self.child = None
            if code == EXIT["running"]:
                self._event(name, "skipped", "another game day took the lock first")
                return
            meaning = {v: k for k, v in EXIT.items()}.get(code, "error")
            if code < 0:  # killed before its handlers were in place: before any experiment
                meaning = f"ended by {signal.Signals(-code).name} before its first experiment"
            self.say(f"{name}: game day ended, exit {code} ({meaning})")
            self.runs += 1
            if self.max_runs is not None and self.runs >= self.max_runs:
                self.say(f"{self.runs} game day(s) run: stopping (--max-runs)")
                self.stop()
        finally:
            self._busy.release()

    def _missed(self, event: Any) -> None:
        name = str(event.job_id)
        when = event.scheduled_run_time
        self._event(name, "missed", f"due at {when.isoformat()}, could not start in time", when)

    def _still_running(self, event: Any) -> None:
        self._event(str(event.job_id), "skipped", "its previous run is still going")

    def stop(self) -> None:
        """Ask for the end, from any thread: no new fire runs; :meth:`run` shuts down."""
        self.stopping = True

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Only a flag: a handler that took a lock (an event's, stderr's) could deadlock the
        # main thread it interrupts. The main thread's loop acts on it.
        self.stopping = True
        self._signalled = signum

    def _forward_signal(self, signum: int) -> None:
        self.say(f"{signal.Signals(signum).name}: stopping the scheduler"
                 + ("; the running game day rolls back first" if self.child else ""))
        child = self.child
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)

    def run(self, for_s: float | None) -> int:
        from apscheduler.events import (  # type: ignore[import-untyped]
            EVENT_JOB_MAX_INSTANCES,
            EVENT_JOB_MISSED,
        )

        names: dict[str, Path] = {}
        for path in self.files:
            gameday = load_gameday(path)
            if gameday.schedule is None:
                raise ConfigError(f"{path}: has no `schedule:`; add a cron expression such as "
                                  '"0 3 * * 1" (Mondays 03:00) or run it with `gameday run`')
            if gameday.name in names:
                raise ConfigError(f"{path}: the game day {gameday.name!r} is already scheduled "
                                  f"from {names[gameday.name]}; give each file once, and each "
                                  "game day a name of its own")
            names[gameday.name] = path
            trigger = parse_cron(gameday.schedule)
            self.scheduler.add_job(self.fire, trigger, args=(gameday.name, path),
                                   id=gameday.name, max_instances=1, coalesce=True,
                                   misfire_grace_time=MISFIRE_GRACE_S)  # fmt: skip
            self.say(f"{gameday.name}: scheduled {gameday.schedule!r} from {path}")
        self.scheduler.add_listener(self._missed, EVENT_JOB_MISSED)
        self.scheduler.add_listener(self._still_running, EVENT_JOB_MAX_INSTANCES)
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        deadline = None if for_s is None else time.monotonic() + for_s
        try:
            self.scheduler.start()
            while not self.stopping:
                if deadline is not None and time.monotonic() >= deadline:
                    self._time_up()
                    break
                time.sleep(POLL_S)  # a signal interrupts it; its handler sets the flags
            if self._signalled is not None:
                self._forward_signal(self._signalled)
        finally:
            self.stopping = True
            try:
                self.scheduler.shutdown(wait=False)
            except Exception:  # not started (SchedulerNotRunningError)
                pass
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        # A game day still running finishes (its rollback, recovery and reports) first; any
        # later fire sees ``stopping`` under the same lock and starts nothing.
        if self._busy.acquire(timeout=STOP_WAIT_S):
            self._busy.release()
        else:
            self.say(f"the running game day did not end within {STOP_WAIT_S:g} s; leaving it")
        self.recorder.close()
        return 0

    def _time_up(self) -> None:
        self.say("--for elapsed: stopping" + (" after the running game day" if self.child
                                              else ""))
        self.stop()


def run_schedules(files: list[Path], *, for_s: float | None = None,
                  max_runs: int | None = None, ci: bool = False,
                  say: Callable[[str], None] = print) -> int:  # fmt: skip
    """Run the scheduler until SIGTERM, ``for_s`` seconds or ``max_runs`` game days; returns
    the exit code (0). Raises ConfigError for a bad file or one without a schedule."""
    logging.getLogger("apscheduler").setLevel(logging.ERROR)  # events are reported here
    try:
        return Scheduler(files, ci=ci, max_runs=max_runs, say=say).run(for_s)
    except GamedayInvalid as exc:
        raise ConfigError(f"a game day file has problems; nothing was scheduled:\n{exc}") from exc


__all__ = ["Scheduler", "parse_duration", "run_schedules"]
