"""YAML files checked with line numbers: every problem names its file, line and fix.

Used by :mod:`lkchaos.gameday.check` and :mod:`lkchaos.target.load`. Lines come from PyYAML's
composed nodes: a schema error's location (``entries.2.fault_s``) is mapped to the line of that
node, or of the nearest enclosing one that exists. Each problem reads ``FILE:LINE: problem;
fix``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lkchaos.errors import ConfigError

Location = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One problem of a checked file: where (file, 1-based line), what, and what to do."""

    path: str
    line: int
    message: str
    fix: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}; {self.fix}"


class FileInvalid(ConfigError):
    """A checked file with problems; ``problems`` lists them all."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(problem) for problem in problems))


def in_line_order(problems: Iterable[Problem]) -> list[Problem]:
    """The problems without repeats, by line."""
    return sorted(dict.fromkeys(problems), key=lambda problem: problem.line)


def _lines(node: yaml.Node, where: Location, found: dict[Location, int],
           duplicates: list[tuple[Location, int]]) -> None:  # fmt: skip
    found[where] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            name = str(key.value)
            if name in seen:
                duplicates.append(((*where, name), key.start_mark.line + 1))
            seen.add(name)
            found[(*where, name, "<key>")] = key.start_mark.line + 1
            _lines(value, (*where, name), found, duplicates)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _lines(item, (*where, index), found, duplicates)


def line_of(lines: dict[Location, int], where: Location) -> int:
    """The line of the node at ``where``, or of its nearest enclosing node (1 at worst)."""
    for end in range(len(where), -1, -1):
        if where[:end] in lines:
            return lines[where[:end]]
    return 1


def parse(path: str | Path, *, not_mapping: tuple[str, str], quote_errors: bool = True,
          ) -> tuple[dict[str, Any], dict[Location, int], list[Problem]]:  # fmt: skip
    """The file's mapping, the line of each node, and its syntax problems (the mapping is
    empty when the file cannot be read or parsed).

    ``not_mapping``: the problem and fix when the file holds no mapping. ``quote_errors=False``
    names a YAML error that has no marked problem by its type alone, not by its text.
    """
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return {}, {}, [Problem(name, 1, f"cannot be read ({exc})", "check the path")]
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        reason = getattr(exc, "problem", None) or (str(exc) if quote_errors
                                                   else type(exc).__name__)
        context, start = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        if context and start is not None and start.line + 1 != line:
            reason += f" ({context} at line {start.line + 1})"
        return {}, {}, [Problem(name, line, f"not valid YAML: {reason}",
                                "check the indentation and quoting around that line")]
    if not isinstance(data, dict) or node is None:
        return {}, {}, [Problem(name, 1, *not_mapping)]
    lines: dict[Location, int] = {}
    duplicates: list[tuple[Location, int]] = []
    _lines(node, (), lines, duplicates)
    problems = [Problem(name, line, f"key {'.'.join(map(str, where))!r} is given twice",
                        "keep one of them") for where, line in duplicates]
    return data, lines, problems


def key_problem(path: str, error: Any, lines: dict[Location, int], where: Location, kind: str,
                *, known_keys: Callable[[Location], list[str]], missing_fix: str = "",
                ) -> Problem | None:  # fmt: skip
    """The problem of a pydantic error of ``kind`` at ``where`` that every checked file words
    alike: an unknown key ("did you mean", from ``known_keys(where)``), a missing one (its fix
    followed by ``missing_fix``), a value not among the allowed ones. None for any other."""
    dotted = ".".join(str(part) for part in where) or "the file"
    if kind == "extra_forbidden":
        key = str(where[-1])
        known = known_keys(where)
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(known)}"
        return Problem(path, line_of(lines, (*where, "<key>")), f"unknown key {dotted!r}",
                       f"{hint} (remove it or correct its spelling)")  # fmt: skip
    if kind == "missing":
        return Problem(path, line_of(lines, where[:-1]), f"{dotted} is missing",
                       f"add `{where[-1]}:`{missing_fix}")  # fmt: skip
    if kind == "literal_error":
        value = error.get("input")
        choices = re.findall(r"'([^']*)'", str(error.get("ctx", {}).get("expected", "")))
        close = difflib.get_close_matches(str(value), choices, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}?" if close else f"use one of {', '.join(choices)}"
        return Problem(path, line_of(lines, where), f"{dotted}: {value!r} is not allowed", hint)
    return None
