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
.venv/bin/python - "$journal" "$rc" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
failed = False
print(f"\nexperiment: {j['experiment']['title']}")
print(f"status: {j['status']}   deviated: {j['deviated']}   duration: {j['duration']:.1f} s")
for phase in ("before", "after"):
    hyp = (j.get("steady_states") or {}).get(phase) or {}
    for probe in hyp.get("probes", []):
        met = probe.get("tolerance_met")
        failed |= not met
        print(f"  [{phase:6}] {'ok ' if met else 'NOT'} {probe['activity']['name']}")
        out = probe.get("output")
        if isinstance(out, dict) and "answered" in out:
            print(f"           {out['answered']}/{out['calls']} answered, median "
                  f"{out['latency_median_s']} s, slowest {out['latency_max_s']} s")
        if not met and isinstance(out, dict):
            for call in out.get("results") or [out]:
                if not call.get("ok"):
                    print(f"           {call.get('stage', '')} {call.get('reason', '')}".rstrip())
safety = j.get("lkchaos_safety") or {}
for item in safety.get("failed_actions", []):
    failed = True
    print(f"  [method] FAILED {item.get('activity')}: {item.get('error', '')[:300]}")
for item in safety.get("missed_tolerances", []):
    failed = True
    print(f"  [method] NOT {item.get('probe')}: output {json.dumps(item.get('output'))[:300]}")
for item in safety.get("not_recovered", []):
    failed = True
    print(f"  [cleanup] NOT UNDONE {item.get('fault')}: {item.get('error', '')} (run "
          "`.venv/bin/lkchaos recover`)")
print(f"journal: {sys.argv[1]}")
run_id = ((j.get("lkchaos") or {}).get("history") or {}).get("run_id")
if run_id:
    print(f"next: .venv/bin/lkchaos history show {run_id[:12]}   (figures, score, faults)")
    print(f"      .venv/bin/lkchaos report {run_id[:12]} -o report.html   (one page, offline)")
print("      .venv/bin/lkchaos stack down   (when done: removes the stack)")
# Chaos Toolkit exits 0 when the hypothesis fails before the method: this job must not.
sys.exit(1 if failed or j["deviated"] or j["status"] != "completed" or sys.argv[2] != "0" else 0)
PY
