"""Run the voice round-trip probe N times and report where the time goes.

    .venv/bin/python bench/voice_round_trip.py [-n 20] [--question "What is 17 times 3?"]

Needs the reference stack up (`lkchaos stack up`); the round trips run back to back in the
stack's prober. Prints p50/p95 of end of speech to first reply audio, the whole call's time,
the caller-side stage timings and the agent's own per-stage report, the failures by stage,
and the CPU each of the busiest containers used per call over the runs (core-seconds, from
the container engine's counters; the idle stack's share included).
"""

from __future__ import annotations

import argparse
import collections
import os
import platform
import statistics
import time
from typing import Any

from lkchaos.load.usage import snapshot, usage
from lkchaos.settings import Settings
from lkchaos.voice.probes import voice_round_trip


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def row(name: str, values: list[float]) -> str:
    if not values:
        return f"  {name:<34} (none)"
    return (f"  {name:<34} p50 {pct(values, 50):7.0f}  p95 {pct(values, 95):7.0f}  "
            f"mean {statistics.fmean(values):7.0f}  n={len(values)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--runs", type=int, default=20)
    parser.add_argument("--question", default=None, help="default: the rotating set")
    args = parser.parse_args()
    if not 1 <= args.runs <= 500:
        parser.error("--runs must be between 1 and 500")
    results: list[dict[str, Any]] = []
    walls: list[float] = []
    settings = Settings.load()
    first, window = snapshot(settings), time.monotonic()
    for i in range(args.runs):
        began = time.monotonic()
        result = voice_round_trip(question=args.question, timeout=45)
        walls.append((time.monotonic() - began) * 1000)
        results.append(result)
        print(f"{i + 1:3d} {result['stage']:<12} {result.get('latency_s')!s:>6} s  "
              f"{result['question']!r} -> {result['heard']!r}", flush=True)
    window = time.monotonic() - window
    used = usage(first, snapshot(settings))
    ok = [r for r in results if r["ok"]]
    print(f"\nmachine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores")
    failures = collections.Counter(r["stage"] for r in results if not r["ok"])
    print(f"runs: {len(results)}, ok: {len(ok)}, failures by stage: {dict(failures)}")
    print("\ncaller side (ms):")
    print(row("whole round trip (the probe's call)", walls))
    for key in ("end_of_speech_to_first_audio", "end_of_speech_to_reply_end", "join", "dispatch",
                "transcription"):
        print(row(key, [r["timings_ms"][key] for r in ok if key in r["timings_ms"]]))
    print("\nagent's report (ms):")
    for key in ("transcription_delay_ms", "stt_ms", "tool_ms", "llm_ttft_ms",
                "tts_first_audio_ms", "e2e_ms"):
        print(row(key, [float(r["agent"][key]) for r in ok if r["agent"].get(key) is not None]))
    print(f"\nCPU per call (core-seconds, {window:.0f} s for {args.runs} calls):")
    busiest = sorted(used.items(), key=lambda item: -item[1]["cpu_cores"])[:5]
    for name, figures in busiest:
        print(f"  {name:<34} {figures['cpu_cores'] * window / args.runs:6.2f}")


if __name__ == "__main__":
    main()
