"""Run fault experiments several times and report time to detect and RTO per sampled probe.

    .venv/bin/python bench/experiment_rto.py [--runs 3] [experiments/agent-crash.json ...]

Default: every experiment in experiments/ that has a method. Needs the stack up. Journals
go to .lkchaos/journals/bench-*. Prints the median (and min/max) over the runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHAOS = str(Path(sys.executable).parent / "chaos")


def run_once(experiment: Path, index: int) -> dict[str, dict[str, float | None]]:
    journal = ROOT / ".lkchaos" / "journals" / f"bench-{experiment.stem}-{index}.json"
    journal.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([CHAOS, "--no-version-check", "run", "--journal-path", str(journal),
                    str(experiment)], cwd=ROOT, timeout=1800, check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    data = json.loads(journal.read_text())
    before = (data.get("steady_states") or {}).get("before") or {}
    print(f"{experiment.name} run {index + 1}: {data.get('status')}, "
          f"deviated: {data.get('deviated')}", flush=True)
    if before and not before.get("steady_state_met"):
        # Chaos Toolkit then skips the method and still says "completed": nothing to count.
        print("  the steady state was not met before the method: run left out", flush=True)
        return {}
    sampling = (data.get("lkchaos") or {}).get("sampling") or {}
    return {name: {k: probe["figures"].get(k) for k in ("time_to_detect_s", "rto_s",
                                                         "interval_median_s")}
            for name, probe in (sampling.get("probes") or {}).items()}


def summary(values: list[float | None]) -> str:
    seen = [v for v in values if v is not None]
    if not seen:
        return "never"
    return f"{statistics.median(seen):6.1f} s ({min(seen):.1f}-{max(seen):.1f}, n={len(seen)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("experiments", nargs="*", type=Path)
    args = parser.parse_args()
    if not 1 <= args.runs <= 20:
        parser.error("--runs must be between 1 and 20")
    chosen = args.experiments or sorted(
        p for p in (ROOT / "experiments").glob("*.json") if json.loads(p.read_text())["method"]
    )
    for experiment in chosen:
        runs = [run_once(experiment, i) for i in range(args.runs)]
        print(f"\n{experiment.name}")
        for probe in sorted({name for r in runs for name in r}):
            ttd = [r[probe]["time_to_detect_s"] for r in runs if probe in r]
            rto = [r[probe]["rto_s"] for r in runs if probe in r]
            print(f"  {probe:<16} detect {summary(ttd)}   recover {summary(rto)}")


if __name__ == "__main__":
    main()
