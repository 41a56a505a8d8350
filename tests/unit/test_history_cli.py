"""``lkchaos history``: plain output (not a terminal), JSON, exit codes."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from lkchaos.history import open_history
from lkchaos.history.cli import history, parse_since, sparkline

JOURNALS = Path(__file__).resolve().parents[1] / "fixtures" / "journals"


def load(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((JOURNALS / f"{name}.json").read_text())
    return loaded


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'history.sqlite'}"
    with open_history(url) as store:
        gameday = store.start_gameday(name="quick", path="gamedays/quick.yaml", file_hash="h")
        for name in ("agent-crash", "deviated", "failed", "dns-failure"):
            store.record_run(load(name), experiment_path=f"experiments/{name}.json",
                             gameday_run_id=gameday if name != "failed" else None)  # fmt: skip
        store.finish_gameday(gameday, status="deviated", score=62.5)
        store.record_schedule_event(gameday="quick", kind="missed", reason="the host was down",
                                    at=dt.datetime(2026, 11, 29, 3, 0, tzinfo=dt.UTC))
    return url


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(history, list(args))
    return result.exit_code, result.output


def test_list_is_the_default_command(url: str) -> None:
    code, output = run("--url", url)
    assert code == 0
    lines = output.splitlines()
    assert lines[0].split()[:4] == ["when", "(UTC)", "experiment", "verdict"]
    assert [line.split()[2] for line in lines[1:]] == ["deviated", "failed", "dns-failure",
                                                       "agent-crash"]
    crash = lines[-1].split()
    # when (2 words), experiment, verdict, RTO, TTD, availability, score now, run id
    assert crash[2:] == ["agent-crash", "completed", "23.8", "15.1", "66.7%", crash[7],
                         "ec7f36d6e6a6"]  # fmt: skip
    assert float(crash[7]) <= 95.8  # the score as of now: never above the recorded one
    assert run(f"--url={url}", "list")[1] == output


def test_list_filters_and_json(url: str) -> None:
    code, output = run("--url", url, "--gameday", "quick", "--status", "held", "--json")
    assert code == 0
    found = json.loads(output)
    assert [r["experiment_name"] for r in found] == ["dns-failure", "agent-crash"]
    assert found[1]["verdict"] == "completed" and found[1]["score"] == 95.8
    assert found[1]["started_at"] == "2026-11-30T00:44:03.249937+00:00"
    code, output = run("--url", url, "--experiment", "nothing-like-this")
    assert (code, output) == (0, "no runs recorded matching these filters\n")


def test_show_prints_the_figures_per_probe(url: str) -> None:
    code, output = run("--url", url, "show", "b48c183b")
    assert code == 0
    assert "verdict:    completed" in output and "faults:     2 injected, 2 undone" in output
    probes = {line.split()[0]: line.split() for line in output.splitlines()
              if line.startswith(("names-resolve", "caller-answered"))}  # fmt: skip
    assert probes["names-resolve"][1:5] == ["92", "20", "78.3%", "4.8%"]
    assert probes["caller-answered"][6] == "16.7"  # RTO s


def test_trend_has_one_line_per_run_and_a_sparkline(url: str) -> None:
    code, output = run("--url", url, "trend", "dns-failure", "--probe", "names-resolve",
                       "--metric", "availability")  # fmt: skip
    assert code == 0
    header, *lines = output.splitlines()
    assert header.startswith("availability of names-resolve of dns-failure, 1 run(s): ")
    assert len(lines) == 1 and "quick" in lines[0] and "0.783" in lines[0]


def test_trend_marks_lower_bounds_and_leaves_refused_runs_out(url: str) -> None:
    cut = load("agent-crash")
    cut["lkchaos_safety"]["run_id"] = "cut"
    cut["status"] = "interrupted"
    cut["start"] = "2026-12-01T00:00:00+00:00"
    del cut["end"]
    refused = load("agent-crash")
    refused.update(status="interrupted", start="2026-12-02T00:00:00+00:00", run=[])
    refused["lkchaos_safety"] = {"run_id": None, "refused": "the run lock is held"}
    with open_history(url) as store:
        store.record_run(cut, experiment_path="experiments/agent-crash.json")
        store.record_run(refused, experiment_path="experiments/agent-crash.json")
    code, output = run("--url", url, "trend", "agent-crash")
    assert code == 0
    header, *lines = output.splitlines()
    assert header.startswith("rto_s of agent-crash, 2 run(s): ")
    assert header.endswith("(1 lower bound(s), ≥: not a measured recovery)")
    assert header.split(": ")[1][:2] == "▁ "  # the lower bound is a gap
    assert "≥23.847" not in lines[0] and "≥23.847" in lines[1] and "░" in lines[1]
    assert "interrupted" in lines[1] and not any("refused" in line for line in lines)
    code, output = run("--url", url, "--status", "refused")
    assert code == 0 and "refused" in output.splitlines()[1]


def test_a_trend_with_nothing_to_show_says_what_the_history_holds_and_exits_1(url: str) -> None:
    """A misspelt experiment or probe is bad input, not an empty trend."""
    code, output = run("--url", url, "trend", "agent-crsh")
    assert code == 1 and output.count("\n") == 1
    assert "no runs of 'agent-crsh' in the history at " in output
    assert "(experiments with runs: agent-crash, " in output and "dns-failure" in output
    code, output = run("--url", url, "trend", "dns-failure", "--probe", "names-resolved")
    assert code == 1 and output.count("\n") == 1
    assert ("no run of 'dns-failure' sampled a probe named 'names-resolved': its runs sampled "
            "caller-answered, names-resolve") in output
    refused = load("agent-crash")
    refused.update(status="interrupted", start="2026-12-02T00:00:00+00:00", run=[])
    refused["lkchaos_safety"] = {"run_id": None, "refused": "the run lock is held"}
    with open_history(url) as store:
        store.record_run(refused, experiment_path="experiments/locked-out.json")
    code, output = run("--url", url, "trend", "locked-out")
    assert code == 1 and "every run of 'locked-out' was refused before anything ran" in output


def test_a_trend_in_an_empty_history_says_so(tmp_path: Path) -> None:
    empty = f"sqlite:///{tmp_path / 'empty.sqlite'}"
    with open_history(empty):
        pass
    code, output = run("--url", empty, "trend", "x")
    assert code == 1 and "no runs of 'x'" in output and "(it has no runs yet)" in output


def test_gamedays_and_schedule(url: str) -> None:
    code, output = run("--url", url, "gamedays")
    assert code == 0 and output.splitlines()[1].split()[2:5] == ["quick", "deviated", "62.5"]
    code, output = run("--url", url, "schedule", "--json")
    assert code == 0
    assert json.loads(output) == [{"gameday": "quick", "kind": "missed",
                                   "reason": "the host was down",
                                   "at": "2026-11-29T03:00:00+00:00"}]  # fmt: skip


def test_errors_are_one_line_and_exit_non_zero(url: str) -> None:
    code, output = run("--url", url, "show", "nope")
    assert code == 1 and output.count("\n") == 1 and "no run 'nope'" in output
    code, output = run("--url", url, "trend", "dns-failure", "--metric", "speed")
    assert code == 2 and "unknown metric 'speed'" in output
    code, output = run("--url", "postgresql://lk:s3cret@127.0.0.1:1/h")
    assert code == 1 and "s3cret" not in output and "lk:***@127.0.0.1:1" in output
    code, output = run("--url", url, "--since", "soon")
    assert code == 2 and "is neither a duration (30m, 2h, 7d, 2w)" in output
    code, output = run("--url", url, "--since", "99999999999d")
    assert code == 2 and "reaches back too far" in output
    code, output = run("--url", url, "--since", "")  # empty is a mistake, not "no limit"
    assert code == 2 and "is neither a duration" in output
    code, output = run("--url", url, "--status", "helt")
    assert code == 2 and "unknown status 'helt'" in output


def test_bad_since_creates_no_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new' / 'history.sqlite'}"
    code, output = run("--url", url, "--since", "soon")
    assert code == 2 and not (tmp_path / "new").exists()


def test_parse_since_and_sparkline() -> None:
    now = dt.datetime(2026, 11, 30, tzinfo=dt.UTC)
    assert parse_since("7d", now) == dt.datetime(2026, 11, 23, tzinfo=dt.UTC)
    assert parse_since("90m", now) == dt.datetime(2026, 11, 29, 22, 30, tzinfo=dt.UTC)
    assert parse_since("2026-11-01") == dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    assert sparkline([0.0, None, 5.0, 10.0]) == "▁ ▅█"
    assert sparkline([None]) == " "


def test_show_says_when_the_journal_file_holds_another_run_now(tmp_path: Path) -> None:
    # `chaos run` writes ./journal.json by default: the next run in that folder replaces it.
    url = f"sqlite:///{tmp_path / 'shared.sqlite'}"
    path = tmp_path / "journal.json"
    ids = ["aaaa1111bbbb" + "0" * 20, "cccc2222dddd" + "0" * 20]
    with open_history(url) as store:
        for run_id, name in zip(ids, ["dns-failure", "failed"], strict=True):
            journal = load(name)
            journal["lkchaos_safety"]["run_id"] = run_id
            path.write_text(json.dumps(journal))
            store.record_run(journal, journal_path=str(path))
    code, output = run("--url", url, "show", "aaaa1111")
    assert code == 0
    assert (f"{path} (now run cccc2222dddd's; the history keeps this one's: "
            "`lkchaos report aaaa1111bbbb`)") in output
    code, output = run("--url", url, "show", "cccc2222")
    assert f"journal:    {path}\n" in output  # still its own
    path.unlink()
    assert "(gone; the history keeps it" in run("--url", url, "show", "cccc2222")[1]
