"""The safety control's verdict and its end-of-run cleanup, through chaoslib's real runner."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from chaoslib.control import load_global_controls
from chaoslib.experiment import run_experiment
from chaoslib.types import Dry

from lkchaos.safety import audit, control, ledger, runlock
from tests.unit import chaos_helpers as helpers

SAFETY = {"name": "lkchaos-safety",
          "provider": {"type": "python", "module": "lkchaos.safety.control"}}


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A private state folder; no Docker engine and no Toxiproxy to reach; test functions
    count as lkchaos actions and undos."""
    state = helpers.isolate(monkeypatch, tmp_path)
    monkeypatch.setattr(control, "VERDICT_MODULES", ("lkchaos.", "tests.unit.chaos_helpers"))
    monkeypatch.setattr(ledger, "UNDO_MODULE_PREFIX", "tests.")
    return state


def _experiment(trace: Path, method: list[dict[str, Any]], rollbacks: bool = True,
                controls: bool = True) -> dict[str, Any]:  # fmt: skip
    exp = helpers.experiment(str(trace), method)
    if not rollbacks:
        exp.pop("rollbacks")
    if not controls:
        exp.pop("controls")
    return exp


def _run(exp: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    journal: dict[str, Any] = run_experiment(exp, **kwargs)
    json.dumps(journal, default=str)  # the journal can be written
    return journal


def test_a_clean_run_completes_and_says_what_it_did(tmp_path: Path, isolated: Path) -> None:
    trace = tmp_path / "trace"
    journal = _run(_experiment(trace, [helpers.action("record_fault", trace=str(trace),
                                                      target="agent")]))
    assert journal["status"] == "completed" and journal["deviated"] is False
    safety = journal["lkchaos_safety"]
    assert safety["rollback_strategy"] == "default" and safety["run_id"]
    assert [r["outcome"] for r in safety["recovered"]] == ["undone"]
    assert "failed_actions" not in safety and "missed_tolerances" not in safety
    assert safety["faults"] == {"injected": 1, "undone": 1}  # as the audit log holds them
    assert ledger.pending(isolated) == []
    assert helpers.lines(str(trace)) == ["fault", "inject agent", "rollback", "undo agent"]


def test_a_steady_state_missed_before_the_method_fails_the_run(tmp_path: Path) -> None:
    # Chaos Toolkit alone ends this "completed", not deviated (exit 0): nothing was tested.
    trace = tmp_path / "trace"
    exp = _experiment(trace, [helpers.action("record_fault", trace=str(trace), target="agent")])
    exp["steady-state-hypothesis"] = {"title": "ready", "probes": [
        helpers.probe("nodes-ready", "value", tolerance=2, result=1)]}
    journal = _run(exp)
    assert journal["status"] == "failed" and journal["deviated"] is False
    assert journal["lkchaos_safety"]["steady_state_not_met_before"] == ["nodes-ready"]
    assert journal["run"] == []  # the method never ran
    assert "fault" not in helpers.lines(str(trace))


def _missed_before(trace: Path, caplog: pytest.LogCaptureFixture) -> tuple[
        dict[str, Any], list[str]]:  # fmt: skip
    """Run an experiment whose steady state (``tools-answer``) misses before the method: its
    journal, failed, and what the control said of it."""
    exp = _experiment(trace, [helpers.action("record_fault", trace=str(trace), target="agent")])
    exp["steady-state-hypothesis"] = {"title": "ready", "probes": [
        helpers.probe("tools-answer", "value", tolerance=2, result=1)]}
    with caplog.at_level(logging.INFO, logger="chaostoolkit"):
        journal = _run(exp)
    assert journal["status"] == "failed"
    return journal, [m for _, m in _messages(caplog) if "did not hold before the method, so" in m]


def test_a_steady_state_missed_with_an_earlier_runs_fault_left_says_to_recover(
        tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    # A run killed with SIGKILL left its fault, and this run was allowed to start on it; the
    # next run's hint sent the user to `lkchaos target check`, not to what undoes it.
    monkeypatch.setenv("LKCHAOS_ALLOW_EARLIER_FAULTS", "1")
    trace = tmp_path / "trace"
    ledger.begin_run("killed run")
    helpers.record_fault(str(trace), "mcp")
    ledger.end_run()
    journal, said = _missed_before(trace, caplog)
    assert len(said) == 1 and "faults of an earlier run are still in effect" in said[0]
    assert "on mcp" in said[0] and "run `lkchaos recover`, then run again" in said[0]
    assert "failed: tools-answer (returned 1)." in said[0]


def test_a_steady_state_missed_on_a_deployment_that_is_down_says_so_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    # Every probe of a stopped deployment fails to connect; the first one's error (the voice
    # prober's, suggesting a prober of one's own) was all the user was told.
    from tests.unit.livekit_dev import free_port

    nodes = [f"http://127.0.0.1:{free_port()}" for _ in range(2)]
    monkeypatch.setenv("LKCHAOS_LIVEKIT_NODE_URLS", ",".join(nodes))
    journal, said = _missed_before(tmp_path / "trace", caplog)
    assert len(said) == 1
    assert "The deployment is down: no LiveKit node answers" in said[0]
    assert all(f"{url}: Connection refused" in said[0] for url in nodes)
    assert journal["lkchaos_safety"]["deployment_down"].startswith("the deployment is down")


def test_a_steady_state_probe_that_raised_is_said_with_its_error(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    # A wrong API secret: the cause was only in the journal (and in a rollback's error).
    trace = tmp_path / "trace"
    exp = _experiment(trace, [helpers.action("record_fault", trace=str(trace), target="agent")])
    exp["steady-state-hypothesis"] = {"title": "ready", "probes": [{
        "type": "probe", "name": "caller-answered", "tolerance": True,
        "provider": {"type": "python", "module": helpers.__name__, "func": "broken",
                     "arguments": {"message": "the voice prober refused the credential"}}}]}
    with caplog.at_level(logging.INFO, logger="chaostoolkit"):
        journal = _run(exp)
    assert journal["status"] == "failed"
    said = [m for _, m in _messages(caplog) if "did not hold before the method, so" in m]
    assert "failed: caller-answered (the voice prober refused the credential)." in said[0]


def test_a_steady_state_met_before_the_method_is_not_a_failure(tmp_path: Path) -> None:
    trace = tmp_path / "trace"
    exp = _experiment(trace, [])
    exp["steady-state-hypothesis"] = {"title": "ready", "probes": [
        helpers.probe("nodes-ready", "value", tolerance=2, result=2)]}
    journal = _run(exp)
    assert journal["status"] == "completed" and journal["deviated"] is False
    assert "steady_state_not_met_before" not in journal["lkchaos_safety"]


def test_a_failed_lkchaos_action_fails_the_run(tmp_path: Path, isolated: Path) -> None:
    trace = tmp_path / "trace"
    journal = _run(_experiment(trace, [
        helpers.action("broken", message="the toxic is not listed after 5 s")]))
    assert journal["status"] == "failed"
    assert journal["lkchaos_safety"]["failed_actions"] == [{
        "activity": "broken", "type": "action", "function": "tests.unit.chaos_helpers.broken",
        "error": "the toxic is not listed after 5 s",
    }]
    # chaoslib skips rollbacks of a failed run by default; the control played them
    assert helpers.lines(str(trace)) == ["fault", "rollback"]


def test_a_failed_lkchaos_probe_fails_the_run(tmp_path: Path) -> None:
    trace = tmp_path / "trace"
    failing = helpers.probe("delete-room", "broken", message="node unreachable")
    journal = _run(_experiment(trace, [failing]))
    assert journal["status"] == "failed" and journal["deviated"] is False
    assert journal["lkchaos_safety"]["failed_actions"] == [{
        "activity": "delete-room", "type": "probe",
        "function": "tests.unit.chaos_helpers.broken", "error": "node unreachable",
    }]


def _messages(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "chaostoolkit"]


def test_the_real_verdict_is_the_last_line_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="chaostoolkit"):
        _run(_experiment(tmp_path / "trace", [helpers.action("broken", message="no toxic")]))
    messages = _messages(caplog)
    ended = [i for i, (_, m) in enumerate(messages) if "ended with status: completed" in m]
    level, last = messages[-1]
    assert ended and level == logging.ERROR
    assert last == "lkchaos: the run FAILED: action 'broken' failed: no toxic"
    assert sum("the run FAILED" in m for _, m in messages) == 1


def test_a_deviation_decided_by_the_control_is_the_last_line_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="chaostoolkit"):
        _run(_experiment(tmp_path / "trace", [helpers.probe("y", "value", 1, result=0)]))
    level, last = _messages(caplog)[-1]
    assert level == logging.ERROR
    assert last == "lkchaos: the run DEVIATED: method probe 'y' missed its tolerance"


def test_no_verdict_line_when_the_control_changes_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="chaostoolkit"):
        _run(_experiment(tmp_path / "trace", []))
    assert not any(m.startswith("lkchaos: the run") for _, m in _messages(caplog))


def test_a_failed_action_of_another_extension_does_not_decide(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(control, "VERDICT_MODULES", ("lkchaos.",))
    journal = _run(_experiment(tmp_path / "trace", [helpers.action("broken", message="x")]))
    assert journal["status"] == "completed"
    assert "failed_actions" not in journal["lkchaos_safety"]


@pytest.mark.parametrize(
    ("tolerance", "output", "deviates"),
    [
        (5, 4, True),
        (5, 5, False),
        ([0, 10], 11, True),
        ([0, 10], 3, False),
        (True, False, True),
        ({"type": "jsonpath", "path": "$.ok", "expect": True}, {"ok": False}, True),
        ({"type": "jsonpath", "path": "$.ok", "expect": True}, {"ok": True}, False),
        ({"type": "range", "range": [0, 1.5], "target": "latency"}, {"latency": 2}, True),
    ],
    ids=["int", "int-ok", "range-list", "range-list-ok", "bool", "jsonpath", "jsonpath-ok",
         "range-target"],
)
def test_a_method_probe_that_misses_its_tolerance_deviates(
    tmp_path: Path, tolerance: Any, output: Any, deviates: bool
) -> None:
    journal = _run(_experiment(tmp_path / "trace", [
        helpers.probe("apology-heard", "value", tolerance=tolerance, result=output)]))
    assert journal["status"] == "completed"
    assert journal["deviated"] is deviates
    missed = journal["lkchaos_safety"].get("missed_tolerances", [])
    if deviates:
        assert missed == [{"probe": "apology-heard", "tolerance": tolerance, "output": output}]
    else:
        assert missed == []


def test_a_method_probe_without_tolerance_never_deviates(tmp_path: Path) -> None:
    journal = _run(_experiment(tmp_path / "trace", [helpers.probe("info", "value", result=1)]))
    assert journal["deviated"] is False


def test_a_failed_method_probe_with_a_tolerance_deviates(tmp_path: Path) -> None:
    failing = helpers.probe("check", "broken", tolerance=True, message="no answer")
    journal = _run(_experiment(tmp_path / "trace", [failing]))
    assert journal["deviated"] is True
    (miss,) = journal["lkchaos_safety"]["missed_tolerances"]
    assert miss["probe"] == "check" and "no answer" in miss["error"]


def test_a_failed_undo_stays_in_the_ledger_and_fails_the_run(
    tmp_path: Path, isolated: Path
) -> None:
    trace = tmp_path / "trace"
    exp = _experiment(trace, [helpers.action("record_fault", trace=str(trace), target="mcp",
                                             undo="failing_undo")], rollbacks=False)
    journal = _run(exp)
    assert journal["status"] == "failed"
    (bad,) = journal["lkchaos_safety"]["not_recovered"]
    assert bad["fault"] == "marked on mcp" and "cannot undo" in bad["error"]
    assert bad["attempts"] == 1
    (left,) = ledger.pending(isolated)
    assert left.attempts == 1 and "cannot undo undo mcp" in left.last_error
    assert left.run_id == journal["lkchaos_safety"]["run_id"]
    # `lkchaos recover` still has it to retry, and counts the attempts
    results = ledger.undo_all(isolated)
    assert results[0]["attempts"] == 2 and ledger.pending(isolated)[0].attempts == 2
    outcomes = [e["outcome"] for e in audit.read(isolated)]
    assert outcomes == ["injected", "undo failed", "undo failed"]


def test_the_cleanup_undoes_only_this_runs_faults(tmp_path: Path, isolated: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("LKCHAOS_ALLOW_EARLIER_FAULTS", "1")  # a run on an earlier run's fault
    trace = tmp_path / "trace"
    ledger.begin_run("an earlier run", "earlier")
    helpers.record_fault(str(trace), "left-before")
    ledger.end_run()
    journal = _run(_experiment(trace, [
        helpers.action("record_fault", trace=str(trace), target="mine")], rollbacks=False))
    assert journal["status"] == "completed"
    assert [r["fault"] for r in journal["lkchaos_safety"]["recovered"]] == ["marked on mine"]
    assert [f.target for f in ledger.pending(isolated)] == ["left-before"]
    assert any("lkchaos recover" in w for w in journal["lkchaos_safety"]["warnings"])
    assert "undo left-before" not in helpers.lines(str(trace))


def test_dry_actions_injects_and_undoes_nothing(tmp_path: Path, isolated: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("LKCHAOS_ALLOW_EARLIER_FAULTS", "1")  # a run on an earlier run's fault
    trace = tmp_path / "trace"
    ledger.begin_run("an earlier run", "earlier")
    helpers.record_fault(str(trace), "left-before")
    ledger.end_run()
    exp = _experiment(trace, [helpers.action("interrupt")])  # would skip chaoslib's rollbacks
    exp["dry"] = Dry.ACTIONS
    journal = _run(exp)
    assert journal["lkchaos_safety"]["dry"] == "actions"
    assert "rollbacks_played_by_lkchaos" not in journal["lkchaos_safety"]
    assert journal["lkchaos_safety"]["recovered"] == []
    assert helpers.lines(str(trace)) == ["inject left-before"]  # nothing ran for real
    assert [f.target for f in ledger.pending(isolated)] == ["left-before"]


def test_dry_probes_still_rolls_back_what_actions_did(tmp_path: Path) -> None:
    trace = tmp_path / "trace"
    exp = _experiment(trace, [helpers.action("interrupt")])
    exp["dry"] = Dry.PROBES
    journal = _run(exp)
    assert journal["status"] == "interrupted"
    assert helpers.lines(str(trace)) == ["fault", "rollback"]


def test_rollback_strategy_never_is_honoured_loudly(
    tmp_path: Path, isolated: Path, caplog: pytest.LogCaptureFixture
) -> None:
    trace = tmp_path / "trace"
    exp = _experiment(trace, [helpers.action("record_fault", trace=str(trace), target="agent"),
                              helpers.action("interrupt")])
    with caplog.at_level(logging.WARNING, logger="chaostoolkit"):
        journal = _run(exp, settings={"runtime": {"rollbacks": {"strategy": "never"}}})
    safety = journal["lkchaos_safety"]
    assert safety["rollback_strategy"] == "never"
    assert safety["left_in_ledger"] == ["marked on agent"]
    assert any("never" in w and "lkchaos recover" in w for w in safety["warnings"])
    assert any("lkchaos recover" in r.message for r in caplog.records)
    assert helpers.lines(str(trace)) == ["fault", "inject agent"]  # nothing undone
    assert [f.target for f in ledger.pending(isolated)] == ["agent"]  # recover still sees it
    assert runlock.holder(isolated) is None


@pytest.mark.parametrize("strategy", ["default", "deviated"])
def test_other_strategies_keep_rollbacks_always(tmp_path: Path, strategy: str) -> None:
    trace = tmp_path / "trace"
    exp = _experiment(trace, [helpers.action("interrupt")])
    journal = _run(exp, settings={"runtime": {"rollbacks": {"strategy": strategy}}})
    assert helpers.lines(str(trace)) == ["fault", "rollback"]
    assert journal["lkchaos_safety"]["rollbacks_played_by_lkchaos"] == 1


def _declare_in_settings() -> None:
    load_global_controls({"controls": {"lkchaos-safety": {
        "provider": {"type": "python", "module": "lkchaos.safety.control"}}}})


def test_declared_in_settings_only_it_still_decides(tmp_path: Path, isolated: Path) -> None:
    trace = tmp_path / "trace"
    _declare_in_settings()
    journal = _run(_experiment(trace, [
        helpers.action("record_fault", trace=str(trace), target="agent"),
        helpers.action("broken", message="cannot verify"),
        helpers.probe("check", "value", tolerance=1, result=0)], controls=False))
    assert journal["status"] == "failed" and journal["deviated"] is True
    safety = journal["lkchaos_safety"]
    assert [a["activity"] for a in safety["failed_actions"]] == ["broken"]
    assert [m["probe"] for m in safety["missed_tolerances"]] == ["check"]
    assert helpers.lines(str(trace)) == ["fault", "inject agent", "rollback", "undo agent"]
    assert runlock.holder(isolated) is None


def test_declared_in_settings_and_experiment_it_acts_once(
    tmp_path: Path, isolated: Path
) -> None:
    trace = tmp_path / "trace"
    _declare_in_settings()
    journal = _run(_experiment(trace, [
        helpers.action("record_fault", trace=str(trace), target="agent"),
        helpers.action("interrupt")]))
    assert journal["status"] == "interrupted"
    assert journal["lkchaos_safety"]["rollbacks_played_by_lkchaos"] == 1
    assert helpers.lines(str(trace)) == ["fault", "inject agent", "rollback", "undo agent"]
    assert [e["outcome"] for e in audit.read(isolated)] == ["injected", "undone"]
    assert runlock.holder(isolated) is None


def test_the_audit_names_the_run_experiment_and_activity(tmp_path: Path, isolated: Path) -> None:
    trace = tmp_path / "trace"
    journal = _run(_experiment(trace, [
        helpers.action("record_fault", trace=str(trace), target="agent")]))
    injected, undone = audit.read(isolated)
    run_id = journal["lkchaos_safety"]["run_id"]
    assert injected["run"] == undone["run"] == run_id
    assert injected["experiment"] == "safety test" and injected["outcome"] == "injected"
    assert injected["activity"] == "record_fault"
    assert injected["arguments"] == {"trace": str(trace), "target": "agent"}
    assert undone["outcome"] == "undone" and undone["target"] == "agent"
    assert audit.read(isolated, run=run_id[:8]) == [injected, undone]
    assert audit.read(isolated, run="nope") == []


@pytest.mark.parametrize("variable", ["LIVEKIT_API_SECRET", "LKCHAOS_REDIS_PASSWORD"])
def test_the_api_secret_stays_out_of_the_journal_ledger_and_audit(
    tmp_path: Path, isolated: Path, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    # The Redis password too: every secret the target's settings hold is registered (each
    # case its own value: registered secrets stay known to the process).
    from lkchaos.safety.secrets import scan

    secret = f"s3cr3t-{variable.lower()}-0123456789-abcdefghij"
    monkeypatch.setenv(variable, secret)
    trace = tmp_path / "trace"
    exp = _experiment(trace, [
        helpers.action("record_fault", trace=str(trace), target="agent"),
        helpers.probe("leaky", "value", tolerance=0, result=f"token={secret}"),
        helpers.action("broken", message=f"refused with {secret}")])
    journal = _run(exp)
    out = tmp_path / "journal.json"
    out.write_text(json.dumps(journal, default=str))  # the whole journal, as written
    assert scan([out, isolated], secret) == []
    assert "***" in out.read_text()


def test_an_access_token_an_error_quoted_stays_out_of_the_journal(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    from lkchaos.livekit.client import access_token
    from lkchaos.settings import Settings

    token = access_token(Settings(livekit_api_key="k", livekit_api_secret="s" * 40),
                         "caller", "room", ttl_seconds=60)  # fmt: skip
    trace = tmp_path / "trace"
    exp = _experiment(trace, [
        helpers.probe("join", "value", tolerance=0, result=f"wss://x/rtc?access_token={token}"),
        helpers.action("broken", message=f"503 for url='wss://x/rtc?access_token={token}'")])
    with caplog.at_level(logging.INFO, logger="chaostoolkit"):
        journal = _run(exp)
    written = json.dumps(journal, default=str)
    assert token not in written and "access_token=***" in written
    logged = [m for _, m in _messages(caplog)]  # the terminal and chaostoolkit.log
    assert any("access_token=***" in m for m in logged)
    assert not any(token in m for m in logged)


def test_the_preflight_check_runs_before_the_lock(
    tmp_path: Path, isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chaoslib.exceptions import InterruptExecution

    from lkchaos import preflight

    seen: list[bool] = []

    def check_or_raise(experiment: Any, configuration: Any, secrets: Any) -> None:
        seen.append(runlock.holder(isolated) is None)
        raise InterruptExecution("activity 'x': argument 'percent' is 150; valid: 0 to 100")

    monkeypatch.setattr(preflight, "check_or_raise", check_or_raise)
    trace = tmp_path / "trace"
    journal = _run(_experiment(trace, []))
    assert seen == [True]
    assert journal["status"] == "interrupted"
    assert journal["lkchaos_safety"]["problems"] == [
        "activity 'x': argument 'percent' is 150; valid: 0 to 100"]
    assert helpers.lines(str(trace)) == [] and not runlock.lock_path(isolated).exists()


def test_an_error_at_the_start_refuses_the_run_instead_of_running_unlocked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lkchaos import preflight

    def broken_preflight(experiment: Any, configuration: Any, secrets: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(preflight, "check_or_raise", broken_preflight)
    trace = tmp_path / "trace"
    journal = _run(_experiment(trace, []))
    assert journal["status"] == "interrupted"
    assert helpers.lines(str(trace)) == []


def test_a_state_folder_that_cannot_be_made_is_named_with_how_to_choose_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    monkeypatch.setenv("LKCHAOS_STATE_DIR", str(blocked / "state"))
    trace = tmp_path / "trace"
    journal = _run(_experiment(trace, [helpers.action("record_fault", trace=str(trace),
                                                      target="agent")]))
    assert journal["status"] == "interrupted"
    refused = json.dumps(journal, default=str)
    assert f"the state folder {blocked / 'state'} (LKCHAOS_STATE_DIR) cannot be used" in refused
    assert helpers.lines(str(trace)) == []


def test_a_run_on_a_stack_another_checkout_started_is_refused_and_releases_its_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # That checkout's state folder holds the stack's run lock and ledger: two checkouts'
    # runs would not see each other, nor undo each other's faults.
    other = "/srv/old-clone/docker-compose.chaos.yml"
    monkeypatch.setattr(control, "_stack_of_another_checkout", lambda settings: other)
    trace = tmp_path / "trace"
    exp = _experiment(trace, [helpers.action("record_fault", trace=str(trace), target="agent")])
    journal = _run(exp)
    assert journal["status"] == "interrupted"
    refused = json.dumps(journal, default=str)
    assert f"started from another checkout of lkchaos ({other})" in refused
    assert "`lkchaos stack up --take-over`" in refused
    assert helpers.lines(str(trace)) == []
    monkeypatch.setattr(control, "_stack_of_another_checkout", lambda settings: None)
    assert _run(exp)["status"] == "completed"  # the refusal left no lock behind


def test_a_failed_run_that_also_deviated_says_which_steady_state_probe_missed() -> None:
    state = {"status": "failed", "deviated": True, "steady_states": {"after": {"probes": [
        {"activity": {"name": "caller-answered-now"}, "tolerance_met": True},
        {"activity": {"name": "no-room-or-participant-lost"}, "tolerance_met": False}]}}}
    report = {"failed_actions": [{"type": "action", "activity": "release",
                                  "error": "not in effect"}]}  # fmt: skip
    line = control._verdict_line(state, report)
    assert line == ("lkchaos: the run FAILED: action 'release' failed: not in effect (and "
                    "DEVIATED: steady-state probe 'no-room-or-participant-lost' missed its "
                    "tolerance after the method)")
