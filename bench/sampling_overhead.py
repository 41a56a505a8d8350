"""The sampling control's effect on voice latency: the same round trips with and without it.

    .venv/bin/python bench/sampling_overhead.py [--blocks 4] [--calls 5] [--probes 3]

Needs the stack up. Runs generated experiments through `chaos run`: each one's method is
``--calls`` voice round trips, one after the other. The "sampled" experiment also declares the
sampling control with cheap probes like those the fault experiments sample (LiveKit node
readiness, the Sentinels' view of the Redis primary, RoomService latency: the first
``--probes`` of them), each every 0.25 s; the "plain" one has no control.
Blocks alternate (plain, sampled, plain, ...) so that drift in the stack hits both alike.
Prints p50/p95/mean of the voice latency (end of speech to first reply audio) and of the whole
call, per variant, and the sampling interval the control achieved. Journals go to
.lkchaos/journals/bench-sampling-*.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CHAOS = str(Path(sys.executable).parent / "chaos")

CHEAP_PROBES: list[tuple[str, str, str, dict[str, Any], dict[str, Any]]] = [
    ("nodes-ready", "lkchaos.livekit.probes", "nodes_health", {"timeout": 0.2},
     {"type": "jsonpath", "path": "$.healthy", "expect": 2}),
    ("sentinels-agree", "lkchaos.redis.probes", "sentinel_master", {},
     {"type": "jsonpath", "path": "$.ok", "expect": True}),
    ("rooms-api", "lkchaos.livekit.probes", "roomservice_latency", {},
     {"type": "jsonpath", "path": "$.ok", "expect": True}),
]  # fmt: skip


def experiment(calls: int, sampled: bool, probes: int = len(CHEAP_PROBES)) -> dict[str, Any]:
    method = [
        {"type": "probe", "name": f"call-{i + 1}",
         "provider": {"type": "python", "module": "lkchaos.voice.probes",
                      "func": "voice_round_trip", "arguments": {"timeout": 45}}}
        for i in range(calls)
    ]  # fmt: skip
    controls: list[dict[str, Any]] = [
        {"name": "lkchaos-safety",
         "provider": {"type": "python", "module": "lkchaos.safety.control"}},
    ]  # fmt: skip
    if sampled:
        sampled_probes = [
            {"type": "probe", "name": name, "interval_s": 0.25, "tolerance": tolerance,
             "provider": {"type": "python", "module": module, "func": func,
                          "arguments": arguments}}
            for name, module, func, arguments, tolerance in CHEAP_PROBES[:probes]
        ]  # fmt: skip
        controls.append(
            {"name": "sampling",
             "provider": {"type": "python", "module": "lkchaos.controls.sampling",
                          "arguments": {"probes": sampled_probes, "baseline_s": 0, "tail_s": 0,
                                        "settle_s": 0}}}
        )  # fmt: skip
    return {
        "version": "1.0.0",
        "title": f"{calls} voice round trips, {'with' if sampled else 'without'} sampling",
        "description": "Benchmark: the sampling control's effect on voice latency.",
        "controls": controls,
        "method": method,
    }


def run_block(calls: int, sampled: bool, index: int, probes: int) -> dict[str, Any]:
    kind = "sampled" if sampled else "plain"
    journal = ROOT / ".lkchaos" / "journals" / f"bench-sampling-{kind}-{index}.json"
    journal.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"{kind}.json"
        path.write_text(json.dumps(experiment(calls, sampled, probes)))
        subprocess.run(
            [CHAOS, "--no-version-check", "run", "--journal-path", str(journal), str(path)],
            cwd=ROOT, timeout=60 * calls + 300, check=False, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
    data: dict[str, Any] = json.loads(journal.read_text())
    return data


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))]


def row(name: str, values: list[float]) -> str:
    if not values:
        return f"  {name:<30} (none)"
    return (f"  {name:<30} p50 {pct(values, 50):6.3f}  p95 {pct(values, 95):6.3f}  "
            f"mean {statistics.fmean(values):6.3f}  n={len(values)}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--blocks", type=int, default=4, help="blocks per variant")
    parser.add_argument("--calls", type=int, default=5, help="voice calls per block")
    parser.add_argument("--probes", type=int, default=len(CHEAP_PROBES),
                        help=f"cheap probes sampled (1-{len(CHEAP_PROBES)})")
    args = parser.parse_args()
    if not 1 <= args.probes <= len(CHEAP_PROBES):
        parser.error(f"--probes must be between 1 and {len(CHEAP_PROBES)}")
    if not 1 <= args.blocks <= 50 or not 1 <= args.calls <= 50:
        parser.error("--blocks and --calls must be between 1 and 50")
    latency: dict[str, list[float]] = {"plain": [], "sampled": []}
    duration: dict[str, list[float]] = {"plain": [], "sampled": []}
    failed: dict[str, int] = {"plain": 0, "sampled": 0}
    intervals: dict[str, list[float]] = {}
    for index in range(args.blocks):
        for sampled in (False, True):
            kind = "sampled" if sampled else "plain"
            journal = run_block(args.calls, sampled, index, args.probes)
            if journal.get("status") != "completed":
                sys.exit(f"{kind} block {index} ended {journal.get('status')!r}: see its journal")
            for activity in journal["run"]:
                output = activity.get("output") or {}
                if activity.get("status") != "succeeded" or not output.get("ok"):
                    failed[kind] += 1
                    continue
                latency[kind].append(float(output["latency_s"]))
                duration[kind].append(float(activity["duration"]))
            sampling = (journal.get("lkchaos") or {}).get("sampling") or {}
            for name, probe in (sampling.get("probes") or {}).items():
                value = probe["figures"].get("interval_median_s")
                if value is not None:
                    intervals.setdefault(name, []).append(float(value))
            print(f"block {index + 1}/{args.blocks} {kind:<7} done", flush=True)
    print(f"\nmachine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores")
    for kind in ("plain", "sampled"):
        print(f"\n{kind}: {len(latency[kind])} answered calls, {failed[kind]} failed")
        print(row("end of speech -> reply (s)", latency[kind]))
        print(row("whole call (s)", duration[kind]))
    if latency["plain"] and latency["sampled"]:
        delta = statistics.median(latency["sampled"]) - statistics.median(latency["plain"])
        print(f"\nmedian voice latency, sampled minus plain: {delta * 1000:+.0f} ms")
    for name, values in intervals.items():
        median = statistics.median(values)
        print(f"achieved interval {name}: median of block medians {median:.3f} s")


if __name__ == "__main__":
    main()
