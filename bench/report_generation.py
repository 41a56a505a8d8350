"""Time and size of the HTML report (and Markdown, JUnit) for a 20-experiment game day.

    .venv/bin/python bench/report_generation.py [--entries 20] [--rounds 3] [--journals DIR]

Needs no stack. Builds a game day of ``--entries`` runs from real journals (by default the
fixture journals of the completed fault experiments, `tests/fixtures/journals/`, cycled; or
every journal in ``--journals``), then times ``write_reports`` end to end (reading the
journals, the plots, the page) ``--rounds`` times in fresh processes' worth of work: the
matplotlib font cache is warmed once first, as on any machine that drew a plot before.
Prints wall time per round (median), each file's size, and the peak memory of this process.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import resource
import statistics
import tempfile
import time
from pathlib import Path

from lkchaos.report import EntryInfo, GamedayInfo, write_reports

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "journals"


def _sources(folder: Path | None) -> list[Path]:
    if folder is not None:  # the journals among them (a game day's folder has gameday.json)
        return [p for p in sorted(folder.glob("*.json"))
                if "experiment" in json.loads(p.read_text())]
    return [p for p in sorted(FIXTURES.glob("*.json"))
            if json.loads(p.read_text()).get("lkchaos", {}).get("sampling")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--journals", type=Path, default=None)
    args = parser.parse_args()
    sources = _sources(args.journals)
    if not sources:
        raise SystemExit("no journal with sampled series found")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        entries, journals = [], []
        for i in range(args.entries):
            source = sources[i % len(sources)]
            copy = folder / f"{i + 1:02d}-{source.stem}.json"
            copy.write_text(source.read_text())
            journals.append(copy)
            entries.append(EntryInfo(f"{source.stem}-{i + 1}", f"experiments/{source.name}",
                                     1, copy, "held"))
        now = dt.datetime.now(dt.UTC).isoformat()
        day = GamedayInfo("bench", None, now, now, "held", entries, score=None)
        write_reports(folder / "warm", journals[:1], title="warm-up")  # font cache, imports
        times = []
        for r in range(args.rounds):
            out = folder / f"round-{r}"
            started = time.perf_counter()
            written = write_reports(out, journals, title="bench game day", gameday=day)
            times.append(time.perf_counter() - started)
        sizes = {kind: path.stat().st_size for kind, path in written.items()}
    samples = sum(
        len(p["samples"]) for s in sources[:1]
        for p in json.loads(s.read_text())["lkchaos"]["sampling"]["probes"].values()
    )
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"machine: {platform.node()} {platform.machine()} python {platform.python_version()}")
    print(f"{args.entries} runs from {len(sources)} journals (e.g. {samples} samples in the first)")
    print(f"write_reports: median {statistics.median(times):.2f} s over {args.rounds} rounds "
          f"({', '.join(f'{t:.2f}' for t in times)})")
    for kind, size in sizes.items():
        print(f"{kind}: {size / 1024:.0f} KiB")
    print(f"peak memory of the process: {peak_mib:.0f} MiB")


if __name__ == "__main__":
    main()
