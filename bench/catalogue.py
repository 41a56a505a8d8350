"""Run the experiments CI leaves out (marked ``catalogue``) with the same checks as CI.

    .venv/bin/python bench/catalogue.py [--fault-s 8] [--second]

CI's integration stage runs one experiment per fault kind and target; this runs the rest of
the catalogue on the reference stack (``--second``: also those left out on the second
deployment), each checked as tests/integration/test_experiments_run.py checks it: completed,
steady state met before, no deviation unless its finding is written, faults detected, the
stack back at baseline. Needs the stack up (``bash scripts/fresh-stack.sh`` first: a fresh
one, as CI starts from). Prints each experiment's verdict and time; exits as pytest does.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fault-s", type=float, default=8.0,
                        help="fault window in seconds (LKCHAOS_FAULT_S; CI uses 8)")
    parser.add_argument("--second", action="store_true",
                        help="also run the second deployment's catalogue experiments")
    args = parser.parse_args()
    if args.fault_s <= 0:
        parser.error("--fault-s must be > 0 seconds")
    modules = ["tests/integration/test_experiments_run.py"]
    if args.second:
        modules.append("tests/integration/test_second_deployment.py")
    env = {**os.environ, "LKCHAOS_FAULT_S": f"{args.fault_s:g}", "LKCHAOS_NO_SKIPS": "1"}
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "integration and catalogue", "-p",
         "no:cacheprovider", "-rA", "--durations=0", "-q", *modules],
        cwd=ROOT, env=env, text=True, capture_output=True, check=False, timeout=3 * 3600,
    )
    print(done.stdout[-6000:] if done.returncode else "")
    for line in done.stdout.splitlines():
        if re.match(r"(PASSED|FAILED|ERROR) ", line) or re.match(r"[\d.]+s call ", line):
            print(line[:300])
    print(f"catalogue: pytest exit {done.returncode} after {time.monotonic() - began:.0f} s "
          f"(fault windows {args.fault_s:g} s)")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
