"""``gameday schedule``: a real scheduler process on a 6-field cron every 2 s."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from lkchaos.errors import ConfigError
from lkchaos.gameday.lock import GamedayLock
from lkchaos.gameday.schedule import parse_duration
from tests.unit.test_gameday_run import FIXTURES, LIMIT_S, command, history, isolated_env


def schedule(tmp_path: Path, *args: str, gameday: str = "scheduled.yaml"
             ) -> subprocess.CompletedProcess[str]:  # fmt: skip
    return subprocess.run(command("schedule", str(FIXTURES / gameday), *args),
                          env=isolated_env(tmp_path), cwd=tmp_path, text=True,
                          capture_output=True, timeout=LIMIT_S, check=False)  # fmt: skip


def test_scheduled_game_day_fires_and_lands_in_history(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    done = schedule(tmp_path, "--for", "10s", "--max-runs", "1")
    assert done.returncode == 0, done.stderr
    assert "unit-scheduled: fired" in done.stderr
    assert "unit-scheduled: game day ended, exit 0 (held)" in done.stderr
    runs_on_disk = list((tmp_path / "state" / "gamedays").glob("unit-scheduled-*/gameday.json"))
    assert len(runs_on_disk) == 1
    with history(tmp_path, monkeypatch) as found:
        runs = found.gameday_runs(name="unit-scheduled")
        events = found.schedule_events(gameday="unit-scheduled")
    assert [(r.status, r.scheduled) for r in runs] == [("held", True)]
    assert "fired" in [e.kind for e in events]


def test_fire_is_skipped_while_another_game_day_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with GamedayLock(tmp_path / "state", "unit-holder"):
        done = schedule(tmp_path, "--for", "5s")
    assert done.returncode == 0, done.stderr
    assert "unit-scheduled: skipped (game day 'unit-holder'" in done.stderr
    assert not (tmp_path / "state" / "gamedays").exists()
    with history(tmp_path, monkeypatch) as found:
        kinds = {e.kind for e in found.schedule_events(gameday="unit-scheduled")}
        assert found.gameday_runs(name="unit-scheduled") == []
    assert {"fired", "skipped"} <= kinds


def test_time_up_during_a_game_day_waits_for_it_and_exits_0(tmp_path: Path) -> None:
    """``--for`` elapsing while a game day runs stops the scheduler cleanly once the game day
    has ended: no traceback, exit 0 (it once raced APScheduler's own loop and crashed). The
    game day fires within 2 s and lasts at least 6 s, so the 4 s always end inside it (with
    a game day of the machine's own speed, an idle machine once finished it first)."""
    done = schedule(tmp_path, "--for", "4s", gameday="scheduled-slow.yaml")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert "--for elapsed: stopping after the running game day" in done.stderr
    assert "unit-scheduled: game day ended, exit 0 (held)" in done.stderr
    assert done.stderr.count("game day ended, exit") == 1, done.stderr  # none after the stop


def test_sigterm_stops_the_scheduler_after_the_running_game_day(tmp_path: Path) -> None:
    import signal
    import time

    proc = subprocess.Popen(command("schedule", str(FIXTURES / "scheduled.yaml")),
                            env=isolated_env(tmp_path), cwd=tmp_path, text=True,
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)  # fmt: skip
    assert proc.stderr is not None
    lines: list[str] = []
    deadline = time.monotonic() + LIMIT_S
    while not any("unit-scheduled: fired" in line for line in lines):
        assert time.monotonic() < deadline and proc.poll() is None, lines
        lines.append(proc.stderr.readline())
    proc.send_signal(signal.SIGTERM)
    _, rest = proc.communicate(timeout=LIMIT_S)
    text = "".join(lines) + rest
    assert proc.returncode == 0, text
    assert "Traceback" not in text, text
    assert "SIGTERM: stopping the scheduler" in text
    assert text.count("unit-scheduled: game day ended") <= 1, text


def test_a_file_without_schedule_is_refused(tmp_path: Path) -> None:
    done = subprocess.run(command("schedule", str(FIXTURES / "good.yaml"), "--for", "1s"),
                          env=isolated_env(tmp_path), text=True, capture_output=True,
                          timeout=LIMIT_S, check=False)  # fmt: skip
    assert done.returncode == 2 and "has no `schedule:`" in done.stderr


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("10m", 600), ("2h", 7200),
                                               ("7d", 604800), ("1.5", 1.5)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0s", "10 minutes", "-3s", "h"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ConfigError, match="30s, 10m"):
        parse_duration(text)


def test_a_zero_duration_is_said_to_be_zero_not_malformed() -> None:
    with pytest.raises(ConfigError, match="'0s' must be more than 0"):
        parse_duration("0s")


def test_a_duration_too_long_for_a_date_is_refused() -> None:
    with pytest.raises(ConfigError, match="too long"):
        parse_duration("99999999999d")


def test_a_game_day_given_twice_is_refused(tmp_path: Path) -> None:
    done = schedule(tmp_path, str(FIXTURES / "scheduled.yaml"), "--for", "1s")
    assert done.returncode == 2, done.stderr
    assert "'unit-scheduled' is already scheduled" in done.stderr
    assert "Traceback" not in done.stderr
