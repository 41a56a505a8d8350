"""The progress control's lines, the display that reads them, and each child run's setup."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import yaml

from lkchaos.controls import progress as control
from lkchaos.errors import ConfigError
from lkchaos.gameday import child
from lkchaos.gameday.progress import (
    PlainLines,
    Tail,
    Tracker,
    log_records_as_notes,
    make_display,
)
from lkchaos.safety import gate

JOURNALS = Path(__file__).resolve().parents[1] / "fixtures" / "journals"
ACTION = {"type": "action", "name": "kill-agent",
          "provider": {"type": "python", "module": "lkchaos.docker.actions"}}


def test_control_does_nothing_without_its_variable(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(control.ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    control.before_experiment_control({"title": "t"})
    assert list(tmp_path.iterdir()) == []


def test_control_never_fails_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(control.ENV, str(tmp_path / "missing-folder" / "progress.jsonl"))
    control.before_experiment_control({"title": "t"})
    control.after_activity_control(ACTION, state={"status": "succeeded", "output": object()})


def test_control_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "progress.jsonl"
    monkeypatch.setenv(control.ENV, str(path))
    control.before_experiment_control({"title": "t"})
    control.before_method_control({})
    control.before_activity_control(ACTION)
    control.after_activity_control(ACTION, state={"status": "succeeded", "output": "x" * 500})
    control.after_method_control({})
    control.before_hypothesis_control({})
    control.after_activity_control(
        {"type": "probe", "name": "p", "provider": {"type": "python", "module": "m"}},
        # Chaos Toolkit names the class once, and again when it wraps one error in another
        state={"status": "failed", "exception": ["Traceback", "chaoslib.exceptions.ActivityFailed"
                                                 ": chaoslib.exceptions.ActivityFailed: no "
                                                 "answer: Foo.Bar: kept\n"]})
    control.after_experiment_control({}, state={"status": "completed", "deviated": True})
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(e["event"], e["edge"]) for e in lines] == [
        ("experiment", "start"), ("phase", "start"), ("activity", "start"),
        ("activity", "end"), ("phase", "end"), ("phase", "start"), ("activity", "end"),
        ("experiment", "end")]
    end = lines[3]
    assert (end["name"], end["module"], end["phase"], end["status"]) == (
        "kill-agent", "lkchaos.docker.actions", "method", "succeeded")
    assert len(end["result"]) == control.SHORT
    assert lines[5]["phase"] == "steady-state-after"
    assert lines[6]["error"] == "no answer: Foo.Bar: kept"
    assert lines[7]["deviated"] is True


def test_an_experiment_without_a_method_has_a_steady_state_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # stack-healthy.json: no method, so its hypothesis runs twice with nothing between; the
    # second read "steady state before" again.
    path = tmp_path / "progress.jsonl"
    monkeypatch.setenv(control.ENV, str(path))
    control.before_experiment_control({"title": "t", "method": []})
    for _ in range(2):
        control.before_hypothesis_control({})
        control.after_hypothesis_control({}, state={"steady_state_met": True})
    control.after_experiment_control({}, state={"status": "completed", "deviated": False})
    phases = [(e["phase"], e["edge"]) for e in map(json.loads, path.read_text().splitlines())
              if e["event"] == "phase"]
    assert phases == [("steady-state-before", "start"), ("steady-state-before", "end"),
                      ("steady-state-after", "start"), ("steady-state-after", "end")]


def test_tail_reads_only_complete_new_lines(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    tail = Tail(path)
    assert tail.poll() == []
    path.write_text('{"a": 1}\n{"b"')
    assert tail.poll() == [{"a": 1}]
    with path.open("a") as handle:
        handle.write(': 2}\nnot json\n')
    assert tail.poll() == [{"b": 2}]


def test_fault_is_active_from_the_lkchaos_action_to_the_end_of_rollbacks() -> None:
    tracker = Tracker()
    tracker.feed({"event": "entry", "edge": "start", "index": 1, "name": "agent-crash"})
    tracker.feed({"event": "activity", "edge": "end", "type": "action", "phase": "method",
                  "module": "lkchaos.docker.actions", "status": "succeeded"})
    assert tracker.fault_active
    tracker.feed({"event": "phase", "edge": "end", "phase": "rollbacks"})
    assert not tracker.fault_active
    tracker.feed({"event": "faults", "pending": ["paused agent"]})
    assert tracker.fault_active  # the ledger still holds one


def test_a_fault_undone_in_the_method_is_no_longer_active() -> None:
    # dns-failure: "resolver-back" (a method action) undoes the fault; the lines after it
    # said "(fault active)" until the rollbacks ended.
    tracker = Tracker()
    tracker.feed({"event": "entry", "edge": "start", "index": 2, "name": "dns-failure"})
    tracker.feed({"event": "activity", "edge": "end", "type": "action", "phase": "method",
                  "module": "lkchaos.dns.actions", "status": "succeeded"})
    tracker.feed({"event": "faults", "pending": ["stopped on dns"]})
    assert tracker.fault_active
    tracker.feed({"event": "faults", "pending": []})  # the ledger: undone
    assert not tracker.fault_active
    tracker.feed({"event": "activity", "edge": "end", "type": "action", "phase": "method",
                  "module": "lkchaos.dns.actions", "status": "succeeded"})
    assert tracker.fault_active  # a new fault begins


def test_plain_lines() -> None:
    stream = io.StringIO()
    display = make_display(False, stream)  # a StringIO is not a terminal
    assert isinstance(display, PlainLines)
    display.feed({"event": "entry", "edge": "start", "index": 2, "total": 3, "name": "dns"})
    display.feed({"event": "activity", "edge": "end", "type": "action", "name": "down",
                  "phase": "method", "module": "lkchaos.dns.actions", "status": "succeeded",
                  "result": "ok"})
    display.feed({"event": "activity", "edge": "start", "name": "down"})  # no line
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].endswith("[2/3 dns] entry started")
    assert lines[1].endswith("[2/3 dns] action down succeeded: ok (fault active)")


def test_a_library_warning_during_a_game_day_is_a_stamped_line() -> None:
    # matplotlib warns from a timer thread of its own when its font cache takes over 5 s to
    # build (a first report in a fresh home folder): with no handler it was a bare line
    # between the stamped ones (seen in CI).
    import logging
    import re
    import threading

    stream = io.StringIO()
    display = PlainLines(stream)
    with log_records_as_notes(lambda text: display.feed({"event": "note", "text": text})):
        warn = threading.Thread(target=logging.getLogger("matplotlib.font_manager").warning,
                                args=("Matplotlib is building the font cache",))
        warn.start()
        warn.join()
        logging.getLogger("somelib").info("not worth a line")
    logging.getLogger("matplotlib.font_manager").warning("after the game day: not a note")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1, lines
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \S.* matplotlib.font_manager: "
                        r"Matplotlib is building the font cache", lines[0]), lines
    assert not [h for h in logging.getLogger().handlers if type(h).__name__ == "_LogNotes"]


def test_fault_window() -> None:
    assert child.fault_window(None, None, False, {}) is None
    assert child.fault_window(None, 20, False, {}) == 20
    assert child.fault_window(30, 20, False, {}) == 30
    assert child.fault_window(None, 20, True, {}) == 8
    assert child.fault_window(3, 20, True, {}) == 3
    assert child.fault_window(None, None, True, {"LKCHAOS_FAULT_S": "5"}) == 5
    with pytest.raises(ConfigError, match="LKCHAOS_FAULT_S"):
        child.fault_window(None, None, True, {"LKCHAOS_FAULT_S": "soon"})


@pytest.mark.parametrize("raw", ["0", "-3", "nan", "inf", "99999"])
def test_fault_window_refuses_a_window_out_of_range(raw: str) -> None:
    with pytest.raises(ConfigError, match="LKCHAOS_FAULT_S.*from 1 to 3600"):
        child.fault_window(None, None, True, {"LKCHAOS_FAULT_S": raw})


def test_environment_and_vars(tmp_path: Path) -> None:
    env = child.environment({"PATH": "/bin"}, fault_s=8.0, run_id="r1", entry="dns#1",
                            journal=tmp_path / "j.json", progress=tmp_path / "p.jsonl")
    assert {key: env[key] for key in child.FAULT_ENV} == dict.fromkeys(child.FAULT_ENV, "8")
    assert (env["LKCHAOS_GAMEDAY_RUN_ID"], env["LKCHAOS_GAMEDAY_ENTRY"]) == ("r1", "dns#1")
    assert child.var_arguments({"a": 1, "b": 2.5, "c": "x"}) == [
        "--var", "a:int=1", "--var", "b:float=2.5", "--var", "c=x"]


def test_settings_merge_keeps_the_users_and_adds_lkchaos_controls(tmp_path: Path) -> None:
    user = tmp_path / "settings.yaml"
    user.write_text(yaml.safe_dump({"auths": {"x": {"type": "bearer"}},
                                    "controls": {"mine": {"provider": {"type": "python",
                                                                       "module": "json"}}}}))
    settings, _ = child.merged_settings(user)
    assert settings["auths"] == {"x": {"type": "bearer"}}
    assert set(settings["controls"]) >= {"mine", "lkchaos-safety", "lkchaos-progress"}
    written = child.write_settings(settings, tmp_path / "state")
    assert written.stat().st_mode & 0o077 == 0  # it may hold the user's credentials
    with pytest.raises(ConfigError, match="no Chaos Toolkit settings"):
        child.merged_settings(tmp_path / "missing.yaml")


@pytest.mark.parametrize(("name", "expected"), [
    ("dns-failure.json", "held"), ("deviated.json", "deviated"), ("failed.json", "failed"),
])
def test_outcome_of_real_journals(name: str, expected: str) -> None:
    outcome, note = child.outcome(JOURNALS / name, 0)
    assert outcome == expected
    assert (note == "") == (expected == "held")


def test_a_refused_runs_outcome_lists_its_problems(tmp_path: Path) -> None:
    # The refusal's first line ends "nothing was run:": the problems are what says why.
    refused = ("agent-crash has 2 problem(s); nothing was run:\n  - method activity 'crash' "
               "(lkchaos.docker.actions.crash_service), argument 'service' = 'agnet': no "
               "container 'agnet'\n  - configuration fault_s: not a number")
    journal = tmp_path / "refused.json"
    journal.write_text(json.dumps({"status": "interrupted", "lkchaos_safety": {
        "refused": refused, "problems": gate.problems(refused)}}))
    outcome, note = child.outcome(journal, 1)
    assert outcome == "failed"
    assert note == ("refused before anything ran: agent-crash has 2 problem(s); nothing was "
                    "run: method activity 'crash' (lkchaos.docker.actions.crash_service), "
                    "argument 'service' = 'agnet': no container 'agnet'; configuration "
                    "fault_s: not a number")
    # One line, as the run lock's refusal is: kept as it is.
    journal.write_text(json.dumps({"status": "interrupted", "lkchaos_safety": {
        "refused": "another run holds the lock", "problems": ["another run holds the lock"]}}))
    assert child.outcome(journal, 1)[1] == "refused before anything ran: another run holds " \
        "the lock"


def test_outcome_without_a_journal(tmp_path: Path) -> None:
    assert child.outcome(tmp_path / "none.json", 2)[0] == "failed"


def test_phases_of_a_real_run_with_the_control_in_the_settings_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    # As a game day declares it. Chaos Toolkit gives such a control no method or rollback
    # hooks when the experiment has controls of its own: the steady state after the method
    # was shown as "steady state before", and no method line at all.
    from chaoslib.control import cleanup_global_controls, load_global_controls
    from chaoslib.experiment import run_experiment

    from tests.unit import chaos_helpers as helpers

    path = tmp_path / "progress.jsonl"
    monkeypatch.setenv(control.ENV, str(path))
    trace = str(tmp_path / "trace")

    def call(kind: str, name: str, func: str, **arguments: object) -> dict[str, object]:
        return {"type": kind, "name": name, "provider": {
            "type": "python", "module": helpers.__name__, "func": func,
            "arguments": arguments}}

    experiment = {
        "title": "t", "description": "d",
        # a control of the experiment's own (one with no hooks will do)
        "controls": [{"name": "own", "provider": {"type": "python",
                                                   "module": helpers.__name__}}],
        "steady-state-hypothesis": {"title": "h", "probes": [
            {**call("probe", "fine", "value", result=1), "tolerance": 1}]},
        "method": [call("action", "inject", "append", path=trace, line="fault")],
        "rollbacks": [call("action", "undo", "append", path=trace, line="undo")],
    }  # fmt: skip
    load_global_controls({"controls": {"lkchaos-progress": {
        "provider": {"type": "python", "module": "lkchaos.controls.progress"}}}})
    try:
        run_experiment(experiment)
    finally:
        cleanup_global_controls()
    events = [json.loads(line) for line in path.read_text().splitlines()]
    phases = [(e["phase"], e["edge"]) for e in events if e["event"] == "phase"]
    assert phases == [
        ("steady-state-before", "start"), ("steady-state-before", "end"),
        ("method", "start"), ("method", "end"),
        ("steady-state-after", "start"), ("steady-state-after", "end"),
        ("rollbacks", "start"), ("rollbacks", "end")], phases
    acted = [(e["name"], e["phase"]) for e in events
             if e["event"] == "activity" and e["edge"] == "end"]
    assert acted == [("fine", "steady-state-before"), ("inject", "method"),
                     ("fine", "steady-state-after"), ("undo", "rollbacks")], acted
