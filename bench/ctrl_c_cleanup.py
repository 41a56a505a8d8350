"""Cleanup time after Ctrl-C, for every kind of fault the experiments inject.

    .venv/bin/python bench/ctrl_c_cleanup.py [--runs 1] [--at fault|injection] [--again]
        [experiments/redis-failover.json ...]

Needs the stack up. For each experiment (default: every one in experiments/ with a fault
action), starts `chaos run`, waits until the fault ledger holds a fault, lets it bite for a
second (``--at injection``: not at all, so the interrupt lands while the action still injects
and verifies its fault), and sends SIGINT as Ctrl-C would (``--again``: twice more, 0.1 s
and 0.6 s later, as a person pressing Ctrl-C repeatedly). Reports the time from the
interrupt until the ledger holds no fault (every fault undone), the safety control's own step
(``lkchaos_safety.cleanup_s`` in the journal: playing the rollbacks and emptying the ledger),
the time until the runner exited, and whether the baseline probe then passed. Journals go to
.lkchaos/journals/bench-ctrl-c-*.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from lkchaos.safety import ledger
from lkchaos.safety.probes import baseline
from lkchaos.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def default_sigint() -> None:
    """In the child: Ctrl-C's default action. A shell starting this in the background (`&`)
    makes its children ignore SIGINT, and Python keeps an ignored SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_baseline(limit_s: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + limit_s
    while True:
        state = baseline()
        if state["ok"] or time.monotonic() > deadline:
            return state
        time.sleep(2)


def interrupt_once(experiment: Path, index: int, state_dir: str, at: str = "fault",
                   again: bool = False) -> dict[str, Any]:  # fmt: skip
    journal = ROOT / ".lkchaos" / "journals" / f"bench-ctrl-c-{experiment.stem}-{index}.json"
    journal.parent.mkdir(parents=True, exist_ok=True)
    journal.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [str(BIN / "chaos"), "--no-version-check", "run", "--journal-path", str(journal),
         str(experiment)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        preexec_fn=default_sigint,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while not ledger.pending(state_dir):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            return {"experiment": experiment.name,
                    "error": f"the run ended before injecting a fault: see {journal}"}
        time.sleep(0.1)
    faults = [f"{f.kind} on {f.target}" for f in ledger.pending(state_dir)]
    if at == "fault":
        time.sleep(1)
    interrupted = time.monotonic()
    proc.send_signal(signal.SIGINT)
    if again:
        for pause_s in (0.1, 0.5):
            time.sleep(pause_s)
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
    undone_s = None
    while proc.poll() is None or undone_s is None:
        if undone_s is None and not ledger.pending(state_dir):
            undone_s = round(time.monotonic() - interrupted, 2)
        if proc.poll() is not None and undone_s is None:
            break  # exited with faults left: reported below
        if time.monotonic() - interrupted > 600:
            proc.kill()
        time.sleep(0.05)
    proc.wait()
    exited_s = time.monotonic() - interrupted
    data = json.loads(journal.read_text()) if journal.exists() else {}
    safety = data.get("lkchaos_safety") or {}
    state = wait_baseline()
    return {
        "experiment": experiment.name, "faults": faults, "status": data.get("status"),
        "cleanup_s": safety.get("cleanup_s"), "undone_s": undone_s,
        "exited_s": round(exited_s, 2),
        "left_behind": ledger.pending(state_dir) != [], "baseline_ok": state["ok"],
        "interrupts_ignored": safety.get("interrupts_ignored", 0),
    }  # fmt: skip


def has_fault(experiment: Path) -> bool:
    method = json.loads(experiment.read_text()).get("method") or []
    modules = {a.get("provider", {}).get("module", "") for a in method if a["type"] == "action"}
    return any(not m.startswith("lkchaos.livekit") for m in modules)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--at", choices=("fault", "injection"), default="fault",
                        help="interrupt a second into the fault, or as soon as it is recorded")
    parser.add_argument("--again", action="store_true",
                        help="press Ctrl-C twice more while the run rolls back")
    parser.add_argument("experiments", nargs="*", type=Path)
    args = parser.parse_args()
    if not 1 <= args.runs <= 20:
        parser.error("--runs must be between 1 and 20")
    chosen = args.experiments or sorted(
        p for p in (ROOT / "experiments").glob("*.json") if has_fault(p)
    )
    state_dir = Settings.load(None, None).state_dir
    if ledger.pending(state_dir):
        sys.exit("faults are pending in the ledger: run `lkchaos recover` first")
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores")
    for experiment in chosen:
        for index in range(args.runs):
            result = interrupt_once(experiment, index, state_dir, args.at, args.again)
            if "error" in result:
                print(f"{result['experiment']:<30} {result['error']}", flush=True)
                continue
            print(
                f"{result['experiment']:<30} faults undone {result['undone_s']} s after the "
                f"interrupt (control's own step {result['cleanup_s']} s), runner exited "
                f"after {result['exited_s']} s, status {result['status']}, left behind: "
                f"{result['left_behind']}, baseline ok: {result['baseline_ok']}, "
                f"interrupts refused: {result['interrupts_ignored']} "
                f"({'; '.join(result['faults'])})",
                flush=True,
            )


if __name__ == "__main__":
    main()
