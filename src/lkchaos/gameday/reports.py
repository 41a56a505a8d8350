"""What a game day leaves in its output folder: journals (written by ``chaos run``), a
``gameday.json`` summary, and the reports of :mod:`lkchaos.report` (HTML, Markdown, JUnit).

When :mod:`lkchaos.report` cannot be imported, a plain JUnit XML and a Markdown summary are
written instead, so that a CI job still gets a test result.
"""

from __future__ import annotations

import importlib
import json
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

#: Outcomes that fail a JUnit test case.
FAILING = ("deviated", "failed", "not_recovered", "interrupted")


@dataclass(frozen=True)
class EntryResult:
    """One run of an entry (fields as :class:`lkchaos.report.model.EntryInfo`)."""

    name: str
    experiment: str
    repeat: int
    journal: Path | None
    outcome: str
    note: str = ""


@dataclass(frozen=True)
class GamedayResult:
    """A finished game day (fields as :class:`lkchaos.report.model.GamedayInfo`); times are
    ISO 8601 UTC, ``score`` 0-100."""

    name: str
    run_id: str | None
    started_at: str
    ended_at: str
    status: str
    entries: Sequence[EntryResult]
    score: float | None = None
    trend: Sequence[tuple[str, float]] = field(default_factory=tuple)


def write_summary(out_dir: Path, result: GamedayResult) -> Path:
    """``gameday.json``: the result as JSON (paths as strings)."""
    data = asdict(result)
    data["entries"] = [{**entry, "journal": str(entry["journal"]) if entry["journal"] else None}
                       for entry in data["entries"]]  # fmt: skip
    data["trend"] = [list(point) for point in result.trend]
    path = out_dir / "gameday.json"
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path


def _fallback_junit(path: Path, result: GamedayResult) -> None:
    suite = ET.Element("testsuite", name=f"gameday {result.name}", tests=str(len(result.entries)),
                       failures=str(sum(e.outcome in FAILING for e in result.entries)),
                       skipped=str(sum(e.outcome == "skipped" for e in result.entries)))
    for entry in result.entries:
        case = ET.SubElement(suite, "testcase", classname=f"gameday.{result.name}",
                             name=f"{entry.name} #{entry.repeat}")  # fmt: skip
        if entry.outcome in FAILING:
            ET.SubElement(case, "failure", message=entry.outcome).text = entry.note
        elif entry.outcome == "skipped":
            ET.SubElement(case, "skipped", message=entry.note)
    root = ET.Element("testsuites")
    root.append(suite)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def _fallback_markdown(path: Path, result: GamedayResult) -> None:
    lines = [f"# Game day {result.name}: {result.status}", "",
             f"{result.started_at} to {result.ended_at}"
             + (f", score {result.score:.1f}" if result.score is not None else ""), "",
             "| # | entry | repeat | outcome | note |", "|---|---|---|---|---|"]
    lines += [f"| {i} | {e.name} | {e.repeat} | {e.outcome} | {e.note.replace('|', '/')} |"
              for i, e in enumerate(result.entries, 1)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_reports(out_dir: Path, result: GamedayResult, junit: Path | None,
                  say: Callable[[str], None]) -> list[Path]:  # fmt: skip
    """Write the summary and the reports into ``out_dir`` (and the JUnit XML also to
    ``junit``); returns the files written. A report that cannot be written is said, not
    raised: the journals are what matters."""
    written = [write_summary(out_dir, result)]
    journals = [e.journal for e in result.entries if e.journal is not None and e.journal.is_file()]
    try:
        from lkchaos.report.model import EntryInfo, GamedayInfo

        render = getattr(importlib.import_module("lkchaos.report"), "write_reports", None)
    except ImportError:
        render = None
    if render is not None:
        info = GamedayInfo(result.name, result.run_id, result.started_at, result.ended_at,
                           result.status, [EntryInfo(**asdict(e)) for e in result.entries],
                           result.score, tuple(result.trend))  # fmt: skip
        try:
            produced = render(out_dir, journals, title=f"Game day {result.name}", gameday=info,
                              formats=("html", "md", "junit"))  # fmt: skip
            files = produced.values() if isinstance(produced, dict) else produced or []
            written += [Path(p) for p in files]
        except Exception as exc:  # the journals stay; say what went wrong with the reports
            say(f"the reports could not be written ({type(exc).__name__}: {exc}); the journals "
                f"are in {out_dir}")
            render = None
    if render is None:
        _fallback_junit(out_dir / "junit.xml", result)
        _fallback_markdown(out_dir / "report.md", result)
        written += [out_dir / "junit.xml", out_dir / "report.md"]
    if junit is not None:
        source = next((p for p in written if p.suffix == ".xml"), None)
        if source is not None and source.resolve() != junit.resolve():
            junit.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, junit)
            written.append(junit)
    return written
