"""Container actions refuse bad input before touching anything, with a clear message."""

from __future__ import annotations

from pathlib import Path

import pytest
from chaoslib.exceptions import ActivityFailed

from lkchaos.docker import actions
from lkchaos.safety import ledger


@pytest.fixture(autouse=True)
def no_engine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    monkeypatch.setenv("LKCHAOS_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("LKCHAOS_ROOT", str(tmp_path))
    return tmp_path


def test_unknown_signal_is_refused() -> None:
    with pytest.raises(ActivityFailed, match="unknown signal 'SIGNOPE'"):
        actions.kill_service(service="agent", signal="SIGNOPE")


@pytest.mark.parametrize(
    "kwargs", [{}, {"service": "agent", "one_of": ["mcp"]}], ids=["neither", "both"]
)
def test_exactly_one_target_form(kwargs: dict[str, object]) -> None:
    with pytest.raises(ActivityFailed, match="exactly one of `service` or `one_of`"):
        actions.stop_service(**kwargs)  # type: ignore[arg-type]


def test_negative_stop_timeout_is_refused() -> None:
    with pytest.raises(ActivityFailed, match="whole number of seconds at least 0"):
        actions.stop_service(service="agent", timeout=-1)


def test_engine_down_is_an_activity_failure_and_records_nothing(no_engine: Path) -> None:
    with pytest.raises(ActivityFailed, match="cannot reach the Docker engine"):
        actions.pause_service(service="agent")
    assert ledger.pending(no_engine) == []


def test_signal_names_are_normalised() -> None:
    assert actions._signal_name("term") == "SIGTERM"
    assert actions._signal_name("SIGKILL") == "SIGKILL"
