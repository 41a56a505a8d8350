"""The ledger keeps what it holds (no rewrite on read, a damaged file kept aside, durable
writes), and `lkchaos recover` leaves a running experiment alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chaoslib.experiment import run_experiment
from click.testing import CliRunner

from lkchaos.cli import main
from lkchaos.safety import audit, ledger, recovery, runlock
from lkchaos.settings import Settings
from tests.unit import chaos_helpers as helpers

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    state = helpers.isolate(monkeypatch, tmp_path)
    monkeypatch.setattr(ledger, "UNDO_MODULE_PREFIX", "tests.")
    return state


@pytest.fixture
def sweeps(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The sweeps of `recover`, replaced by ones that only say they ran."""
    ran: list[str] = []
    for name in ("toxiproxy", "containers", "network", "tls", "dns", "rooms"):
        def sweep(settings: Settings, name: str = name) -> list[dict[str, Any]]:
            ran.append(name)
            return []
        monkeypatch.setattr(recovery, f"_sweep_{name}", sweep)
    return ran


def _record(state: Path, trace: Path, target: str = "agent") -> None:
    ledger.record(state, ledger.Fault("paused", target, "tests.unit.chaos_helpers", "append",
                                      {"path": str(trace), "line": f"undo {target}"}))


# -- the ledger ---------------------------------------------------------------------------
def test_reading_the_ledger_never_rewrites_it(isolated: Path, tmp_path: Path) -> None:
    _record(isolated, tmp_path / "trace")
    path = ledger.ledger_path(isolated)
    before = (path.stat().st_ino, path.stat().st_mtime_ns, path.read_bytes())
    assert [f.target for f in ledger.pending(isolated)] == ["agent"]
    assert (path.stat().st_ino, path.stat().st_mtime_ns, path.read_bytes()) == before


@pytest.mark.parametrize("damage", ["truncated", "not-a-list", "not-utf8"])
def test_a_damaged_ledger_is_kept_aside_loudly(
    isolated: Path, tmp_path: Path, damage: str
) -> None:
    _record(isolated, tmp_path / "trace")
    _record(isolated, tmp_path / "trace", "mcp")
    path = ledger.ledger_path(isolated)
    damaged = {"truncated": path.read_bytes()[:-40], "not-a-list": b'{"kind": "paused"}',
               "not-utf8": b"\xff\xfe["}[damage]  # fmt: skip
    path.write_bytes(damaged)
    with pytest.raises(ledger.LedgerDamaged, match="lkchaos recover") as caught:
        ledger.pending(isolated)
    (kept,) = isolated.glob("faults.json.corrupt-*")
    assert kept.read_bytes() == damaged  # every byte kept, nothing emptied
    assert str(kept) in str(caught.value)
    assert not path.exists()
    assert audit.read(isolated)[-1]["outcome"] == "ledger set aside"
    assert ledger.pending(isolated) == []  # a new ledger starts


def test_writes_are_fsynced_and_renamed(
    isolated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    _record(isolated, tmp_path / "trace")
    assert str(isolated / "faults.tmp") in synced and str(isolated) in synced
    assert synced.index(str(isolated / "faults.tmp")) < synced.index(str(isolated))
    assert not (isolated / "faults.tmp").exists()
    assert json.loads(ledger.ledger_path(isolated).read_text())[0]["target"] == "agent"


def test_recover_still_sweeps_after_a_damaged_ledger(
    isolated: Path, tmp_path: Path, sweeps: list[str]
) -> None:
    _record(isolated, tmp_path / "trace")
    ledger.ledger_path(isolated).write_text('[{"kind": "paus')
    report = recovery.recover(Settings.load())
    assert report[0]["fault"] == "damaged fault ledger"
    assert "kept as" in report[0]["outcome"]
    assert sweeps == ["toxiproxy", "containers", "network", "tls", "dns", "rooms"]


def test_a_run_that_finds_the_ledger_damaged_is_refused(isolated: Path, tmp_path: Path) -> None:
    isolated.mkdir(parents=True)
    ledger.ledger_path(isolated).write_text("[")
    trace = tmp_path / "trace"
    journal = run_experiment(helpers.experiment(str(trace), []))
    assert journal["status"] == "interrupted" and helpers.lines(str(trace)) == []
    assert "lkchaos recover" in journal["lkchaos_safety"]["refused"]
    assert runlock.holder(isolated) is None


def _after_an_earlier_runs_fault(
    state: Path, tmp_path: Path
) -> tuple[Path, Path, dict[str, Any]]:
    """An earlier run's fault on mcp left in the ledger (its undo would write to ``left``),
    and an experiment that faults the agent (writing to ``trace``): (left, trace, exp)."""
    left = tmp_path / "left"
    ledger.begin_run("an earlier run")
    _record(state, left, target="mcp")
    ledger.end_run()
    trace = tmp_path / "trace"
    exp = helpers.experiment(str(trace), [helpers.action("record_fault", trace=str(trace),
                                                         target="agent")])  # fmt: skip
    return left, trace, exp


def test_a_run_on_faults_an_earlier_run_left_is_refused_and_leaves_them_for_recover(
    isolated: Path, tmp_path: Path
) -> None:
    """A runner killed with SIGKILL left its fault: the next experiment would judge that
    fault, not its own. It is refused before anything runs, and the fault stays for
    `lkchaos recover` (undone by nobody else, named in the refusal)."""
    left, trace, exp = _after_an_earlier_runs_fault(isolated, tmp_path)
    journal = run_experiment(exp)
    assert journal["status"] == "interrupted" and journal["run"] == []
    refused = journal["lkchaos_safety"]["refused"]
    assert "1 fault(s) of earlier runs are still in effect on this deployment (" in refused
    assert "on mcp" in refused and "Run `lkchaos recover` to undo them, then run again" in refused
    assert "LKCHAOS_ALLOW_EARLIER_FAULTS=1" in refused
    assert helpers.lines(str(trace)) == []  # neither fault, rollback nor undo of this run
    assert not left.exists()  # the earlier run's fault was not undone either
    assert [f.target for f in ledger.pending(isolated)] == ["mcp"]
    assert runlock.holder(isolated) is None


@pytest.mark.parametrize("how", ["environment", "configuration"])
def test_a_run_on_earlier_faults_runs_when_allowed_and_undoes_only_its_own(
    isolated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    _, trace, exp = _after_an_earlier_runs_fault(isolated, tmp_path)
    if how == "environment":
        monkeypatch.setenv("LKCHAOS_ALLOW_EARLIER_FAULTS", "1")
    else:
        exp["configuration"] = {"lkchaos_allow_earlier_faults": True}
    journal = run_experiment(exp)
    assert journal["status"] == "completed"
    assert any("1 fault(s) of earlier runs are still in effect" in w and "as allowed" in w
               for w in journal["lkchaos_safety"]["warnings"])  # fmt: skip
    assert helpers.lines(str(trace))[-1] == "undo agent"
    assert [f.target for f in ledger.pending(isolated)] == ["mcp"]


def test_an_allowance_that_is_not_true_or_false_refuses_the_run(
    isolated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger.begin_run("left")
    _record(isolated, tmp_path / "left", target="mcp")
    ledger.end_run()
    monkeypatch.setenv("LKCHAOS_ALLOW_EARLIER_FAULTS", "sure")
    trace = tmp_path / "trace"
    journal = run_experiment(helpers.experiment(str(trace), []))
    assert journal["status"] == "interrupted"
    assert "LKCHAOS_ALLOW_EARLIER_FAULTS must be true or false, not 'sure'" in (
        journal["lkchaos_safety"]["refused"])


# -- recover and a running experiment -----------------------------------------------------
@pytest.fixture
def running(isolated: Path) -> Iterator[int]:
    """Another process holding the run lock, as a runner does during an experiment."""
    with helpers.held_elsewhere(isolated, "redis failover") as pid:
        yield pid


def test_recover_refuses_while_another_process_runs_an_experiment(
    isolated: Path, tmp_path: Path, sweeps: list[str], running: int
) -> None:
    trace = tmp_path / "trace"
    _record(isolated, trace)
    with pytest.raises(recovery.RunInProgress, match=rf"'redis failover' \(pid {running},"):
        recovery.recover(Settings.load())
    assert sweeps == [] and helpers.lines(str(trace)) == []
    assert [f.target for f in ledger.pending(isolated)] == ["agent"]
    report = recovery.recover(Settings.load(), force=True)
    assert [r["outcome"] for r in report] == ["undone"] and len(sweeps) == 6


def test_the_recover_command_refuses_then_forces(
    isolated: Path, sweeps: list[str], running: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lkchaos.safety import probes

    monkeypatch.setattr(probes, "baseline", lambda: {"ok": True})
    refused = CliRunner().invoke(main, ["recover"])
    assert refused.exit_code == 1
    assert "'redis failover'" in refused.output and f"pid {running}" in refused.output
    assert "--force" in refused.output and sweeps == []
    forced = CliRunner().invoke(main, ["recover", "--force"])
    assert forced.exit_code == 0, forced.output
    assert "baseline restored" in forced.output and len(sweeps) == 6


def test_an_experiment_started_while_recover_works_is_refused(
    isolated: Path, sweeps: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    told: list[str] = []

    def sweep(settings: Settings) -> list[dict[str, Any]]:
        told.append(helpers.acquire_elsewhere(isolated))
        return []

    monkeypatch.setattr(recovery, "_sweep_dns", sweep)
    recovery.recover(Settings.load())
    assert len(told) == 1 and "'lkchaos recover'" in told[0]
    assert runlock.holder(isolated) is None  # released when done
    assert helpers.acquire_elsewhere(isolated) == "taken"


def test_recover_takes_over_a_stale_lock_and_says_whose(
    isolated: Path, sweeps: list[str]
) -> None:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)  # fmt: skip
    gone = int(child.stdout)
    isolated.mkdir(parents=True)
    runlock.lock_path(isolated).write_text(
        json.dumps({"pid": gone, "title": "kill -9'd run", "started": "2026-12-05T10:00:00"}))
    report = recovery.recover(Settings.load())
    assert report[-1] == {"fault": f"stale run lock of \"kill -9'd run\" (pid {gone})",
                          "outcome": "released"}  # fmt: skip
    assert runlock.holder(isolated) is None and len(sweeps) == 6


def test_the_recover_action_inside_the_running_experiment_is_not_refused(
    isolated: Path, sweeps: list[str]
) -> None:
    from lkchaos.safety.actions import recover

    runlock.acquire(isolated, "this run")
    try:
        assert recover()["count"] == 0 and len(sweeps) == 6
    finally:
        runlock.release(isolated)


def test_a_deployment_still_down_after_recover_is_said_in_words(
    isolated: Path, sweeps: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every container up and nothing pending, but no LiveKit node answering: the message
    # was "not back to baseline: {}".
    from lkchaos import cli
    from lkchaos.safety import probes

    down = {"ok": False, "unhealthy_services": [], "toxics": [], "disabled_proxies": [],
            "pending_faults": [], "nodes_ready": 0, "nodes": 2}  # fmt: skip
    monkeypatch.setattr(probes, "baseline", lambda: down)
    monkeypatch.setattr(cli.time, "sleep", lambda s: None)
    clock = iter(range(0, 10_000, 30))
    monkeypatch.setattr(cli.time, "monotonic", lambda: float(next(clock)))
    result = CliRunner().invoke(main, ["recover"])
    assert result.exit_code == 1
    assert "not back to baseline: LiveKit nodes ready: 0 of 2" in result.output, result.output
    assert "{}" not in result.output
