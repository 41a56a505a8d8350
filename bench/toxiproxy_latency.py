"""How precisely a Toxiproxy latency toxic shows end to end through a link.

    .venv/bin/python bench/toxiproxy_latency.py [-n 200] [--proxy agent_livekit] [--latency 200]

Needs the reference stack up (`lkchaos stack up`). Times HTTP GETs through the link (each on a
new connection, with `link_latency`) without a toxic, then with a latency toxic, then without
again; the error of a sample is its time minus the baseline median minus the toxic's latency.
Prints mean/median/stdev of that error and the machine. The toxic is always removed, and the
run refuses to start on a link that already has a toxic (the baseline would be wrong).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
from typing import Any

from chaoslib.exceptions import ActivityFailed

from lkchaos.settings import Settings
from lkchaos.toxiproxy import actions, probes
from lkchaos.toxiproxy.client import connect

PATHS = {"agent_livekit": "/", "agent_whisper": "/health", "agent_mcp": "/health"}


def row(name: str, values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return (f"  {name:<26} mean {statistics.fmean(values):8.2f}  median "
            f"{statistics.median(values):8.2f}  stdev {statistics.stdev(values):6.2f}  "
            f"min {ordered[0]:8.2f}  p95 {p95:8.2f}  max {ordered[-1]:8.2f}")  # fmt: skip


def measure(proxy: str, samples: int, path: str, conf: dict[str, Any]) -> list[float]:
    result = probes.link_latency(proxy, samples=samples, path=path, configuration=conf)
    if result["failed"]:
        sys.exit(f"{result['failed']} of {samples} requests failed: {result['errors']}")
    return list(result["samples_ms"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--samples", type=int, default=200)
    parser.add_argument("--proxy", default="agent_livekit")
    parser.add_argument("--latency", type=int, default=200, help="ms")
    parser.add_argument("--stream", default="downstream")
    parser.add_argument("--path", default=None, help="default: one that answers on the link")
    args = parser.parse_args()
    if not 2 <= args.samples <= 1000:
        parser.error("--samples must be between 2 and 1000")
    settings = Settings.load()
    conf = {"toxiproxy_url": settings.toxiproxy_url}
    path = args.path or PATHS.get(args.proxy, "/")

    state = probes.proxies_state(configuration=conf)["proxies"].get(args.proxy)
    if state is None or state["toxics"] or not state["enabled"]:
        sys.exit(f"{args.proxy} is missing, disabled or has toxics: {state}")
    with connect(settings) as toxi:
        version = toxi.version()

    measure(args.proxy, 5, path, conf)  # warm-up: first connections, caches
    before = measure(args.proxy, args.samples, path, conf)
    toxic = actions.add_latency(args.proxy, args.latency, stream=args.stream, configuration=conf)
    try:
        slowed = measure(args.proxy, args.samples, path, conf)
    finally:
        actions.remove_toxic(args.proxy, toxic["name"], configuration=conf)
    after = measure(args.proxy, args.samples, path, conf)

    baseline = statistics.median(before + after)
    errors = [ms - baseline - args.latency for ms in slowed]
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, "
          f"{platform.system()} {platform.release()}, Python {platform.python_version()}")
    print(f"Toxiproxy {version}; link {args.proxy} GET {path}; latency toxic {args.latency} ms "
          f"on {args.stream}; {args.samples} samples per phase, one connection per sample")
    print("\nmeasured (ms):")
    print(row("baseline before", before))
    print(row("baseline after", after))
    print(row(f"with {args.latency} ms toxic", slowed))
    print(f"\nerror vs {args.latency} ms, baseline median {baseline:.2f} ms subtracted (ms):")
    print(row("error", errors))
    within = sum(abs(e) <= 10 for e in errors)
    print(f"  within ±10 ms (Toxiproxy's own test bound): {within}/{len(errors)}")


if __name__ == "__main__":
    try:
        main()
    except ActivityFailed as exc:
        sys.exit(f"failed: {exc}")
