"""Reports of experiment runs and game days: one self-contained HTML page, Markdown for a
pull-request comment, JUnit XML for CI (see docs/reports.md).

``write_reports(out_dir, journals, title=..., gameday=...)`` writes ``report.html``,
``report.md`` and ``junit.xml``; ``render_html``, ``render_markdown`` and ``render_junit``
return the text. Journals are JSON files or already-loaded mappings; a journal that cannot be
read raises ``lkchaos.errors.ConfigError`` naming it.
"""

from __future__ import annotations

from lkchaos.report.model import EntryInfo, GamedayInfo, Report
from lkchaos.report.write import (
    FILE_NAMES,
    load_report,
    render_html,
    render_junit,
    render_markdown,
    write_report_files,
    write_reports,
)

__all__ = [
    "FILE_NAMES", "EntryInfo", "GamedayInfo", "Report", "load_report", "render_html",
    "render_junit", "render_markdown", "write_report_files", "write_reports",
]  # fmt: skip
