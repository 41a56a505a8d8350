"""A run's results as the terminal table, Markdown and JSON, in the document's order and words.

The terminal table has the document's section, group and subgroup headings and one line per
item: status, id, text, evidence; colour only on a terminal (``click.echo`` strips it
otherwise); a summary line with the counts. The HTML sign-off sheet and JUnit XML are in
:mod:`lkchaos.validate.html` and :mod:`lkchaos.validate.junit`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import click

from lkchaos.validate.runner import ItemResult, Report

COLOURS = {"pass": "green", "fail": "red", "warn": "yellow", "error": "magenta",
           "manual": "cyan", "n/a": "bright_black"}  # fmt: skip
MARKS = {"pass": "x", "fail": " ", "warn": " ", "error": " ", "manual": " ", "n/a": "-"}
_MARKUP = re.compile(r"\*\*|`")


def plain(text: str) -> str:
    """The document's words without their Markdown emphasis and code marks."""
    return _MARKUP.sub("", text)


def summary(report: Report) -> str:
    """``248 items: 30 pass, 2 fail, ... in 12.3 s (exit 1)``."""
    counts = ", ".join(f"{n} {status}" for status, n in report.counts().items())
    return (f"{len(report.results)} items: {counts} in {report.duration_s:.1f} s "
            f"(exit {report.exit_code()})")  # fmt: skip


def headings(report: Report) -> Iterator[tuple[str, str, ItemResult]]:
    """Each result with the heading level that starts before it (``section``, ``group``,
    ``subgroup`` or ``""``), a result appearing once per heading it opens, then once with
    ``""``: the caller prints headings from the first and the item from the last."""
    last: tuple[str, str, str | None] = ("", "", None)
    for result in report.results:
        item = result.item
        if item.section != last[0]:
            yield "section", item.section, result
        if (item.section, item.group) != last[:2]:
            yield "group", item.group, result
        if item.subgroup and (item.section, item.group, item.subgroup) != last:
            yield "subgroup", item.subgroup, result
        last = (item.section, item.group, item.subgroup)
        yield "", "", result


def terminal_lines(report: Report, width: int | None = None) -> Iterator[str]:
    """The terminal table, line by line, with ANSI colour (``click.echo`` strips it when the
    output is not a terminal)."""
    id_width = min(max((len(r.item.id) for r in report.results), default=10), 48)
    for problem in report.load_errors:
        yield click.style(f"error: {problem}", fg="red")
    for level, title, result in headings(report):
        if level == "section":
            yield ""
            yield click.style(f"== {title} ==", bold=True)
        elif level == "group":
            yield click.style(f"-- {title} --", bold=True)
        elif level == "subgroup":
            yield f"   {title}"
        else:
            yield item_line(result, id_width)
    yield ""
    yield summary(report)


def item_line(result: ItemResult, id_width: int = 40) -> str:
    indent = "  " if result.item.parent else ""
    status = click.style(f"{result.status:<6}", fg=COLOURS[result.status], bold=True)
    text = plain(result.item.text)
    evidence = f"  [{result.evidence}]" if result.evidence else ""
    return f"{status} {result.item.id:<{id_width}} {indent}{text}{evidence}"


def print_report(report: Report) -> None:
    for line in terminal_lines(report):
        click.echo(line)


def markdown(report: Report) -> str:
    """The document's checklist with each item's box ticked when it passed, its status, id
    and evidence."""
    lines = [f"# Deployment validation: {report.target or 'the configured deployment'}", "",
             f"Run {report.started_at.isoformat(timespec='seconds')}; {summary(report)}."]
    for problem in report.load_errors:
        lines += ["", f"> error: {problem}"]
    for level, title, result in headings(report):
        if level:
            hashes = {"section": "##", "group": "###", "subgroup": "####"}[level]
            lines += ([] if lines[-1] == "" else [""]) + [f"{hashes} {title}", ""]
            continue
        indent = "  " if result.item.parent else ""
        evidence = f": {_md_escape(result.evidence)}" if result.evidence else ""
        lines.append(f"{indent}- [{MARKS[result.status]}] {result.item.text} "
                     f"(**{result.status}** `{result.item.id}`){evidence}")  # fmt: skip
    return "\n".join(lines) + "\n"


def _md_escape(text: str) -> str:
    return text.replace("\n", " ").replace("<", "&lt;")


def as_json(report: Report) -> str:
    return json.dumps(report.as_dict(), indent=2, default=_jsonable) + "\n"


def _jsonable(value: Any) -> Any:
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)
