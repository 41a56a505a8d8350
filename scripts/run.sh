#!/usr/bin/env bash
# The main job: install what is needed, bring the reference stack up (building it the first
# time), run an experiment with Chaos Toolkit and print its outcome.
#   scripts/run.sh                                  runs experiments/steady-state.json
#   scripts/run.sh experiments/<other>.json         runs another experiment
set -euo pipefail
cd "$(dirname "$0")/.."
experiment=${1:-experiments/steady-state.json}
[ -f "$experiment" ] || { echo "no experiment file $experiment" >&2; exit 2; }

bash scripts/bootstrap.sh
.venv/bin/lkchaos stack up
mkdir -p .lkchaos/journals
journal=".lkchaos/journals/$(basename "$experiment" .json)-$(date +%Y%m%dT%H%M%S).json"
set +e
.venv/bin/chaos --no-version-check run --journal-path "$journal" "$experiment"
rc=$?
set -e
.venv/bin/python - "$journal" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
print(f"\nexperiment: {j['experiment']['title']}")
print(f"status: {j['status']}   deviated: {j['deviated']}   duration: {j['duration']:.1f} s")
for phase in ("before", "after"):
    hyp = (j.get("steady_states") or {}).get(phase) or {}
    for probe in hyp.get("probes", []):
        mark = "ok " if probe.get("tolerance_met") else "NOT"
        print(f"  [{phase:6}] {mark} {probe['activity']['name']}")
print(f"journal: {sys.argv[1]}")
PY
exit "$rc"
