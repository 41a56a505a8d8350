"""Game days run for real: ``python -m lkchaos.gameday run`` on tiny experiments whose
probes and actions are processes (a marker file is the "fault"), in a state folder and a
history database of their own, with every backend lkchaos's recovery sweeps pointed at
nothing (no Docker engine, no Toxiproxy), so that nothing outside the test is touched."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from lkchaos.gameday.lock import GamedayLock

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "gamedays"
#: Seconds any one game day of these tests may take before the test gives up on it.
LIMIT_S = 180
STAMPED = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \[[^]]+\] ")


def isolated_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a game day that touches nothing outside ``tmp_path``."""
    env = {**os.environ,
           "HOME": str(tmp_path),  # no user Chaos Toolkit settings
           "LKCHAOS_STATE_DIR": str(tmp_path / "state"),
           "LKCHAOS_HISTORY_URL": f"sqlite:///{tmp_path / 'history.db'}",
           "GAMEDAY_TEST_MARKER": str(tmp_path / "marker"),
           "DOCKER_HOST": f"unix://{tmp_path / 'no-docker.sock'}",
           "LKCHAOS_TOXIPROXY_URL": "http://127.0.0.1:1",
           "LKCHAOS_DNS_SERVER": "127.0.0.1:1",
           "LKCHAOS_COMPOSE_PROJECT": "lkchaos-unit-gameday"}  # fmt: skip
    env.pop("LKCHAOS_FAULT_S", None)
    return env


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "lkchaos.gameday", *args]


def run(tmp_path: Path, *args: str,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """``python -m lkchaos.gameday ARGS`` in :func:`isolated_env`, with ``env`` on top."""
    return subprocess.run(command(*args), env={**isolated_env(tmp_path), **(env or {})},
                          cwd=tmp_path, text=True, capture_output=True, timeout=LIMIT_S,
                          check=False)  # fmt: skip


def summary(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / "gameday.json").read_text())
    return data


def outcomes(out: Path) -> list[tuple[str, int, str]]:
    return [(e["name"], e["repeat"], e["outcome"]) for e in summary(out)["entries"]]


def history(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    from lkchaos.history import open_history

    monkeypatch.setenv("LKCHAOS_HISTORY_URL", f"sqlite:///{tmp_path / 'history.db'}")
    monkeypatch.setenv("LKCHAOS_STATE_DIR", str(tmp_path / "state"))
    return open_history()


@pytest.fixture(scope="module")
def good_run(tmp_path_factory: pytest.TempPathFactory,
             ) -> tuple[Path, subprocess.CompletedProcess[str]]:  # fmt: skip
    """One run of good.yaml, shared by the tests that read what it left."""
    tmp_path = tmp_path_factory.mktemp("good")
    done = run(tmp_path, "run", "--plain", "--out", str(tmp_path / "out"),
               str(FIXTURES / "good.yaml"))
    return tmp_path, done


def test_game_day_runs_every_entry(good_run: tuple[Path, subprocess.CompletedProcess[str]],
                                   monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    tmp_path, done = good_run
    out = tmp_path / "out"
    assert done.returncode == 0, done.stderr
    assert outcomes(out) == [("holds", 1, "held"), ("fault-twice", 1, "held"),
                             ("fault-twice", 2, "held")]  # fmt: skip
    for name in ("01-holds-1", "02-fault-twice-1", "03-fault-twice-2"):
        journal = json.loads((out / f"{name}.json").read_text())
        assert journal["status"] == "completed" and not journal["deviated"]
        # The safety control was declared at settings level: it acted on every run.
        assert journal["lkchaos_safety"]["run_id"]
    assert not (tmp_path / "marker").exists()
    assert (out / "junit.xml").is_file() and (out / "report.md").is_file()
    # The fault window reached the experiment through LKCHAOS_FAULT_S.
    fault = json.loads((out / "02-fault-twice-1.json").read_text())
    assert fault["run"][0]["output"]["stdout"].strip() in ("1", "1.0")
    # Plain progress: one line per event, each with a UTC timestamp and where it happened.
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines and all(STAMPED.match(line) for line in lines), done.stderr
    assert "[2/3 fault-twice] action inject-marker succeeded" in done.stderr
    assert "[3/3 fault-twice #2] entry held" in done.stderr
    with history(tmp_path, monkeypatch) as found:
        runs = found.gameday_runs(name="unit-good")
    assert [(r.status, r.scheduled) for r in runs] == [("held", False)]
    assert summary(out)["run_id"] == runs[0].gameday_run_id


def test_progress_control_lines_of_a_real_run(
    good_run: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    tmp_path, done = good_run
    out = tmp_path / "out"
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in
             (out / "02-fault-twice-1.progress.jsonl").read_text().splitlines()]
    shape = [(e["event"], e["edge"], e.get("name") if e["event"] == "activity" else e.get("phase"))
             for e in lines]
    assert shape == [
        ("experiment", "start", None),
        ("phase", "start", "steady-state-before"),
        ("activity", "start", "always-true"), ("activity", "end", "always-true"),
        ("phase", "end", "steady-state-before"),
        ("phase", "start", "method"),
        ("activity", "start", "fault-window"), ("activity", "end", "fault-window"),
        ("activity", "start", "inject-marker"), ("activity", "end", "inject-marker"),
        ("phase", "end", "method"),
        ("phase", "start", "steady-state-after"),
        ("activity", "start", "always-true"), ("activity", "end", "always-true"),
        ("phase", "end", "steady-state-after"),
        ("phase", "start", "rollbacks"),
        ("activity", "start", "remove-marker"), ("activity", "end", "remove-marker"),
        ("phase", "end", "rollbacks"),
        ("experiment", "end", None),
    ]
    inject = next(e for e in lines if e.get("name") == "inject-marker" and e["edge"] == "end")
    assert (inject["status"], inject["type"], inject["phase"]) == ("succeeded", "action",
                                                                   "method")  # fmt: skip
    assert json.loads(inject["result"])["status"] == 0
    assert lines[-1]["status"] == "completed" and lines[-1]["deviated"] is False


def test_not_recovered_stops_the_game_day(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = run(tmp_path, "run", "--plain", "--out", str(out),
               str(FIXTURES / "stop-not-recovered.yaml"))
    assert done.returncode == 3, done.stderr
    assert outcomes(out) == [("leaves-fault", 1, "not_recovered"), ("holds", 1, "skipped")]
    first, second = summary(out)["entries"]
    assert "not back at baseline" in first["note"]
    # Why, in the summary itself: the baseline's probe and what it returned (the last
    # attempt may be cut short by the baseline's timeout: the one before it says why).
    assert 'no-fault-marker (before: returned {"status": 1' in first["note"], first["note"]
    assert "on_not_recovered" in second["note"] and second["journal"] is None
    assert "lkchaos recovery" in done.stderr


def test_deviation_stops_with_on_deviation(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = run(tmp_path, "run", "--plain", "--out", str(out),
               str(FIXTURES / "stop-on-deviation.yaml"))
    assert done.returncode == 1, done.stderr
    assert outcomes(out) == [("deviates", 1, "deviated"), ("holds", 1, "skipped")]
    assert "on_deviation" in summary(out)["entries"][1]["note"]
    # The deviation was rolled back: the baseline held after it.
    assert not (tmp_path / "marker").exists()


def test_interrupt_rolls_back_and_exits_130(tmp_path: Path) -> None:
    out = tmp_path / "out"
    marker = tmp_path / "marker"
    process = subprocess.Popen(
        command("run", "--plain", "--out", str(out), str(FIXTURES / "long-fault.yaml")),
        env=isolated_env(tmp_path), cwd=tmp_path, text=True, stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + LIMIT_S
        while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert marker.exists(), "the fault was never injected"
        process.send_signal(signal.SIGINT)  # the fault is held for 60 s: this is mid-method
        _, stderr = process.communicate(timeout=LIMIT_S)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr
    assert not marker.exists(), "the rollback did not run"
    assert outcomes(out) == [("fault", 1, "interrupted"), ("holds", 1, "skipped")]
    assert "interrupted" in summary(out)["entries"][1]["note"]
    journal = json.loads((out / "01-fault-1.json").read_text())
    assert journal["status"] == "interrupted"
    assert [r["activity"]["name"] for r in journal["rollbacks"]] == ["remove-marker"]
    assert "lkchaos recovery" in stderr and "SIGINT" in stderr


def test_an_entry_past_its_timeout_is_interrupted_rolled_back_and_the_day_goes_on(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    done = run(tmp_path, "run", "--plain", "--out", str(out),
               str(FIXTURES / "entry-timeout.yaml"))
    assert done.returncode == 1, done.stderr
    assert outcomes(out) == [("fault", 1, "interrupted"), ("holds", 1, "held")]
    note = summary(out)["entries"][0]["note"]
    assert "ran longer than its timeout_s (10 s)" in note, note
    assert not (tmp_path / "marker").exists(), "the rollback did not run"
    journal = json.loads((out / "01-fault-1.json").read_text())
    assert [r["activity"]["name"] for r in journal["rollbacks"]] == ["remove-marker"]
    # The run itself, not the whole day (three baselines on a busy machine can pass 60 s):
    # its 60 s fault was cut at the entry's 10 s.
    assert journal["duration"] < 50, f"the 60 s fault was waited out: {journal['duration']} s"


def test_second_game_day_is_refused(tmp_path: Path) -> None:
    with GamedayLock(tmp_path / "state", "unit-holder"):
        done = run(tmp_path, "run", "--plain", "--out", str(tmp_path / "out"),
                   str(FIXTURES / "good.yaml"))
    assert done.returncode == 4, done.stderr
    assert "game day 'unit-holder'" in done.stderr and f"pid {os.getpid()}" in done.stderr
    assert not (tmp_path / "out").exists()


MINIMAL = Path(__file__).resolve().parents[1] / "fixtures" / "targets" / "minimal.yaml"


def test_game_days_on_two_targets_take_a_lock_each(tmp_path: Path) -> None:
    """A game day on another target file runs beside one on the reference stack (its lock is
    in that target's run folder), and a second one on the same target is refused."""
    one_entry = str(FIXTURES / "scheduled.yaml")  # no baseline, one entry that holds

    def run_on_minimal(out: str) -> subprocess.CompletedProcess[str]:
        # Every backend stays pointed at nothing (isolated_env's variables win over the target).
        return run(tmp_path, "run", "--plain", "--out", str(tmp_path / out), one_entry,
                   env={"LKCHAOS_TARGET": str(MINIMAL)})

    with GamedayLock(tmp_path / "state", "unit-reference-holder"):
        beside = run_on_minimal("beside")
    assert beside.returncode == 0, beside.stderr
    assert outcomes(tmp_path / "beside") == [("holds", 1, "held")]
    locks = list((tmp_path / "state" / "targets").glob("minimal-*/gameday.lock"))
    assert len(locks) == 1, locks
    with GamedayLock(locks[0].parent, "unit-minimal-holder"):
        refused = run_on_minimal("refused")
    assert refused.returncode == 4, refused.stderr
    assert "game day 'unit-minimal-holder'" in refused.stderr
    assert not (tmp_path / "refused").exists()


def test_bad_file_exits_2_before_anything_runs(tmp_path: Path) -> None:
    bad = FIXTURES / "bad" / "unknown-key.yaml"
    done = run(tmp_path, "run", "--plain", "--out", str(tmp_path / "out"), str(bad))
    assert done.returncode == 2
    assert f"{bad}:5: unknown key" in done.stderr
    assert not (tmp_path / "out").exists()


def test_unknown_option_exits_2(tmp_path: Path) -> None:
    done = run(tmp_path, "run", "--no-such-option", str(FIXTURES / "good.yaml"))
    assert done.returncode == 2 and "no-such-option" in done.stderr


@pytest.mark.parametrize("mode", [["--ci"], []])
def test_bad_fault_window_exits_2_before_anything_runs(tmp_path: Path, mode: list[str]) -> None:
    # Without --ci too: the experiments read $LKCHAOS_FAULT_S for their fault windows.
    done = run(tmp_path, "run", *mode, "--out", str(tmp_path / "out"),
               str(FIXTURES / "good.yaml"), env={"LKCHAOS_FAULT_S": "-3"})
    assert done.returncode == 2, done.stderr
    assert "LKCHAOS_FAULT_S='-3'" in done.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "history.db").exists()


def test_missing_settings_file_exits_2_and_leaves_no_out_folder(tmp_path: Path) -> None:
    done = run(tmp_path, "run", "--plain", "--settings", str(tmp_path / "nope.yaml"),
               "--out", str(tmp_path / "out"), str(FIXTURES / "good.yaml"))
    assert done.returncode == 2 and "no Chaos Toolkit settings file" in done.stderr
    assert not (tmp_path / "out").exists()
