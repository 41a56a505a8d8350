"""Where a pressure sidecar runs, and the engine's reading of a container's CPU and memory.

A pressure sidecar runs inside the target's cgroup when the engine allows it (Pumba's way:
its cgroup parent is the target's cgroup), so the target's own limits and accounting apply to
the load. With the ``cgroupfs`` driver the target's cgroup is ``<CgroupParent or /docker>/<id>``
and the sidecar's becomes a child of it; with the ``systemd`` driver a container's cgroup is a
scope, below which no container can be placed, and on cgroup v2 a cgroup holding processes
cannot take children with controllers. There the sidecar shares the target's PID and network
namespaces instead (``placement`` says which was used), and its own usage is what is verified.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from lkchaos.network import sidecar

#: Label on pressure sidecars; its value is the target's runtime name.
STRESS_LABEL = "lkchaos.stress"
CGROUP = "cgroup"
NAMESPACES = "namespaces"
MIB = 1024 * 1024
#: Seconds between the two readings of a CPU rate.
RATE_WINDOW_S = 0.5


@dataclass(frozen=True)
class Placement:
    """How a pressure sidecar joins its target: ``kind`` is :data:`CGROUP` (inside the
    target's cgroup, ``parent``) or :data:`NAMESPACES`; ``why`` says why not a cgroup."""

    kind: str
    parent: str = ""
    why: str = ""


def placement(info: dict[str, Any], container: Any) -> Placement:
    """Where a sidecar can join ``container``, from the engine's ``docker info``."""
    driver = str(info.get("CgroupDriver") or "")
    if driver != "cgroupfs":
        return Placement(NAMESPACES, why=f"the engine's cgroup driver is {driver or 'unknown'} "
                         "(only cgroupfs lets a container's cgroup hold another's)")  # fmt: skip
    parent = str(container.attrs.get("HostConfig", {}).get("CgroupParent") or "/docker")
    return Placement(CGROUP, parent=f"{parent.rstrip('/')}/{container.id}")


def options(name: str, where: Placement) -> sidecar.Options:
    """Sidecar options for a pressure sidecar of the service ``name``."""
    labels = {STRESS_LABEL: name}
    hint = "stress-ng must be in the sidecar image (rebuilt when its Dockerfile changes)."
    if where.kind == CGROUP:
        return sidecar.Options(network=False, net_admin=False, cgroup_parent=where.parent,
                               labels=labels, what="pressure sidecar", hint=hint)
    return sidecar.Options(network=True, net_admin=False, pid="target", labels=labels,
                           what="pressure sidecar", hint=hint)  # fmt: skip


def cpu_command(workers: int, load_percent: int, duration_s: int) -> list[str]:
    return ["stress-ng", "--cpu", str(workers), "--cpu-load", str(load_percent),
            "--timeout", f"{duration_s}s", "--quiet"]  # fmt: skip


def memory_command(megabytes: int, duration_s: int) -> list[str]:
    """One worker holding ``megabytes`` MiB, touched so that they count at once."""
    return ["stress-ng", "--vm", "1", "--vm-bytes", f"{megabytes}M", "--vm-keep",
            "--vm-populate", "--timeout", f"{duration_s}s", "--quiet"]  # fmt: skip


@dataclass(frozen=True)
class Usage:
    """One reading: when (monotonic seconds), CPU time used (ns), memory in use (bytes)."""

    at: float
    cpu_ns: int
    memory: int


def usage(client: Any, container_id: str) -> Usage:
    """The container's cgroup usage as the engine reports it (children cgroups included)."""
    stats = client.api.stats(container_id, stream=False, one_shot=True)
    cpu = int(((stats.get("cpu_stats") or {}).get("cpu_usage") or {}).get("total_usage") or 0)
    memory = int((stats.get("memory_stats") or {}).get("usage") or 0)
    return Usage(time.monotonic(), cpu, memory)


def cpu_rate(client: Any, container_id: str, window: float = RATE_WINDOW_S) -> float:
    """CPUs the container used over ``window`` seconds (1.0: one core busy)."""
    first = usage(client, container_id)
    time.sleep(window)
    second = usage(client, container_id)
    elapsed = max(second.at - first.at, 1e-6)
    return max(second.cpu_ns - first.cpu_ns, 0) / 1e9 / elapsed


#: The most a load must add to the baseline to count as in effect (CPUs): on a machine whose
#: cores are all busy, the load gets its share of them, not what it asked for.
CPU_SHOWN_MAX = 0.25


def cpu_threshold(baseline: float, workers: int, load_percent: int, cpus: int) -> float:
    """The rate that shows the load: the baseline plus a third of what the load asks for
    (at most the engine's CPUs, and at most :data:`CPU_SHOWN_MAX`), and at least a tenth of
    a CPU more."""
    asked = min(workers * load_percent / 100.0, float(max(cpus, 1)))
    return baseline + max(min(asked / 3.0, CPU_SHOWN_MAX), 0.1)


def memory_threshold(baseline: int, megabytes: int) -> int:
    """The usage that shows the load: the baseline plus half the megabytes held."""
    return baseline + megabytes * MIB // 2


def memory_bound(limit: int, total: int, megabytes: int) -> str | None:
    """Why ``megabytes`` is too much (above the target's memory limit, or without a limit,
    above half the engine's memory), or None."""
    asked = megabytes * MIB
    if limit > 0 and asked > limit:
        return (f"megabytes {megabytes} is above the target's memory limit "
                f"({limit // MIB} MiB): ask for less")  # fmt: skip
    if limit <= 0 and total > 0 and asked > total // 2:
        return (f"megabytes {megabytes} is above half the engine's memory ({total // 2 // MIB} "
                "MiB) and the target has no memory limit: ask for less")  # fmt: skip
    return None
