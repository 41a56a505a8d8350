"""YAML files checked with line numbers: every problem names its file, line and fix.

Used by :mod:`lkchaos.gameday.check` and :mod:`lkchaos.target.load`. Lines come from PyYAML's
composed nodes: a schema error's location (``entries.2.fault_s``) is mapped to the line of that
node, or of the nearest enclosing one that exists. Each problem reads ``FILE:LINE: problem;
fix``.

Aliases are read once: a node an alias repeats is walked a single time however often it is
repeated (a "billion laughs" file costs what its text costs), and an alias inside the node it
names (``a: &r [*r]``) is refused with its line.
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


class _RecursiveAlias(yaml.composer.ComposerError):
    """An alias inside the node its anchor names: the node would contain itself."""


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a recursive alias where it is written."""

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            named = self.anchors.get(event.anchor)
            # A collection still being composed has no end yet: the alias is inside it.
            if named is not None and named.end_mark is None:
                raise _RecursiveAlias(None, None, f"*{event.anchor} is a recursive YAML alias "
                                      f"(it is inside the node &{event.anchor} names)",
                                      event.start_mark)  # fmt: skip
        return super().compose_node(parent, index)


def _lines(root: yaml.Node, found: dict[Location, int],
           duplicates: list[tuple[Location, int]]) -> None:  # fmt: skip
    """The line of each node by its location, and the duplicate keys. Nodes are walked in the
    file's order and each once: a node an alias repeats is walked at its anchor, and the
    alias's location gets the line of its key (in a list, of the list), so the walk is as
    long as the file, never as long as its expansion."""
    walked: set[int] = set()
    pending: list[tuple[yaml.Node, Location, int]] = [(root, (), 1)]
    while pending:
        node, where, alias_line = pending.pop()
        if id(node) in walked:
            found.setdefault(where, alias_line)
            continue
        walked.add(id(node))
        line = found[where] = node.start_mark.line + 1
        children: list[tuple[yaml.Node, Location, int]] = []
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key, value in node.value:
                # A list or mapping as a key is refused when constructed; never print it.
                shown = key.value if isinstance(key, yaml.ScalarNode) else f"<{key.id}>"
                name, key_line = str(shown), key.start_mark.line + 1
                if name in seen:
                    duplicates.append(((*where, name), key_line))
                seen.add(name)
                found[(*where, name, "<key>")] = key_line
                children.append((value, (*where, name), key_line))
        elif isinstance(node, yaml.SequenceNode):
            children = [(item, (*where, index), line) for index, item in enumerate(node.value)]
        pending.extend(reversed(children))


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
    lines: dict[Location, int] = {}
    duplicates: list[tuple[Location, int]] = []
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is not None:  # before constructing, which folds merge keys (<<) in place
            _lines(node, lines, duplicates)
        data = None if node is None else loader.construct_document(node)
    except _RecursiveAlias as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark is not None else 1
        return {}, {}, [Problem(name, line, str(exc.problem),
                                "write the value out, or alias only a node that ends before "
                                "the alias")]  # fmt: skip
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
    finally:
        loader.dispose()
    if not isinstance(data, dict) or node is None:
        return {}, {}, [Problem(name, 1, *not_mapping)]
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
