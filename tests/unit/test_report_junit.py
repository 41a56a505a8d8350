"""The JUnit XML report, read back with junitparser (what CI systems' readers accept)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from junitparser import Error, Failure, JUnitXml, Skipped, TestSuite

from lkchaos.report import EntryInfo, GamedayInfo, render_junit, write_reports

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "journals"


def journal(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return loaded


def _suites(path: Path) -> dict[str, TestSuite]:
    xml = JUnitXml.fromfile(str(path))
    return {suite.name: suite for suite in xml}


def _results(suite: TestSuite) -> dict[str, list[Any]]:
    return {case.name: list(case.result) for case in suite}


def test_one_suite_per_run_with_a_case_per_probe_activity_rollback_and_rto(
    tmp_path: Path,
) -> None:
    paths = write_reports(tmp_path, [FIXTURES / "agent-crash.json", FIXTURES / "failed.json",
                                     FIXTURES / "deviated.json"], title="t", formats=["junit"])
    suites = _suites(paths["junit"])
    crash = suites["The agent crashes mid-conversation: new calls get an agent after it restarts"]
    assert (crash.tests, crash.failures, crash.errors, crash.skipped) == (9, 0, 0, 0)
    assert list(_results(crash)) == [
        "before: caller-answered-recovered-within-bound", "before: caller-answered-now",
        "method: kill-agent", "method: restart-agent",
        "after: caller-answered-recovered-within-bound", "after: caller-answered-now",
        "rollback: agent-back", "rto: nodes-ready", "rto: caller-answered"]
    failed = suites["pause a service that is not running"]
    assert (failed.tests, failed.failures, failed.errors) == (1, 0, 1)
    [error] = _results(failed)["method: pause-mcp"]
    assert isinstance(error, Error)
    assert error.message == ("action 'pause-mcp' failed: mcp is exited, not running: nothing "
                             "to pause")
    deviated = suites["a method probe expects three ready nodes of two"]
    [failure] = _results(deviated)["method: three-nodes-ready"]
    assert isinstance(failure, Failure)
    assert '"expect": 3' in failure.message and '"healthy": 2' in failure.message
    xml = JUnitXml.fromfile(str(paths["junit"]))
    assert (xml.tests, xml.failures, xml.errors) == (11, 1, 1)


def test_an_rto_over_its_bound_or_never_recovered_fails(tmp_path: Path) -> None:
    slow = journal("dns-failure")
    slow["lkchaos"]["sampling"]["probes"]["names-resolve"]["figures"]["rto_s"] = 12.5
    stuck = journal("agent-crash")
    probe = stuck["lkchaos"]["sampling"]["probes"]["caller-answered"]
    probe["figures"]["recovered"] = False
    probe["samples"][-1]["ok"] = False
    stuck["experiment"]["title"] = "stuck"
    path = tmp_path / "junit.xml"
    path.write_text(render_junit([slow, stuck], title="t"))
    suites = _suites(path)
    [over] = _results(next(s for n, s in suites.items() if n.startswith("The stack's")))[
        "rto: names-resolve"]
    assert isinstance(over, Failure)
    assert over.message == "names-resolve: recovered in 12.5 s, over the bound of 10 s"
    [never] = _results(suites["stuck"])["rto: caller-answered"]
    assert isinstance(never, Failure) and "not recovered" in never.message


def test_a_recovery_not_measured_is_skipped_not_failed(tmp_path: Path) -> None:
    cut = journal("agent-crash")
    del cut["end"]
    cut["status"] = "interrupted"
    probe = cut["lkchaos"]["sampling"]["probes"]["caller-answered"]
    probe["samples"] = probe["samples"][:1]
    probe["figures"].update(samples=1, failures=0, availability=1.0, time_to_detect_s=None,
                            rto_s=4.2, recovered=False, recovered_at_t=None)
    path = tmp_path / "junit.xml"
    path.write_text(render_junit([cut], title="t"))
    [suite] = _suites(path).values()
    [skipped] = _results(suite)["rto: caller-answered"]
    assert isinstance(skipped, Skipped) and "not measured" in skipped.message
    assert suite.failures == 0
    assert not any(isinstance(r, Failure) for results in _results(suite).values()
                   for r in results)


def test_skipped_entries_interrupted_runs_and_hostile_text(tmp_path: Path) -> None:
    cut = journal("deviated")
    del cut["end"]
    cut["status"] = "interrupted"
    cut["run"][0]["activity"]["name"] = "probe \x1b[31mred\x1b[0m \x00 <&>"
    entries = [EntryInfo("cut", "experiments/x.json", 1, FIXTURES / "deviated.json",
                         "interrupted"),
               EntryInfo("later", "experiments/y.json", 1, None, "skipped",
                         note="the game day was interrupted")]
    day = GamedayInfo(name="g", run_id=None, started_at="2026-11-30T00:00:00+00:00",
                      ended_at="", status="interrupted", entries=entries)
    path = tmp_path / "junit.xml"
    path.write_text(render_junit([cut], title="t", gameday=day))
    suites = _suites(path)
    assert list(suites) == ["cut", "later"]
    cases = _results(suites["cut"])
    assert isinstance(cases["run"][0], Error)
    assert "probe \ufffd[31mred\ufffd[0m \ufffd <&>" in " ".join(cases)  # read back, unescaped
    later = suites["later"]
    assert (later.tests, later.skipped) == (1, 1)
    [skipped] = _results(later)["entry: later"]
    assert isinstance(skipped, Skipped) and skipped.message == "skipped: the game day was " \
                                                               "interrupted"


NOT_BACK = "not back at baseline: stack-healthy: livekit-2 not ready"


def _not_recovered_day() -> GamedayInfo:
    """A game day of one entry, agent-crash's held run, judged not recovered after it."""
    entries = [EntryInfo("crash", "experiments/agent-crash.json", 1,
                         FIXTURES / "agent-crash.json", "not_recovered", note=NOT_BACK)]
    return GamedayInfo(name="g", run_id=None, started_at="2026-11-30T00:00:00+00:00",
                       ended_at="2026-11-30T00:05:00+00:00", status="not_recovered",
                       entries=entries)  # fmt: skip


def test_an_entry_the_game_day_judged_not_recovered_is_never_shown_held(tmp_path: Path) -> None:
    # The run held (its journal says so), but the deployment was not back at its baseline
    # after it: the game day stopped on that entry with exit 3. CI's JUnit readers and the
    # Markdown summary must not show it green.
    from lkchaos.report import render_markdown

    held = journal("agent-crash")
    day = _not_recovered_day()
    path = tmp_path / "junit.xml"
    path.write_text(render_junit([held], title="t", gameday=day))
    suite = _suites(path)["crash"]
    assert suite.errors >= 1
    [error] = _results(suite)["run"]
    assert isinstance(error, Error) and error.message == f"not recovered: {NOT_BACK}"
    text = render_markdown([held], title="t", gameday=day)
    assert "1 not recovered" in text and "held" not in text.split("### What failed")[0]


def test_an_entry_not_recovered_is_scored_as_such_in_the_report() -> None:
    from lkchaos.report.load import load_report

    [run] = load_report([], title="t", gameday=_not_recovered_day()).runs
    held = load_report([FIXTURES / "agent-crash.json"], title="t").runs[0]
    assert held.score is not None and run.score is not None and run.score < held.score
    assert run.score_note.startswith("not recovered")
