"""Container actions refuse bad input before touching anything, with a clear message."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest
from chaoslib.exceptions import ActivityFailed

from lkchaos.docker import actions
from lkchaos.safety import ledger
from lkchaos.verify import NotInEffect


@pytest.fixture(autouse=True)
def no_engine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    monkeypatch.setenv("LKCHAOS_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("LKCHAOS_ROOT", str(tmp_path))
    return tmp_path


def test_unknown_signal_is_refused() -> None:
    with pytest.raises(ActivityFailed, match="'SIGNOPE' is an unknown signal"):
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


class FakeContainer:
    """A container whose state changes as the engine would, or not at all (``stuck``)."""

    def __init__(self, name: str, stuck: bool = False) -> None:
        self.name, self.stuck = name, stuck
        self.attrs: dict[str, Any] = {"State": {"Status": "running", "StartedAt": "t0"}}
        self.labels = {"com.docker.compose.service": name}

    def reload(self) -> None:
        pass

    def _set(self, status: str, started: str | None = None) -> None:
        if not self.stuck:
            self.attrs["State"]["Status"] = status
            if started:
                self.attrs["State"]["StartedAt"] = started

    def kill(self, signal: str) -> None:
        self._set("exited")

    def stop(self, timeout: int) -> None:
        self._set("exited")

    def pause(self) -> None:
        self._set("paused")

    def unpause(self) -> None:
        self._set("running")

    def start(self) -> None:
        self._set("running", "t1")

    def restart(self, timeout: int) -> None:
        self._set("running", "t2")


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> dict[str, FakeContainer]:
    containers = {"agent": FakeContainer("agent"), "whisper": FakeContainer("whisper", True)}
    monkeypatch.setattr(actions, "docker_session", lambda: contextlib.nullcontext(None))
    monkeypatch.setattr(actions, "runtime_containers", lambda client, settings: containers)
    monkeypatch.setenv("LKCHAOS_VERIFY_S", "0.2")
    return containers


def test_each_fault_returns_once_the_engine_shows_it(
    engine: dict[str, FakeContainer], no_engine: Path
) -> None:
    killed = actions.kill_service(service="agent")
    assert killed["after"] == "exited" and killed["verified_s"] >= 0
    started = actions.start_service(service="agent")
    assert started["after"] == "running" and ledger.pending(no_engine) == []
    assert actions.pause_service(service="agent")["after"] == "paused"
    assert actions.unpause_service(service="agent")["after"] == "running"
    assert actions.restart_service(service="agent")["after"] == "running"


@pytest.mark.parametrize("call", [
    lambda: actions.kill_service(service="whisper"),
    lambda: actions.stop_service(service="whisper", timeout=1),
    lambda: actions.pause_service(service="whisper"),
    lambda: actions.restart_service(service="whisper", timeout=1),
])  # fmt: skip
def test_a_fault_the_engine_never_shows_fails_and_stays_in_the_ledger(
    engine: dict[str, FakeContainer], no_engine: Path, call: Any
) -> None:
    with pytest.raises(NotInEffect, match="whisper: not in effect"):
        call()
    kinds = [f.kind for f in ledger.pending(no_engine)]
    assert kinds in ([], ["stopped"], ["paused"])  # restart records nothing to undo


def test_a_rollback_that_cannot_start_the_service_keeps_its_ledger_entry(
    engine: dict[str, FakeContainer], no_engine: Path
) -> None:
    engine["whisper"].attrs["State"]["Status"] = "exited"
    ledger.record(no_engine, ledger.Fault("stopped", "whisper", actions.UNDO, "start_service",
                                          {"service": "whisper"}))
    with pytest.raises(NotInEffect, match="the start of whisper"):
        actions.start_service(service="whisper")
    assert [f.kind for f in ledger.pending(no_engine)] == ["stopped"]
