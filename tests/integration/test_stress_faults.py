"""Crash, CPU and memory pressure and disk filling, on throwaway containers.

Each test starts its own containers from ``debian:bookworm-slim`` (local; never pulled),
labelled as services of a compose project of their own (``lkchaos-stress-it``), so the
actions find them as any target's services; they and their volumes are removed at the end.
The reference stack is neither needed nor touched.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from docker.errors import NotFound

from lkchaos.docker import actions as docker_actions
from lkchaos.docker.client import docker_client
from lkchaos.safety import ledger
from lkchaos.stress import actions, load

pytestmark = pytest.mark.integration

PROJECT = "lkchaos-stress-it"
IMAGE = "debian:bookworm-slim"
MIB = 1024 * 1024


@pytest.fixture(autouse=True)
def stack_is_up() -> None:
    """These tests need no reference stack (overrides the package's check that it runs)."""


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    monkeypatch.setenv("LKCHAOS_COMPOSE_PROJECT", PROJECT)
    monkeypatch.setenv("LKCHAOS_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("LKCHAOS_VERIFY_S", "20")
    client = docker_client(timeout=60)
    try:
        client.images.get(IMAGE)
    except Exception:
        pytest.fail(f"{IMAGE} is not on this engine: build or import it (never pulled here)")
    yield client
    client.close()


@pytest.fixture
def service(engine: Any) -> Iterator[Callable[..., Any]]:
    """Start a throwaway service: ``service(restart="no", **docker_run_kwargs)``."""
    made: list[Any] = []
    volumes: list[Any] = []

    def start(restart: str = "no", volume: dict[str, str] | None = None, **kwargs: Any) -> Any:
        name = f"victim-{uuid.uuid4().hex[:8]}"
        mounts: dict[str, dict[str, str]] = {}
        if volume is not None:
            made_volume = engine.volumes.create(name=f"{name}-vol", driver="local",
                                                driver_opts=volume)  # fmt: skip
            volumes.append(made_volume)
            mounts[made_volume.name] = {"bind": "/data", "mode": "rw"}
        container = engine.containers.run(
            IMAGE, ["sleep", "600"], name=name, detach=True, init=False, network_mode="none",
            labels={"com.docker.compose.project": PROJECT, "com.docker.compose.service": name},
            restart_policy={"Name": restart} if restart != "no" else None, volumes=mounts,
            **kwargs)  # fmt: skip
        made.append(container)
        return container

    yield start
    for container in made:
        for extra in _sidecars(engine, container.name):
            with contextlib.suppress(NotFound):  # it ended by itself meanwhile
                engine.api.remove_container(extra["Id"], force=True)
        container.remove(force=True, v=True)
    for volume in volumes:
        volume.remove(force=True)


def _sidecars(engine: Any, name: str) -> list[dict[str, Any]]:
    """Pressure sidecars of ``name`` (the low-level listing: no inspection that could race
    with the engine removing one that ended)."""
    return list(engine.api.containers(all=True, filters={"label": f"{load.STRESS_LABEL}={name}"}))


def _state(container: Any) -> str:
    container.reload()
    return str(container.attrs["State"]["Status"])


def test_crash_heals_under_unless_stopped(service: Callable[..., Any], tmp_path: Path) -> None:
    victim = service(restart="unless-stopped")
    result = docker_actions.crash_service(victim.name)
    assert result["restart_policy"] == "unless-stopped"
    assert result["restarted"] is True and result["healed_s"] is not None
    assert result["restart_count_after"] == result["restart_count_before"] + 1
    assert _state(victim) == "running"
    assert [f.undo_func for f in ledger.pending(tmp_path)] == ["start_service"]


def test_crash_stays_down_under_no_and_start_service_restores(
    service: Callable[..., Any], tmp_path: Path
) -> None:
    victim = service(restart="no")
    result = docker_actions.crash_service(victim.name)
    assert (result["restart_policy"], result["restarted"], result["healed_s"]) == ("no", False,
                                                                                  None)
    assert result["after"] == "exited" and _state(victim) == "exited"
    assert victim.attrs["State"]["ExitCode"] == 137  # killed by SIGKILL, not stopped
    docker_actions.start_service(victim.name)
    assert _state(victim) == "running"
    assert ledger.pending(tmp_path) == []


def _cpu(engine: Any, container: Any) -> float:
    return load.cpu_rate(engine, container.id, window=1.0)


def test_cpu_pressure_raises_the_targets_cpu(engine: Any, service: Callable[..., Any],
                                             tmp_path: Path) -> None:  # fmt: skip
    victim = service()
    before = _cpu(engine, victim)
    result = actions.cpu_pressure(victim.name, workers=1, load_percent=90, duration_s=30)
    try:
        assert result["placement"] == "cgroup"  # this engine: cgroupfs driver
        during = _cpu(engine, victim)
        assert during > before + 0.3, (before, during)
    finally:
        ended = actions.end_pressure(victim.name)
    assert ended["removed"] == [result["sidecar"]]
    assert _sidecars(engine, victim.name) == []
    assert ledger.pending(tmp_path) == []


def test_memory_pressure_raises_the_targets_memory(engine: Any,
                                                   service: Callable[..., Any]) -> None:
    victim = service(mem_limit="512m")
    before = load.usage(engine, victim.id).memory
    result = actions.memory_pressure(victim.name, megabytes=200, duration_s=30)
    try:
        assert result["placement"] == "cgroup"  # counted against the target's 512 MiB
        during = load.usage(engine, victim.id).memory
        assert during - before > 150 * MIB, (before, during)
    finally:
        actions.end_pressure(victim.name)


def test_memory_pressure_above_the_targets_limit_is_refused(service: Callable[..., Any]) -> None:
    victim = service(mem_limit="64m")
    with pytest.raises(Exception, match="above the target's memory limit"):
        actions.memory_pressure(victim.name, megabytes=100, duration_s=5)


def _df(container: Any, path: str) -> int:
    code, out = container.exec_run(["df", "-B1", "--output=avail", path])
    assert code == 0, out
    return int(out.decode().split()[-1])


def test_fill_disk_fills_a_tmpfs_volume_and_free_disk_frees_it(
    service: Callable[..., Any], tmp_path: Path
) -> None:
    victim = service(volume={"type": "tmpfs", "device": "tmpfs", "o": "size=64m"})
    free_before = _df(victim, "/data")
    result = actions.fill_disk(victim.name, "/data", leave_free_mb=4)
    assert (result["route"], result["filesystem"], result["own_filesystem"]) == (
        "volumes_from", "tmpfs", True)
    assert result["written_mb"] == 60 and result["total_mb"] == 64
    code, out = victim.exec_run(["stat", "-c", "%s", "/data/.lkchaos-fill"])
    assert code == 0 and int(out) == 60 * MIB
    assert _df(victim, "/data") <= free_before - 60 * MIB
    assert [f.undo_func for f in ledger.pending(tmp_path)] == ["free_disk"]
    freed = actions.free_disk(victim.name, "/data")
    assert freed["freed_mb"] == 60
    assert victim.exec_run(["test", "-e", "/data/.lkchaos-fill"])[0] != 0
    assert _df(victim, "/data") == free_before
    assert ledger.pending(tmp_path) == []


def test_fill_disk_reaches_a_tmpfs_mount_through_the_process(service: Callable[..., Any]) -> None:
    victim = service(tmpfs={"/scratch": "size=16m"})
    result = actions.fill_disk(victim.name, "/scratch", megabytes=8)
    try:
        assert (result["route"], result["written_mb"]) == ("proc_root", 8)
        code, out = victim.exec_run(["stat", "-c", "%s", "/scratch/.lkchaos-fill"])
        assert code == 0 and int(out) == 8 * MIB
    finally:
        actions.free_disk(victim.name, "/scratch")
    assert victim.exec_run(["test", "-e", "/scratch/.lkchaos-fill"])[0] != 0


def test_fill_disk_refuses_a_path_off_the_mounts(service: Callable[..., Any],
                                                 tmp_path: Path) -> None:  # fmt: skip
    victim = service(volume={"type": "tmpfs", "device": "tmpfs", "o": "size=8m"})
    with pytest.raises(Exception, match=r"'/var/log' is not on a mount.*/data \(volume"):
        actions.fill_disk(victim.name, "/var/log", megabytes=1)
    assert ledger.pending(tmp_path) == []


def test_pressure_ends_by_itself(engine: Any, service: Callable[..., Any]) -> None:
    victim = service()
    result = actions.cpu_pressure(victim.name, workers=1, load_percent=50, duration_s=2)
    deadline = time.monotonic() + 60
    while _sidecars(engine, victim.name) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _sidecars(engine, victim.name) == [], result


def test_cpu_pressure_in_the_targets_namespaces_when_no_cgroup_can_hold_it(
    engine: Any, service: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """As on an engine with the systemd driver: the sidecar shares the target's PIDs."""
    monkeypatch.setattr(load, "placement", lambda info, container: load.Placement(
        load.NAMESPACES, why="no cgroup nesting on this engine"))
    victim = service()
    result = actions.cpu_pressure(victim.name, workers=1, load_percent=90, duration_s=30)
    try:
        assert (result["placement"], result["placement_note"]) == (
            "namespaces", "no cgroup nesting on this engine")
        code, out = victim.exec_run(["sh", "-c", "ls /proc | grep -c '^[0-9]'"])
        assert code == 0 and int(out) >= 3  # sleep, this shell and stress-ng's processes
    finally:
        actions.end_pressure(victim.name)
