"""The corpora of bad YAML files (game days, targets): each file's first line says where its
problem is reported and what the message contains."""

from __future__ import annotations

import re
from pathlib import Path


def expectation(path: Path) -> tuple[int, str]:
    """Each bad file's first line: ``# expect: LINE: text the message contains``."""
    match = re.match(r"# expect: (\d+): (.+)", path.read_text().splitlines()[0])
    assert match, f"{path.name} has no `# expect:` line"
    return int(match[1]), match[2]


def assert_refused_at_its_line(path: Path, output: str) -> None:
    """``output`` reports ``path``'s expected problem at its line, and every problem of that
    line says what to do after the semicolon."""
    line, text = expectation(path)
    wanted = f"{path}:{line}: "
    lines = [entry for entry in output.splitlines() if entry.startswith(wanted)]
    assert any(text in entry for entry in lines), output
    assert all("; " in entry for entry in lines)
