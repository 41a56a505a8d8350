"""Game days against the live stack: the quick game day as CI runs it (`--ci`), and Ctrl-C
in the middle of a fault, after which nothing may be left on any backend."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from junitparser import JUnitXml

from lkchaos.safety import ledger
from lkchaos.settings import Settings
from tests.integration.conftest import QUICK_GAMEDAY, GamedayRun, wait_baseline
from tests.integration.test_bad_experiments import _deployment

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENTS = ROOT / "experiments"
#: Seconds a game day of these tests may take (each entry is about 50-110 s).
LIMIT_S = 900
#: The interrupted entry's fault window, seconds.
WINDOW_S = 60


def gameday_file(tmp_path: Path, name: str, entries: list[dict[str, Any]]) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(json.dumps({  # JSON is YAML
        "name": name,
        "baseline": {"experiment": str(EXPERIMENTS / "stack-healthy.json"), "timeout_s": 120},
        "recovery_wait_s": 5,
        "entries": entries,
    }))
    return path


def environment(settings: Settings) -> dict[str, str]:
    env = {**os.environ, "LIVEKIT_API_KEY": settings.livekit_api_key,
           "LIVEKIT_API_SECRET": settings.livekit_api_secret,
           "LKCHAOS_STATE_DIR": settings.state_dir}  # fmt: skip
    env.pop("LKCHAOS_FAULT_S", None)
    return env


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "lkchaos.gameday", *args]


def test_the_quick_game_day_holds_and_reports(quick_gameday: GamedayRun) -> None:
    from lkchaos.history import open_history

    assert quick_gameday.returncode == 0, quick_gameday.stderr
    out = quick_gameday.out
    summary = json.loads((out / "gameday.json").read_text())
    entries = yaml.safe_load(QUICK_GAMEDAY.read_text())["entries"]
    assert [e["outcome"] for e in summary["entries"]] == ["held"] * len(entries)
    suites = list(JUnitXml.fromfile(str(out / "junit.xml")))
    assert len(suites) == len(entries)
    cases = [case for suite in suites for case in suite]
    assert cases and all(case.is_passed for case in cases), [c.result for c in cases]
    assert any(case.name.startswith("rto: ") for case in cases)  # the RTO bounds are judged
    html = (out / "report.html").read_text()
    assert "<img" in html  # the plots, embedded
    # Self-contained: nothing to fetch (probe outputs may name URLs as text, never as links).
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", html), "a fetch"
    assert "held" in (out / "report.md").read_text()
    with open_history() as history:
        runs = history.gameday_runs(name="quick")
        assert runs and runs[0].gameday_run_id == summary["run_id"]
        assert runs[0].status == "held"
        recorded = history.runs(gameday_run_id=summary["run_id"])
    # Each entry's run is in history under the game day (the baseline checks may be too).
    titles = {json.loads((QUICK_GAMEDAY.parent / e["experiment"]).read_text())["title"]
              for e in entries}  # fmt: skip
    assert titles <= {r.experiment_title for r in recorded}, [r.experiment_title for r in recorded]


def resolver_down_experiment(tmp_path: Path) -> Path:
    """dns-failure.json's fault and rollback with only its resolver check, no callers: the
    interrupt reaches the fault within seconds (the callers are tested by the catalogue)."""
    full = json.loads((EXPERIMENTS / "dns-failure.json").read_text())
    names_resolve = next(probe for probe in full["steady-state-hypothesis"]["probes"]
                         if probe["name"] == "names-resolve-now")  # fmt: skip
    experiment = {
        "title": "The stack's resolver goes down (a game day is interrupted in the fault)",
        "description": "dns-failure.json without its callers.",
        "controls": [c for c in full["controls"] if c["name"] != "sampling"],
        "configuration": full["configuration"],
        "steady-state-hypothesis": {"title": "The test names resolve",
                                    "probes": [names_resolve]},
        "method": full["method"],
        "rollbacks": full["rollbacks"],
    }
    path = tmp_path / "resolver-down.json"
    path.write_text(json.dumps(experiment))
    return path


def test_interrupt_mid_fault_leaves_nothing(tmp_path: Path, settings: Settings) -> None:
    before = _deployment(settings)
    assert ledger.pending(settings.state_dir) == []
    path = gameday_file(tmp_path, "integration-interrupt", [
        {"experiment": str(resolver_down_experiment(tmp_path)), "fault_s": WINDOW_S},
        {"experiment": str(EXPERIMENTS / "agent-crash.json")},
    ])
    out = tmp_path / "out"
    process = subprocess.Popen(command("run", "--plain", "--out", str(out), str(path)),
                               env=environment(settings), cwd=ROOT, text=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    try:
        deadline = time.monotonic() + LIMIT_S
        while (not ledger.pending(settings.state_dir) and process.poll() is None
               and time.monotonic() < deadline):
            time.sleep(0.2)
        assert ledger.pending(settings.state_dir), "the fault was never injected"
        # Mid-fault, and usually while the action still injects and verifies it.
        process.send_signal(signal.SIGINT)
        interrupted = time.monotonic()
        _, stderr = process.communicate(timeout=LIMIT_S)
        stopped_s = time.monotonic() - interrupted
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr
    summary = json.loads((out / "gameday.json").read_text())
    assert [e["outcome"] for e in summary["entries"]] == ["interrupted", "skipped"]
    # Rolled back on the interrupt, not once the window the action's pause declares ran out
    # (chaoslib sleeps that pause even when the action itself was interrupted).
    assert stopped_s < WINDOW_S, f"the game day ended {stopped_s:.0f} s after Ctrl-C"
    assert "lkchaos recovery" in stderr
    # Nothing left: the ledger, Toxiproxy, containers, resolver answers, certificates.
    assert ledger.pending(settings.state_dir) == []
    assert wait_baseline()["ok"]
    assert _deployment(settings) == before
