"""The recovery sweep removes the pressure sidecars still loading the target's containers
(a runner killed mid-fault may have lost their ledger entry); a fake engine stands for Docker."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from lkchaos.docker import client as docker_client
from lkchaos.safety import recovery
from lkchaos.settings import Settings
from lkchaos.stress import load
from tests.unit import chaos_helpers as helpers


class Found:
    def __init__(self, engine: Engine, name: str, labels: dict[str, str], status: str) -> None:
        self.engine, self.name, self.labels, self.status = engine, name, labels, status

    def remove(self, force: bool) -> None:
        assert force
        self.engine.all.remove(self)


class Engine:
    """Lists as the engine does: running containers only unless ``all``, by label."""

    def __init__(self) -> None:
        self.all: list[Found] = []
        self.containers = self

    def add(self, name: str, status: str = "running", **labels: str) -> None:
        self.all.append(Found(self, name, labels, status))

    def list(self, all: bool = False, filters: dict[str, str] | None = None) -> list[Found]:
        label = (filters or {}).get("label", "")
        return [c for c in self.all if (all or c.status == "running")
                and (not label or label in c.labels)]  # fmt: skip


class Agent:
    status = "running"

    def reload(self) -> None:
        pass


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Engine:
    helpers.isolate(monkeypatch, tmp_path)
    fake = Engine()
    monkeypatch.setattr(docker_client, "docker_session", lambda: contextlib.nullcontext(fake))
    monkeypatch.setattr(docker_client, "container_state", lambda c: {"state": "running"})
    monkeypatch.setattr(recovery, "_described", lambda s, c: [("agent", Agent())])
    return fake


def test_running_pressure_sidecars_of_the_target_are_removed_and_reported(
    engine: Engine,
) -> None:
    engine.add("lkchaos-cpu", **{load.STRESS_LABEL: "agent", "lkchaos.sidecar": "agent"})
    engine.add("other-stacks-load", **{load.STRESS_LABEL: "elsewhere"})
    engine.add("app")
    report = recovery._sweep_containers(Settings.load({}, None))
    assert report == [{"fault": "pressure sidecar lkchaos-cpu on agent", "outcome": "removed"}]
    assert [c.name for c in engine.all] == ["other-stacks-load", "app"]
