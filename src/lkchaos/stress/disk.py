"""Disk filling: which mount of a container a path is on, what kind of filesystem it is, and
the sidecar scripts that measure, fill and free it.

A fill sidecar reaches the target's mounts with ``--volumes-from`` (they appear at the same
paths); the engine refuses ``--volumes-from`` of a container that has a tmpfs mount, so such
a target is reached instead through ``/proc/<its PID>/root`` from a sidecar in the host's PID
namespace (the target must be running; the script first checks that the PID is still the
target's, by its cgroup). A stopped target is freed through a sidecar that mounts the one
volume or bind source the path is on; its tmpfs mounts were discarded when it stopped. Only a
filesystem of its own (a tmpfs, measured as one in the folder, or a volume with a driver or
device of its own) may be filled to its free-space floor; anything else (a bind mount, a plain
local volume) is the engine host's disk and is filled only by a ``megabytes`` that leaves
:func:`host_floor` free.
"""

from __future__ import annotations

import posixpath
import shlex
from dataclasses import dataclass
from typing import Any

from lkchaos.network import sidecar

#: The one file a fill writes, in the folder it is given.
FILL_NAME = ".lkchaos-fill"
VOLUMES_FROM = "volumes_from"
PROC_ROOT = "proc_root"
#: A sidecar with the one volume or bind source a path is on (the target need not run).
ONE_MOUNT = "one_mount"
#: Exit status of a script whose PID is no longer the target's process.
STALE_PID = 97
MIB = 1024 * 1024
#: Bytes per second a fill is allowed at least (its sidecar's timeout follows from it).
SLOWEST_WRITE = 20 * MIB
#: Free space a fill never goes below on the engine host's disk: the larger of these.
HOST_FLOOR_MIB = 1024
HOST_FLOOR_PERCENT = 5


class DiskError(Exception):
    """A path or a filesystem lkchaos must not fill (the message says why and what to do)."""


@dataclass(frozen=True)
class Mount:
    """One mount of a container: where it is, its kind (volume, bind, tmpfs), its source
    (a volume's name, a bind's host path) and the volume's driver and options."""

    destination: str
    kind: str
    source: str = ""
    driver: str = ""
    options: tuple[tuple[str, str], ...] = ()

    def describe(self) -> str:
        return f"{self.destination} ({self.kind}{' ' + self.source if self.source else ''})"


def mounts(container: Any, volume_options: dict[str, dict[str, str]]) -> list[Mount]:
    """The container's mounts (``Mounts`` and ``HostConfig.Tmpfs``); ``volume_options``
    maps a volume's name to its driver options."""
    found = []
    for m in container.attrs.get("Mounts") or []:
        kind = str(m.get("Type") or "")
        source = str(m.get("Name") or m.get("Source") or "") if kind == "volume" else \
            str(m.get("Source") or "")
        options = tuple(sorted(volume_options.get(source, {}).items())) if kind == "volume" \
            else ()
        found.append(Mount(str(m.get("Destination")), kind, source, str(m.get("Driver") or ""),
                           options))  # fmt: skip
    for destination in (container.attrs.get("HostConfig", {}).get("Tmpfs") or {}):
        if all(m.destination != destination for m in found):
            found.append(Mount(str(destination), "tmpfs"))
    return sorted(found, key=lambda m: m.destination)


def check_path(path: str) -> str:
    """An absolute path, normalised (no ``..`` out of it)."""
    if not path.startswith("/"):
        raise DiskError(f"path must be an absolute path inside one of the service's mounts, "
                        f"not {path!r}")  # fmt: skip
    normal = posixpath.normpath(path)
    return "/" + normal.lstrip("/")


def mount_of(path: str, found: list[Mount]) -> Mount:
    """The mount ``path`` is on (the deepest one holding it), or DiskError listing the
    mounts the container has."""
    holding = [m for m in found if m.destination != "/" and
               (path == m.destination or path.startswith(m.destination.rstrip("/") + "/"))]
    if not holding:
        listed = ", ".join(m.describe() for m in found) or "none"
        raise DiskError(f"path {path!r} is not on a mount of the service (its own files are "
                        f"the image's layer, never filled); its mounts: {listed}")  # fmt: skip
    return max(holding, key=lambda m: len(m.destination))


def own_filesystem(mount: Mount, fstype: str) -> bool:
    """Whether the mount is a filesystem of its own (tmpfs, or a volume with a driver or a
    device of its own), which may be filled to its floor without touching the host's disk."""
    options = dict(mount.options)
    if mount.kind == "tmpfs" or options.get("type") == "tmpfs":
        # Only as measured in the folder: a symlink out of the mount leads to another disk.
        return fstype == "tmpfs"
    return mount.kind == "volume" and (mount.driver not in ("", "local") or "device" in options)


def route(found: list[Mount]) -> str:
    """How a sidecar reaches the container's mounts (see the module docstring)."""
    return PROC_ROOT if any(m.kind == "tmpfs" for m in found) else VOLUMES_FROM


def same_process(pid: int, container_id: str) -> str:
    """A script prefix that exits :data:`STALE_PID` unless host process ``pid`` is still in
    the container's cgroup (its full id is in ``/proc/<pid>/cgroup``, on cgroup v1 and v2):
    the target may have restarted, and its PID gone to another process, since it was read."""
    said = shlex.quote(f"the process changed before the disk sidecar reached it (PID {pid} is "
                       "no longer the service's: it restarted); nothing was written or "
                       "removed, run it again")  # fmt: skip
    return (f"grep -qF {shlex.quote(container_id)} /proc/{pid}/cgroup 2>/dev/null || "
            f"{{ echo {said} >&2; exit {STALE_PID}; }}; ")  # fmt: skip


def options(name: str, how: str, mount: Mount | None = None) -> sidecar.Options:
    hint = "The folder must exist in the mount and be writable by root."
    if how == PROC_ROOT:
        return sidecar.Options(network=False, net_admin=False, pid="host", what="disk sidecar",
                               labels={"lkchaos.disk": name}, hint=hint)  # fmt: skip
    if how == ONE_MOUNT:
        return sidecar.Options(network=False, net_admin=False, what="disk sidecar",
                               mounts={mount.source: mount.destination} if mount else {},
                               labels={"lkchaos.disk": name}, hint=hint)  # fmt: skip
    return sidecar.Options(network=False, net_admin=False, volumes_from=True,
                           what="disk sidecar", labels={"lkchaos.disk": name}, hint=hint)


def seen_path(path: str, how: str, pid: int) -> str:
    """``path`` as the sidecar sees it."""
    return f"/proc/{pid}/root{path}" if how == PROC_ROOT else path


def _statfs(folder: str) -> str:
    return f"stat -f -c '%a %S %b %T' {folder}"


def measure_script(folder: str) -> str:
    """Prints ``<free blocks> <block size> <blocks> <fs type>`` and the fill file's size (or
    ``none``)."""
    q = shlex.quote(folder)
    fill = shlex.quote(f"{folder}/{FILL_NAME}")
    return (f"set -e; [ -d {q} ] || {{ echo no folder {q} >&2; exit 2; }}; {_statfs(q)}; "
            f"if [ -e {fill} ]; then stat -c %s {fill}; else echo none; fi")  # fmt: skip


def fill_script(folder: str, nbytes: int) -> str:
    """Write ``nbytes`` (whole MiB) into the fill file; prints its size, then the statfs line."""
    q, fill = shlex.quote(folder), shlex.quote(f"{folder}/{FILL_NAME}")
    count = nbytes // MIB
    return (f"set -e; fallocate -l {nbytes} {fill} 2>/dev/null || dd if=/dev/zero of={fill} "
            f"bs=1M count={count} conv=fsync status=none; sync; stat -c %s {fill}; "
            f"{_statfs(q)}")  # fmt: skip


def free_script(folder: str) -> str:
    """Remove the fill file; prints its size before (or ``none``), then the statfs line."""
    q, fill = shlex.quote(folder), shlex.quote(f"{folder}/{FILL_NAME}")
    return (f"set -e; if [ -e {fill} ]; then stat -c %s {fill}; rm -f {fill}; else echo none; "
            f"fi; [ ! -e {fill} ]; {_statfs(q)}")  # fmt: skip


@dataclass(frozen=True)
class Space:
    """A filesystem's free and total bytes and its type."""

    free: int
    total: int
    fstype: str


def parse_statfs(line: str) -> Space:
    words = line.split()
    if len(words) < 4 or not all(w.isdigit() for w in words[:3]):
        raise DiskError(f"cannot read the filesystem's size from {line!r}")
    free, block, blocks = (int(w) for w in words[:3])
    return Space(free * block, blocks * block, " ".join(words[3:]))


def parse_size(line: str) -> int | None:
    return None if line.strip() == "none" else int(line.strip())


def host_floor(total: int) -> int:
    """Bytes a fill leaves free on the engine host's disk: 1 GiB or 5 % of it, the larger."""
    return max(HOST_FLOOR_MIB * MIB, total * HOST_FLOOR_PERCENT // 100)


def fill_bytes(space: Space, megabytes: int | None, leave_free_mb: int | None, own: bool,
               where: str) -> int:  # fmt: skip
    """Bytes to write (whole MiB), or DiskError: the size asked for, capped by the free-space
    floor; on the host's disk (``own`` false) only a size that leaves :func:`host_floor` free."""
    free_mb = space.free // MIB
    if not own and (megabytes is None or megabytes >= free_mb):
        asked = "no megabytes" if megabytes is None else f"megabytes {megabytes}"
        raise DiskError(
            f"{where} is on the engine host's disk ({space.fstype}), not a tmpfs or a volume "
            f"of its own: lkchaos fills it only by a megabytes below what is free ({free_mb} "
            f"MiB), and {asked} was given; pass a smaller megabytes, or mount a tmpfs volume "
            "there to fill it entirely")  # fmt: skip
    kept = host_floor(space.total) // MIB
    if not own and megabytes is not None and free_mb - megabytes < kept:
        raise DiskError(
            f"{where} is on the engine host's disk ({space.fstype}), which keeps at least "
            f"{kept} MiB free (1 GiB or 5 % of {space.total // MIB} MiB, whichever is larger): "
            f"megabytes {megabytes} would leave {free_mb - megabytes} MiB; pass a megabytes of "
            f"at most {max(free_mb - kept, 0)}")  # fmt: skip
    floor = (leave_free_mb or 0) * MIB
    room = max(space.free - floor, 0)
    nbytes = room if megabytes is None else min(megabytes * MIB, room)
    nbytes -= nbytes % MIB
    if nbytes <= 0:
        raise DiskError(f"{where} has {free_mb} MiB free, not above the floor of "
                        f"{leave_free_mb or 0} MiB: nothing to fill")  # fmt: skip
    return nbytes
