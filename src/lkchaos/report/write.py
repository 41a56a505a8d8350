"""Render a report in each format and write the files."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from lkchaos.errors import ConfigError, LkChaosError
from lkchaos.report import html, junit, markdown
from lkchaos.report.load import JournalSource, load_report
from lkchaos.report.model import GamedayInfo, Report

#: The file each format is written to by :func:`write_reports`.
FILE_NAMES: Mapping[str, str] = {"html": "report.html", "md": "report.md", "junit": "junit.xml"}
_RENDER = {"html": html.render, "md": markdown.render, "junit": junit.render}

__all__ = ["FILE_NAMES", "load_report", "render_html", "render_junit", "render_markdown",
           "write_report_files", "write_reports"]  # fmt: skip


def render_html(journals: Sequence[JournalSource], *, title: str,
                gameday: GamedayInfo | None = None) -> str:  # fmt: skip
    """The self-contained HTML page. Raises ``ConfigError`` for a journal that cannot be read."""
    return html.render(load_report(journals, title=title, gameday=gameday))


def render_markdown(journals: Sequence[JournalSource], *, title: str,
                    gameday: GamedayInfo | None = None) -> str:  # fmt: skip
    """Markdown for a pull-request comment (at most 60,000 characters)."""
    return markdown.render(load_report(journals, title=title, gameday=gameday))


def render_junit(journals: Sequence[JournalSource], *, title: str,
                 gameday: GamedayInfo | None = None) -> str:  # fmt: skip
    """The JUnit XML document."""
    return junit.render(load_report(journals, title=title, gameday=gameday))


_DEFAULT_NAMES = {"html": "report.html", "md": "report.md", "junit": "junit.xml"}


def check_outputs(inputs: Sequence[Path], outputs: Mapping[str, Path | None]) -> None:
    """Refuse, before any work, outputs that would overwrite an input file or each other.
    ``outputs``: option name (``--output``) to path, None when not given. Raises
    ``ConfigError``."""
    read = {p.expanduser().resolve(): p for p in inputs}
    seen: dict[Path, str] = {}
    for option, path in outputs.items():
        if path is None:
            continue
        target = path.expanduser().resolve()
        if target in read:
            raise ConfigError(f"{option} {path} is the input {read[target]}: the report would "
                              f"replace what it reads; write it elsewhere")
        if target in seen:
            raise ConfigError(f"{option} and {seen[target]} both write {path}: give each its "
                              f"own file")
        seen[target] = option


def write_report_files(report: Report, paths: Mapping[str, Path]) -> dict[str, Path]:
    """Write ``report`` in each format of ``paths`` (``html``, ``md``, ``junit``) to its path,
    each file replaced whole (written beside it, then renamed). Returns the absolute paths.
    Raises ``ConfigError`` for an unknown format, ``LkChaosError`` when a file cannot be
    written."""
    unknown = set(paths) - set(_RENDER)
    if unknown:
        raise ConfigError(f"unknown report format(s) {', '.join(sorted(unknown))}: use "
                          f"{', '.join(_RENDER)}")
    written: dict[str, Path] = {}
    for kind, path in paths.items():
        text = _RENDER[kind](report)
        target = path.expanduser().absolute()
        partial = target.with_name(f".{target.name}.partial")
        if target.is_dir():
            raise ConfigError(f"the {kind} report's path {target} is a folder: give a file "
                              f"name in it, such as {target / _DEFAULT_NAMES[kind]}")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            partial.write_text(text, encoding="utf-8")
            os.replace(partial, target)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise LkChaosError(f"cannot write the {kind} report to {target}: {exc}") from exc
        written[kind] = target
    return written


def write_reports(out_dir: Path, journals: Sequence[JournalSource], *, title: str,
                  gameday: GamedayInfo | None = None,
                  formats: Sequence[str] = ("html", "md", "junit")) -> dict[str, Path]:
    """Write ``report.html``, ``report.md`` and ``junit.xml`` (those of ``formats``) into
    ``out_dir``, created if needed; returns ``{"html": path, "md": path, "junit": path}``.
    ``journals``: files or loaded journals; with ``gameday``, one per entry that ran, in order,
    or none to read each entry's own ``journal``. Raises ``ConfigError`` for a journal that
    cannot be read or an unknown format, ``LkChaosError`` for a file that cannot be written."""
    unknown = [kind for kind in formats if kind not in FILE_NAMES]
    if unknown:
        raise ConfigError(f"unknown report format(s) {', '.join(unknown)}: use "
                          f"{', '.join(FILE_NAMES)}")
    report = load_report(journals, title=title, gameday=gameday)
    return write_report_files(report, {kind: out_dir / FILE_NAMES[kind] for kind in formats})
