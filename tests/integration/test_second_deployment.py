"""The catalogue on a second deployment, unlike the reference stack, through its target alone.

`stack/second` (compose project ``voiceprod``) has one LiveKit node, one Redis with AUTH and no
Sentinel, nginx in front, no Toxiproxy, no resolver of ours, and is reached as Docker
containers by name. This module brings it up once (`scripts/second-stack.sh up`) and down
at the end, and checks that:

- `lkchaos target check` lists exactly the experiments that do not apply, and why;
- every experiment that applies completes without deviating;
- after a SIGKILL of the runner mid-fault, `lkchaos recover` puts the deployment back.

Every command runs with no ``LKCHAOS_*`` or ``LIVEKIT_*`` variable in its environment but
``LKCHAOS_TARGET``: the target file is the only thing that tells lkchaos about the
deployment. Fault windows are shortened through the experiments' configuration
(``chaos run --var``). It needs no reference stack, and may run while that one is up (their
names and ports differ), even while experiments run on it from the same checkout: runs on
this target take its own run lock, and only its own faults count here (``scripts/test.sh``
runs this module in a lane of its own beside the others). Select it with ``-m second``, or
leave it out with ``-m "integration and not second"``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lkchaos.safety import ledger, runlock
from tests.integration.test_experiments_run import check_journal

pytestmark = pytest.mark.second

ROOT = Path(__file__).resolve().parents[2]
TARGET = ROOT / "stack" / "second" / "target.yaml"
SCRIPT = ROOT / "scripts" / "second-stack.sh"
BIN = Path(sys.executable).parent
CHAOS, LKCHAOS = str(BIN / "chaos"), str(BIN / "lkchaos")

#: The deployment's containers (target.yaml's runtime names) and lkchaos's prober.
CONTAINERS = ("redis", "lk-server", "nginx", "stt", "tools", "voice-agent", "voice-prober")
#: Short fault windows: the experiments' own knobs, given as configuration.
KNOBS = ("fault_s:float=8",)  # as CI's LKCHAOS_FAULT_S

#: Experiments that run here, in that order (steady state first): every one applies.
RUN_HERE = ["steady-state.json", "agent-crash.json", "whisper-outage.json",
            "mcp-outage.json", "cert-expiry.json", "token-clock-skew.json"]  # fmt: skip
#: Experiments that apply to this target: those run here, and the stress and held-call
#: experiments, which run on the reference stack (the same images; CI's time budget).
APPLICABLE = [*RUN_HERE, "cpu-pressure-agent.json", "memory-pressure-livekit.json",
              "disk-full-stt.json", "held-whisper-freeze.json",
              "held-tool-server-outage.json"]  # fmt: skip
_NO_INGRESS = "needs LiveKit Ingress: the target has no ingress section"
_NO_RECEIVER = "needs a webhook receiver: the target has no monitoring.receiver_url"
_NO_PROMETHEUS = "needs Prometheus: the target has no monitoring.prometheus_url"
#: Experiments that do not apply -> what `lkchaos target check` must say (one fragment per
#: reason it gives, in its order).
NOT_APPLICABLE: dict[str, list[str]] = {
    "agent-livekit-partition.json": ["needs Toxiproxy: the target has none"],
    "held-agent-signalling-cut.json": ["needs Toxiproxy: the target has none"],
    "alert-on-service-down.json": ["needs Prometheus: the target has no monitoring.prometheus_url",
                                   "needs a webhook receiver: the target has no "
                                   "monitoring.receiver_url"],
    "ingress-node-loss.json": [_NO_INGRESS, "so livekit_node:2 does not exist"],
    "ingress-redis-failover.json": [_NO_INGRESS,
                                    "needs Redis Sentinel: the target's Redis is direct"],
    "ingress-rtmp-packet-loss.json": ["the target maps no ingress", _NO_INGRESS],
    "webhook-link-cut.json": ["needs a webhook receiver: the target has no "
                              "monitoring.receiver_url", "needs Toxiproxy: the target has none"],
    "dns-failure.json": ["needs a resolver: the target has none",
                         "needs a resolver lkchaos may fault: the target has none"],
    "livekit-node-loss.json": ["the target has 1 livekit_node (lk-server), so livekit_node:2"],
    "held-node-loss.json": ["the target has 1 livekit_node (lk-server), so livekit_node:2"],
    "media-packet-loss.json": ["the target has 1 livekit_node (lk-server), so livekit_node:2"],
    "udp-blocked.json": ["the target has 1 livekit_node (lk-server), so livekit_node:2"],
    "livekit-node-redis-partition.json": [
        "the target maps no redis_replica",
        "the target has 1 livekit_node (lk-server), so livekit_node:2"],
    "redis-failover.json": ["needs Redis Sentinel: the target's Redis is direct"],
    "held-redis-failover.json": ["needs Redis Sentinel: the target's Redis is direct"],
    "redis-lost-during-drain.json": ["the target maps no redis_replica"],
    "redis-outage.json": ["the target maps no redis_replica"],
    "redis-stall.json": ["needs Redis Sentinel: the target's Redis is direct"],
    "stack-healthy.json": ["needs Redis Sentinel: the target's Redis is direct"],
}
#: Activities of the catalogue that cannot run on this target, by the reason given.
_DNS = ("nxdomain_name", "restore_dns", "restore_name", "servfail_name", "start_resolver",
        "stop_resolver", "wrong_address")  # fmt: skip
_TOXIPROXY = ("add_bandwidth", "add_latency", "add_limit_data", "add_reset_peer",
              "add_slow_close", "add_timeout", "add_toxic", "disable_proxy", "enable_proxy",
              "remove_all_toxics", "remove_toxic", "reset")  # fmt: skip
ACTIVITIES_NOT_APPLICABLE: dict[str, str] = {
    **{f"lkchaos.dns.actions.{name}": "needs a resolver lkchaos may fault: the target has none"
       for name in _DNS},
    "lkchaos.dns.probes.resolve_names": "needs a resolver: the target has none",
    "lkchaos.redis.actions.sentinel_failover":
        "needs Redis Sentinel: the target's Redis is direct",
    "lkchaos.redis.probes.sentinel_master": "needs Redis Sentinel: the target's Redis is direct",
    "lkchaos.redis.probes.remember_primary": "needs Redis Sentinel: the target's Redis is direct",
    "lkchaos.redis.probes.primary_kept": "needs Redis Sentinel: the target's Redis is direct",
    **{f"lkchaos.toxiproxy.actions.{name}": "needs Toxiproxy: the target has none"
       for name in _TOXIPROXY},
    "lkchaos.toxiproxy.probes.link_latency": "needs Toxiproxy: the target has none",
    "lkchaos.toxiproxy.probes.proxies_state": "needs Toxiproxy: the target has none",
    **{f"lkchaos.hooks.probes.{name}": _NO_RECEIVER
       for name in ("alert_delivered", "room_webhooks", "webhooks_for_call")},
    **{f"lkchaos.ingress.probes.{name}": _NO_INGRESS for name in ("rtmp_publish", "whip_publish")},
    **{f"lkchaos.prometheus.probes.{name}": _NO_PROMETHEUS
       for name in ("alert_state", "query", "targets_up", "wait_for_alert")},
    "lkchaos.prometheus.probes.alertmanager_alerts":
        "needs Alertmanager: the target has no monitoring.alertmanager_url",
}  # fmt: skip
#: The method probe of a degradation experiment: what the caller must hear during the fault.
APOLOGY = {"whisper-outage.json": "apology-heard-during-outage",
           "mcp-outage.json": "apology-heard-during-outage"}  # fmt: skip


def clean_env() -> dict[str, str]:
    """This environment without lkchaos's or LiveKit's variables, plus LKCHAOS_TARGET."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("LKCHAOS_", "LIVEKIT_", "VOICEPROD_"))}  # fmt: skip
    env["LKCHAOS_TARGET"] = str(TARGET)
    return env


def run(args: list[str], timeout: float, env: dict[str, str] | None = None,
        ) -> subprocess.CompletedProcess[str]:  # fmt: skip
    return subprocess.run(args, cwd=ROOT, env=env or clean_env(), text=True,
                          capture_output=True, timeout=timeout, check=False)  # fmt: skip


def container_states() -> dict[str, str]:
    """Each container of the deployment -> ``status/health`` (``missing`` when absent)."""
    states: dict[str, str] = {}
    for name in CONTAINERS:
        done = run(["docker", "inspect", "-f",
                    "{{.State.Status}}/{{if .State.Health}}{{.State.Health.Status}}{{end}}",
                    name], timeout=30)  # fmt: skip
        states[name] = done.stdout.strip() if done.returncode == 0 else "missing"
    return states


def wait_healthy(timeout: float = 90) -> dict[str, str]:
    """The containers' states once all run healthy, or as they are after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        states = container_states()
        if all(state == "running/healthy" for state in states.values()):
            return states
        if time.monotonic() > deadline:
            return states
        time.sleep(1)


def _settings_path(field: str) -> Path:
    """A folder of lkchaos's settings as the commands below see it (their environment)."""
    done = run([sys.executable, "-c",
                f"from lkchaos.settings import Settings; print(Settings.load().{field})"],
               timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return Path(done.stdout.strip())


@pytest.fixture(scope="module")
def state_dir() -> Path:
    """lkchaos's state folder (the shared fault ledger and audit log)."""
    return _settings_path("state_dir")


@pytest.fixture(scope="module")
def run_dir() -> Path:
    """Where runs on this deployment keep their run lock (not the reference stack's)."""
    return _settings_path("run_dir")


def faults_here(state_dir: Path) -> list[ledger.Fault]:
    """The faults in the shared ledger that were made on this deployment: runs on the
    reference stack from this checkout may have theirs in it at the same time."""
    return [fault for fault in ledger.pending(state_dir, every_target=True)
            if fault.deployment == str(TARGET.resolve())]  # fmt: skip


@pytest.fixture(scope="module")
def second_deployment() -> Iterator[None]:
    """The deployment up and healthy for this module, and down (volumes too) after it."""
    started = time.monotonic()
    up = run(["bash", str(SCRIPT), "up"], timeout=3600)
    assert up.returncode == 0, f"{SCRIPT.name} up failed:\n{up.stdout}\n{up.stderr[-4000:]}"
    print(f"voiceprod up in {time.monotonic() - started:.1f} s")
    try:
        yield
    finally:
        down = run(["bash", str(SCRIPT), "down"], timeout=300)
        assert down.returncode == 0, f"{SCRIPT.name} down failed: {down.stderr[-4000:]}"


@pytest.fixture(scope="module", autouse=True)
def stack_is_up(second_deployment: None) -> None:
    """In place of the package's check of the reference stack: this module needs only its
    own deployment."""


def parse_check(out: str) -> tuple[dict[str, str], set[str], dict[str, list[str]]]:
    """From `lkchaos target check`: activities that cannot run -> reason; experiments that
    apply; experiments that do not -> their reasons."""
    activities: dict[str, str] = {}
    applying: set[str] = set()
    refused: dict[str, list[str]] = {}
    section, current = "", ""
    for line in out.splitlines():
        if not line.startswith(" "):
            section = line.split(":", 1)[0]
            continue
        words = line.split()
        if section == "activities" and words[0] == "no":
            name, _, reason = line.strip()[3:].strip().partition(": ")
            activities[name] = reason
        elif section == "experiments" and words[0] in ("ok", "no"):
            current = words[1]
            if words[0] == "ok":
                applying.add(current)
            else:
                refused[current] = []
        elif section == "experiments" and words[0] == "-":
            refused[current].append(line.strip()[2:])
    return activities, applying, refused


def test_target_check_lists_what_does_not_apply_and_why() -> None:
    done = run([LKCHAOS, "target", "check", "--target", str(TARGET)], timeout=120,
               env={**clean_env(), "LKCHAOS_TARGET": ""})  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "valid: 1 livekit node(s), redis direct, tls proxy nginx, no resolver, no " \
           "toxiproxy, docker containers by name" in done.stdout, done.stdout
    reach = next(line for line in done.stdout.splitlines() if line.startswith("reachability:"))
    counted, _, total = reach.split(":")[1].strip().partition(" of ")
    assert total.split()[0] == counted, done.stdout
    activities, applying, refused = parse_check(done.stdout)
    assert activities == ACTIVITIES_NOT_APPLICABLE
    shipped = {p.name for p in (ROOT / "experiments").glob("*.json")}
    assert applying | set(refused) == shipped
    assert applying == set(APPLICABLE), done.stdout
    assert set(refused) == set(NOT_APPLICABLE), done.stdout
    for name, fragments in NOT_APPLICABLE.items():
        given = refused[name]
        assert len(given) == len(fragments), (name, given)
        for fragment, reason in zip(fragments, given, strict=True):
            assert fragment in reason, (name, given)


def failed_probes(journal: dict[str, Any]) -> dict[str, Any]:
    """Steady-state probes that missed their tolerance, before or after -> their output."""
    missed: dict[str, Any] = {}
    for phase in ("before", "after"):
        for probe in (journal["steady_states"].get(phase) or {}).get("probes", []):
            if not probe.get("tolerance_met"):
                missed[f"{phase}:{probe['activity']['name']}"] = probe.get("output")
    return missed


def failed_activities(journal: dict[str, Any]) -> dict[str, str]:
    return {
        activity["activity"]["name"]: str(activity.get("exception") or activity.get("output"))
        for activity in journal["run"] + journal.get("rollbacks", [])
        if activity["status"] != "succeeded"
    }  # fmt: skip


#: Run here only with the full catalogue (``-m catalogue``): CI runs agent-crash,
#: cert-expiry, token-clock-skew and steady-state on the reference stack (the quick game day,
#: test_cert_dns_faults, test_experiments_run), and Whisper's outage there as
#: held-whisper-freeze (the same fault, judged turn by turn); here CI keeps a service fault
#: named by role with its apology and callers through this target before and after it
#: (mcp-outage), the steady state's room-state and node probes through this target (below,
#: without its callers: mcp-outage's make the same calls), the target check and the runner
#: killed mid-fault with Whisper frozen.
CATALOGUE_HERE = {"agent-crash.json", "cert-expiry.json", "whisper-outage.json",
                  "token-clock-skew.json", "steady-state.json"}


def test_the_steady_states_room_and_node_probes_hold_through_the_target(tmp_path: Path) -> None:
    """steady-state.json's probes but its callers, run by `chaos run` through the target
    alone: LiveKit's room state in this deployment's Redis (AUTH, no Sentinel) and its one
    node's readiness."""
    experiment = json.loads((ROOT / "experiments" / "steady-state.json").read_text())
    hypothesis = experiment["steady-state-hypothesis"]
    hypothesis["probes"] = [p for p in hypothesis["probes"]
                            if p["provider"]["module"] != "lkchaos.voice.probes"]  # fmt: skip
    assert [p["name"] for p in hypothesis["probes"]] == ["room-state-consistent",
                                                         "every-livekit-node-ready"]
    path, journal_path = tmp_path / "steady-state-no-callers.json", tmp_path / "journal.json"
    path.write_text(json.dumps(experiment))
    done = run([CHAOS, "--no-version-check", "run", "--journal-path", str(journal_path),
                str(path)], timeout=300)  # fmt: skip
    assert journal_path.is_file(), done.stderr[-4000:]
    journal: dict[str, Any] = json.loads(journal_path.read_text())
    assert journal["status"] == "completed" and not journal["deviated"], failed_probes(journal)
    assert done.returncode == 0, done.stderr[-4000:]
    for phase in ("before", "after"):
        outputs = {p["activity"]["name"]: p["output"]
                   for p in journal["steady_states"][phase]["probes"]}  # fmt: skip
        assert all(output["ok"] for output in outputs.values()), outputs
        # This deployment's one node, read in its own Redis (the reference stack has two).
        assert outputs["room-state-consistent"]["nodes"] == 1, outputs
        assert outputs["every-livekit-node-ready"]["healthy"] == 1, outputs


@pytest.mark.parametrize("name", [
    pytest.param(name, marks=pytest.mark.catalogue) if name in CATALOGUE_HERE else name
    for name in RUN_HERE])  # fmt: skip
def test_applicable_experiment_completes_without_deviating(
    name: str, tmp_path: Path, state_dir: Path
) -> None:
    journal_path = tmp_path / "journal.json"
    knobs = [arg for knob in KNOBS for arg in ("--var", knob)]
    done = run([CHAOS, "--no-version-check", "run", *knobs, "--journal-path",
                str(journal_path), str(ROOT / "experiments" / name)], timeout=900)  # fmt: skip
    assert journal_path.is_file(), done.stderr[-4000:]
    journal: dict[str, Any] = json.loads(journal_path.read_text())
    problems = {"probes": failed_probes(journal), "activities": failed_activities(journal)}
    assert journal["status"] == "completed", (journal["status"], problems,
                                              done.stderr[-2000:])  # fmt: skip
    assert not journal["deviated"], problems
    assert done.returncode == 0, done.stderr[-4000:]
    assert journal["lkchaos_safety"]["recovered"] == [], "a fault outlived the rollbacks"
    if name in APOLOGY:
        heard = [a for a in journal["run"] if a["activity"]["name"] == APOLOGY[name]]
        assert heard and heard[0]["output"]["ok"], heard
    # The checks every experiment's run gets on the reference stack (time series, time to
    # detect and RTO of the faults callers notice): some run only here.
    check_journal(name, journal)
    assert faults_here(state_dir) == []
    states = wait_healthy()
    assert set(states.values()) == {"running/healthy"}, states
    assert wait_answered(), "callers were not answered again within 120 s"


#: One voice round trip through the target, printed as JSON.
ROUND_TRIP = ("import json; from lkchaos.voice.probes import voice_round_trip; "
              "print(json.dumps(voice_round_trip(timeout=30)))")  # fmt: skip


def wait_answered(timeout: float = 120) -> bool:
    """Whether a caller is answered again within ``timeout`` s, as the next experiment's
    steady state will ask (an agent restarted by the last one may still be registering)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = run([sys.executable, "-c", ROUND_TRIP], timeout=90)
        if done.returncode == 0 and json.loads(done.stdout.splitlines()[-1]).get("ok"):
            return True
        time.sleep(2)
    return False


def _docker_action(name: str, func: str, **arguments: Any) -> dict[str, Any]:
    return {"type": "action", "name": name, "provider": {
        "type": "python", "module": "lkchaos.docker.actions", "func": func,
        "arguments": arguments}}  # fmt: skip


def interrupted_experiment(path: Path) -> Path:
    """Two faults named by role, then a long wait during which the runner is killed."""
    experiment = {
        "version": "1.0.0",
        "title": "runner killed mid-fault on voiceprod",
        "description": "The tool server stopped and speech-to-text frozen, then a wait.",
        "controls": [{"name": "lkchaos-safety",
                      "provider": {"type": "python", "module": "lkchaos.safety.control"}}],
        "method": [
            _docker_action("stop-tools", "stop_service", service="tool_server", timeout=2),
            {**_docker_action("freeze-stt", "pause_service", service="speech_to_text"),
             "pauses": {"after": 120}},
        ],
        "rollbacks": [
            _docker_action("start-tools", "start_service", service="tool_server"),
            _docker_action("unfreeze-stt", "unpause_service", service="speech_to_text"),
        ],
    }  # fmt: skip
    path.write_text(json.dumps(experiment))
    return path


def test_recover_after_sigkill_of_the_runner_restores_the_deployment(
    tmp_path: Path, state_dir: Path, run_dir: Path
) -> None:
    assert faults_here(state_dir) == []
    proc = subprocess.Popen(
        [CHAOS, "--no-version-check", "run", "--journal-path", str(tmp_path / "journal.json"),
         str(interrupted_experiment(tmp_path / "experiment.json"))],
        cwd=ROOT, env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while len(faults_here(state_dir)) < 2:
            assert proc.poll() is None, "the runner ended before injecting its faults"
            assert time.monotonic() < deadline, "the faults were never injected"
            time.sleep(0.2)
        time.sleep(1)  # inside the wait now
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    left = container_states()
    assert left["tools"].startswith("exited/"), left
    assert left["stt"].startswith("paused/"), left
    assert {fault.target for fault in faults_here(state_dir)} == {"tools", "stt"}

    done = run([LKCHAOS, "recover", "--target", str(TARGET)], timeout=180,
               env={**clean_env(), "LKCHAOS_TARGET": ""})  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "stopped on tools" in done.stdout and "paused on stt" in done.stdout, done.stdout
    assert "baseline restored" in done.stdout, done.stdout
    assert faults_here(state_dir) == []
    assert runlock.holder(run_dir) is None
    states = wait_healthy()
    assert set(states.values()) == {"running/healthy"}, states
