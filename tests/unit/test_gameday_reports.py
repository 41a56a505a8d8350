"""What a game day writes at its end: the summary and the reports, and what it says when the
reports cannot be written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lkchaos.errors import LkChaosError
from lkchaos.gameday import reports
from lkchaos.report.model import EntryInfo, GamedayInfo

DAY = GamedayInfo("unit", "run-1", "2026-11-01T10:00:00Z", "2026-11-01T10:05:00Z", "held",
                  [EntryInfo("holds", "holds.json", 1, None, "skipped", "not run")], 90.0,
                  (("2026-10-25T10:00:00Z", 80.0),))  # fmt: skip


def test_summary_and_reports_are_written(tmp_path: Path) -> None:
    junit = tmp_path / "ci" / "junit.xml"
    said: list[str] = []
    (tmp_path / "out").mkdir()
    written = reports.write_reports(tmp_path / "out", DAY, junit, said.append)
    names = sorted(path.name for path in written)
    assert names == ["gameday.json", "junit.xml", "junit.xml", "report.html", "report.md"]
    assert junit.read_bytes() == (tmp_path / "out" / "junit.xml").read_bytes()
    summary = json.loads((tmp_path / "out" / "gameday.json").read_text())
    assert summary["entries"][0]["journal"] is None
    assert summary["trend"] == [["2026-10-25T10:00:00Z", 80.0]]
    assert not said


def test_reports_that_fail_are_said_not_raised(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> dict[str, Path]:
        raise LkChaosError("disk full")

    monkeypatch.setattr(reports, "render_reports", fail)
    said: list[str] = []
    written = reports.write_reports(tmp_path, DAY, tmp_path / "ci.xml", said.append)
    assert written == [tmp_path / "gameday.json"]
    assert not (tmp_path / "ci.xml").exists()
    assert said == [f"the reports could not be written (LkChaosError: disk full); the journals "
                    f"and gameday.json are in {tmp_path}"]
