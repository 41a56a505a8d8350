"""`--target FILE` on the commands whose work runs in child processes (game days, load),
checked first and exported so that each `chaos run` they start uses it; and a game day
refuses a bad `$LKCHAOS_FAULT_S` before checking anything else."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from lkchaos.cli import main

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "stack" / "targets" / "reference.yaml"


@pytest.mark.parametrize("command", [["load"], ["gameday", "check", "gamedays/quick.yaml"],
                                     ["gameday", "run", "gamedays/quick.yaml"],
                                     ["gameday", "schedule", "gamedays/quick.yaml"]])
def test_a_missing_target_file_is_refused_before_anything_runs(command: list[str]) -> None:
    done = CliRunner().invoke(main, [*command, "--target", "/nonexistent/target.yaml"])
    assert done.exit_code == 2, done.output
    assert "'--target'" in done.output and "does not exist" in done.output


def test_the_target_is_exported_for_the_experiments_a_game_day_checks(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("LKCHAOS_TARGET", raising=False)
    monkeypatch.chdir(ROOT)
    bad = tmp_path / "target.yaml"
    bad.write_text("lkchaos_version: 1\n")
    done = CliRunner().invoke(main, ["gameday", "check", "--target", str(bad),
                                     "gamedays/quick.yaml"])  # fmt: skip
    # Every entry is checked against the named target, whose problems are reported.
    assert done.exit_code == 2, done.output
    assert f"{bad}:1: unknown key 'lkchaos_version'" in done.output
    assert os.environ["LKCHAOS_TARGET"] == str(bad)
    monkeypatch.delenv("LKCHAOS_TARGET")
    done = CliRunner().invoke(main, ["gameday", "check", "--target", str(REFERENCE),
                                     "gamedays/quick.yaml"])  # fmt: skip
    assert done.exit_code == 0, done.output


@pytest.mark.parametrize("value", ["-5", "abc", "nan", "1e9"])
def test_gameday_check_refuses_a_bad_fault_window_in_the_environment(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("LKCHAOS_FAULT_S", value)
    done = CliRunner().invoke(main, ["gameday", "check", "gamedays/quick.yaml"])
    assert done.exit_code == 2, done.output
    assert f"LKCHAOS_FAULT_S={value!r}" in done.output and "nothing was checked" in done.output
