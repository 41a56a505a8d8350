"""CPU and memory pressure on a service, and disk filling in it.

``service`` is a role of one member, a role's member (``livekit_node:2``) or a runtime name,
as for :mod:`lkchaos.docker.actions`; lkchaos's own harness is never a target. Every action
validates its arguments before acting, writes its fault to the ledger with its undo, and
returns only once the engine shows its effect, within ``LKCHAOS_VERIFY_S`` (10 s by default).

Pressure is stress-ng in a sidecar inside the target's cgroup when the engine allows it (so
the target's own CPU and memory limits and accounting apply), else sharing its PID and network
namespaces (``placement`` says which; see :mod:`lkchaos.stress.load`). The load is bounded:
stress-ng stops after ``duration_s`` and the engine then removes the sidecar; ``end_pressure``
ends it earlier. A fill writes one file, ``.lkchaos-fill``, in a folder of one of the target's
mounts and returns; ``free_disk`` removes it (see :mod:`lkchaos.stress.disk`). Example::

    {"type": "action", "name": "agent-cpu-starved",
     "provider": {"type": "python", "module": "lkchaos.stress.actions",
                  "func": "cpu_pressure",
                  "arguments": {"service": "agent_worker", "workers": 2,
                                "load_percent": 90, "duration_s": 60}}}
"""

import math
from typing import Any, Dict

from chaoslib.exceptions import ActivityFailed
from chaoslib.types import Configuration, Secrets
from docker.errors import DockerException, NotFound
from requests.exceptions import RequestException

from lkchaos import roles
from lkchaos.docker.actions import _target
from lkchaos.errors import LkChaosError
from lkchaos.network import sidecar
from lkchaos.safety import ledger
from lkchaos.settings import Settings
from lkchaos.stress import disk, load
from lkchaos.values import check_int, check_number, check_text
from lkchaos.verify import until

__all__ = ["cpu_pressure", "memory_pressure", "end_pressure", "fill_disk", "free_disk"]

UNDO = "lkchaos.stress.actions"
#: Longest pressure, seconds.
MAX_DURATION_S = 3600
MAX_WORKERS = 64
#: Largest memory pressure or fill, MiB (1 TiB): real bounds come from the target.
MAX_MEGABYTES = 1024 * 1024


def _check_cpu(workers: Any, load_percent: Any, duration_s: Any) -> tuple[int, int, int]:
    return _check_workers(workers), _check_load(load_percent), _check_duration(duration_s)


def _check_workers(workers: Any) -> int:
    return check_int("workers", workers, "stress-ng workers", minimum=1, maximum=MAX_WORKERS)


def _check_load(load_percent: Any) -> int:
    return check_int("load_percent", load_percent, "percent of a CPU per worker", minimum=1,
                     maximum=100)  # fmt: skip


def _check_duration(duration_s: Any) -> int:
    """Seconds (a fault window such as ``${fault_s}`` may be fractional), rounded up to the
    whole seconds stress-ng counts."""
    seconds = check_number("duration_s", duration_s, "seconds", minimum=1,
                           maximum=MAX_DURATION_S)
    return math.ceil(seconds)


def _check_megabytes(label: str, value: Any, optional: bool = False) -> int | None:
    if optional and value is None:
        return None
    return check_int(label, value, "MiB", minimum=1 if label == "megabytes" else 0,
                     maximum=MAX_MEGABYTES)  # fmt: skip


def _check_path(path: Any) -> str:
    try:
        return disk.check_path(check_text("path", path, option_safe=True))
    except disk.DiskError as exc:
        raise ActivityFailed(str(exc)) from exc


def _record(settings: Settings, kind: str, target: str, undo: str, **args: Any) -> None:
    ledger.record(settings.state_dir, ledger.Fault(kind, target, UNDO, undo, args))


def _running(container: Any, name: str) -> None:
    container.reload()
    state = str(container.attrs.get("State", {}).get("Status", "unknown"))
    if state != "running":
        raise ActivityFailed(f"{name} is {state}, not running: start it first "
                             f"(lkchaos.docker.actions.start_service {name!r})")  # fmt: skip


def _start_load(client: Any, container: Any, name: str,
                command: list[str]) -> tuple[Any, load.Placement]:  # fmt: skip
    """The started pressure sidecar and where it sits: in the target's cgroup, or (when the
    engine cannot place it there) in its namespaces."""
    sidecar.ensure_image(client)
    where = load.placement(client.info(), container)
    if where.kind == load.CGROUP:
        try:
            return sidecar.start(client, container, command, load.options(name, where)), where
        except sidecar.SidecarError as exc:
            where = load.Placement(load.NAMESPACES, why=f"the engine refused a container in "
                                   f"{name}'s cgroup ({exc})")  # fmt: skip
    return sidecar.start(client, container, command, load.options(name, where)), where


def _pressure(service: str, kind: str, command: list[str], configuration: Configuration,
              secrets: Secrets, measure: Any) -> Dict[str, Any]:  # fmt: skip
    """Start a pressure sidecar and verify with ``measure(client, watched id, baseline)``."""
    settings = Settings.load(configuration, secrets)
    with _target(settings, service, None, single=True) as (container, name):
        _running(container, name)
        client = container.client
        _record(settings, "pressure", name, "end_pressure", service=name)
        try:
            baseline = measure.baseline(client, container.id)
            stress, where = _start_load(client, container, name, command)
        except (LkChaosError, DockerException, RequestException) as exc:
            raise ActivityFailed(f"{kind} pressure on {name} could not start: {exc}; "
                                 "`docker info` must answer") from exc  # fmt: skip
        watched = container.id if where.kind == load.CGROUP else stress.id
        base = baseline if where.kind == load.CGROUP else measure.zero
        seen, waited = until(lambda: measure.read(client, watched),
                             lambda value: measure.holds(value, base),
                             f"the {kind} pressure on {name} ({where.kind})",
                             describe=measure.describe)  # fmt: skip
        return {"service": name, "role": roles.role_of(settings, name),
                "action": f"{kind}_pressure",
                "placement": where.kind, "placement_note": where.why, "sidecar": stress.name,
                "baseline": measure.describe(baseline), "seen": measure.describe(seen),
                "verified_s": round(waited, 3)}  # fmt: skip


class _Cpu:
    """CPU use in CPUs (1.0: one core busy), over a short window."""

    zero = 0.0

    def __init__(self, workers: int, load_percent: int) -> None:
        self.workers, self.load_percent, self.cpus = workers, load_percent, 1

    def baseline(self, client: Any, cid: str) -> float:
        self.cpus = int(client.info().get("NCPU") or 1)
        return load.cpu_rate(client, cid)

    def read(self, client: Any, cid: str) -> float:
        return load.cpu_rate(client, cid)

    def holds(self, value: float, base: float) -> bool:
        return value >= load.cpu_threshold(base, self.workers, self.load_percent, self.cpus)

    @staticmethod
    def describe(value: float) -> str:
        return f"{value:.2f} CPUs"


class _Memory:
    """Memory in use in bytes."""

    zero = 0

    def __init__(self, megabytes: int) -> None:
        self.megabytes = megabytes

    def baseline(self, client: Any, cid: str) -> int:
        return load.usage(client, cid).memory

    def read(self, client: Any, cid: str) -> int:
        return load.usage(client, cid).memory

    def holds(self, value: int, base: int) -> bool:
        return value >= load.memory_threshold(base, self.megabytes)

    @staticmethod
    def describe(value: int) -> str:
        return f"{value / load.MIB:.1f} MiB"


def cpu_pressure(
    service: str,
    workers: int = 1,
    load_percent: int = 100,
    duration_s: float = 60,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Dict[str, Any]:
    """Load a service's CPU: ``workers`` stress-ng workers (1 to 64), each busy
    ``load_percent`` percent (1 to 100) of a CPU, for ``duration_s`` seconds (1 to 3600; a
    fraction is rounded up), inside the service's cgroup (its CPU limit applies). Returns
    once the engine shows the service's CPU use risen: ``{"service", "role", "action":
    "cpu_pressure", "placement" ("cgroup", or "namespaces" when the engine cannot nest
    cgroups), "placement_note",
    "sidecar" (container name), "baseline", "seen" (CPU use, e.g. "1.20 CPUs"),
    "verified_s"}``. Rollback: ``end_pressure``."""
    workers, percent, seconds = _check_cpu(workers, load_percent, duration_s)
    return _pressure(service, "cpu", load.cpu_command(workers, percent, seconds), configuration,
                     secrets, _Cpu(workers, percent))  # fmt: skip


def memory_pressure(
    service: str,
    megabytes: int,
    duration_s: float = 60,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Dict[str, Any]:
    """Hold ``megabytes`` MiB of memory inside a service's cgroup for ``duration_s`` seconds
    (1 to 3600), counted against its memory limit. Refused above the service's memory limit,
    or, when it has none, above half the engine's memory. Returns once the engine shows the
    service's memory use risen by at least half of it (``duration_s`` may be fractional: it
    is rounded up): ``{"service", "role", "action":
    "memory_pressure", "placement", "placement_note", "sidecar", "baseline", "seen" (memory
    in use, e.g. "212.4 MiB"), "verified_s"}``. Rollback: ``end_pressure``."""
    mib = _check_megabytes("megabytes", megabytes)
    assert mib is not None
    seconds = _check_duration(duration_s)
    settings = Settings.load(configuration, secrets)
    with _target(settings, service, None, single=True) as (container, name):
        limit = int(container.attrs.get("HostConfig", {}).get("Memory") or 0)
        try:
            total = int(container.client.info().get("MemTotal") or 0)
        except (DockerException, RequestException) as exc:
            raise ActivityFailed(f"the engine did not say its memory ({exc}): `docker info` "
                                 "must answer") from exc  # fmt: skip
        why = load.memory_bound(limit, total, mib)
        if why:
            raise ActivityFailed(f"{name}: {why}")
    return _pressure(service, "memory", load.memory_command(mib, seconds), configuration,
                     secrets, _Memory(mib))  # fmt: skip


def end_pressure(
    service: str, configuration: Configuration = None, secrets: Secrets = None
) -> Dict[str, Any]:
    """End the CPU or memory pressure on a service now: removes its pressure sidecars (those
    still running). A rollback: does nothing when there are none. Returns ``{"service",
    "action": "end_pressure", "removed": [sidecar names]}``."""
    settings = Settings.load(configuration, secrets)
    with _target(settings, service, None, single=True) as (container, name):
        client = container.client
        wanted = {"label": f"{load.STRESS_LABEL}={name}"}
        removed = []
        try:
            # The low-level listing: a sidecar ending meanwhile is removed by the engine.
            for found in client.api.containers(all=True, filters=wanted):
                try:
                    client.api.remove_container(found["Id"], force=True)
                except NotFound:
                    continue  # it ended by itself
                removed.append(str((found.get("Names") or [found["Id"]])[0]).lstrip("/"))
        except (DockerException, RequestException) as exc:
            raise ActivityFailed(f"removing the pressure sidecars of {name} failed: {exc}; "
                                 f"remove them with `docker rm -f` (label {load.STRESS_LABEL})"
                                 ) from exc  # fmt: skip
        until(lambda: client.api.containers(all=True, filters=wanted), lambda left: not left,
              f"the end of the pressure on {name}",
              describe=lambda left: ", ".join(str(c["Id"])[:12] for c in left))  # fmt: skip
        ledger.forget(settings.state_dir, "pressure", name)
        return {"service": name, "action": "end_pressure", "removed": sorted(removed)}


def _disk_target(container: Any, name: str, path: str,
                 stopped: bool = False) -> tuple[disk.Mount, str, str, int]:  # fmt: skip
    """The mount ``path`` is on, how a sidecar reaches it, the path as the sidecar sees it and
    the service's host PID; ActivityFailed listing the service's mounts when ``path`` is on
    none. ``stopped``: a service that is not running is reached through its one mount."""
    client = container.client
    container.reload()
    volumes: dict[str, dict[str, str]] = {}
    for m in container.attrs.get("Mounts") or []:
        if m.get("Type") == "volume" and m.get("Name"):
            try:
                volumes[str(m["Name"])] = dict(client.volumes.get(m["Name"]).attrs.get("Options")
                                               or {})  # fmt: skip
            except Exception:  # a volume removed meanwhile: no options known
                volumes[str(m["Name"])] = {}
    found = disk.mounts(container, volumes)
    try:
        mount = disk.mount_of(path, found)
    except disk.DiskError as exc:
        raise ActivityFailed(f"{name}: {exc}") from exc
    how = disk.route(found)
    pid = int(container.attrs.get("State", {}).get("Pid") or 0)
    if how == disk.PROC_ROOT and pid > 0:  # the image first (a build takes minutes), then the PID
        try:
            sidecar.ensure_image(client)
        except LkChaosError as exc:
            raise ActivityFailed(str(exc)) from exc
        container.reload()
        pid = int(container.attrs.get("State", {}).get("Pid") or 0)
    if how == disk.PROC_ROOT and pid <= 0:
        if stopped and (mount.kind == "tmpfs" or mount.source):
            return mount, disk.ONE_MOUNT, path, pid
        raise ActivityFailed(f"{name} has a tmpfs mount, so its mounts are reached through its "
                             f"process, and it is not running: start it first")  # fmt: skip
    return mount, how, disk.seen_path(path, how, pid), pid


def _side(container: Any, name: str, script: str, where: tuple[disk.Mount, str, str, int],
          timeout: float) -> list[str]:  # fmt: skip
    mount, how, _, pid = where
    if how == disk.PROC_ROOT:
        script = disk.same_process(pid, str(container.id)) + script
    try:
        sidecar.ensure_image(container.client)
        out = sidecar.run(container.client, container, script, timeout=timeout,
                          options=disk.options(name, how, mount))  # fmt: skip
    except LkChaosError as exc:
        raise ActivityFailed(str(exc)) from exc
    return out.strip().splitlines()


def fill_disk(
    service: str,
    path: str,
    megabytes: int = None,  # type: ignore[assignment]
    leave_free_mb: int = None,  # type: ignore[assignment]
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Dict[str, Any]:
    """Fill the filesystem of one of a service's mounts: one file, ``<path>/.lkchaos-fill``,
    of ``megabytes`` MiB, or (without it) up to ``leave_free_mb`` MiB left free (0 when not
    given), whichever comes first. ``path`` is an existing folder on a mount of the service
    (a volume, bind mount or tmpfs); any other path is refused with the mounts it has. A
    filesystem that is not the mount's own (a bind mount, a plain local volume: the engine
    host's disk) is filled only with a ``megabytes`` below what is free. Verified: the file
    is there with its size. Returns ``{"service", "role", "action": "fill_disk", "path",
    "file", "mount", "filesystem" (type), "own_filesystem" (bool), "route" ("volumes_from"
    or "proc_root"), "written_mb", "free_mb_before", "free_mb_after", "total_mb"}`` (MiB).
    Rollback: ``free_disk``."""
    folder = _check_path(path)
    mib = _check_megabytes("megabytes", megabytes, optional=True)
    floor = _check_megabytes("leave_free_mb", leave_free_mb, optional=True)
    settings = Settings.load(configuration, secrets)
    with _target(settings, service, None, single=True) as (container, name):
        where = _disk_target(container, name, folder)
        mount, how, seen, _ = where
        lines = _side(container, name, disk.measure_script(seen), where, sidecar.RUN_TIMEOUT)
        try:
            space = disk.parse_statfs(lines[0])
            if disk.parse_size(lines[1]) is not None:
                raise disk.DiskError(f"{folder}/{disk.FILL_NAME} is already there (a fill in "
                                     f"place): free_disk({name!r}, {folder!r}) first")
            own = disk.own_filesystem(mount, space.fstype)
            nbytes = disk.fill_bytes(space, mib, floor, own, f"{name}:{folder}")
        except (disk.DiskError, IndexError, ValueError) as exc:
            raise ActivityFailed(f"{name}: {exc}") from exc
        _record(settings, "disk", f"{name}:{folder}", "free_disk", service=name, path=folder)
        timeout = sidecar.RUN_TIMEOUT + nbytes / disk.SLOWEST_WRITE
        out = _side(container, name, disk.fill_script(seen, nbytes), where, timeout)
        try:
            size, after = int(out[0]), disk.parse_statfs(out[1])
        except (disk.DiskError, IndexError, ValueError) as exc:
            raise ActivityFailed(f"{name}: the fill of {folder} wrote something unreadable "
                                 f"({out!r}); free_disk undoes it") from exc  # fmt: skip
        if size != nbytes:
            raise ActivityFailed(f"{name}: {folder}/{disk.FILL_NAME} holds {size} bytes, not "
                                 f"the {nbytes} asked; free_disk undoes it")  # fmt: skip
        return {"service": name, "role": roles.role_of(settings, name), "action": "fill_disk",
                "path": folder, "file": f"{folder}/{disk.FILL_NAME}",
                "mount": mount.destination, "filesystem": space.fstype, "own_filesystem": own,
                "route": how, "written_mb": size // disk.MIB,
                "free_mb_before": space.free // disk.MIB, "free_mb_after": after.free // disk.MIB,
                "total_mb": space.total // disk.MIB}  # fmt: skip


def free_disk(
    service: str, path: str, configuration: Configuration = None, secrets: Secrets = None
) -> Dict[str, Any]:
    """Remove the file ``fill_disk`` wrote in ``path``. A rollback: does nothing when it is
    not there, and works on a service that is not running (a full disk may be why): its
    tmpfs was discarded when it stopped, and a volume or bind mount is reached by a sidecar
    that mounts it. Verified: the file is gone. Returns ``{"service", "action": "free_disk",
    "path", "freed_mb" (0 when there was nothing), "free_mb_after" (null for a discarded
    tmpfs), "note"}`` (MiB)."""
    folder = _check_path(path)
    settings = Settings.load(configuration, secrets)
    with _target(settings, service, None, single=True) as (container, name):
        where = _disk_target(container, name, folder, stopped=True)
        if where[1] == disk.ONE_MOUNT and where[0].kind == "tmpfs":
            ledger.forget(settings.state_dir, "disk", f"{name}:{folder}")
            return {"service": name, "action": "free_disk", "path": folder, "freed_mb": 0,
                    "free_mb_after": None,
                    "note": f"{name} is not running: its tmpfs {where[0].destination} was "
                            "discarded when it stopped, so nothing was left to free"}
        out = _side(container, name, disk.free_script(where[2]), where, sidecar.RUN_TIMEOUT)
        try:
            size, after = disk.parse_size(out[0]), disk.parse_statfs(out[1])
        except (disk.DiskError, IndexError, ValueError) as exc:
            raise ActivityFailed(f"{name}: freeing {folder} printed something unreadable "
                                 f"({out!r})") from exc  # fmt: skip
        ledger.forget(settings.state_dir, "disk", f"{name}:{folder}")
        return {"service": name, "action": "free_disk", "path": folder,
                "freed_mb": (size or 0) // disk.MIB, "free_mb_after": after.free // disk.MIB,
                "note": "" if where[1] != disk.ONE_MOUNT else
                        f"{name} is not running: freed through a sidecar with its mount"}
