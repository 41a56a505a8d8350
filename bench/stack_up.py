"""Measure the reference stack: warm `lkchaos stack up` time and the running stack's memory.

    .venv/bin/python bench/stack_up.py [--runs 3]

Each run takes the stack down (keeping images), brings it up, and waits until every service
is healthy. Then it samples each container's memory (the engine's own accounting, as in
`docker stats`) and prints a table. Bounded: a run that is not healthy in 300 s fails.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import time

from lkchaos.stack.compose import Compose, docker_client
from lkchaos.stack.layout import StackPaths


def lkchaos(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "lkchaos.cli", *args], check=True, timeout=600,
                   stdout=subprocess.DEVNULL)


def memory_mib(compose: Compose) -> dict[str, float]:
    client = docker_client()
    usage = {}
    for service, container in sorted(compose.containers(client).items()):
        stats = container.stats(stream=False)
        mem = stats.get("memory_stats", {})
        cache = mem.get("stats", {}).get("cache", 0) or mem.get("stats", {}).get("inactive_file", 0)
        usage[service] = (mem.get("usage", 0) - cache) / 2**20
    client.close()
    return usage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    compose = Compose(StackPaths.discover())
    times = []
    for run in range(1, args.runs + 1):
        lkchaos("stack", "down")
        start = time.monotonic()
        lkchaos("stack", "up", "--no-build", "--timeout", "300")
        times.append(time.monotonic() - start)
        print(f"run {run}: warm up to healthy in {times[-1]:.1f} s")
    time.sleep(10)  # let the agent and Whisper settle after start-up
    usage = memory_mib(compose)
    print(f"\nmachine: {platform.node()} {platform.machine()}, "
          f"{subprocess.check_output(['nproc']).decode().strip()} cores")
    print(f"warm stack up: median {statistics.median(times):.1f} s, "
          f"min {min(times):.1f} s, max {max(times):.1f} s over {len(times)} runs")
    print("\nmemory (MiB):")
    for service, mib in usage.items():
        print(f"  {service:<15} {mib:8.1f}")
    print(f"  {'total':<15} {sum(usage.values()):8.1f}")


if __name__ == "__main__":
    main()
