"""The safety control: one experiment at a time, and rollbacks that always run.

Declare it in every experiment (the experiments in this repository all do)::

    "controls": [{"name": "lkchaos-safety",
                  "provider": {"type": "python", "module": "lkchaos.safety.control"}}]

- Before the experiment it takes the stack's run lock; a second experiment against the same
  stack is interrupted at once with a message naming the one running.
- Chaos Toolkit's default strategy skips rollbacks when a run fails or is interrupted
  (Ctrl-C). After the experiment this control plays the declared rollbacks itself whenever
  Chaos Toolkit did not, then undoes whatever the fault ledger still holds, so no fault
  outlives the run, whatever ``--rollback-strategy`` says.
- SIGTERM is turned into the same graceful stop as Ctrl-C.
- Room-state snapshots left by earlier runs are removed when an experiment starts.
- What it did is written to the journal under ``"lkchaos_safety"``.
"""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType
from typing import Any

from chaoslib.exceptions import InterruptExecution
from chaoslib.rollback import run_rollbacks

from lkchaos.safety import runlock
from lkchaos.safety.recovery import recover
from lkchaos.settings import Settings

_run: dict[str, Any] = {}


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def before_experiment_control(
    context: dict[str, Any],
    configuration: dict[str, Any] | None = None,
    secrets: dict[str, Any] | None = None,
    **kwargs: Any,
) -> None:
    _run.clear()
    settings = Settings.load(configuration, secrets)
    try:
        note = runlock.acquire(settings.state_dir, str(context.get("title", "experiment")))
    except runlock.LockHeld as exc:
        raise InterruptExecution(str(exc)) from exc
    _run.update(state_dir=settings.state_dir, note=note, started=time.monotonic())
    # Room-state snapshots belong to one run: none from an earlier run may be compared.
    for old in (Path(settings.state_dir) / "snapshots").glob("*.json"):
        old.unlink(missing_ok=True)
    try:
        _run["previous_sigterm"] = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread: leave SIGTERM alone
        pass


def _play_rollbacks(
    experiment: dict[str, Any], journal: dict[str, Any],
    configuration: dict[str, Any] | None, secrets: dict[str, Any] | None,
) -> int:  # fmt: skip
    runs: list[Any] = []
    with ThreadPoolExecutor(max_workers=2) as pool:
        for _ in run_rollbacks(experiment, configuration or {}, secrets or {}, pool, None,
                               None, runs):
            pass
    journal["rollbacks"] = runs
    return len(runs)


def after_experiment_control(
    context: dict[str, Any],
    state: dict[str, Any],
    configuration: dict[str, Any] | None = None,
    secrets: dict[str, Any] | None = None,
    **kwargs: Any,
) -> None:
    if "state_dir" not in _run:  # this run never took the lock: it must not touch anything
        return
    started = time.monotonic()
    report: dict[str, Any] = {"lock_note": _run.get("note")}
    try:
        declared = bool(context.get("rollbacks"))
        if declared and not state.get("rollbacks"):
            report["rollbacks_played_by_lkchaos"] = _play_rollbacks(
                context, state, configuration, secrets
            )
        report["recovered"] = recover(
            Settings.load(configuration, secrets), configuration, thorough=False
        )
    finally:
        report["cleanup_s"] = round(time.monotonic() - started, 3)
        state["lkchaos_safety"] = report
        _finish()


def cleanup_control(**kwargs: Any) -> None:
    _finish()


def _finish() -> None:
    state_dir = _run.pop("state_dir", None)
    if state_dir is not None:
        runlock.release(state_dir)
    previous = _run.pop("previous_sigterm", None)
    if previous is not None:
        try:
            signal.signal(signal.SIGTERM, previous)
        except ValueError:
            pass
