"""A game day's report built from a real SQLite run history."""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from lkchaos.errors import ConfigError
from lkchaos.history import open_history
from lkchaos.report.cli import report as report_command
from lkchaos.report.fromhistory import gameday_from_history

JOURNALS = Path(__file__).resolve().parents[1] / "fixtures" / "journals"
START = dt.datetime(2026, 11, 30, 2, 0, tzinfo=dt.UTC)


def run_of(name: str, run_id: str, minutes: int) -> dict[str, Any]:
    journal: dict[str, Any] = copy.deepcopy(json.loads((JOURNALS / f"{name}.json").read_text()))
    journal["lkchaos_safety"]["run_id"] = run_id
    start = START + dt.timedelta(minutes=minutes)
    journal["start"] = start.isoformat()
    journal["end"] = (start + dt.timedelta(seconds=90)).isoformat()
    return journal


@pytest.fixture
def history_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'history.sqlite'}"
    with open_history(url) as history:
        earlier = history.start_gameday(name="weekly", path="gamedays/weekly.yaml",
                                        file_hash="h")
        history.finish_gameday(earlier, status="held", score=88.0)
        today = history.start_gameday(name="weekly", path="gamedays/weekly.yaml",
                                      file_hash="h")
        for minutes, (name, entry) in enumerate([("dns-failure", "dns"), ("failed", "pause"),
                                                 ("dns-failure", "dns")]):
            history.record_run(run_of(name, f"run{minutes:04d}{name}", minutes),
                               experiment_path=f"experiments/{name}.json",
                               gameday_run_id=today, entry=entry)
        history.finish_gameday(today, status="failed", score=61.2)
    return url


def test_a_game_day_comes_from_its_recorded_runs_in_order(history_url: str) -> None:
    day, journals = gameday_from_history("weekly", history_url)
    assert (day.name, day.status, day.score) == ("weekly", "failed", 61.2)
    assert [(e.name, e.repeat, e.outcome) for e in day.entries] == [
        ("dns", 1, "held"), ("pause", 1, "failed"), ("dns", 2, "held")]
    assert [j["lkchaos_safety"]["run_id"] for j in journals] == [
        "run0000dns-failure", "run0001failed", "run0002dns-failure"]
    assert [score for _, score in day.trend] == [88.0]
    same, _ = gameday_from_history(str(day.run_id), history_url)
    assert same.run_id == day.run_id
    # The 12 characters `lkchaos history gamedays` shows are enough.
    short, _ = gameday_from_history(str(day.run_id)[:12], history_url)
    assert short.run_id == day.run_id


def test_a_game_day_recorded_by_the_runner_leaves_out_its_baseline_checks(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'runner.sqlite'}"
    with open_history(url) as history:
        day = history.start_gameday(name="quick", path="gamedays/quick.yaml", file_hash="h")
        # As the runner records them: a baseline check around each entry, entries NAME#REPEAT.
        for minutes, (name, entry) in enumerate([
                ("dns-failure", "baseline"), ("dns-failure", "dns#1"),
                ("dns-failure", "baseline"), ("failed", "pause#1"),
                ("dns-failure", "baseline"), ("dns-failure", "dns#2"),
                ("dns-failure", "baseline")]):  # fmt: skip
            history.record_run(run_of(name, f"run{minutes:04d}", minutes),
                               experiment_path=f"experiments/{name}.json",
                               gameday_run_id=day, entry=entry)  # fmt: skip
        history.finish_gameday(day, status="failed", score=50.0)
    found, journals = gameday_from_history("quick", url)
    assert [(e.name, e.repeat, e.outcome) for e in found.entries] == [
        ("dns", 1, "held"), ("pause", 1, "failed"), ("dns", 2, "held")]
    assert [j["lkchaos_safety"]["run_id"] for j in journals] == ["run0001", "run0003", "run0005"]


def test_an_unknown_game_day_is_a_config_error(history_url: str) -> None:
    with pytest.raises(ConfigError, match="no game day run with id or game day named 'daily'"):
        gameday_from_history("daily", history_url)


def test_the_cli_reports_a_game_day_from_the_history(history_url: str, tmp_path: Path) -> None:
    out = tmp_path / "gameday.html"
    result = CliRunner().invoke(report_command, [
        "--gameday", "weekly", "--history-url", history_url, "-o", str(out),
        "--junit", str(tmp_path / "junit.xml")])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert "<title>Game day weekly</title>" in page
    assert "dns (repeat 2)" in page and 'data-plot="trend"' in page
    missing = CliRunner().invoke(report_command, ["--gameday", "daily", "--history-url",
                                                  history_url, "-o", str(out)])
    assert missing.exit_code == 2 and "no game day run" in missing.stderr


def test_a_run_id_is_reported_from_the_journal_the_history_keeps(tmp_path: Path) -> None:
    # `chaos run` writes ./journal.json by default: the next run in the same folder
    # overwrites it, and the path the history recorded then holds another run's journal.
    url = f"sqlite:///{tmp_path / 'history.sqlite'}"
    overwritten = tmp_path / "journal.json"
    with open_history(url) as history:
        for minutes, (name, run_id) in enumerate([("dns-failure", "3f2a9c1b7d04" + "0" * 20),
                                                  ("failed", "9e8d7c6b5a49" + "0" * 20)]):
            journal = run_of(name, run_id, minutes)
            overwritten.write_text(json.dumps(journal))
            history.record_run(journal, experiment_path=f"experiments/{name}.json",
                               journal_path=str(overwritten))  # fmt: skip
    title = json.loads((JOURNALS / "dns-failure.json").read_text())["experiment"]["title"]
    result = CliRunner().invoke(report_command, [
        "3f2a9c1b", "--history-url", url, "-o", str(tmp_path / "r.html"),
        "--markdown", str(tmp_path / "r.md")])
    assert result.exit_code == 0, result.output
    summary = (tmp_path / "r.md").read_text()
    other = json.loads((JOURNALS / "failed.json").read_text())["experiment"]["title"]
    assert title != other
    assert title in summary and other not in summary  # not the file now at journal_path

    unknown = CliRunner().invoke(report_command, ["abcdef12", "--history-url", url,
                                                  "-o", str(tmp_path / "x.html")])
    assert unknown.exit_code == 2
    assert "`lkchaos history list` shows the run ids" in unknown.output
    assert not (tmp_path / "x.html").exists()
