"""CPU per simulated participant: lkchaos's held callers beside `lk load-test`'s publishers.

    .venv/bin/python bench/generator_cpu.py [--callers 4] [--duration-s 60]

Two runs, one after the other, on the same machine and the same LiveKit deployment:

1. ``lkchaos load --steps N``: N held callers (each publishes its questions, subscribes to the
   agent's reply and has a sample of replies transcribed) in the stack's prober; the
   prober container's CPU over the step, from the container engine, divided by N.
2. ``lk load-test --audio-publishers N``: LiveKit's CLI (built from its Go module at
   ``LK_VERSION`` into lkchaos's build cache when missing), publishing audio only, into
   the first LiveKit node's port; its process CPU (user + system, from the kernel's
   accounting of the finished child) over its wall time, divided by N.

Needs the reference stack up, and for the first run Go, a C++ compiler and
``portaudio19-dev`` (it builds ``lk``). Prints both and
their ratio; ``--json FILE`` keeps the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from lkchaos.settings import Settings  # noqa: E402
from lkchaos.stack.build import GoBinary, _copy_module, cache_dir  # noqa: E402

LK_MODULE = "github.com/livekit/livekit-cli/v2"
LK_VERSION = "v2.18.2"  # the Go module proxy serves exact versions only (no version list)
#: lk v2.18.2 requires a pseudo-version of livekit/protocol that the proxy refuses; the next
#: release builds in its place.
PROTOCOL = "github.com/livekit/protocol@v1.50.0"


def lk_binary() -> Path:
    """``lk`` at the pinned version, built once into lkchaos's build cache. It needs CGO:
    its audio packages link PortAudio (Debian's ``portaudio19-dev``, with the
    ``portaudio_system`` tag) and compile WebRTC's audio processing (C++, a few minutes)."""
    target = cache_dir() / "bin" / f"lk-{LK_VERSION}"
    if target.is_file():
        return target
    print(f"building lk from {LK_MODULE}@{LK_VERSION} (CGO, about 8 min once)", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "src"
        _copy_module(GoBinary("lk", LK_MODULE, LK_VERSION, "./cmd/lk", image=""), work)
        env = {**os.environ, "CGO_ENABLED": "1", "GOFLAGS": "-mod=mod"}
        subprocess.run(["go", "mod", "edit", f"-replace=github.com/livekit/protocol={PROTOCOL}"],
                       cwd=work, check=True, timeout=60)
        partial = target.with_suffix(".partial")
        target.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["go", "build", "-tags", "portaudio_system", "-trimpath", "-o",
                        str(partial), "./cmd/lk"], cwd=work, env=env, check=True, timeout=3600)
        partial.replace(target)
    return target


def held_callers(callers: int, duration_s: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ramp.json"
        subprocess.run(
            [str(ROOT / ".venv" / "bin" / "lkchaos"), "load", "--steps", str(callers),
             "--step-s", f"{duration_s:g}", "--warmup-s", "10", "--keep-going", "--json",
             str(out)],
            cwd=ROOT, check=False, timeout=duration_s * 4 + 300,
        )  # fmt: skip
        if not out.is_file():
            raise SystemExit("lkchaos load wrote no figures: is the stack up?")
        ramp = json.loads(out.read_text())
    step = ramp["steps"][0]
    containers = (step.get("usage") or {}).get("containers") or {}
    prober = next((v for k, v in containers.items() if "prober" in k), None)
    if prober is None:
        raise SystemExit(f"no prober container in the step's usage: {sorted(containers)}")
    return {"callers": callers, "connected": step.get("connected"),
            "answered_pct": step.get("answered_pct"), "cpu_cores": prober["cpu_cores"],
            "cpu_cores_per_participant": round(prober["cpu_cores"] / callers, 4),
            "memory_mib": prober["memory_mib"]}  # fmt: skip


def lk_publishers(lk: Path, publishers: int, duration_s: float) -> dict[str, Any]:
    settings = Settings.load()
    key, secret = settings.require_keys()
    url = settings.livekit_node_urls[0].replace("http://", "ws://")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.monotonic()
    done = subprocess.run(
        [str(lk), "load-test", "--url", url, "--api-key", key, "--api-secret", secret,
         "--room", f"lkchaos-lk-load-{os.getpid()}", "--audio-publishers", str(publishers),
         "--subscribers", "0", "--duration", f"{int(duration_s)}s"],
        capture_output=True, text=True, check=False, timeout=duration_s + 120,
    )  # fmt: skip
    wall = time.monotonic() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"lk load-test failed ({done.returncode}): {done.stderr[-2000:]}")
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"publishers": publishers, "wall_s": round(wall, 1),
            "cpu_cores": round(cpu_s / wall, 4),
            "cpu_cores_per_participant": round(cpu_s / wall / publishers, 4),
            "max_rss_mib": round(after.ru_maxrss / 1024, 1),
            "summary": done.stdout[-1500:]}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--callers", type=int, default=4, help="participants in each run")
    parser.add_argument("--duration-s", type=float, default=60.0, help="each run's length")
    parser.add_argument("--json", dest="json_file", help="write the figures to this file")
    args = parser.parse_args()
    if args.callers < 1 or args.duration_s < 10:
        parser.error("--callers must be >= 1 and --duration-s >= 10")
    lk = lk_binary()
    ours = held_callers(args.callers, args.duration_s)
    theirs = lk_publishers(lk, args.callers, args.duration_s)
    ratio = (ours["cpu_cores_per_participant"] / theirs["cpu_cores_per_participant"]
             if theirs["cpu_cores_per_participant"] else None)  # fmt: skip
    figures = {"lkchaos_held_callers": ours, "lk_load_test": theirs,
               "ratio_lkchaos_to_lk": round(ratio, 2) if ratio else None,
               "lk_version": LK_VERSION}  # fmt: skip
    print(json.dumps({k: v for k, v in figures.items() if k != "summary"}, indent=2))
    if args.json_file:
        Path(args.json_file).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
