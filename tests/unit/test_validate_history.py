"""Validation runs in the run history, on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, inspect

from lkchaos.cli import main
from lkchaos.history import open_history, resolve_url
from lkchaos.settings import Settings
from lkchaos.validate import record, runner, selection
from lkchaos.validate.model import Context, Finding
from tests.unit.answering import nodes_answer  # noqa: F401  (a fixture)
from tests.unit.test_history import pg_url, url  # noqa: F401  (fixtures)

CPU, RAM = "infra.minimum-4-cpu", "infra.minimum-8gb-ram"


def _fail(ctx: Context) -> Finding:
    return Finding("fail", "2 cores: 2 cores short of the minimum 4")


def _pass(ctx: Context) -> Finding:
    return Finding("pass", "23.5 GiB")


def test_a_validation_is_recorded_with_its_items(url: str, tmp_path: Path) -> None:  # noqa: F811
    with open_history(url):  # an existing history, migrated to head
        pass
    engine = create_engine(resolve_url(url))
    try:
        assert {"validations", "validation_items"} <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    report = runner.run(selection.select(only=[CPU, RAM, "docs"]),
                        Settings(state_dir=str(tmp_path)), checks={CPU: _fail, RAM: _pass},
                        target="reference stack")  # fmt: skip
    first = record.record(report, {"only": [CPU, RAM, "docs"]}, url=url, watch_id="w1")
    second = record.record(report, {}, url=url)
    runs = record.recent(url)
    assert [r["validation_id"] for r in runs][:2] in ([second, first], [first, second])
    mine = next(r for r in runs if r["validation_id"] == first)
    assert (mine["exit_code"], mine["failed"], mine["passed"], mine["manual"]) == (1, 1, 1, 6)
    assert mine["watch_id"] == "w1" and mine["target"] == "reference stack"
    assert mine["started_at"] == report.started_at
    assert list(mine["items"].items())[:2] == [(CPU, "fail"), (RAM, "pass")]
    assert len(mine["items"]) == 8


@pytest.mark.usefixtures("nodes_answer")
def test_the_command_records_when_a_history_exists(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "state"
    monkeypatch.setenv("LKCHAOS_STATE_DIR", str(state))
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    monkeypatch.delenv("LKCHAOS_HISTORY_URL", raising=False)
    args = ["validate", "--only", RAM]
    result = CliRunner().invoke(main, args)
    assert "recorded" not in result.stderr and not (state / "history.sqlite").exists()
    with open_history(f"sqlite:///{state / 'history.sqlite'}"):
        pass
    result = CliRunner().invoke(main, args)
    assert "recorded in the run history as validation" in result.stderr, result.output
    [run] = record.recent(f"sqlite:///{state / 'history.sqlite'}")
    assert run["items"] == {RAM: "pass" if _enough_memory() else "fail"}
    result = CliRunner().invoke(main, [*args, "--no-history"])
    assert len(record.recent(f"sqlite:///{state / 'history.sqlite'}")) == 1


def _enough_memory() -> bool:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") >= 8 * 1024**3
