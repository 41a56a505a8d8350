"""Safety without a stack: the ledger, the run lock, and rollbacks that always run."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from chaoslib.experiment import run_experiment

from lkchaos.safety import ledger, runlock
from lkchaos.settings import Settings
from tests.unit import chaos_helpers as helpers

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A private state folder; no Docker engine and no Toxiproxy to reach."""
    state = helpers.isolate(monkeypatch, tmp_path)
    return state


def test_ledger_records_forgets_and_undoes(
    isolated: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(ledger, "UNDO_MODULE_PREFIX", "tests.")
    trace = str(tmp_path / "trace")
    undo = {"path": trace, "line": "undone"}
    ledger.record(isolated, ledger.Fault("paused", "agent", "tests.unit.chaos_helpers",
                                         "append", undo))
    ledger.record(isolated, ledger.Fault("stopped", "mcp", "tests.unit.chaos_helpers",
                                         "append", {"path": trace, "line": "mcp"}))
    assert [f.describe() for f in ledger.pending(isolated)] == [
        "paused on agent", "stopped on mcp"
    ]
    assert ledger.forget(isolated, "paused", "agent") == 1
    assert ledger.forget(isolated, "paused", "agent") == 0  # idempotent
    results = ledger.undo_all(isolated, {})
    assert [(r["fault"], r["outcome"]) for r in results] == [("stopped on mcp", "undone")]
    assert helpers.lines(trace) == ["mcp"]
    assert ledger.pending(isolated) == []


def test_ledger_refuses_undo_functions_outside_lkchaos(isolated: Path) -> None:
    with pytest.raises(Exception, match="undo must be an lkchaos function"):
        ledger.record(isolated, ledger.Fault("x", "y", "os", "system", {"command": "true"}))


def test_run_lock_names_the_running_experiment(isolated: Path) -> None:
    isolated.mkdir(parents=True, exist_ok=True)
    runlock.lock_path(isolated).write_text(
        f'{{"pid": {os.getppid()}, "title": "redis failover", "started": "2026-01-01T00:00:00"}}'
    )
    with pytest.raises(runlock.LockHeld, match="'redis failover' .*lkchaos recover"):
        runlock.acquire(isolated, "another")


def test_a_stale_lock_is_taken_over(isolated: Path) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    isolated.mkdir(parents=True, exist_ok=True)
    runlock.lock_path(isolated).write_text(
        f'{{"pid": {int(gone.stdout)}, "title": "crashed", "started": "2026-01-01T00:00:00"}}'
    )
    assert runlock.acquire(isolated, "mine") == (
        "took over a stale lock left by a runner that is gone"
    )
    holder = runlock.holder(isolated)
    assert holder is not None and holder.title == "mine"
    runlock.release(isolated)
    assert runlock.holder(isolated) is None


def test_a_lock_left_by_a_killed_runner_nobody_reaped_is_taken_over(isolated: Path) -> None:
    # A CI job that kills its `chaos run` without waiting for it leaves a zombie: the pid
    # still answers kill(pid, 0), but the runner is gone and holds nothing.
    runner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        isolated.mkdir(parents=True, exist_ok=True)
        runlock.lock_path(isolated).write_text(
            f'{{"pid": {runner.pid}, "title": "killed", "started": "2026-01-01T00:00:00"}}'
        )
        assert runlock.holder(isolated) is not None  # alive: respected
        runner.kill()
        deadline = time.monotonic() + 10
        while Path(f"/proc/{runner.pid}/stat").read_text().split(")")[-1].split()[0] != "Z":
            assert time.monotonic() < deadline, "the killed runner never became a zombie"
            time.sleep(0.05)
        assert runlock.holder(isolated) is None
        assert runlock.acquire(isolated, "next") == (
            "took over a stale lock left by a runner that is gone"
        )
        runlock.release(isolated)
    finally:
        runner.kill()
        runner.wait(10)


@pytest.mark.parametrize(
    ("failure", "status"),
    [(helpers.action("interrupt"), "interrupted"), (helpers.action("sigterm"), "interrupted")],
    ids=["ctrl-c", "sigterm"],
)
def test_rollbacks_run_when_chaos_toolkit_would_skip_them(
    tmp_path: Path, isolated: Path, failure: dict[str, object], status: str
) -> None:
    trace = str(tmp_path / "trace")
    journal = run_experiment(helpers.experiment(trace, [failure]))
    assert journal["status"] == status
    assert helpers.lines(trace) == ["fault", "rollback"]
    assert journal["lkchaos_safety"]["rollbacks_played_by_lkchaos"] == 1
    assert runlock.holder(isolated) is None  # the lock was released


@pytest.mark.parametrize("func", ["interrupt", "sigterm"], ids=["ctrl-c", "sigterm"])
def test_a_probe_cut_short_by_an_interrupt_is_not_a_deviation(
    tmp_path: Path, isolated: Path, func: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The interrupt comes while a method probe with a tolerance runs: it returned nothing,
    # which is no answer to judge (it read "missed its tolerance (output: None)", DEVIATED).
    trace = str(tmp_path / "trace")
    judged = helpers.probe("judged-first", "value", tolerance=True, result=True)
    cut = helpers.probe("apology-heard", func, tolerance=True)
    with caplog.at_level("WARNING"):
        journal = run_experiment(helpers.experiment(trace, [judged, cut]))
    assert journal["status"] == "interrupted" and not journal["deviated"]
    assert "missed_tolerances" not in journal["lkchaos_safety"]
    assert helpers.lines(trace) == ["fault", "rollback"]
    assert any("lkchaos: the run was INTERRUPTED during 'apology-heard' (not judged); its "
               "faults were undone" in r.getMessage() for r in caplog.records), caplog.text
    assert not any("DEVIATED" in r.getMessage() for r in caplog.records)


def test_a_probe_that_missed_before_the_interrupt_still_deviates(
    tmp_path: Path, isolated: Path
) -> None:
    missed = helpers.probe("answered", "value", tolerance=True, result=False)
    journal = run_experiment(helpers.experiment(str(tmp_path / "trace"),
                                                [missed, helpers.action("interrupt")]))
    assert journal["deviated"]
    assert [m["probe"] for m in journal["lkchaos_safety"]["missed_tolerances"]] == ["answered"]


def test_rollbacks_are_not_played_twice(tmp_path: Path, isolated: Path) -> None:
    trace = str(tmp_path / "trace")
    journal = run_experiment(helpers.experiment(trace, []))
    assert journal["status"] == "completed"
    assert helpers.lines(trace) == ["fault", "rollback"]
    assert "rollbacks_played_by_lkchaos" not in journal["lkchaos_safety"]


def test_rooms_left_on_dead_nodes_are_closed_after_the_run(
    tmp_path: Path, isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lkchaos.livekit import dead_nodes

    closed = [{"fault": "room lkchaos-probe-1 left on node ND_x, which is gone",
               "outcome": "closed"}]  # fmt: skip
    asked: list[object] = []
    monkeypatch.setattr(dead_nodes, "close_own_rooms",
                        lambda settings: asked.append(settings) or closed)  # fmt: skip
    journal = run_experiment(helpers.experiment(str(tmp_path / "trace"), []))
    assert journal["status"] == "completed" and not journal["deviated"]
    assert journal["lkchaos_safety"]["rooms_closed"] == closed and len(asked) == 1


def test_rooms_that_cannot_be_looked_for_leave_the_verdict_alone(
    tmp_path: Path, isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis

    from lkchaos.livekit import dead_nodes

    # This test's target has no LiveKit keys (see helpers.isolate): nothing to look for.
    journal = run_experiment(helpers.experiment(str(tmp_path / "trace"), []))
    assert journal["status"] == "completed" and journal["lkchaos_safety"]["rooms_closed"] == []

    def unreachable(settings: object) -> list[dict[str, str]]:
        raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:9. Connection refused.")

    # whatever goes wrong is said in the journal, and the verdict is the run's
    monkeypatch.setattr(dead_nodes, "close_own_rooms", unreachable)
    journal = run_experiment(helpers.experiment(str(tmp_path / "trace2"), []))
    assert journal["status"] == "completed" and not journal["deviated"]
    [entry] = journal["lkchaos_safety"]["rooms_closed"]
    assert entry["outcome"].startswith("error: Error 111")
    assert "error" not in journal["lkchaos_safety"]


def test_a_second_experiment_is_refused_and_touches_nothing(
    tmp_path: Path, isolated: Path
) -> None:
    isolated.mkdir(parents=True, exist_ok=True)
    runlock.lock_path(isolated).write_text(
        f'{{"pid": {os.getppid()}, "title": "first", "started": "2026-01-01T00:00:00"}}'
    )
    trace = str(tmp_path / "trace")
    journal = run_experiment(helpers.experiment(trace, []),
                             settings={"runtime": {"rollbacks": {"strategy": "always"}}})
    assert journal["status"] == "interrupted"
    assert helpers.lines(trace) == []  # neither the fault nor any rollback ran
    safety = journal["lkchaos_safety"]
    assert "'first'" in safety["refused"] and safety["rollbacks_played_by_lkchaos"] == 0
    assert safety["run_id"] is None
    holder = runlock.holder(isolated)
    assert holder is not None and holder.title == "first"


def test_a_run_on_another_target_neither_waits_for_nor_sees_the_reference_stacks_run(
    tmp_path: Path, isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A run on the reference stack is under way (a live runner holds its lock) and has a fault
    # in the shared ledger.
    monkeypatch.setattr(ledger, "UNDO_MODULE_PREFIX", "tests.")
    reference = Settings.load()
    isolated.mkdir(parents=True, exist_ok=True)
    runlock.lock_path(isolated).write_text(
        f'{{"pid": {os.getppid()}, "title": "on the reference", "started": "2026-01-01T00:00:00"}}'
    )
    trace = str(tmp_path / "trace")
    ledger.record(isolated, ledger.Fault("stopped", "agent", "tests.unit.chaos_helpers",
                                         "append", {"path": trace, "line": "reference undone"}))
    # The same state folder, another deployment: it runs, and reports nothing of the other's.
    monkeypatch.setenv("LKCHAOS_TARGET", str(ROOT / "tests" / "fixtures" / "targets" /
                                             "minimal.yaml"))
    other = Settings.load()
    assert other.run_dir != reference.run_dir
    journal = run_experiment(helpers.experiment(trace, []))
    safety = journal["lkchaos_safety"]
    assert journal["status"] == "completed", safety
    assert safety["warnings"] == [] and "refused" not in safety
    assert helpers.lines(trace) == ["fault", "rollback"]  # its own, not the reference's undo
    assert runlock.holder(other.run_dir) is None  # released at its end
    holder = runlock.holder(reference.run_dir)
    assert holder is not None and holder.title == "on the reference"
    assert ledger.pending(isolated) == []  # none on this target
    assert [f.target for f in ledger.pending(isolated, every_target=True)] == ["agent"]
