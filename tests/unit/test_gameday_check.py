"""The game day checker: a corpus of bad files, each refused with its line and a fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from lkchaos.gameday.check import GamedayInvalid, check_gameday, load_gameday
from lkchaos.gameday.cli import gameday
from lkchaos.gameday.cron import parse_cron
from tests.unit.bad_files import assert_refused_at_its_line

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "gamedays"
BAD = sorted((FIXTURES / "bad").glob("*.yaml"))
GOOD = [FIXTURES / name for name in ("good.yaml", "long-fault.yaml", "scheduled.yaml",
                                     "scheduled-slow.yaml",
                                     "stop-not-recovered.yaml", "stop-on-deviation.yaml")]
SHIPPED = sorted((Path(__file__).resolve().parents[2] / "gamedays").glob("*.yaml"))


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_bad_file_is_refused_with_its_line(path: Path) -> None:
    result = CliRunner().invoke(gameday, ["check", str(path)])
    assert result.exit_code == 2, result.output
    assert_refused_at_its_line(path, result.output)


def test_corpus_covers_every_kind_of_problem() -> None:
    assert len(BAD) >= 20


@pytest.mark.parametrize("path", GOOD + SHIPPED, ids=lambda p: p.stem)
def test_good_files_pass(path: Path) -> None:
    result = CliRunner().invoke(gameday, ["check", str(path)])
    assert result.exit_code == 0, result.output
    assert f"{path}: ok" in result.output


def test_the_full_game_day_holds_every_experiment_with_a_method() -> None:
    import json

    experiments = Path(__file__).resolve().parents[2] / "experiments"
    with_method = {p.name for p in experiments.glob("*.json")
                   if json.loads(p.read_text()).get("method")}  # fmt: skip
    full = load_gameday(Path(__file__).resolve().parents[2] / "gamedays" / "full.yaml")
    names = [Path(entry.experiment).name for entry in full.entries]
    assert sorted(names) == sorted(with_method)


def test_load_raises_with_every_problem() -> None:
    with pytest.raises(GamedayInvalid) as caught:
        load_gameday(FIXTURES / "bad" / "duplicate-names.yaml")
    assert [p.line for p in caught.value.problems] == [5]


def test_entry_defaults() -> None:
    loaded, problems = check_gameday(FIXTURES / "good.yaml")
    assert problems == [] and loaded is not None
    first, second = loaded.entries
    assert (first.label, first.repeats, first.weight, first.fault_s) == ("holds", 1, 1, None)
    assert (second.label, second.repeats, second.configuration) == ("fault-twice", 2,
                                                                      {"fault_s": 1})
    assert loaded.stop == "on_not_recovered"


@pytest.mark.parametrize(("expression", "fields"), [
    ("0 3 * * 1", {"day_of_week": "mon", "hour": "3", "second": "0"}),
    ("0 3 * * 0", {"day_of_week": "sun"}),
    ("0 3 * * 7", {"day_of_week": "sun"}),
    ("0 3 * * 1-5", {"day_of_week": "mon,tue,wed,thu,fri"}),
    ("*/5 * * * * *", {"second": "*/5", "day_of_week": "*"}),
])
def test_cron_day_numbers_mean_what_crontab_says(expression: str, fields: dict[str, str]) -> None:
    trigger = parse_cron(expression, "UTC")
    found = {field.name: str(field) for field in trigger.fields}
    assert {key: found[key] for key in fields} == fields


@pytest.mark.parametrize(("alias", "fields"), [
    ("@daily", {"hour": "0", "minute": "0", "day": "*"}),
    ("@weekly", {"day_of_week": "sun", "hour": "0"}),
    ("@hourly", {"minute": "0", "hour": "*"}),
    ("@Monthly", {"day": "1", "month": "*"}),
    ("@yearly", {"day": "1", "month": "1"}),
])  # fmt: skip
def test_crontab_nicknames_mean_what_crontab_says(alias: str, fields: dict[str, str]) -> None:
    found = {field.name: str(field) for field in parse_cron(alias, "UTC").fields}
    assert {key: found[key] for key in fields} == fields


def test_a_nickname_crontab_lacks_is_refused_naming_those_it_has() -> None:
    with pytest.raises(ValueError, match="or is one of @yearly, @annually"):
        parse_cron("@reboot", "UTC")


@pytest.mark.parametrize("expression", ["0 3 * *", "0 0 3 * * * *", "61 * * * *",
                                        "0 0 * * 8", "0 0 * * x-y"])
def test_bad_cron_is_refused_with_the_reason(expression: str) -> None:
    with pytest.raises(ValueError, match="cron|day-of-week|field"):
        parse_cron(expression)


@pytest.mark.parametrize("expression", ["0 3 30 2 *", "0 3 31 4 *", "0 0 0 31 11 *"])
def test_a_cron_that_never_fires_is_refused(expression: str) -> None:
    with pytest.raises(ValueError, match="never fires .*the 30th of February"):
        parse_cron(expression, "UTC")
    assert parse_cron("0 3 29 2 *", "UTC") is not None  # a leap day does come


def test_an_experiment_that_is_a_folder_is_named_as_one(tmp_path: Path) -> None:
    from lkchaos.gameday.check import experiment_problems

    (tmp_path / "experiments").mkdir()
    assert experiment_problems(tmp_path / "experiments") == [
        f"experiment {str(tmp_path / 'experiments')!r} is a folder: name an experiment file "
        "in it (e.g. experiments/agent-crash.json)"]
    assert experiment_problems(tmp_path / "nope.json") == [
        f"experiment {str(tmp_path / 'nope.json')!r} does not exist"]


AGENT_CRASH = Path(__file__).resolve().parents[2] / "experiments" / "agent-crash.json"


def entry_with(tmp_path: Path, configuration: str, experiment: Path = AGENT_CRASH) -> Path:
    path = tmp_path / "day.yaml"
    path.write_text(f"name: day\nentries:\n  - experiment: {experiment}\n"
                    f"    configuration: {configuration}\n")  # fmt: skip
    return path


@pytest.mark.parametrize(("configuration", "says"), [
    ('{fualt_s: 3}', "configuration 'fualt_s': not a configuration key of agent-crash.json "
                     "(it has: fault_s) nor an lkchaos setting"),
    ('{fault_s: "abc"}', "argument 'pauses.after' = 'abc': is the text 'abc'"),
    ("{fault_s: -4}", "from 0 to 86400 (a day), not -4"),
    ("{lkchaos_target: /nonexistent/target.yaml}", "target /nonexistent/target.yaml"),
])  # fmt: skip
def test_an_entrys_configuration_is_checked_against_its_experiment(
    tmp_path: Path, configuration: str, says: str
) -> None:
    # Each used to pass the check: a typo changed nothing, a bad value failed mid-run.
    _, problems = check_gameday(entry_with(tmp_path, configuration))
    assert len(problems) == 1, problems
    assert problems[0].line == 4 and says in str(problems[0]), problems[0]


@pytest.mark.parametrize("configuration", ["{fault_s: 5}", '{livekit_url: "ws://lk:7880"}'])
def test_an_override_the_experiment_reads_passes(tmp_path: Path, configuration: str) -> None:
    assert check_gameday(entry_with(tmp_path, configuration))[1] == []


def test_a_yaml_experiment_is_taken_as_chaos_run_takes_it(tmp_path: Path) -> None:
    import json

    import yaml

    experiment = tmp_path / "agent-crash.yaml"
    experiment.write_text(yaml.safe_dump(json.loads(AGENT_CRASH.read_text())))
    assert check_gameday(entry_with(tmp_path, "{fault_s: 5}", experiment))[1] == []


def test_a_number_yaml_read_as_text_says_so(tmp_path: Path) -> None:
    path = tmp_path / "day.yaml"
    path.write_text(f"name: day\nfault_s: 1e1\nentries:\n  - experiment: {AGENT_CRASH}\n")
    _, problems = check_gameday(path)
    [problem] = problems
    assert problem.line == 2 and "use a number from 1 to 3600, written plainly (e.g. 10): " \
        "YAML read '1e1' as text" in str(problem)


def test_an_output_folder_that_cannot_be_made_is_refused_before_anything_runs(
    tmp_path: Path,
) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    result = CliRunner().invoke(gameday, ["run", str(FIXTURES / "good.yaml"), "--plain",
                                          "--out", str(blocked / "reports")])
    assert result.exit_code == 2, result.output
    assert "cannot make the game day's output folder" in result.output
    assert "give --out a folder you can write" in result.output
    assert not (blocked.parent / "reports").exists()
