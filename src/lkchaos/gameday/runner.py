"""Run a game day unattended: baseline, entries in order, recovery waits, the stop rule,
interruption, history and reports.

Exit codes (:data:`EXIT`): 0 every entry held; 1 an entry deviated or failed; 2 invalid input;
3 not recovered (the deployment was not at baseline before the game day or after an entry, or
the final recovery found something left); 4 another game day is running; 130 interrupted.

Order: the baseline must hold before the first entry (checked again and again for up to its
``timeout_s``); after each entry (and each repeat) comes the recovery wait, then the baseline
again, which decides whether that entry recovered (else its outcome is ``not_recovered``).
After an interruption (SIGINT or SIGTERM, forwarded once to the running ``chaos run``) or an
entry not recovered, lkchaos's recovery (``lkchaos recover``) runs once the child has exited.
An entry's run that outlasts its ``timeout_s`` (a baseline run, what is left of the baseline's)
is interrupted the same way, and the entry ends ``interrupted`` while the game day goes on.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from lkchaos.errors import ConfigError
from lkchaos.gameday import child, record
from lkchaos.gameday.check import load_gameday
from lkchaos.gameday.interrupts import POLL_S, Interrupts, interrupt
from lkchaos.gameday.lock import GamedayLock
from lkchaos.gameday.model import ENTRY_TIMEOUT_DEFAULT_S, Gameday
from lkchaos.gameday.progress import Display, Tail, log_records_as_notes
from lkchaos.gameday.reports import write_reports
from lkchaos.report.load import shown_path
from lkchaos.report.model import EntryInfo, GamedayInfo

EXIT = {"held": 0, "deviated": 1, "invalid": 2, "not_recovered": 3, "running": 4,
        "interrupted": 130}  # fmt: skip
#: Seconds a child gets to finish its rollbacks after the forwarded Ctrl-C.
INTERRUPT_WAIT_S = 180.0

Recover = Callable[[], list[dict[str, Any]]]


@dataclass(frozen=True)
class RunOptions:
    """How to run: ``out_dir`` for journals and reports (default under the state folder);
    ``ci`` short fault windows; ``junit`` an extra copy of the JUnit XML; ``settings_file``
    the user's Chaos Toolkit settings to merge (default ``~/.chaostoolkit/settings.yaml``)."""

    out_dir: Path | None = None
    ci: bool = False
    scheduled: bool = False
    junit: Path | None = None
    settings_file: Path | None = None
    interrupt_wait_s: float = INTERRUPT_WAIT_S


@dataclass(frozen=True)
class Step:
    """One run of an entry: ``index`` 1-based among all runs."""

    index: int
    name: str
    experiment: Path
    repeat: int
    fault_s: float | None
    configuration: dict[str, Any]
    weight: float
    timeout_s: float = ENTRY_TIMEOUT_DEFAULT_S


def plan(gameday: Gameday, base: Path, ci: bool, env: dict[str, str]) -> list[Step]:
    """Every run of the game day in order, repeats expanded, paths resolved from ``base``."""
    steps: list[Step] = []
    for entry in gameday.entries:
        fault_s = child.fault_window(entry.fault_s, gameday.fault_s, ci, env)
        for repeat in range(1, entry.repeats + 1):
            steps.append(Step(len(steps) + 1, entry.label, (base / entry.experiment).resolve(),
                              repeat, fault_s, dict(entry.configuration), entry.weight,
                              entry.timeout_s))
    return steps


class _FaultWatch:
    """Faults recorded in lkchaos's ledger (injected, not yet undone), read about once a
    second: the truest "fault active", also during an action's pause."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.last: list[str] = []
        self.read_at = 0.0

    def poll(self, force: bool = False) -> dict[str, Any] | None:
        """A ``faults`` event when the set of faults changed, else None."""
        from lkchaos.safety import ledger

        if not force and time.monotonic() - self.read_at < 1.0:
            return None
        self.read_at = time.monotonic()
        try:
            now = [fault.describe() for fault in ledger.pending(self.state_dir)]
        except Exception:  # a ledger being rewritten or damaged: the next read tells
            return None
        if now == self.last:
            return None
        self.last = now
        return {"event": "faults", "pending": now}


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def default_out_dir(state_dir: Path, name: str) -> Path:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return state_dir / "gamedays" / f"{name}-{stamp}"


def _default_recover() -> list[dict[str, Any]]:
    from lkchaos.safety.recovery import recover
    from lkchaos.settings import Settings

    return recover(Settings.load())


class GamedayRun:
    """A game day being run (see the module docstring); :meth:`run` returns the results."""

    def __init__(self, gameday: Gameday, path: Path, out_dir: Path, settings_file: Path,
                 options: RunOptions, display: Display, interrupts: Interrupts,
                 run_id: str | None) -> None:  # fmt: skip
        self.gameday, self.path, self.out_dir = gameday, path, out_dir
        self.settings_file, self.options, self.display = settings_file, options, display
        self.interrupts, self.run_id = interrupts, run_id
        self.stop_reason = ""
        self.not_at_start = ""
        self._baselines = 0
        self.total = 0
        #: Whether the last experiment run outlasted its time limit and was interrupted.
        self.timed_out = False
        self.state_dir = settings_file.parent  # the settings are written to the state folder

    def say(self, text: str) -> None:
        self.display.feed({"event": "note", "text": text})

    def _chaos(self, experiment: Path, journal: Path, *, fault_s: float | None, entry: str,
               configuration: dict[str, Any], quiet: bool = False,
               limit_s: float | None = None) -> int | None:  # fmt: skip
        """Run one experiment to its end; ``quiet`` shows only its failed activities. Past
        ``limit_s`` seconds it is interrupted as a person's Ctrl-C would (its rollbacks and
        lkchaos's recovery play), and :attr:`timed_out` says so."""
        progress = journal.with_suffix(".progress.jsonl")
        env = child.environment(os.environ, fault_s=fault_s, run_id=self.run_id, entry=entry,
                                journal=journal, progress=progress)  # fmt: skip
        argv = [*child.chaos_command(), "--settings", str(self.settings_file), "run",
                "--journal-path", str(journal), *child.var_arguments(configuration),
                str(experiment)]  # fmt: skip
        tail = Tail(progress)

        def show() -> None:
            for event in tail.poll():
                if not quiet or (event.get("event") == "activity"
                                 and event.get("status") == "failed"):
                    self.display.feed(event)

        with open(journal.with_suffix(".log"), "wb") as log:
            process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        self.interrupts.child = process
        if self.interrupts.interrupted:
            self.interrupts.forward()
        deadline: float | None = None
        self.timed_out = False
        ends = None if limit_s is None else time.monotonic() + limit_s
        faults = _FaultWatch(self.state_dir) if not quiet else None
        try:
            while process.poll() is None:
                show()
                if faults is not None:
                    change = faults.poll()
                    if change is not None:
                        self.display.feed(change)
                if ends is not None and not self.timed_out and time.monotonic() > ends:
                    self.timed_out = True
                    self.say(f"{entry} ran longer than its {limit_s:g} s: interrupting it; "
                             "its rollbacks and lkchaos's recovery follow")
                    interrupt(process)
                if (self.interrupts.interrupted or self.timed_out) and deadline is None:
                    deadline = time.monotonic() + self.options.interrupt_wait_s
                if deadline is not None and time.monotonic() > deadline:
                    self.say(f"the experiment did not end within {self.options.interrupt_wait_s:g}"
                             " s of the interrupt: killing it; `lkchaos recover` follows")
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=30)
                    break
                time.sleep(POLL_S)
        finally:
            self.interrupts.child = None
        show()
        if faults is not None:
            change = faults.poll(force=True)
            if change is not None:
                self.display.feed(change)
        return process.returncode

    def baseline(self, why: str) -> tuple[bool, str]:
        """Run the baseline experiment until it holds or its ``timeout_s`` passes."""
        spec = self.gameday.baseline
        if spec is None:
            return True, ""
        self._baselines += 1
        folder = self.out_dir / "baseline"
        folder.mkdir(exist_ok=True)
        experiment = (self.path.parent / spec.experiment).resolve()
        deadline = time.monotonic() + spec.timeout_s
        self.display.feed({"event": "baseline", "edge": "start", "why": why})
        attempt, note, cause = 0, "", ""
        while not self.interrupts.interrupted:
            attempt += 1
            journal = folder / f"{self._baselines:02d}-{attempt}.json"
            code = self._chaos(experiment, journal, fault_s=None, entry="baseline",
                               configuration={}, quiet=True,
                               limit_s=max(1.0, deadline - time.monotonic()))  # fmt: skip
            result, note = child.outcome(journal, code)
            if self.timed_out:
                # The attempt cut short says nothing; the one before it says why.
                result, note = "interrupted", f"the baseline ran past its {spec.timeout_s:g} s"
                if cause:
                    note = f"{cause}; then {note}"
            elif result != "held":
                cause = note
            if result == "held":
                self.display.feed({"event": "baseline", "edge": "end", "ok": True})
                return True, ""
            if time.monotonic() >= deadline:
                break
            self.interrupts.sleep(min(2.0, max(0.0, deadline - time.monotonic())))
        note = note or "interrupted"
        note = f"{note} (after {attempt} attempt(s) in {spec.timeout_s:g} s)"
        self.display.feed({"event": "baseline", "edge": "end", "ok": False, "note": note})
        return False, note

    def run_step(self, step: Step) -> EntryInfo:
        journal = self.out_dir / f"{step.index:02d}-{step.name}-{step.repeat}.json"
        self.display.feed({"event": "entry", "edge": "start", "index": step.index,
                           "total": self.total, "name": step.name, "repeat": step.repeat})
        code = self._chaos(step.experiment, journal, fault_s=step.fault_s,
                           entry=f"{step.name}#{step.repeat}", configuration=step.configuration,
                           limit_s=step.timeout_s)  # fmt: skip
        outcome, note = child.outcome(journal, code)
        if self.timed_out and outcome != "not_recovered":
            outcome, note = "interrupted", (
                f"ran longer than its timeout_s ({step.timeout_s:g} s): interrupted, its "
                "rollbacks played" + (f"; {note}" if note else ""))
        elif self.interrupts.interrupted and outcome == "held":
            outcome, note = "interrupted", "the game day was interrupted during this entry"
        return EntryInfo(step.name, shown_path(step.experiment), step.repeat,
                           journal if journal.is_file() else None, outcome, note)

    def _ended(self, result: EntryInfo) -> None:
        self.display.feed({"event": "entry", "edge": "end", "name": result.name,
                           "outcome": result.outcome, "note": result.note})

    def _stops(self, result: EntryInfo) -> bool:
        rule = self.gameday.stop
        if rule == "never":
            return False
        bad = ("not_recovered",) if rule == "on_not_recovered" else (
            "not_recovered", "deviated", "failed")
        if result.outcome in bad:
            self.stop_reason = f"stopped by the stop rule {rule}: {result.name} {result.outcome}"
            return True
        return False

    def run(self) -> list[EntryInfo]:
        steps = plan(self.gameday, self.path.parent, self.options.ci, dict(os.environ))
        self.total = len(steps)
        results: list[EntryInfo] = []
        ok, note = self.baseline("before the game day")
        if not ok:
            if not self.interrupts.interrupted:
                self.not_at_start = note
                self.stop_reason = f"not run: the deployment was not at baseline: {note}"
            return self._fill(results, steps)
        for position, step in enumerate(steps):
            result = self.run_step(step)
            if not self.interrupts.interrupted:
                if position < len(steps) - 1 and self.gameday.recovery_wait_s:
                    self.display.feed({"event": "wait",
                                       "seconds": self.gameday.recovery_wait_s})
                    self.interrupts.sleep(self.gameday.recovery_wait_s)
                result = self._recovered(result)
            results.append(result)
            self._ended(result)
            if self.interrupts.interrupted or self._stops(result):
                break
        return self._fill(results, steps)

    def _recovered(self, result: EntryInfo) -> EntryInfo:
        """The result, marked not recovered when the baseline does not hold after it (an
        interrupt during the check leaves it as it was)."""
        ok, note = self.baseline(f"after {result.name}")
        if ok or self.interrupts.interrupted:
            return result
        prior = f"{result.outcome}: {result.note}; " if result.outcome != "held" else ""
        return replace(result, outcome="not_recovered",
                       note=f"{prior}not back at baseline: {note}")

    def _fill(self, results: list[EntryInfo], steps: list[Step]) -> list[EntryInfo]:
        """Results for the steps not run: skipped, with the reason."""
        reason = ("not run: the game day was interrupted" if self.interrupts.interrupted
                  else self.stop_reason)  # fmt: skip
        for step in steps[len(results):]:
            results.append(EntryInfo(step.name, shown_path(step.experiment), step.repeat, None,
                                       "skipped", reason))
        return results


def exit_code(results: list[EntryInfo], interrupted: bool, left: bool) -> int:
    """The exit code (see :data:`EXIT`); ``left``: the deployment was not at baseline at the
    start or the final recovery found something."""
    if interrupted:
        return EXIT["interrupted"]
    if left or any(r.outcome == "not_recovered" for r in results):
        return EXIT["not_recovered"]
    if any(r.outcome in ("deviated", "failed", "interrupted") for r in results):
        return EXIT["deviated"]
    return EXIT["held"]


def _status(code: int, results: list[EntryInfo]) -> str:
    if code == EXIT["deviated"]:
        return "deviated" if any(r.outcome == "deviated" for r in results) else "failed"
    return {0: "held", 3: "not_recovered", 130: "interrupted"}.get(code, "failed")


def final_recovery(recover: Recover, say: Callable[[str], None]) -> bool:
    """Run lkchaos's recovery and say what it found; True when it found something left."""
    say("lkchaos recovery: undoing anything left behind")
    try:
        report = recover()
    except Exception as exc:  # recovery must report, the reports must still be written
        say(f"lkchaos recovery failed ({type(exc).__name__}: {exc}); run `lkchaos recover`")
        return False
    found = [item for item in report if not str(item.get("outcome", "")).startswith("error")]
    for item in report:
        say(f"recovery: {item.get('fault')}: {item.get('outcome')}")
    if not report:
        say("recovery: nothing was left")
    return bool(found)


def run_gameday(path: str | Path, options: RunOptions, display: Display, *,
                recover: Recover | None = None) -> int:  # fmt: skip
    """Run the game day file at ``path`` to the end; returns the exit code (see :data:`EXIT`).

    Raises :class:`lkchaos.gameday.check.GamedayInvalid` for a bad file (exit 2) and
    :class:`lkchaos.gameday.lock.GamedayRunning` when another game day runs (exit 4).
    ``recover`` replaces lkchaos's recovery (``lkchaos.safety.recovery.recover``).
    """
    from lkchaos.settings import Settings

    path = Path(path)
    # A bad $LKCHAOS_FAULT_S: exit 2, before the file's checks (its experiments read it too).
    child.fault_env(os.environ)
    gameday = load_gameday(path)
    loaded = Settings.load()
    state_dir = Path(loaded.state_dir)

    def say(text: str) -> None:
        display.feed({"event": "note", "text": text})

    with GamedayLock(loaded.run_dir, gameday.name), log_records_as_notes(say):
        settings, notes = child.merged_settings(options.settings_file)
        out_dir = options.out_dir or default_out_dir(state_dir, gameday.name)
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot make the game day's output folder {out_dir}: {exc}; "
                              "give --out a folder you can write") from exc
        for note in notes:
            say(note)
        recorder = record.open_recorder(say)
        trend = recorder.trend(gameday.name)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        run_id = recorder.start_gameday(gameday.name, str(path.resolve()), digest,
                                        options.scheduled)  # fmt: skip
        started = _now()
        display.feed({"event": "gameday", "edge": "start", "name": gameday.name,
                      "entries": sum(e.repeats for e in gameday.entries)})
        settings_file = child.write_settings(settings, state_dir)
        try:
            with Interrupts(say) as interrupts:
                run = GamedayRun(gameday, path, out_dir, settings_file, options, display,
                                  interrupts, run_id)  # fmt: skip
                results = run.run()
                left = bool(run.not_at_start)
                if interrupts.interrupted or any(r.outcome == "not_recovered" for r in results):
                    left = final_recovery(recover or _default_recover, say) or left
                interrupted = interrupts.interrupted
        finally:
            settings_file.unlink(missing_ok=True)
        code = exit_code(results, interrupted, left)
        status = _status(code, results)
        score = record.score([(r.journal, _weight(gameday, r.name), r.outcome)
                              for r in results])  # fmt: skip
        recorder.finish_gameday(run_id, status, score)
        result = GamedayInfo(gameday.name, run_id, started, _now(), status, results, score,
                               tuple(trend))  # fmt: skip
        recorder.close()
        written = write_reports(out_dir, result, options.junit, say)
        display.feed({"event": "gameday", "edge": "end", "status": status})
        say(f"results in {out_dir} ({', '.join(p.name for p in written)})")
        return code


def _weight(gameday: Gameday, name: str) -> float:
    return next((e.weight for e in gameday.entries if e.label == name), 1.0)
