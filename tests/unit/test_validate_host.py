"""Host requirement items: thresholds, engine and Compose versions, clock, log rotation.

The assessments are pure functions of what was measured; the measurements of this machine
(cores, memory, disk, the kernel's clock state) are real. The engine is made unreachable so
that the checks measure this machine, as they do when the engine does not answer.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from lkchaos.settings import Settings
from lkchaos.validate.checks import host
from lkchaos.validate.model import Context


@pytest.fixture
def ctx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Context:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    return Context(Settings(state_dir=str(tmp_path)), timeout_s=5)


def test_below_a_minimum_fails_saying_by_how_much() -> None:
    found = host.short_of(2, 4, "cores", "on the engine's host")
    assert found.status == "fail"
    assert found.evidence == "2 cores on the engine's host: 2 cores short of the minimum 4"
    assert found.data == {"have": 2, "need": 4, "unit": "cores"}
    ram = host.short_of(7.25, 8, "GiB", "of memory")
    assert (ram.status, ram.evidence) == ("fail", "7.2 GiB of memory: 0.8 GiB short of the "
                                                  "minimum 8")
    assert host.short_of(4, 4, "cores", "here").status == "pass"


def test_cores_memory_and_disk_of_this_machine_when_the_engine_does_not_answer(
        ctx: Context) -> None:  # fmt: skip
    cores = len(os.sched_getaffinity(0))
    cpu = host.cpu_cores(ctx)
    assert cpu.data["have"] == cores and cpu.status == ("pass" if cores >= 4 else "fail")
    assert "on this machine (the container engine did not answer)" in cpu.evidence
    if cores < 4:
        assert f"{4 - cores} cores short of the minimum 4" in cpu.evidence
    memory = host.memory(ctx)
    mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    assert memory.data["have"] == round(mem_kib / 1024**2, 2)
    disk = host.disk(ctx)
    free = shutil.disk_usage("/").free / 1024**3
    assert abs(disk.data["have"] - free) < 1  # the same disk, a moment later
    assert disk.status == ("pass" if disk.data["have"] >= 50 else "fail")


def test_engine_and_compose() -> None:
    assert host.assess_engine("20.10.24", "2.40.3").evidence == (
        "Docker 20.10.24, Docker Compose 2.40.3")
    assert host.assess_engine("20.10.24", "2.40.3").status == "pass"
    old = host.assess_engine("20.10.24", "1.29.2")
    assert old.status == "fail" and "older than v2" in old.evidence
    assert "install Compose v2" in host.assess_engine("24.0", None).evidence
    assert "does not answer" in host.assess_engine(None, None).evidence


def test_the_engine_item_fails_when_the_engine_does_not_answer(ctx: Context) -> None:
    found = host.engine_and_compose(ctx)
    assert found.status == "fail" and "`docker info`" in found.evidence


def test_clock_states() -> None:
    kernel = host.kernel_clock()
    assert kernel is not None  # Linux: adjtimex always answers a read
    assert isinstance(kernel["synchronised"], bool)
    assert host.assess_clock(kernel, None, True).status == (
        "pass" if kernel["synchronised"] else "fail")
    assert host.assess_clock(None, True, True).evidence == "timedatectl: NTPSynchronized=yes"
    assert host.assess_clock(None, False, True).status == "fail"
    unknown = host.assess_clock(None, None, True)
    assert unknown.status == "manual" and "by hand" in unknown.evidence
    remote = host.assess_clock(kernel, None, False)
    assert remote.status == "manual" and "cannot be known from here" in remote.evidence
    unsynced = {"synchronised": False, "maxerror_ms": 16000.0}
    assert "STA_UNSYNC" in host.assess_clock(unsynced, None, True).evidence


def test_log_rotation() -> None:
    bounded = {"Type": "json-file", "Config": {"max-size": "5m", "max-file": "3"}}
    found = host.assess_log_rotation("json-file", {"caddy": bounded, "redis": bounded}, None)
    assert (found.status, found.evidence) == ("pass", "all 2 containers rotate their logs "
                                                      "(max-size 5m)")
    unbounded = host.assess_log_rotation(
        "json-file", {"caddy": bounded, "agent": {"Type": "json-file", "Config": {}}}, None)
    assert unbounded.status == "fail"
    assert unbounded.evidence.startswith("1 of 2 containers log without max-size: agent "
                                         "(json-file)")
    journald = host.assess_log_rotation("journald", {"agent": {"Type": "journald"}}, None)
    assert journald.status == "pass"
    assert host.assess_log_rotation("json-file", {}, {"max-size": "10m"}).status == "pass"
    assert host.assess_log_rotation("json-file", {}, None).status == "fail"


def test_daemon_log_options(tmp_path: Path) -> None:
    path = tmp_path / "daemon.json"
    assert host.daemon_log_options(path) is None
    path.write_text('{"log-driver": "json-file", "log-opts": {"max-size": "10m"}}')
    assert host.daemon_log_options(path) == {"max-size": "10m"}


def test_log_rotation_without_an_engine_is_an_error(ctx: Context) -> None:
    found = host.log_rotation(ctx)
    assert found.status == "error" and "does not answer" in found.evidence
