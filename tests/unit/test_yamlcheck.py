"""The YAML checker shared by target files and game day files: aliases are read once, and a
recursive alias is a problem with its line, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from lkchaos.gameday.check import check_gameday
from lkchaos.target import check_target
from lkchaos.yamlcheck import parse

NOT_A_MAPPING = ("not a mapping", "write one")
TARGET = Path(__file__).resolve().parents[1] / "fixtures" / "targets" / "minimal.yaml"


def _bomb(levels: int, key: str = "junk") -> str:
    """An alias bomb under ``key``: ``levels`` lists of nine aliases to the level below, so
    it stands for 9**levels strings in about 60 characters a level."""
    rows = [f"{key}:", '  l0: &l0 "ha"']
    for level in range(1, levels + 1):
        aliases = ", ".join([f"*l{level - 1}"] * 9)
        rows.append(f"  l{level}: &l{level} [{aliases}]")
    return "\n".join(rows) + "\n"


@pytest.mark.parametrize(("text", "line"), [
    ("a: 1\nb: &r [x, *r]\n", 2),
    ("a: &m\n  b: 1\n  c: *m\n", 3),
    ("a: &s\n  - x\n  - *s\n", 3),
])  # fmt: skip
def test_recursive_alias_is_a_problem_at_its_line(tmp_path: Path, text: str, line: int) -> None:
    path = tmp_path / "file.yaml"
    path.write_text(text)
    data, lines, problems = parse(path, not_mapping=NOT_A_MAPPING)
    assert (data, lines) == ({}, {})
    assert [(problem.line, "a recursive YAML alias" in problem.message)
            for problem in problems] == [(line, True)]  # fmt: skip


def test_an_alias_repeats_a_node_without_walking_it_again(tmp_path: Path) -> None:
    path = tmp_path / "file.yaml"
    path.write_text('first: &x {port: 1}\nsecond: *x\nthird: [*x, *x]\n')
    data, lines, problems = parse(path, not_mapping=NOT_A_MAPPING)
    assert problems == []
    assert data == {"first": {"port": 1}, "second": {"port": 1},
                    "third": [{"port": 1}, {"port": 1}]}  # fmt: skip
    assert lines[("first", "port")] == 1
    assert lines[("second",)] == 2 and ("second", "port") not in lines
    assert lines[("third",)] == lines[("third", 1)] == 3


def test_an_alias_bomb_costs_what_its_text_costs(tmp_path: Path) -> None:
    path = tmp_path / "file.yaml"
    text = _bomb(6)  # 531,441 strings once expanded
    path.write_text(text)
    data, lines, problems = parse(path, not_mapping=NOT_A_MAPPING)
    assert problems == [] and set(data) == {"junk"}
    # A line for the file, for each key and its value, and for each alias written (54), none
    # for what they expand to.
    written = 1 + 2 * text.count(":") + text.count("*")
    assert len(lines) <= written < 100


def test_alias_bomb_in_a_target_is_refused_as_an_unknown_key(tmp_path: Path) -> None:
    path = tmp_path / "target.yaml"
    # 9**9 (387 million) strings once expanded, under a key the schema refuses.
    path.write_text(TARGET.read_text() + _bomb(9, "laughs"))
    size = len(TARGET.read_text().splitlines())
    loaded, problems = check_target(path)
    assert loaded is None
    assert [(problem.line, problem.message) for problem in problems] == [
        (size + 1, "unknown key 'laughs'")]


def test_recursive_alias_in_a_target_is_a_problem(tmp_path: Path) -> None:
    path = tmp_path / "target.yaml"
    path.write_text(TARGET.read_text() + "  sentinel: &r [*r]\n")
    loaded, problems = check_target(path)
    assert loaded is None
    line = len(path.read_text().splitlines())
    assert [(p.line, p.message.split(" (")[0]) for p in problems] == [
        (line, "*r is a recursive YAML alias")]


def test_recursive_alias_in_a_game_day_is_a_problem(tmp_path: Path) -> None:
    path = tmp_path / "gameday.yaml"
    path.write_text("name: loop\nentries: &e\n  - experiment: x.json\n  - *e\n")
    gameday, problems = check_gameday(path, experiments=False)
    assert gameday is None
    assert [(p.line, "a recursive YAML alias" in p.message) for p in problems] == [(4, True)]


def test_an_alias_bomb_as_a_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "file.yaml"
    path.write_text(_bomb(9) + "? *l9\n: x\n")
    data, _, problems = parse(path, not_mapping=NOT_A_MAPPING)
    assert data == {}
    assert [problem.message.startswith("not valid YAML: found unhashable key")
            for problem in problems] == [True]


def test_merge_keys_are_not_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "file.yaml"
    path.write_text("base: &b {x: 1, y: 1}\nitem:\n  <<: *b\n  x: 2\n")
    data, lines, problems = parse(path, not_mapping=NOT_A_MAPPING)
    assert problems == []
    assert data["item"] == {"x": 2, "y": 1}
    assert lines[("item", "x")] == 4
