"""Commands that only read the run history refuse a SQLite URL whose file does not exist (a
mistyped URL), instead of creating a new, empty database there and reporting nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from lkchaos.cli import main
from lkchaos.errors import ConfigError
from lkchaos.history import open_history
from lkchaos.history.connect import ENV_URL


@pytest.mark.parametrize("command", [["history", "--url", "{url}", "list"],
                                     ["history", "--url", "{url}", "loads"],
                                     ["report", "--gameday", "weekly", "--history-url", "{url}"]])
def test_reading_a_history_that_does_not_exist_is_refused(
    command: list[str], tmp_path: Path
) -> None:
    missing = tmp_path / "typo" / "history.sqlite"
    url = f"sqlite:///{missing}"
    done = CliRunner().invoke(main, [a.format(url=url) for a in command])
    assert done.exit_code == 2, done.output
    assert f"no run history at {missing}: nothing was recorded there" in done.output
    assert not missing.parent.exists()


def test_a_relative_sqlite_url_is_explained(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(ENV_URL, "sqlite:///srv/history.sqlite")  # meant /srv/history.sqlite
    with pytest.raises(ConfigError, match="three slashes is relative to the current folder"):
        open_history(existing=True)
    assert list(tmp_path.iterdir()) == []


def test_writing_still_creates_it_and_reading_it_then_works(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new' / 'history.sqlite'}"
    with open_history(url) as history:  # a run being recorded creates the database
        assert history.runs() == []
    done = CliRunner().invoke(main, ["history", "--url", url, "list"])
    assert done.exit_code == 0 and "no runs recorded" in done.output
