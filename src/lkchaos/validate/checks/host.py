"""Host requirements: cores, memory, disk, engine and Compose, clock, log rotation.

The host is the one the deployment's container engine runs on. Cores, memory, the engine's
version, data folder and log options come from the engine (``docker info``), so they are the
deployment's host even when ``DOCKER_HOST`` names another machine; when the engine does not
answer, the machine running lkchaos is measured instead and the evidence says so. Free disk
is measured where the engine keeps its data (its ``DockerRootDir``) when that folder is on
this machine, else inside one of the target's running containers (whose root is on the same
file system with overlay2). The clock's sync state is the kernel's (``adjtimex``), which a
container shares with its host; for a remote engine it cannot be known from here and the
item says so.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from lkchaos.validate.model import Context, Finding, check

MIN_CORES = 4
MIN_RAM_GIB = 8.0
MIN_DISK_GIB = 50.0
GIB = 1024**3
#: Logging drivers that rotate by themselves (or hand logs to a system that does).
ROTATING_DRIVERS = ("local", "journald", "syslog", "none", "gelf", "fluentd", "awslogs")


def engine_info(ctx: Context) -> dict[str, Any] | None:
    """``docker info`` of the target's engine, or None when it does not answer (cached)."""

    def compute() -> dict[str, Any] | None:
        from lkchaos.docker.client import docker_session
        from lkchaos.errors import StackError

        try:
            with docker_session(timeout=min(ctx.timeout_s, 10.0)) as client:
                info = dict(client.info())
                info["_version"] = dict(client.version())
                return info
        except StackError:
            return None

    result: dict[str, Any] | None = ctx.fact("docker.info", compute)
    return result


def engine_is_local() -> bool:
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    return host.startswith("unix://")


def short_of(have: float, need: float, unit: str, what: str) -> Finding:
    """Pass when ``have`` reaches ``need``, else a fail saying by how much it falls short."""
    data = {"have": round(have, 2), "need": need, "unit": unit}
    shown = f"{have:g}" if unit == "cores" else f"{have:.1f}"
    if have >= need:
        return Finding("pass", f"{shown} {unit} {what} (minimum {need:g})", data)
    gap = need - have
    gap_shown = f"{gap:g}" if unit == "cores" else f"{gap:.1f}"
    return Finding("fail", f"{shown} {unit} {what}: {gap_shown} {unit} short of the minimum "
                           f"{need:g}", data)  # fmt: skip


def _local_memory_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("/proc/meminfo has no MemTotal line")


@check("infra.minimum-4-cpu")
def cpu_cores(ctx: Context) -> Finding:
    info = engine_info(ctx)
    if info is not None and info.get("NCPU"):
        return short_of(float(info["NCPU"]), MIN_CORES, "cores", "on the engine's host")
    cores = len(os.sched_getaffinity(0))
    return short_of(float(cores), MIN_CORES, "cores",
                    "on this machine (the container engine did not answer)")


@check("infra.minimum-8gb-ram")
def memory(ctx: Context) -> Finding:
    info = engine_info(ctx)
    if info is not None and info.get("MemTotal"):
        return short_of(int(info["MemTotal"]) / GIB, MIN_RAM_GIB, "GiB", "of memory on the "
                        "engine's host")  # fmt: skip
    return short_of(_local_memory_bytes() / GIB, MIN_RAM_GIB, "GiB",
                    "of memory on this machine (the container engine did not answer)")


def _df_in_container(ctx: Context) -> tuple[float, str] | None:
    """Free GiB of ``/`` inside a running container of the target, and its name."""
    from lkchaos.docker.client import docker_session, runtime_containers

    with docker_session(timeout=min(ctx.timeout_s, 10.0)) as client:
        for name, container in runtime_containers(client, ctx.settings).items():
            if container.status != "running":
                continue
            code, out = container.exec_run(["df", "-Pk", "/"], demux=False)
            lines = (out or b"").decode(errors="replace").strip().splitlines()
            if code == 0 and len(lines) >= 2 and len(lines[-1].split()) >= 4:
                return int(lines[-1].split()[3]) * 1024 / GIB, name
    return None


@check("infra.minimum-50gb-disk")
def disk(ctx: Context) -> Finding:
    info = engine_info(ctx)
    if info is None:
        free = shutil.disk_usage("/").free / GIB
        return short_of(free, MIN_DISK_GIB, "GiB", "free on / of this machine (the container "
                        "engine did not answer, so its data folder is unknown)")  # fmt: skip
    root = str(info.get("DockerRootDir") or "/var/lib/docker")
    if engine_is_local() and Path(root).exists():
        return short_of(shutil.disk_usage(root).free / GIB, MIN_DISK_GIB, "GiB",
                        f"free where the engine keeps its data ({root})")
    found = _df_in_container(ctx)
    if found is None:
        return Finding("manual", f"the engine keeps its data in {root} on another machine and "
                                 "no running container could run df: check its free space")
    free, name = found
    return short_of(free, MIN_DISK_GIB, "GiB", f"free on the engine's data disk (df in {name})")


def compose_version(timeout_s: float) -> str | None:
    """``docker compose version --short`` (or the standalone ``docker-compose``), or None."""
    for argv in (["docker", "compose", "version", "--short"],
                 ["docker-compose", "version", "--short"]):  # fmt: skip
        if shutil.which(argv[0]) is None:
            continue
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s,
                                  check=False)  # fmt: skip
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0 and done.stdout.strip():
            return done.stdout.strip().lstrip("v")
    return None


def assess_engine(engine: str | None, compose: str | None) -> Finding:
    data = {"engine": engine, "compose": compose}
    if engine is None:
        return Finding("fail", "the container engine does not answer: start it (`dockerd &` or "
                               "`systemctl start docker`) and check `docker info`", data)
    if compose is None:
        return Finding("fail", f"Docker {engine}; Docker Compose not found (neither `docker "
                               "compose` nor `docker-compose` answers): install Compose v2", data)
    major = re.match(r"(\d+)", compose)
    if major is None or int(major.group(1)) < 2:
        return Finding("fail", f"Docker {engine}; Docker Compose {compose} is older than v2",
                       data)
    return Finding("pass", f"Docker {engine}, Docker Compose {compose}", data)


@check("infra.docker-docker-compose")
def engine_and_compose(ctx: Context) -> Finding:
    info = engine_info(ctx)
    engine = None if info is None else str(info["_version"].get("Version") or
                                            info.get("ServerVersion"))  # fmt: skip
    return assess_engine(engine, compose_version(min(ctx.timeout_s, 10.0)))


class _Timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class _Timex(ctypes.Structure):
    # struct timex of <sys/timex.h> (Linux): read with modes 0, needs no privilege.
    _fields_ = [("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
                ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long),
                ("status", ctypes.c_int), ("constant", ctypes.c_long),
                ("precision", ctypes.c_long), ("tolerance", ctypes.c_long),
                ("time", _Timeval), ("tick", ctypes.c_long), ("ppsfreq", ctypes.c_long),
                ("jitter", ctypes.c_long), ("shift", ctypes.c_int), ("stabil", ctypes.c_long),
                ("jitcnt", ctypes.c_long), ("calcnt", ctypes.c_long), ("errcnt", ctypes.c_long),
                ("stbcnt", ctypes.c_long), ("tai", ctypes.c_int),
                ("_padding", ctypes.c_int * 11)]  # fmt: skip


TIME_ERROR = 5
STA_UNSYNC = 0x0040


def kernel_clock() -> dict[str, Any] | None:
    """The kernel's clock discipline (``adjtimex``): ``synchronised``, ``maxerror_ms``,
    ``state``; None where the call is not available (not Linux)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    libc = ctypes.CDLL(name, use_errno=True)
    if not hasattr(libc, "adjtimex"):
        return None
    timex = _Timex()
    state = libc.adjtimex(ctypes.byref(timex))
    if state < 0:
        return None
    unsync = state == TIME_ERROR or bool(timex.status & STA_UNSYNC)
    return {"synchronised": not unsync, "state": state, "status": timex.status,
            "maxerror_ms": timex.maxerror / 1000, "offset_us": timex.offset}  # fmt: skip


def timedatectl() -> bool | None:
    """``timedatectl``'s NTPSynchronized, or None where systemd does not answer."""
    if shutil.which("timedatectl") is None:
        return None
    try:
        done = subprocess.run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"],
                              capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    value = done.stdout.strip()
    return {"yes": True, "no": False}.get(value) if done.returncode == 0 else None


def assess_clock(kernel: dict[str, Any] | None, systemd: bool | None, local: bool) -> Finding:
    if not local:
        return Finding("manual", "the engine runs on another machine: its clock's sync state "
                                 "cannot be known from here; run `timedatectl` there")
    if systemd is not None:
        shown = "yes" if systemd else "no"
        return Finding("pass" if systemd else "fail", f"timedatectl: NTPSynchronized={shown}",
                       {"timedatectl": systemd, "kernel": kernel})
    if kernel is None:
        return Finding("manual", "neither timedatectl nor the kernel's adjtimex answers here: "
                                 "check the clock's NTP sync by hand")
    if kernel["synchronised"]:
        return Finding("pass", f"the kernel's clock is synchronised (adjtimex, max error "
                               f"{kernel['maxerror_ms']:.0f} ms)", kernel)
    return Finding("fail", "the kernel reports its clock not synchronised (adjtimex "
                           "STA_UNSYNC): no NTP client disciplines it; run chrony or "
                           "systemd-timesyncd on the host", kernel)


@check("infra.system-time-synchronized")
def clock(ctx: Context) -> Finding:
    return assess_clock(kernel_clock(), timedatectl(), engine_is_local())


def daemon_log_options(path: Path = Path("/etc/docker/daemon.json")) -> dict[str, Any] | None:
    """The engine's ``log-opts`` from its daemon.json, or None when the file is absent."""
    if not path.is_file():
        return None
    try:
        return dict(json.loads(path.read_text()).get("log-opts") or {})
    except (OSError, ValueError):
        return None


def assess_log_rotation(default_driver: str | None, containers: dict[str, dict[str, Any]],
                        daemon_opts: dict[str, Any] | None) -> Finding:
    """``containers``: runtime name -> its ``HostConfig.LogConfig`` (``Type``, ``Config``)."""
    if not containers:
        if default_driver in ROTATING_DRIVERS:
            return Finding("pass", f"the engine's log driver {default_driver} rotates by itself")
        if daemon_opts and daemon_opts.get("max-size"):
            return Finding("pass", f"the engine's default log-opts max-size="
                                   f"{daemon_opts['max-size']} (no container to inspect)")
        return Finding("fail", f"the engine's log driver {default_driver or 'json-file'} with no "
                               "max-size: set log-opts max-size in daemon.json or per service")
    unbounded = []
    for name, config in sorted(containers.items()):
        driver = str(config.get("Type") or default_driver or "json-file")
        options = config.get("Config") or {}
        if driver not in ROTATING_DRIVERS and not options.get("max-size"):
            unbounded.append(f"{name} ({driver})")
    data = {"containers": containers, "default_driver": default_driver}
    if unbounded:
        return Finding("fail", f"{len(unbounded)} of {len(containers)} containers log without "
                               f"max-size: {', '.join(unbounded)}; set `logging: options: "
                               "max-size` in the compose file or log-opts in daemon.json", data)
    sizes = sorted({str((c.get("Config") or {}).get("max-size") or c.get("Type"))
                    for c in containers.values()})  # fmt: skip
    return Finding("pass", f"all {len(containers)} containers rotate their logs "
                           f"(max-size {', '.join(sizes)})", data)


@check("infra.log-rotation-configured")
def log_rotation(ctx: Context) -> Finding:
    from lkchaos.docker.client import deployment_containers, docker_session

    info = engine_info(ctx)
    if info is None:
        return Finding("error", "the container engine does not answer: start it and check "
                                "`docker info`")
    with docker_session(timeout=min(ctx.timeout_s, 10.0)) as client:
        configs = {name: dict(c.attrs.get("HostConfig", {}).get("LogConfig") or {})
                   for name, c in deployment_containers(client, ctx.settings).items()}
    return assess_log_rotation(info.get("LoggingDriver"), configs,
                               daemon_log_options() if engine_is_local() else None)
