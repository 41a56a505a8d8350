"""What a game day leaves in its output folder: journals (written by ``chaos run``), a
``gameday.json`` summary, and the reports of :mod:`lkchaos.report` (HTML, Markdown, JUnit).

The game day is described by :class:`lkchaos.report.model.GamedayInfo` and its
:class:`~lkchaos.report.model.EntryInfo` entries.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from lkchaos.report import write_reports as render_reports
from lkchaos.report.model import GamedayInfo


def write_summary(out_dir: Path, result: GamedayInfo) -> Path:
    """``gameday.json``: the result as JSON (paths as strings)."""
    data = asdict(result)
    data["entries"] = [{**entry, "journal": str(entry["journal"]) if entry["journal"] else None}
                       for entry in data["entries"]]  # fmt: skip
    data["trend"] = [list(point) for point in result.trend]
    path = out_dir / "gameday.json"
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path


def write_reports(out_dir: Path, result: GamedayInfo, junit: Path | None,
                  say: Callable[[str], None]) -> list[Path]:  # fmt: skip
    """Write the summary and the reports into ``out_dir`` (and the JUnit XML also to
    ``junit``); returns the files written. A report that cannot be written is said, not
    raised: the journals are what matters."""
    written = [write_summary(out_dir, result)]
    journals = [e.journal for e in result.entries if e.journal is not None and e.journal.is_file()]
    try:
        produced = render_reports(out_dir, journals, title=f"Game day {result.name}",
                                  gameday=result, formats=("html", "md", "junit"))  # fmt: skip
    except Exception as exc:  # the journals stay; say what went wrong with the reports
        say(f"the reports could not be written ({type(exc).__name__}: {exc}); the journals "
            f"and gameday.json are in {out_dir}")
        return written
    written += produced.values()
    if junit is not None and produced["junit"].resolve() != junit.resolve():
        junit.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(produced["junit"], junit)
        written.append(junit)
    return written
