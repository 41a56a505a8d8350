"""node_drained: a LiveKit node sent SIGTERM has exited, or is stuck draining; judged from
the fault ledger's stop entry and the container's state (a fake container: no Docker)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from chaoslib.exceptions import ActivityFailed

from lkchaos.livekit import probes
from lkchaos.preflight.rules import RULES, Context
from lkchaos.safety import ledger
from lkchaos.settings import Settings


class Node:
    def __init__(self, status: str, started: str, finished: str = "0001-01-01T00:00:00Z",
                 exit_code: int = 0) -> None:  # fmt: skip
        self.attrs: dict[str, Any] = {"State": {"Status": status, "StartedAt": started,
                                                "FinishedAt": finished,
                                                "ExitCode": exit_code}}

    def reload(self) -> None:
        pass


def docker_time(moment: dt.datetime) -> str:
    """As Docker writes it: nanoseconds and a Z."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[dict[str, Any]]:
    settings = Settings(roles={"livekit_node": ("lk-a", "lk-b")}, state_dir=str(tmp_path),
                        runtime="docker-name")  # fmt: skip
    found: dict[str, Any] = {}

    @contextmanager
    def session() -> Iterator[object]:
        yield object()

    monkeypatch.setattr(Settings, "load", classmethod(lambda cls, c=None, s=None: settings))
    monkeypatch.setattr(probes, "docker_session", session)
    monkeypatch.setattr(probes, "runtime_containers", lambda docker, s: found)
    yield {"settings": settings, "containers": found}


def _signalled(world: dict[str, Any], name: str) -> dt.datetime:
    fault = ledger.record(world["settings"].state_dir, ledger.Fault(
        "stopped", name, "lkchaos.docker.actions", "start_service", {"service": name}))
    return dt.datetime.fromisoformat(fault.at)


def test_no_stop_pending_holds(world: dict[str, Any]) -> None:
    world["containers"]["lk-a"] = Node("running", docker_time(dt.datetime.now(dt.UTC)))
    assert probes.node_drained(service="livekit_node:1", wait_s=0) == {
        "ok": True, "service": "lk-a", "asked": False}


def test_a_node_still_running_its_old_process_is_stuck_draining(world: dict[str, Any]) -> None:
    world["containers"]["lk-a"] = Node("running", docker_time(dt.datetime(2026, 1, 1)))
    _signalled(world, "lk-a")
    result = probes.node_drained(service="livekit_node:1", wait_s=0)
    assert result["ok"] is False and result["state"] == "draining" and result["asked"] is True
    assert result["since_signal_s"] >= 0


def test_a_node_that_exited_soon_drained_and_is_still_judged_after_its_restart(
        world: dict[str, Any]) -> None:  # fmt: skip
    at = _signalled(world, "lk-b")
    world["containers"]["lk-b"] = Node("exited", docker_time(at - dt.timedelta(hours=1)),
                                       docker_time(at + dt.timedelta(seconds=3)))
    result = probes.node_drained(service="livekit_node:2", within_s=10, wait_s=0)
    assert result["ok"] is True and result["state"] == "exited" and result["killed"] is False
    assert 2.9 <= result["drain_s"] <= 3.1
    world["containers"]["lk-b"] = Node("running", docker_time(at + dt.timedelta(seconds=4)),
                                       docker_time(at + dt.timedelta(seconds=3)))
    again = probes.node_drained(service="livekit_node:2", within_s=10, wait_s=0)
    assert again["ok"] is True and again["state"] == "restarted" and again["exit_code"] == 0


def test_a_restart_whose_exit_was_never_seen_is_not_taken_as_a_clean_drain(
        world: dict[str, Any]) -> None:  # fmt: skip
    """Once the container runs again its exit code is gone: a SIGKILL at the end of the grace
    period would look like a drain, so an exit lkchaos did not see is not ok."""
    at = _signalled(world, "lk-b")
    world["containers"]["lk-b"] = Node("running", docker_time(at + dt.timedelta(seconds=4)),
                                       docker_time(at + dt.timedelta(seconds=3)))
    result = probes.node_drained(service="livekit_node:2", within_s=10, wait_s=0)
    assert result["ok"] is False and result["state"] == "restarted"
    assert result["exit_code"] is None


def test_a_node_killed_when_its_grace_period_ran_out_did_not_drain(
        world: dict[str, Any]) -> None:  # fmt: skip
    """stop_service's SIGKILL after the grace period: exit code 137, whatever the time."""
    at = _signalled(world, "lk-b")
    world["containers"]["lk-b"] = Node("exited", docker_time(at - dt.timedelta(hours=1)),
                                       docker_time(at + dt.timedelta(seconds=5)), 137)
    result = probes.node_drained(service="livekit_node:2", within_s=10, wait_s=0)
    assert result["ok"] is False and result["killed"] is True and result["exit_code"] == 137


def test_a_drain_longer_than_the_bound_is_not_ok(world: dict[str, Any]) -> None:
    at = _signalled(world, "lk-b")
    world["containers"]["lk-b"] = Node("exited", docker_time(at - dt.timedelta(hours=1)),
                                       docker_time(at + dt.timedelta(seconds=25)))
    result = probes.node_drained(service="livekit_node:2", within_s=10, wait_s=0)
    assert result["ok"] is False and result["state"] == "exited" and result["drain_s"] > 10


def test_an_exit_before_the_signal_is_not_the_drain(world: dict[str, Any]) -> None:
    """A container that stopped before this signal (FinishedAt earlier) and still runs its
    old process is draining, whatever its last exit was."""
    at = _signalled(world, "lk-a")
    world["containers"]["lk-a"] = Node("running", docker_time(at - dt.timedelta(hours=1)),
                                       docker_time(at - dt.timedelta(hours=2)))
    result = probes.node_drained(service="livekit_node:1", wait_s=0)
    assert result["ok"] is False and result["state"] == "draining" and result["drain_s"] is None


def test_a_node_the_runtime_does_not_list_fails_the_probe(world: dict[str, Any]) -> None:
    _signalled(world, "lk-a")
    with pytest.raises(ActivityFailed, match="cannot tell whether lk-a exited"):
        probes.node_drained(service="lk-a", wait_s=0)


def test_the_preflight_resolves_the_node_and_checks_the_wait() -> None:
    context = Context(settings=Settings(roles={"livekit_node": ("lk-a",)}))
    rules = RULES["lkchaos.livekit.probes.node_drained"]
    with pytest.raises(ActivityFailed, match="livekit_node:2"):
        rules[0].check({"service": "livekit_node:2"}, context)
    with pytest.raises(ActivityFailed, match="wait_s must be"):
        rules[2].check({"wait_s": -1}, context)
    with pytest.raises(ActivityFailed, match="within_s must be"):
        rules[1].check({"within_s": "10"}, context)


def test_the_signal_is_remembered_once_the_node_is_started_again(world: dict[str, Any]) -> None:
    at = _signalled(world, "lk-a")
    world["containers"]["lk-a"] = Node("running", docker_time(at - dt.timedelta(hours=1)))
    assert probes.node_drained(service="livekit_node:1", wait_s=0)["state"] == "draining"
    ledger.forget(world["settings"].state_dir, "stopped", "lk-a")  # as start_service does
    world["containers"]["lk-a"] = Node("running", docker_time(at + dt.timedelta(seconds=40)),
                                       docker_time(at + dt.timedelta(seconds=30)))
    result = probes.node_drained(service="livekit_node:1", within_s=10, wait_s=0)
    assert result["asked"] is True and result["state"] == "restarted"
    assert result["ok"] is False and 29.9 <= result["drain_s"] <= 30.1
