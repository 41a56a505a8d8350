"""CPU and memory of the deployment's containers over a window, from the container engine.

Two snapshots of each container's cumulative counters (``docker stats``, one shot each,
read side by side), taken at the start and the end of a window: CPU is the cores a container
used on average between them, memory what it used at the end (page cache left out).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from lkchaos.settings import Settings

#: Containers read side by side.
WORKERS = 8


def snapshot(settings: Settings) -> dict[str, dict[str, Any]]:
    """Each of the target's containers (by runtime name) -> its engine statistics now.

    Raises the engine's errors (lkchaos.docker.client) when it cannot be asked."""
    from lkchaos.docker.client import docker_session, runtime_replicas

    with docker_session() as client:
        found = runtime_replicas(client, settings)

        def read(pair: tuple[str, Any]) -> tuple[str, dict[str, Any]]:
            name, container = pair
            return name, dict(container.stats(stream=False, one_shot=True))

        with ThreadPoolExecutor(max(1, min(WORKERS, len(found)))) as pool:
            return dict(pool.map(read, found))


def usage(first: dict[str, dict[str, Any]],
          second: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:  # fmt: skip
    """Per container in both snapshots: ``{"cpu_cores": average cores used between them,
    "memory_mib": memory at the second}``."""
    out: dict[str, dict[str, float]] = {}
    for name in sorted(set(first) & set(second)):
        a, b = first[name].get("cpu_stats") or {}, second[name].get("cpu_stats") or {}
        used = (b.get("cpu_usage") or {}).get("total_usage", 0) - \
            (a.get("cpu_usage") or {}).get("total_usage", 0)
        system = b.get("system_cpu_usage", 0) - a.get("system_cpu_usage", 0)
        cores = b.get("online_cpus") or 1
        out[name] = {
            "cpu_cores": round(cores * used / system, 3) if system > 0 else 0.0,
            "memory_mib": round(memory_bytes(second[name]) / 2**20, 1),
        }
    return out


def memory_bytes(stats: dict[str, Any]) -> int:
    """A container's memory in use from its statistics, page cache left out."""
    memory = stats.get("memory_stats") or {}
    detail = memory.get("stats") or {}
    return int(memory.get("usage", 0)) - int(detail.get("inactive_file", detail.get("cache", 0)))
