"""The history control in real ``chaos run`` processes (tiny experiments, no stack), and its
reading of the ``chaos run`` command line."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lkchaos.controls.history import run_arguments

REFERENCE = Path(__file__).resolve().parents[2] / "stack" / "targets" / "reference.yaml"

CHAOS = Path(sys.executable).with_name("chaos")
SAFETY = {"name": "lkchaos-safety", "provider": {"type": "python",
                                                 "module": "lkchaos.safety.control"}}
HISTORY = {"name": "lkchaos-history", "provider": {"type": "python",
                                                   "module": "lkchaos.controls.history"}}


def process(name: str, path: str, tolerance: int | None = None) -> dict[str, Any]:
    probe: dict[str, Any] = {"type": "probe", "name": name,
                             "provider": {"type": "process", "path": path}}
    if tolerance is not None:
        probe["tolerance"] = tolerance
    return probe


def write_experiment(folder: Path, controls: list[dict[str, Any]],
                     method: list[dict[str, Any]] | None = None) -> Path:
    experiment = {
        "version": "1.0.0", "title": "a tiny experiment", "description": "no stack needed",
        "controls": controls,
        "steady-state-hypothesis": {"title": "true is true", "probes": [
            process("true-holds", "true", tolerance=0)]},
        "method": method or [process("run-true", "true")],
    }  # fmt: skip
    path = folder / "tiny.json"
    path.write_text(json.dumps(experiment))
    return path


def chaos_run(folder: Path, experiment: Path, history_url: str, *extra: str,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LKCHAOS_")}
    environ.update(LKCHAOS_STATE_DIR=str(folder / "state"), LKCHAOS_HISTORY_URL=history_url,
                   **(env or {}))  # fmt: skip
    return subprocess.run(
        [str(CHAOS), "--no-version-check", "--no-log-file", *extra, "run",
         "--journal-path", "journal.json", experiment.name],
        cwd=folder, env=environ, capture_output=True, text=True, timeout=180,
    )  # fmt: skip


def recorded(database: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(database) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(row) for row in conn.execute("SELECT * FROM runs")]


def journal(folder: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((folder / "journal.json").read_text())
    return loaded


def test_a_run_is_recorded_once_with_where_it_came_from(tmp_path: Path) -> None:
    experiment = write_experiment(tmp_path, [SAFETY, HISTORY])
    settings = tmp_path / "settings.yaml"  # declared for every experiment as well
    settings.write_text("controls:\n  lkchaos-history:\n    provider:\n"
                        "      type: python\n      module: lkchaos.controls.history\n")
    database = tmp_path / "history.sqlite"
    result = chaos_run(tmp_path, experiment, f"sqlite:///{database}", "--settings",
                       str(settings), env={"LKCHAOS_GAMEDAY_RUN_ID": "g-1",
                                           "LKCHAOS_GAMEDAY_ENTRY": "tiny",
                                           "LKCHAOS_TARGET": str(REFERENCE)})  # fmt: skip
    assert result.returncode == 0, result.stderr
    (row,) = recorded(database)
    written = journal(tmp_path)
    note = written["lkchaos"]["history"]
    assert note == {"recorded": True, "run_id": row["run_id"],
                    "url": f"sqlite:///{database}", "error": None}  # fmt: skip
    assert row["run_id"] == written["lkchaos_safety"]["run_id"]
    assert (row["experiment_path"], row["journal_path"]) == (str(experiment),
                                                             str(tmp_path / "journal.json"))
    assert (row["experiment_name"], row["status"], row["deviated"]) == ("tiny", "completed", 0)
    assert (row["gameday_run_id"], row["entry"], row["target"]) == ("g-1", "tiny",
                                                                    str(REFERENCE))
    assert row["score"] == 100.0


def test_declared_twice_without_a_safety_run_id_still_records_once(tmp_path: Path) -> None:
    # Without the safety control each record would get a new uuid: only the control's own
    # guard keeps it to one row.
    settings = tmp_path / "settings.yaml"
    settings.write_text(json.dumps({"controls": {"lkchaos-history": HISTORY}}))
    database = tmp_path / "history.sqlite"
    result = chaos_run(tmp_path, write_experiment(tmp_path, [HISTORY]), f"sqlite:///{database}",
                       "--settings", str(settings))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert len(recorded(database)) == 1
    assert "lkchaos_safety" not in journal(tmp_path)


def test_the_record_carries_the_verdict_the_safety_control_decided(tmp_path: Path) -> None:
    # History declared before safety: the method probe's missed tolerance only becomes a
    # deviation in the safety control's after_experiment_control, which runs after ours.
    experiment = write_experiment(tmp_path, [HISTORY, SAFETY],
                                  method=[process("exits-0-expected-1", "true", tolerance=1)])
    database = tmp_path / "history.sqlite"
    result = chaos_run(tmp_path, experiment, f"sqlite:///{database}")
    assert result.returncode == 1
    (row,) = recorded(database)
    assert (row["status"], row["deviated"], row["score"]) == ("completed", 1, 0.0)
    assert journal(tmp_path)["deviated"] is True


@pytest.mark.parametrize("holds", [True, False])
def test_a_broken_history_changes_nothing_but_a_note(tmp_path: Path, holds: bool) -> None:
    good, broken = tmp_path / "good", tmp_path / "broken"
    # Deviates through the safety control: a method probe misses its tolerance.
    method = None if holds else [process("exits-0-expected-1", "true", tolerance=1)]
    codes = []
    for folder, url in ((good, f"sqlite:///{good / 'h.sqlite'}"),
                        (broken, "postgresql://lk:s3cret@127.0.0.1:1/history")):  # fmt: skip
        folder.mkdir()
        result = chaos_run(folder, write_experiment(folder, [SAFETY, HISTORY], method=method),
                           url)  # fmt: skip
        codes.append(result.returncode)
    assert codes == ([0, 0] if holds else [1, 1])
    note = journal(broken)["lkchaos"]["history"]
    assert note["recorded"] is False and note["run_id"] is None
    assert note["url"] == "postgresql+psycopg://lk:***@127.0.0.1:1/history"
    assert "Connection refused" in note["error"] and "s3cret" not in json.dumps(note)
    assert journal(broken)["status"] == journal(good)["status"]
    assert journal(broken)["deviated"] == journal(good)["deviated"] == (not holds)


def test_a_broken_history_logs_one_error_line(tmp_path: Path) -> None:
    result = chaos_run(tmp_path, write_experiment(tmp_path, [HISTORY]),
                       "postgresql://lk:s3cret@127.0.0.1:1/history")  # fmt: skip
    errors = [line for line in result.stderr.splitlines() if "NOT recorded" in line]
    assert len(errors) == 1 and "s3cret" not in result.stderr
    assert result.returncode == 0


@pytest.mark.parametrize(("argv", "expected"), [
    (["/v/bin/chaos", "run", "exp.json"], ("exp.json", None)),
    (["/v/bin/chaos", "--verbose", "--settings", "s.yaml", "run", "--journal-path", "j.json",
      "--var", "fault_s:int=3", "--no-validation", "--dry=probes", "e.json"], ("e.json", "j.json")),
    (["chaos", "run", "--journal-path=out/j.json", "--rollback-strategy", "always",
      "https://example.com/e.json"], ("https://example.com/e.json", "out/j.json")),
    (["/v/lib/python3.11/site-packages/chaostoolkit/__main__.py", "run", "e.json"],
     ("e.json", None)),
    (["chaos", "--change-dir", "run", "run", "e.json"], ("e.json", None)),
    (["chaos", "validate", "e.json"], (None, None)),
    (["/v/bin/pytest", "run", "e.json"], (None, None)),
    ([], (None, None)),
])  # fmt: skip
def test_run_arguments(argv: list[str], expected: tuple[str | None, str | None]) -> None:
    assert run_arguments(argv) == expected
