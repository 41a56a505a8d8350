"""Reports from real journals: what they say, what they refuse, what they never do."""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
import warnings
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import lkchaos.report as report_api
from lkchaos.errors import ConfigError
from lkchaos.report import (
    EntryInfo,
    GamedayInfo,
    load_report,
    render_html,
    render_junit,
    render_markdown,
    write_reports,
)
from lkchaos.report.cli import report as report_command
from lkchaos.report.markdown import MAX_CHARS
from lkchaos.voice.roundtrip import reply_wav

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "journals"
ALL = sorted(FIXTURES.glob("*.json"))


def journal(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return loaded


def test_the_public_api_is_pinned() -> None:
    assert sorted(report_api.__all__) == sorted([
        "FILE_NAMES", "EntryInfo", "GamedayInfo", "Report", "load_report", "render_html",
        "render_junit", "render_markdown", "write_report_files", "write_reports"])


def test_verdicts_and_figures_come_from_the_journals() -> None:
    runs = {Path(r.source).stem: r for r in load_report(ALL, title="t").runs}
    assert {k: r.verdict for k, r in runs.items()} == {
        "agent-crash": "held", "deviated": "deviated", "dns-failure": "held",
        "failed": "failed", "media-packet-loss": "held", "redis-failover": "held"}
    crash = runs["agent-crash"]
    assert crash.rto == (23.847, "caller-answered")
    assert crash.ttd == (15.118, "caller-answered")
    assert [a["name"] for a in crash.actions] == ["kill-agent", "restart-agent"]
    assert {p.name: p.rto_bound_s for p in runs["dns-failure"].probes}["names-resolve"] == 10.0
    assert crash.score is not None and 0 < crash.score <= 100
    assert runs["failed"].problems == [
        "method: action 'pause-mcp' failed: mcp is exited, not running: nothing to pause"]
    assert any("three-nodes-ready" in p and "missed its tolerance" in p
               for p in runs["deviated"].problems)
    assert any("No sampled series" in note for note in runs["failed"].missing)
    assert crash.missing == []


def _interrupted() -> dict[str, Any]:
    cut = journal("agent-crash")
    del cut["end"]
    cut["status"] = "interrupted"
    cut["steady_states"]["after"] = None
    cut["rollbacks"] = []
    return cut


def _plain(name: str) -> dict[str, Any]:
    plain = journal(name)
    del plain["lkchaos"], plain["lkchaos_safety"]
    return plain


def _refused() -> dict[str, Any]:
    refused = journal("failed")
    refused.update(status="failed", run=[], end=refused["end"])
    refused["lkchaos_safety"] = {"run_id": None, "refused": "2 problems:\n  - a\n  - b",
                                 "problems": ["a", "b"], "rollbacks_played_by_lkchaos": 0}
    return refused


def test_interrupted_plain_and_refused_runs_say_what_is_missing() -> None:
    interrupted, plain, refused = load_report(
        [_interrupted(), _plain("dns-failure"), _refused()], title="t").runs
    assert interrupted.verdict == "interrupted"
    assert any("has no end" in n for n in interrupted.missing)
    assert any("not checked after" in n for n in interrupted.missing)
    assert plain.verdict == "held" and plain.probes == []
    assert any("No lkchaos safety section" in n for n in plain.missing)
    assert any("No sampled series" in n for n in plain.missing)
    assert refused.verdict == "refused"
    assert refused.problems[0].startswith("refused before anything ran: 2 problems")
    page = render_html([_interrupted(), _plain("dns-failure"), _refused()], title="t")
    assert "Missing from this journal" in page and "v-refused" in page


def test_a_sampled_probe_still_failing_is_not_recovered() -> None:
    broken = journal("agent-crash")
    probe = broken["lkchaos"]["sampling"]["probes"]["caller-answered"]
    probe["samples"][-1]["ok"] = False
    probe["figures"]["recovered"] = False
    run = load_report([broken], title="t").runs[0]
    assert run.verdict == "not_recovered"
    assert "sampled probe 'caller-answered': still failing when sampling stopped (not " \
           "recovered)" in run.problems


def _cut_before_a_sample_after_the_fault(failed_first: bool = False) -> dict[str, Any]:
    """agent-crash interrupted with caller-answered's only samples begun before the fault
    ended, all ok (or a failure then an ok one): the figures say ``recovered`` false, with
    ``rto_s`` the time from the fault's end to the end of sampling."""
    cut = _interrupted()
    probe = cut["lkchaos"]["sampling"]["probes"]["caller-answered"]
    first = dict(probe["samples"][0])
    probe["samples"] = [first]
    if failed_first:
        probe["samples"] = [dict(first, ok=False), dict(first, t=first["t"] + 9.0)]
    probe["figures"].update(
        samples=len(probe["samples"]), failures=int(failed_first),
        availability=0.5 if failed_first else 1.0, time_to_detect_s=None, rto_s=4.2,
        recovered=False, recovered_at_t=None, first_failure_t=None, last_failure_t=None,
        longest_outage_s=0.0)
    return cut


@pytest.mark.parametrize("failed_first", [False, True])
def test_a_probe_not_failing_when_the_run_ended_early_is_not_measured_not_unrecovered(
    failed_first: bool,
) -> None:
    cut = _cut_before_a_sample_after_the_fault(failed_first)
    run = load_report([cut], title="t").runs[0]
    probe = next(p for p in run.probes if p.name == "caller-answered")
    assert (probe.recovery, probe.rto_missed, probe.rto) == ("not_measured", "", None)
    assert run.rto == (0.0, "nodes-ready")
    assert not any("caller-answered" in p for p in run.problems)
    page = render_html([cut], title="t")
    assert "not measured" in page and "<span class='bad'>no</span>" not in page
    assert "not recovered" not in page.lower().replace("faults not recovered", "")
    completed = _cut_before_a_sample_after_the_fault(failed_first)
    completed.update(status="completed", end=journal("agent-crash")["end"])
    assert load_report([completed], title="t").runs[0].verdict == "held"
    assert "still failing" not in render_markdown([cut, completed], title="t")


def test_a_probe_failing_when_the_run_ended_early_is_still_not_recovered() -> None:
    cut = _cut_before_a_sample_after_the_fault()
    probe = cut["lkchaos"]["sampling"]["probes"]["caller-answered"]
    probe["samples"][0]["ok"] = False
    probe["figures"].update(failures=1, availability=0.0)
    run = load_report([cut], title="t").runs[0]
    [sampled] = [p for p in run.probes if p.name == "caller-answered"]
    assert (sampled.recovery, sampled.rto) == ("not_recovered", 4.2)
    assert "sampled probe 'caller-answered': still failing when sampling stopped (not " \
           "recovered)" in run.problems
    page = render_html([cut], title="t")
    assert "≥ 4.2 s" in page and "<span class='bad'>no</span>" in page


def test_the_timeline_says_recovery_was_not_measured_not_not_recovered() -> None:
    from lkchaos.report.plots import _row_title

    run = load_report([_cut_before_a_sample_after_the_fault()], title="t").runs[0]
    title = _row_title(next(p for p in run.probes if p.name == "caller-answered"))
    assert "NOT RECOVERED" not in title and "RTO" not in title
    assert "recovery not measured" in title and "no failure detected" in title


@pytest.mark.parametrize("where, value", [
    (("lkchaos", "sampling", "probes", "nodes-ready", "figures"), None),
    (("lkchaos",), "x"),
    (("steady_states",), "x"),
    (("experiment", "method"), 5),
    (("experiment", "steady-state-hypothesis"), "x"),
])
def test_a_journal_of_an_unexpected_shape_is_reported_not_raised(
    where: tuple[str, ...], value: Any
) -> None:
    odd = journal("agent-crash")
    parent = odd
    for key in where[:-1]:
        parent = parent[key]
    parent[where[-1]] = value
    run = load_report([odd], title="t").runs[0]
    assert run.verdict in ("held", "not_recovered")
    assert render_markdown([odd], title="t") and render_junit([odd], title="t")


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    ("{", "not JSON"),
    ("[1, 2]", "a JSON object is expected"),
    ('{"title": "x", "method": []}', "no 'experiment' object"),
    ('{"experiment": {}}', "neither 'status' nor 'run'"),
])
def test_bad_input_is_a_config_error_naming_the_file(
    tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "journal.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=re.escape(str(path)) + ".*" + re.escape(message)):
        load_report([path], title="t")


def test_the_cli_writes_every_format_and_prints_the_paths(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(report_command, [
        *map(str, ALL), "-o", str(out / "r.html"), "--markdown", str(out / "r.md"),
        "--junit", str(out / "j.xml"), "--title", "Weekly"])
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == [str(out / "r.html"), str(out / "r.md"), str(out / "j.xml")]
    assert "<title>Weekly</title>" in (out / "r.html").read_text()
    assert not list(out.glob(".*partial"))


def test_the_cli_exits_2_with_one_message_for_bad_input(tmp_path: Path) -> None:
    (tmp_path / "notes.json").write_text("not json")
    result = CliRunner().invoke(report_command, [str(tmp_path / "notes.json"),
                                                 "-o", str(tmp_path / "r.html")])
    assert result.exit_code == 2
    assert "notes.json: not JSON" in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "r.html").exists()
    nothing = CliRunner().invoke(report_command, [])
    assert nothing.exit_code == 2 and "give one or more journal files" in nothing.stderr


@pytest.mark.parametrize("flag", ["-o", "--markdown", "--junit"])
def test_a_report_never_overwrites_the_journal_it_reads(tmp_path: Path, flag: str) -> None:
    source = tmp_path / "journal.json"
    source.write_text((FIXTURES / "failed.json").read_text())
    before = source.read_text()
    html = [] if flag == "-o" else ["-o", str(tmp_path / "r.html")]
    args = [str(source), flag, str(source), *html]
    result = CliRunner().invoke(report_command, args)
    assert result.exit_code == 2, result.output
    assert "the report would replace what it reads" in result.stderr
    assert source.read_text() == before
    same = CliRunner().invoke(report_command, [str(source), "-o", str(tmp_path / "r"),
                                               "--markdown", str(tmp_path / "r")])
    assert same.exit_code == 2 and "both write" in same.stderr


def test_a_folder_as_the_output_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "reports"
    folder.mkdir()
    result = CliRunner().invoke(report_command, [str(FIXTURES / "failed.json"), "-o",
                                                 str(folder)])  # fmt: skip
    assert result.exit_code == 2, result.output
    assert f"is a folder: give a file name in it, such as {folder / 'report.html'}" in \
        result.stderr
    assert list(tmp_path.iterdir()) == [folder] and not list(folder.iterdir())


def test_the_default_title_is_the_experiments(tmp_path: Path) -> None:
    result = CliRunner().invoke(report_command, [str(FIXTURES / "failed.json"),
                                                 "-o", str(tmp_path / "r.html")])
    assert result.exit_code == 0, result.output
    assert "<title>pause a service that is not running</title>" in \
        (tmp_path / "r.html").read_text()


def test_every_journal_string_is_escaped_and_nothing_is_fetched() -> None:
    hostile = journal("deviated")
    hostile["experiment"]["title"] = '<script>alert("title")</script>'
    hostile["run"][0]["activity"]["name"] = "<img src=x onerror=alert(1)>"
    hostile["run"][0]["output"] = {"html": "</td><script>alert(2)</script>",
                                   "url": "http://example.com/x.png"}
    page = render_html([hostile], title="<b>t</b>")
    assert "<script>alert" not in page and "<img src=x" not in page and "<b>t</b>" not in page
    assert "&lt;script&gt;alert(&quot;title&quot;)&lt;/script&gt;" in page
    assert len(re.findall(r"<script[ >]", page)) == 1  # the report's own, allowed by hash
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", page)
    assert "default-src 'none'" in page


def _with_audio(tmp_path: Path) -> tuple[dict[str, Any], Path]:
    wav = tmp_path / "audio" / "reply.wav"
    wav.parent.mkdir()
    import numpy as np

    tone = (np.sin(np.arange(4800) / 48000 * 2 * np.pi * 440) * 9000).astype(np.int16)
    wav.write_bytes(reply_wav(tone))
    run = journal("agent-crash")
    samples = run["lkchaos"]["sampling"]["probes"]["caller-answered"]["samples"]
    failed = [s for s in samples if not s["ok"]]
    failed[0]["value"].update(stage="misheard", reason="heard 'six'", audio=str(wav))
    failed[1]["value"].update(stage="wrong_reply", reason="heard 'nine'",
                              audio=str(tmp_path / "audio" / "gone.wav"))
    return run, wav


def test_audio_of_failed_voice_turns_is_playable_and_a_missing_file_is_said(
    tmp_path: Path,
) -> None:
    run, wav = _with_audio(tmp_path)
    clips = load_report([run], title="t").runs[0].audio
    assert [(c.data is not None, c.problem[:30]) for c in clips] == [
        (True, ""), (False, "the audio file is missing or u")]
    page = render_html([run], title="t")
    sources = re.findall(r"<audio controls preload='none' src='data:audio/wav;base64,([^']+)'>",
                         page)
    import base64

    assert [base64.b64decode(s) for s in sources] == [wav.read_bytes()]
    assert "gone.wav" in page and "heard &#x27;nine&#x27;" in page


def test_markdown_is_short_and_names_what_failed() -> None:
    text = render_markdown(ALL, title="PR check")
    assert text.startswith("## PR check")
    assert "| pause a service that is not running | ❌ failed |" in text
    assert "mcp is exited, not running: nothing to pause" in text
    assert "http" not in text.replace("http://127.0.0.1", "")  # only what the journal said
    assert "](" not in text  # no links


def test_a_twenty_experiment_game_day_stays_small(tmp_path: Path) -> None:
    big = journal("media-packet-loss")
    failing = journal("deviated")
    runs = [copy.deepcopy(big if i % 2 else failing) for i in range(20)]
    for i, run in enumerate(runs):
        run["experiment"]["title"] = f"experiment {i:02d} " + "x" * 60
    paths = write_reports(tmp_path, runs, title="game day")
    assert set(paths) == {"html", "md", "junit"}
    assert paths["html"].stat().st_size < 4_000_000
    assert len(paths["md"].read_text()) <= MAX_CHARS


def test_markdown_is_cut_with_a_note_when_too_long() -> None:
    noisy = journal("deviated")
    noisy["lkchaos_safety"]["missed_tolerances"] = []
    noisy["run"] = [copy.deepcopy(noisy["run"][0]) for _ in range(8)]
    for i, step in enumerate(noisy["run"]):
        step["status"] = "failed"
        step["exception"] = [f"ActivityFailed: problem {i} " + "y" * 390]
    from lkchaos.report import markdown

    text = markdown.render(load_report([noisy] * 40, title="t"), max_chars=20_000)
    assert len(text) <= 20_000
    assert "truncated to fit a comment" in text


def _gameday(entries: list[EntryInfo]) -> GamedayInfo:
    return GamedayInfo(name="weekly", run_id="g1", started_at="2026-11-30T00:40:00+00:00",
                       ended_at="2026-11-30T01:20:00+00:00", status="failed", entries=entries,
                       score=61.5, trend=[("2026-11-16T00:40:00+00:00", 80.0),
                                          ("2026-11-23T00:40:00+00:00", 72.5)])


def test_a_game_day_keeps_its_entries_in_order_with_skipped_ones() -> None:
    entries = [
        EntryInfo("crash", "experiments/agent-crash.json", 1, FIXTURES / "agent-crash.json",
                  "held"),
        EntryInfo("crash", "experiments/agent-crash.json", 2, FIXTURES / "agent-crash.json",
                  "held"),
        EntryInfo("pause", "experiments/x.json", 1, FIXTURES / "failed.json", "failed"),
        EntryInfo("cert", "experiments/cert-expiry.json", 1, None, "skipped",
                  note="an earlier entry failed"),
    ]
    built = load_report([], title="Game day weekly", gameday=_gameday(entries))
    assert [(e.info.name, e.run.suite_name if e.run else None) for e in built.entries] == [
        ("crash", "crash"), ("crash", "crash (repeat 2)"), ("pause", "pause"), ("cert", None)]
    page = render_html([], title="Game day weekly", gameday=_gameday(entries))
    assert 'data-plot="trend"' in page and "an earlier entry failed" in page
    assert page.count('data-plot="timeline"') == 2
    md = render_markdown([], title="Game day weekly", gameday=_gameday(entries))
    assert "⏭️ skipped cert (repeat 1): an earlier entry failed" in md
    with pytest.raises(ConfigError, match="1 journal\\(s\\) given for 3 entries that ran"):
        load_report([journal("failed")], title="t", gameday=_gameday(entries))


def test_the_command_loads_without_matplotlib() -> None:
    import subprocess
    import sys

    code = "import sys, lkchaos.report.cli; print('matplotlib' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.strip() == "False"


def test_a_trend_over_a_few_minutes_draws_without_a_warning() -> None:
    from lkchaos.report.plots import trend_png

    start = dt.datetime(2026, 11, 30, 1, 48, tzinfo=dt.UTC)
    points = [((start + dt.timedelta(seconds=60 * i)).isoformat(), 90.0) for i in range(5)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        png = trend_png(points[:-1], points[-1], "held")
    assert png is not None and png.startswith(b"\x89PNG")


def test_a_trend_of_one_run_spans_a_day_either_side_not_years() -> None:
    from lkchaos.report.plots import trend_window

    assert trend_window([20_000.5]) == (19_999.5, 20_001.5)
    assert trend_window([20_000.1, 20_000.6]) == (19_999.1, 20_001.6)
    assert trend_window([20_000.0, 20_007.0]) is None  # a week of runs: matplotlib's range
    assert trend_window([]) is None


def test_paths_inside_the_current_folder_are_shown_relative(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lkchaos.report.load import shown_path

    monkeypatch.chdir(tmp_path)
    assert shown_path(tmp_path / "out" / "01-agent-crash-1.json") == "out/01-agent-crash-1.json"
    assert shown_path("/elsewhere/journal.json") == "/elsewhere/journal.json"
