"""CPU and memory pressure and disk filling: placement, bounds, scripts and refusals, without
an engine (the fill scripts run for real in a temporary folder)."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from chaoslib.exceptions import ActivityFailed

from lkchaos.discovery import ACTIVITY_MODULES
from lkchaos.network import sidecar
from lkchaos.preflight import walk
from lkchaos.safety import ledger
from lkchaos.stress import actions, disk, load

MIB = 1024 * 1024


class Container:
    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        self.name, self.id = "agent", "c0ffee"
        self.attrs: dict[str, Any] = {"State": {"Status": "running", "Pid": 77},
                                      "HostConfig": {}, "Mounts": [], **(attrs or {})}

    def reload(self) -> None:
        pass


@pytest.fixture(autouse=True)
def state(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    monkeypatch.setenv("LKCHAOS_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("LKCHAOS_ROOT", str(tmp_path))
    return tmp_path


# --- where pressure runs ----------------------------------------------------------------------

def test_cgroupfs_places_the_sidecar_in_the_targets_cgroup() -> None:
    where = load.placement({"CgroupDriver": "cgroupfs"}, Container())
    assert (where.kind, where.parent) == ("cgroup", "/docker/c0ffee")
    custom = Container({"HostConfig": {"CgroupParent": "/voice/"}})
    assert load.placement({"CgroupDriver": "cgroupfs"}, custom).parent == "/voice/c0ffee"
    kwargs = sidecar.create_kwargs(Container(), load.options("agent", where))
    assert kwargs["cgroup_parent"] == "/docker/c0ffee" and kwargs["network_mode"] == "none"
    assert kwargs["labels"] == {sidecar.SIDECAR_LABEL: "agent", load.STRESS_LABEL: "agent"}
    assert "cap_add" not in kwargs and "pid_mode" not in kwargs


def test_systemd_falls_back_to_the_targets_namespaces_and_says_why() -> None:
    where = load.placement({"CgroupDriver": "systemd"}, Container())
    assert where.kind == "namespaces" and "cgroup driver is systemd" in where.why
    kwargs = sidecar.create_kwargs(Container(), load.options("agent", where))
    assert kwargs["pid_mode"] == kwargs["network_mode"] == "container:c0ffee"
    assert "cgroup_parent" not in kwargs


def test_the_network_sidecar_keeps_its_options() -> None:
    kwargs = sidecar.create_kwargs(Container(), sidecar.NETWORK)
    assert kwargs == {"network_mode": "container:c0ffee", "cap_add": ["NET_ADMIN"],
                      "labels": {sidecar.SIDECAR_LABEL: "agent"}}


def test_the_load_is_bounded_by_stress_ngs_timeout() -> None:
    assert load.cpu_command(2, 80, 30)[1:] == ["--cpu", "2", "--cpu-load", "80", "--timeout",
                                               "30s", "--quiet"]
    assert "--timeout" in load.memory_command(100, 5) and "100M" in load.memory_command(100, 5)


def test_thresholds() -> None:
    assert load.cpu_threshold(0.05, 1, 40, 2) == pytest.approx(0.05 + 0.4 / 3)
    # Capped: a busy machine gives the load its share, not what it asked for.
    assert load.cpu_threshold(0.05, 1, 90, 2) == pytest.approx(0.30)
    assert load.cpu_threshold(0.0, 8, 100, 2) == pytest.approx(load.CPU_SHOWN_MAX)
    assert load.cpu_threshold(0.0, 1, 10, 2) == pytest.approx(0.1)  # a floor
    assert load.memory_threshold(10 * MIB, 200) == 110 * MIB


def test_memory_is_bounded_by_the_limit_or_half_the_engine() -> None:
    assert "above the target's memory limit (64 MiB)" in str(
        load.memory_bound(64 * MIB, 0, 65))
    assert load.memory_bound(64 * MIB, 0, 64) is None
    assert "half the engine's memory (512 MiB)" in str(load.memory_bound(0, 1024 * MIB, 513))
    assert load.memory_bound(0, 1024 * MIB, 512) is None


# --- what may be filled -----------------------------------------------------------------------

MOUNTS = [
    {"Type": "volume", "Name": "scratch", "Source": "/var/lib/docker/volumes/scratch/_data",
     "Destination": "/data", "Driver": "local"},
    {"Type": "bind", "Source": "/srv/logs", "Destination": "/var/log/app"},
    {"Type": "volume", "Name": "plain", "Source": "/var/lib/docker/volumes/plain/_data",
     "Destination": "/cache", "Driver": "local"},
]
OPTIONS = {"scratch": {"type": "tmpfs", "device": "tmpfs", "o": "size=64m"}}


def _mounts(tmpfs: dict[str, str] | None = None) -> list[disk.Mount]:
    return disk.mounts(Container({"Mounts": MOUNTS, "HostConfig": {"Tmpfs": tmpfs or {}}}),
                       OPTIONS)  # fmt: skip


def test_a_path_must_be_on_a_mount() -> None:
    found = _mounts()
    assert disk.mount_of("/data/sub", found).destination == "/data"
    assert disk.mount_of("/var/log/app", found).kind == "bind"
    with pytest.raises(disk.DiskError, match=r"'/var/log' is not on a mount.*"
                       r"/cache \(volume plain\), /data \(volume scratch\), "
                       r"/var/log/app \(bind /srv/logs\)"):
        disk.mount_of("/var/log", found)
    with pytest.raises(disk.DiskError, match="not on a mount"):
        disk.mount_of("/database", found)  # a prefix of the name is not the folder
    assert disk.check_path("/data/../data/x/") == "/data/x"
    with pytest.raises(disk.DiskError, match="absolute path"):
        disk.check_path("data")


def test_only_a_filesystem_of_its_own_is_filled_to_its_floor() -> None:
    found = {m.destination: m for m in _mounts({"/scratch": "size=8m"})}
    assert disk.own_filesystem(found["/data"], "tmpfs")  # a tmpfs volume
    assert disk.own_filesystem(found["/scratch"], "tmpfs")
    # a tmpfs whose folder measures as another filesystem (a symlink out of it) is not its own
    assert not disk.own_filesystem(found["/scratch"], "ext2/ext3")
    assert not disk.own_filesystem(found["/data"], "overlayfs")
    assert not disk.own_filesystem(found["/cache"], "ext2/ext3")  # the engine's disk
    assert not disk.own_filesystem(found["/var/log/app"], "ext2/ext3")
    assert disk.route(list(found.values())) == "proc_root"
    assert disk.route(_mounts()) == "volumes_from"


def test_how_much_is_written() -> None:
    tmpfs = disk.Space(free=64 * MIB, total=64 * MIB, fstype="tmpfs")
    assert disk.fill_bytes(tmpfs, None, None, True, "x") == 64 * MIB
    assert disk.fill_bytes(tmpfs, None, 4, True, "x") == 60 * MIB
    assert disk.fill_bytes(tmpfs, 10, 4, True, "x") == 10 * MIB
    assert disk.fill_bytes(tmpfs, 100, 4, True, "x") == 60 * MIB  # the floor comes first
    with pytest.raises(disk.DiskError, match="not above the floor of 64 MiB"):
        disk.fill_bytes(tmpfs, None, 64, True, "x")
    host = disk.Space(free=10000 * MIB, total=15000 * MIB, fstype="ext2/ext3")
    assert disk.fill_bytes(host, 8976, None, False, "x") == 8976 * MIB  # leaves 1 GiB
    for megabytes in (None, 10000):
        with pytest.raises(disk.DiskError, match="engine host's disk .*below what is free"):
            disk.fill_bytes(host, megabytes, None, False, "x")


def test_the_host_disk_keeps_a_floor_free() -> None:
    small = disk.Space(free=10000 * MIB, total=15000 * MIB, fstype="ext2/ext3")
    with pytest.raises(disk.DiskError, match="keeps at least 1024 MiB free .*megabytes 8977 "
                       "would leave 1023 MiB; pass a megabytes of at most 8976"):
        disk.fill_bytes(small, 8977, None, False, "x")
    big = disk.Space(free=50000 * MIB, total=100000 * MIB, fstype="ext2/ext3")  # 5 %: 5000
    assert disk.fill_bytes(big, 45000, None, False, "x") == 45000 * MIB
    with pytest.raises(disk.DiskError, match="keeps at least 5000 MiB free"):
        disk.fill_bytes(big, 45001, None, False, "x")
    own = disk.Space(free=10000 * MIB, total=15000 * MIB, fstype="tmpfs")
    assert disk.fill_bytes(own, 9999, None, True, "x") == 9999 * MIB  # no floor of its own


@pytest.mark.skipif(shutil.which("fallocate") is None, reason="needs util-linux")
def test_the_sidecar_scripts_measure_fill_and_free(tmp_path: Path) -> None:
    def sh(script: str) -> list[str]:
        done = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30,
                              check=True)  # fmt: skip
        return done.stdout.splitlines()

    folder = str(tmp_path / "it's here")
    Path(folder).mkdir()
    measured = sh(disk.measure_script(folder))
    assert disk.parse_statfs(measured[0]).total > 0 and disk.parse_size(measured[1]) is None
    filled = sh(disk.fill_script(folder, 2 * MIB))
    assert int(filled[0]) == 2 * MIB == (Path(folder) / disk.FILL_NAME).stat().st_size
    assert disk.parse_size(sh(disk.measure_script(folder))[1]) == 2 * MIB
    freed = sh(disk.free_script(folder))
    assert disk.parse_size(freed[0]) == 2 * MIB and not (Path(folder) / disk.FILL_NAME).exists()
    assert disk.parse_size(sh(disk.free_script(folder))[0]) is None  # nothing left to free
    with pytest.raises(subprocess.CalledProcessError):
        sh(disk.measure_script(str(tmp_path / "missing")))


# --- the actions refuse before acting ---------------------------------------------------------

@pytest.mark.parametrize(("call", "message"), [
    (lambda: actions.cpu_pressure("agent", workers=0), "workers must be a whole number"),
    (lambda: actions.cpu_pressure("agent", load_percent=101), "load_percent must be"),
    (lambda: actions.cpu_pressure("agent", load_percent=50.5),  # type: ignore[arg-type]
     "load_percent must be"),
    (lambda: actions.cpu_pressure("agent", duration_s=3601), "duration_s must be"),
    (lambda: actions.memory_pressure("agent", megabytes=0), "megabytes must be"),
    (lambda: actions.memory_pressure("agent", megabytes=True), "megabytes must be"),
    (lambda: actions.fill_disk("agent", "data"), "absolute path"),
    (lambda: actions.fill_disk("agent", "-rf"), "must not start with '-'"),
    (lambda: actions.fill_disk("agent", "/data", megabytes=-1), "megabytes must be"),
    (lambda: actions.fill_disk("agent", "/data", leave_free_mb="4"),  # type: ignore[arg-type]
     "leave_free_mb must be"),
    (lambda: actions.free_disk("agent", "/da\nta"), "control characters"),
    (lambda: actions.end_pressure("voice_prober"), "own test harness"),
])  # fmt: skip
def test_bad_arguments_are_refused_before_the_engine(call: Any, message: str,
                                                     state: Path) -> None:  # fmt: skip
    with pytest.raises(ActivityFailed, match=message):
        call()
    assert ledger.pending(state) == []


def test_a_path_off_the_mounts_is_refused_with_the_mounts(monkeypatch: pytest.MonkeyPatch,
                                                          state: Path) -> None:  # fmt: skip
    class Volumes:
        def get(self, name: str) -> Any:
            return type("Volume", (), {"attrs": {"Options": OPTIONS.get(name)}})()

    container = Container({"Mounts": MOUNTS})
    container.client = type("Client", (), {"volumes": Volumes()})()  # type: ignore[attr-defined]
    monkeypatch.setattr(actions, "_target",
                        lambda *a, **k: contextlib.nullcontext((container, "agent")))
    monkeypatch.setattr(sidecar, "run", lambda *a, **k: pytest.fail("no sidecar may run"))
    with pytest.raises(ActivityFailed, match=r"agent: path '/etc' is not on a mount.*"
                       r"/data \(volume scratch\)"):
        actions.fill_disk("agent", "/etc", megabytes=1)
    assert ledger.pending(state) == []


def test_the_preflight_check_applies_the_same_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    from lkchaos import preflight

    monkeypatch.setattr(walk, "ACTIVITY_MODULES",
                        (*ACTIVITY_MODULES, ("lkchaos.stress.actions", "action")))
    module = "lkchaos.stress.actions"

    def blamed(func: str, arguments: dict[str, Any]) -> list[str]:
        return [str(p.argument) for p in preflight.check_call(module, func, arguments)]

    assert blamed("cpu_pressure", {"service": "agent", "workers": 0, "load_percent": 0,
                                   "duration_s": 9999}) == ["workers", "load_percent",
                                                            "duration_s"]
    assert blamed("cpu_pressure", {"service": "agent", "workers": 2}) == []
    # a fractional fault window (``${fault_s}``) is rounded up, not refused
    assert blamed("cpu_pressure", {"service": "agent", "duration_s": 15.5}) == []
    assert blamed("memory_pressure", {"service": "agent", "megabytes": 8,
                                      "duration_s": 15.5}) == []
    assert blamed("memory_pressure", {"service": "agent", "megabytes": 0}) == ["megabytes"]
    assert blamed("fill_disk", {"service": "agent", "path": "rel"}) == ["path"]
    assert blamed("fill_disk", {"service": "agent", "path": "/d", "leave_free_mb": -1}) == [
        "leave_free_mb"]
    assert blamed("free_disk", {"service": "agent", "path": "/d"}) == []
    assert blamed("end_pressure", {"service": "voice_prober"}) == ["service"]


# --- freeing a stopped service, and a PID that changed ---------------------------------------

TMPFS = {"/scratch": "size=8m"}
CID = "c0ffee" * 10 + "beef"


class Volumes:
    def get(self, name: str) -> Any:
        return type("Volume", (), {"attrs": {"Options": OPTIONS.get(name)}})()


def _disk_service(monkeypatch: pytest.MonkeyPatch, running: bool,
                  run: Any) -> Container:  # fmt: skip
    state = {"Status": "running", "Pid": 77} if running else {"Status": "exited", "Pid": 0}
    container = Container({"Mounts": MOUNTS, "HostConfig": {"Tmpfs": TMPFS}, "State": state})
    container.id = CID
    container.client = type("Client", (), {"volumes": Volumes()})()  # type: ignore[attr-defined]
    monkeypatch.setattr(actions, "_target",
                        lambda *a, **k: contextlib.nullcontext((container, "agent")))
    monkeypatch.setattr(sidecar, "ensure_image", lambda client: sidecar.IMAGE)
    monkeypatch.setattr(sidecar, "run", run)
    return container


def _filled(state: Path, folder: str) -> None:
    ledger.record(state, ledger.Fault("disk", f"agent:{folder}", actions.UNDO, "free_disk",
                                      {"service": "agent", "path": folder}))


def test_a_stopped_services_tmpfs_needs_nothing_freed(monkeypatch: pytest.MonkeyPatch,
                                                      state: Path) -> None:  # fmt: skip
    _disk_service(monkeypatch, False, lambda *a, **k: pytest.fail("no sidecar may run"))
    _filled(state, "/scratch")
    result = actions.free_disk("agent", "/scratch")
    assert result["freed_mb"] == 0 and result["free_mb_after"] is None
    assert "tmpfs /scratch was discarded when it stopped" in result["note"]
    assert ledger.pending(state) == []


def test_a_stopped_services_volume_is_freed_through_that_volume(
    monkeypatch: pytest.MonkeyPatch, state: Path
) -> None:
    runs: list[tuple[str, sidecar.Options]] = []

    def run(client: Any, target: Any, script: str, timeout: float = 30.0,
            options: sidecar.Options = sidecar.NETWORK) -> str:  # fmt: skip
        runs.append((script, options))
        return f"{4 * MIB}\n100 4096 200 ext2/ext3\n"

    container = _disk_service(monkeypatch, False, run)
    _filled(state, "/var/log/app")
    result = actions.free_disk("agent", "/var/log/app")
    assert (result["freed_mb"], result["free_mb_after"]) == (4, 100 * 4096 // MIB)
    [(script, options)] = runs
    assert script == disk.free_script("/var/log/app")  # no PID, no /proc route
    kwargs = sidecar.create_kwargs(container, options)
    assert kwargs["volumes"] == {"/srv/logs": {"bind": "/var/log/app", "mode": "rw"}}
    assert "volumes_from" not in kwargs and "pid_mode" not in kwargs
    assert ledger.pending(state) == []
    actions.free_disk("agent", "/data/sub")  # a named volume, mounted by its name
    assert sidecar.create_kwargs(container, runs[-1][1])["volumes"] == {
        "scratch": {"bind": "/data", "mode": "rw"}}


@pytest.mark.skipif(not Path("/proc/self/cgroup").is_file(), reason="needs Linux /proc")
def test_a_pid_no_longer_the_services_is_not_reached(monkeypatch: pytest.MonkeyPatch,
                                                     state: Path) -> None:  # fmt: skip
    def run(client: Any, target: Any, script: str, timeout: float = 30.0,
            options: sidecar.Options = sidecar.NETWORK) -> str:  # fmt: skip
        # the script as the host-PID sidecar would run it: PID 77 is not in this cgroup
        done = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30)
        if done.returncode:
            raise sidecar.SidecarError(f"exit {done.returncode}: {done.stderr.strip()}")
        return done.stdout

    _disk_service(monkeypatch, True, run)
    with pytest.raises(ActivityFailed, match=f"exit {disk.STALE_PID}: the process changed "
                       "before the disk sidecar reached it .PID 77.*nothing was written"):
        actions.fill_disk("agent", "/scratch", megabytes=1)
    assert ledger.pending(state) == []
    _filled(state, "/scratch")
    with pytest.raises(ActivityFailed, match="the process changed"):
        actions.free_disk("agent", "/scratch")
    assert len(ledger.pending(state)) == 1  # still to undo
