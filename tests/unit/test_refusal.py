"""A run refused before anything ran plays no rollback, whatever the strategy, and whichever
lkchaos control starts first; through chaoslib's real runner (and `chaos run` once)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from chaoslib.exceptions import InterruptExecution
from chaoslib.experiment import run_experiment

from lkchaos import preflight
from lkchaos.controls import sampling
from lkchaos.safety import gate, runlock
from tests.unit import chaos_helpers as helpers

ROOT = Path(__file__).resolve().parents[2]
ALWAYS = {"runtime": {"rollbacks": {"strategy": "always"}}}
SAMPLING = {"name": "sampling", "provider": {
    "type": "python", "module": "lkchaos.controls.sampling",
    "arguments": {"probes": [{"type": "probe", "name": "counted", "interval_s": 0.01,
                              "provider": {"type": "python", "module": __name__,
                                           "func": "counted"}}]}}}  # fmt: skip
#: An lkchaos action whose arguments the preflight rejects (a loss of 150 %).
BAD_ACTION = {"type": "action", "name": "lose-everything", "provider": {
    "type": "python", "module": "lkchaos.network.actions", "func": "media_packet_loss",
    "arguments": {"service": "livekit-2", "percent": 150}}}  # fmt: skip

_calls: list[str] = []


def counted() -> bool:
    """A probe that says when it was called."""
    _calls.append("probe")
    return True


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    state = helpers.isolate(monkeypatch, tmp_path)
    _calls.clear()
    return state


def _bad_experiment(trace: Path) -> dict[str, Any]:
    exp = helpers.experiment(str(trace), [BAD_ACTION])
    exp["method"] = [BAD_ACTION]  # only the bad action: nothing else would inject
    return exp


@pytest.mark.parametrize("where", ["settings", "experiment"])
def test_a_refused_run_plays_no_rollback_even_with_strategy_always(
    tmp_path: Path, isolated: Path, caplog: pytest.LogCaptureFixture, where: str
) -> None:
    trace = tmp_path / "trace"
    exp = _bad_experiment(trace)
    kwargs: dict[str, Any] = {}
    if where == "settings":
        kwargs["settings"] = ALWAYS
    else:
        exp["runtime"] = ALWAYS["runtime"]
    with caplog.at_level(logging.INFO, logger="chaostoolkit"):
        journal = run_experiment(exp, **kwargs)
    assert helpers.lines(str(trace)) == []  # the rollback would have written "rollback"
    assert journal["status"] == "interrupted" and journal["run"] == []
    assert "rollbacks" not in journal or journal["rollbacks"] == []
    safety = journal["lkchaos_safety"]
    assert safety["run_id"] is None and safety["rollbacks_played_by_lkchaos"] == 0
    assert any("percent" in p and "150" in p for p in safety["problems"])
    assert "nothing was run" in safety["refused"]
    critical = [r.message for r in caplog.records if r.levelno == logging.CRITICAL]
    assert any("percent" in m and "no rollback" in m for m in critical)
    assert not runlock.lock_path(isolated).exists()


def test_an_error_at_the_start_plays_no_rollback_either(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(experiment: Any, configuration: Any, secrets: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(preflight, "check_or_raise", broken)
    trace = tmp_path / "trace"
    journal = run_experiment(helpers.experiment(str(trace), []), settings=ALWAYS)
    assert journal["status"] == "interrupted"
    assert "RuntimeError: boom" in journal["lkchaos_safety"]["refused"]
    assert helpers.lines(str(trace)) == []


@pytest.mark.parametrize("order", [["sampling", "safety"], ["safety", "sampling"]])
def test_the_preflight_comes_first_whichever_control_starts_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, order: list[str]
) -> None:
    checks: list[int] = []

    def refusing(experiment: Any, configuration: Any, secrets: Any) -> None:
        checks.append(len(_calls))
        raise InterruptExecution("'x' has 1 problem(s); nothing was run:\n  - percent: 150")

    monkeypatch.setattr(preflight, "check_or_raise", refusing)
    trace = tmp_path / "trace"
    exp = helpers.experiment(str(trace), [])
    safety = exp["controls"][0]
    exp["controls"] = [SAMPLING if name == "sampling" else safety for name in order]
    journal = run_experiment(exp, settings=ALWAYS)
    assert checks == [0]  # once, before any probe was sampled
    assert _calls == [] and helpers.lines(str(trace)) == []
    assert journal["status"] == "interrupted"
    assert journal["lkchaos_safety"]["problems"] == ["percent: 150"]
    assert sampling.sampled_probes() == []


def test_a_passing_preflight_runs_once_for_both_controls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checks: list[str] = []

    def passing(experiment: Any, configuration: Any, secrets: Any) -> None:
        checks.append(str(experiment.get("title")))

    monkeypatch.setattr(preflight, "check_or_raise", passing)
    trace = tmp_path / "trace"
    exp = helpers.experiment(str(trace), [])
    exp["controls"] = [SAMPLING, exp["controls"][0]]
    journal = run_experiment(exp)
    assert journal["status"] == "completed" and checks == ["safety test"]
    assert helpers.lines(str(trace)) == ["fault", "rollback"]
    assert journal["lkchaos"]["sampling"]["probes"]["counted"]["samples"]
    assert gate.refusal(exp) is None


def test_bad_sampling_arguments_play_no_rollback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the sampling control's own check, after a preflight that let the arguments through
    monkeypatch.setattr(preflight, "check_or_raise", lambda *args: None)
    trace = tmp_path / "trace"
    exp = helpers.experiment(str(trace), [])
    bad = json.loads(json.dumps(SAMPLING))
    bad["provider"]["arguments"]["colour"] = "red"
    exp["controls"].append(bad)  # after the safety control, which took the lock
    journal = run_experiment(exp, settings=ALWAYS)
    assert journal["status"] == "interrupted" and helpers.lines(str(trace)) == []
    assert "colour" in journal["lkchaos_safety"]["refused"]
    assert "colour" in journal["lkchaos"]["sampling"]["error"]
    assert runlock.holder(Path(os.environ["LKCHAOS_STATE_DIR"])) is None


def test_chaos_run_exits_non_zero_and_plays_no_rollback(tmp_path: Path) -> None:
    trace = tmp_path / "trace"
    path = tmp_path / "experiment.json"
    path.write_text(json.dumps(_bad_experiment(trace)))
    settings = tmp_path / "settings.yaml"
    settings.write_text("{}\n")
    journal_path = tmp_path / "journal.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [str(Path(sys.executable).parent / "chaos"), "--no-version-check", "--settings",
         str(settings), "run", "--no-validation", "--rollback-strategy", "always",
         "--journal-path", str(journal_path), str(path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr + done.stdout
    journal = json.loads(journal_path.read_text())
    assert journal["status"] == "interrupted"
    assert journal["lkchaos_safety"]["rollbacks_played_by_lkchaos"] == 0
    assert helpers.lines(str(trace)) == []
