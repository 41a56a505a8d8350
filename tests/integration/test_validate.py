"""`lkchaos validate` against the running reference stack: every item printed, the healthy
stack holding (or failing only where this machine or the pinned LiveKit falls short), and
each injected problem turning exactly its items to fail."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from junitparser import JUnitXml

from lkchaos.docker import actions as docker_actions
from lkchaos.settings import Settings
from lkchaos.tls import actions as tls_actions
from lkchaos.validate.checks import host
from lkchaos.validate.model import items
from tests.integration.conftest import wait_baseline

LKCHAOS = str(Path(sys.executable).parent / "lkchaos")


def free_disk_gib() -> float:
    """Free GiB where the local engine keeps its data (as the disk item reads it)."""
    root = Path("/var/lib/docker")
    return shutil.disk_usage(root if root.exists() else "/").free / host.GIB


#: Within this many GiB of the document's minimum, free disk space crosses it during a run
#: (images, logs, journals): the disk item may then read either way.
DISK_MARGIN_GIB = 3.0


def machine_shortfalls() -> dict[str, bool]:
    """Items that fail on this machine whatever the stack does (README, "Validation"), read
    now: free disk space moves during a run."""
    return {
        "infra.minimum-4-cpu": len(os.sched_getaffinity(0)) < 4,
        "infra.system-time-synchronized": not (host.kernel_clock() or {}).get("synchronised"),
        "infra.minimum-50gb-disk": free_disk_gib() < host.MIN_DISK_GIB,
    }


MACHINE_SHORTFALLS = machine_shortfalls()


def undecided() -> set[str]:
    """Machine items too close to their minimum now to expect either verdict."""
    near = abs(free_disk_gib() - host.MIN_DISK_GIB) < DISK_MARGIN_GIB
    return {"infra.minimum-50gb-disk"} if near else set()


#: Items the pinned LiveKit (v1.13.5) fails, and the words their evidence must hold (README,
#: "Validation"): it does not check a token's iat, so a token issued in the future is accepted.
LIVEKIT_SHORTFALLS = {"auth.jwt-tokens-verified": "(issued in the future)"}


def validate(tmp_path: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    out = tmp_path / f"validate-{time.monotonic_ns()}.json"
    done = subprocess.run([LKCHAOS, "validate", "--no-history", "--json", str(out), *args],
                          capture_output=True, text=True, timeout=300, check=False)
    assert out.is_file(), done.stderr
    return done.returncode, json.loads(out.read_text()), done.stdout


def statuses(report: dict[str, Any]) -> dict[str, str]:
    return {item["id"]: item["status"] for item in report["items"]}


#: Items that measure the machine's state (LiveKit's API and WebSocket latency and its CPU on
#: two busy cores, the free disk space a run's images and logs use up): they may flap between
#: runs whatever was injected.
MACHINE_STATE = {"livekit.response-times-200ms", "livekit.websocket-latency-100ms",
                  "livekit.cpu-usage-50", "infra.minimum-50gb-disk",
                  # Judged once Prometheus holds 10 and 15 min of LiveKit after its first
                  # 5 (a warning before): which run comes first after that depends on the
                  # machine's speed.
                  "livekit.memory-usage-stable", "livekit.memory-leaks-detected"}  # fmt: skip


def failing(report: dict[str, Any]) -> set[str]:
    return {i for i, s in statuses(report).items() if s == "fail"}


def new_failures(report: dict[str, Any], baseline: set[str]) -> set[str]:
    """The items failing now that did not fail on the healthy stack, machine-state ones aside."""
    return failing(report) - baseline - MACHINE_STATE


def evidence_of(report: dict[str, Any], item: str) -> str:
    return str(next(e for e in report["items"] if e["id"] == item)["evidence"])


def explained(report: dict[str, Any], items: set[str]) -> str:
    """Each item's id and whole evidence, one per line: an assertion's message (pytest
    shortens a dict shown there, and the evidence that says why is what it cuts)."""
    return "\n".join(f"{i}: {evidence_of(report, i)}" for i in sorted(items))


@dataclass(frozen=True)
class HealthyRun:
    """One full `lkchaos validate` of the healthy stack, with every output written."""

    code: int
    report: dict[str, Any]
    stdout: str
    sheet: Path
    xml: Path


@pytest.fixture(scope="module")
def healthy(tmp_path_factory: pytest.TempPathFactory) -> HealthyRun:
    """The healthy stack's full run, once for the module: the test of the run's outputs
    reads it, and each injected problem's items are judged against what it failed."""
    assert wait_baseline()["ok"]
    folder = tmp_path_factory.mktemp("healthy")
    sheet, xml = folder / "sheet.html", folder / "validate.xml"
    started = time.monotonic()
    code, report, stdout = validate(folder, "--html", str(sheet), "--junit", str(xml))
    print(f"a full `lkchaos validate` took {time.monotonic() - started:.1f} s "
          "(goal: under 60 s)")
    return HealthyRun(code, report, stdout, sheet, xml)


def test_a_full_run_prints_every_item_and_writes_every_output(healthy: HealthyRun) -> None:
    code, report, stdout, sheet, xml = (healthy.code, healthy.report, healthy.stdout,
                                        healthy.sheet, healthy.xml)  # fmt: skip
    assert code in (0, 1), stdout[-3000:]
    assert [i["id"] for i in report["items"]] == [i.id for i in items()]
    for item in items():
        assert f" {item.id} " in stdout
    assert report["load_errors"] == []
    assert JUnitXml.fromfile(str(xml)).tests == len(items())
    assert "Production Release Authorized By" in sheet.read_text()
    found = statuses(report)
    errors = {i: e["evidence"] for e in report["items"] if (i := e["id"]) and
              found[i] == "error"}  # fmt: skip
    assert not errors, f"checks that could not run on the healthy stack: {errors}"
    near = undecided()
    expected = {item for item, short in machine_shortfalls().items() if short} - near
    assert expected <= failing(report)
    evidence = {e["id"]: e["evidence"] for e in report["items"]}
    for item, words in LIVEKIT_SHORTFALLS.items():
        assert found[item] == "fail" and words in evidence[item], evidence[item]
    unexplained = {e["id"]: e["evidence"] for e in report["items"]
                   if e["status"] == "fail" and e["id"] not in expected | near
                   and e["id"] not in LIVEKIT_SHORTFALLS}  # fmt: skip
    assert not unexplained, f"the healthy stack fails: {unexplained}"


def test_the_host_and_startup_items_hold_on_the_healthy_stack(tmp_path: Path) -> None:
    code, report, _ = validate(tmp_path, "--section", "infra,startup", "--skip",
                               "infra.dns-records-configured,infra.firewall-rules-configured,"
                               "infra.network-connectivity-validated")  # fmt: skip
    found = statuses(report)
    near = undecided()
    for item, short in machine_shortfalls().items():
        if item not in near:
            assert found[item] == ("fail" if short else "pass"), item
    for item in ("infra.minimum-8gb-ram", "infra.docker-docker-compose",
                 "infra.log-rotation-configured", "startup.caddy-container-starts",
                 "startup.livekit-container-starts", "startup.redis-container-starts",
                 "startup.ingress-container-starts", "startup.containers-show-healthy",
                 "startup.containers-can-reach", "startup.dns-resolution-working",
                 "startup.configuration-files-loaded", "startup.environment-variables-populated",
                 "startup.api-keys-secrets"):  # fmt: skip
        assert found[item] == "pass", next(e for e in report["items"] if e["id"] == item)
    assert found["startup.egress-container-starts"] == "n/a"
    # Exit 1 when any item fails: the machine's shortfalls are the only failures here.
    assert code == (1 if any(found[i] == "fail" for i in machine_shortfalls()) else 0)


@pytest.fixture(scope="module")
def baseline(healthy: HealthyRun) -> set[str]:
    """What fails on the healthy stack: each injected problem must turn exactly its own
    items to fail on top of it."""
    return failing(healthy.report)


@pytest.fixture
def replica_stopped() -> Iterator[None]:
    docker_actions.stop_service("redis-replica")
    try:
        yield
    finally:
        docker_actions.start_service("redis-replica")
        assert wait_baseline()["ok"]


def test_a_stopped_replica_fails_exactly_its_items(tmp_path: Path, baseline: set[str],
                                                    replica_stopped: None) -> None:
    code, report, _ = validate(tmp_path)
    assert code == 1
    # Its container, the stack's health, and Redis's replication: nothing else.
    new = new_failures(report, baseline)
    assert new == {"startup.redis-container-starts", "startup.containers-show-healthy",
                   "redis.clustering-working"}, explained(report, new)  # fmt: skip
    assert "redis-replica is exited" in evidence_of(report, "startup.redis-container-starts")


@pytest.fixture
def ingress_stopped() -> Iterator[None]:
    docker_actions.stop_service("ingress")
    try:
        yield
    finally:
        docker_actions.start_service("ingress")
        assert wait_baseline()["ok"]


#: What Ingress stopped (its RTMP and WHIP ports closed) turns to fail, and why.
INGRESS_STOPPED = {
    # the closed ports, and their parent item
    "infra.firewall-rules-configured", "infra.firewall-rules-configured.port-1935",
    "infra.firewall-rules-configured.port-8080",
    # its container, and the stack's health
    "startup.ingress-container-starts", "startup.containers-show-healthy",
    # Caddy's whip. route has no upstream now
    "caddy.sni-routing-correct", "caddy.upstream-connections-successful",
    # every Ingress item: nothing takes a stream
    "ingress-egress.rtmp-streams-accepted", "ingress-egress.stream-forwarding-livekit",
    "ingress-egress.media-streaming-working", "ingress-egress.ice-candidate-handling",
    "ingress-egress.sdp-negotiation-successful", "ingress-egress.whip-endpoint-accessible",
    # Prometheus's ingress target is down
    "monitoring.prometheus-metrics-endpoint",
}  # fmt: skip


def test_a_closed_port_fails_exactly_the_items_behind_it(
        tmp_path: Path, baseline: set[str], ingress_stopped: None) -> None:  # fmt: skip
    _, report, _ = validate(tmp_path)
    new = new_failures(report, baseline)
    assert new == INGRESS_STOPPED, explained(report, new - INGRESS_STOPPED)
    assert "1935" in evidence_of(report, "infra.firewall-rules-configured.port-1935")
    # Nothing refused the wrong stream key, since nothing answered: no pass, and no verdict
    # on authentication either.
    auth = "ingress-egress.authentication-working"
    assert statuses(report)[auth] == "error", explained(report, {auth})
    assert "nothing learned of authentication" in evidence_of(report, auth)


@pytest.fixture
def expiring(settings: Settings) -> Iterator[str]:
    name = f"lk.{settings.domain}"
    tls_actions.swap_certificate(name=name, kind="expiring", days=20)
    try:
        yield name
    finally:
        tls_actions.restore_certificate(name)


def test_an_expiring_certificate_fails_exactly_the_expiry_item(
        tmp_path: Path, baseline: set[str], expiring: str) -> None:  # fmt: skip
    _, report, _ = validate(tmp_path)
    new = new_failures(report, baseline)
    assert new == {"tls.certificates-not-expiring"}, explained(report, new)
    evidence = next(e for e in report["items"] if e["id"] == "tls.certificates-not-expiring")
    assert expiring in evidence["evidence"]


def _caddy_reload() -> None:
    done = subprocess.run(["docker", "exec", "lkchaos-caddy-1", "caddy", "reload", "--config",
                           "/etc/caddy/Caddyfile", "--adapter", "caddyfile"],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture
def weak_tls(settings: Settings) -> Iterator[str]:
    """lk.'s TLS capped at 1.2 with CBC suites allowed (Caddy cannot go below TLS 1.2): the
    stack's Caddyfile edited and reloaded, then restored."""
    path = Path(settings.state_dir) / "config" / "Caddyfile"
    original = path.read_text()
    name = f"lk.{settings.domain}"
    line = f"\ttls /certs/{name}.crt /certs/{name}.key\n"
    assert line in original, original[:400]
    suites = ("TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA "
              "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256")
    path.write_text(original.replace(line, line.rstrip("\n") + " {\n\t\tprotocols tls1.2 "
                                     f"tls1.2\n\t\tciphers {suites}\n\t}}\n"))
    try:
        _caddy_reload()
        _serves_weak_tls(settings, name, weak=True)
        yield name
    finally:
        path.write_text(original)
        _caddy_reload()
        _serves_weak_tls(settings, name, weak=False)


def _serves_weak_tls(settings: Settings, name: str, weak: bool, within_s: float = 15.0,
                     in_a_row: int = 5) -> None:  # fmt: skip
    """Wait until ``name``'s TLS is steadily as the fixture set it (``weak``: a CBC suite
    accepted alone and TLS 1.3 refused; else the reverse) on ``in_a_row`` handshakes in a
    row, as the certificate actions wait for theirs: a handshake answered just after a
    reload says nothing of which configuration answered it."""
    from lkchaos.tls import client

    deadline, row = time.monotonic() + within_s, 0
    while row < in_a_row:
        cbc = client.handshake(settings.tls_address, name, version="TLSv1.2",
                               ciphers="ECDHE-ECDSA-AES128-SHA:@SECLEVEL=0", timeout=2)
        tls13 = client.handshake(settings.tls_address, name, version="TLSv1.3", timeout=2)
        seen = {"cbc": cbc.outcome, "tls1.3": tls13.outcome}
        row = row + 1 if (cbc.ok, tls13.ok) == (weak, not weak) else 0
        assert time.monotonic() < deadline, (
            f"{name} not steadily {'weak' if weak else 'restored'} after Caddy's reload: {seen}")
        time.sleep(0.05)


def test_a_weak_tls_setting_fails_exactly_the_cipher_items(
        tmp_path: Path, baseline: set[str], weak_tls: str) -> None:  # fmt: skip
    _, report, _ = validate(tmp_path)
    new = new_failures(report, baseline)
    weak = next(e for e in report["items"] if e["id"] == "tls.weak-cipher-suites")
    assert new == {"tls.strong-cipher-suites", "tls.weak-cipher-suites"}, (
        f"{explained(report, new)}\n{weak['data']}")  # fmt: skip
    evidence = next(e for e in report["items"] if e["id"] == "tls.strong-cipher-suites")
    # The CBC suite allowed, by its OpenSSL name.
    assert f"{weak_tls}: accepts weak TLS 1.2 suites" in evidence["evidence"], evidence
    assert "AES128-SHA" in evidence["evidence"], evidence


def _recreate_nodes(extra: list[str]) -> None:
    from lkchaos.stack.compose import Compose
    from lkchaos.stack.layout import StackPaths

    compose = Compose(StackPaths.discover())
    argv = compose.argv(*extra, "up", "-d", "--no-deps", "--force-recreate",
                        "livekit-1", "livekit-2")  # fmt: skip
    done = subprocess.run(argv, env={**os.environ, **compose.env()}, capture_output=True,
                          text=True, timeout=180, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture
def development_key_accepted(tmp_path: Path) -> Iterator[None]:
    """Both LiveKit nodes accept LiveKit's development key pair beside the stack's own (a
    deployment that kept its quick-start keys): an override file adds it to LIVEKIT_KEYS."""
    override = tmp_path / "dev-key.yml"
    # The stack's own pair by reference (Compose interpolates it): no secret in a file.
    keys = "${LIVEKIT_API_KEY}: ${LIVEKIT_API_SECRET}\ndevkey: secret"
    override.write_text("services:\n" + "".join(
        f"  {node}:\n    environment:\n      LIVEKIT_KEYS: {json.dumps(keys)}\n"
        for node in ("livekit-1", "livekit-2")))
    _recreate_nodes(["-f", str(override)])  # after the stack's own compose file
    try:
        assert wait_baseline()["ok"]
        yield
    finally:
        _recreate_nodes([])
        assert wait_baseline()["ok"]


def test_a_token_the_server_should_refuse_fails_exactly_the_key_item(
        tmp_path: Path, baseline: set[str], development_key_accepted: None) -> None:  # fmt: skip
    _, report, _ = validate(tmp_path)
    # The key item, and the nodes' own complaint about the key pair, logged as they start.
    new = new_failures(report, baseline)
    assert new == {"auth.api-keys-validated", "startup.configuration-files-loaded"}, (
        explained(report, new))
    evidence = next(e for e in report["items"] if e["id"] == "auth.api-keys-validated")
    assert "(development key)" in evidence["evidence"], evidence
    assert "a configuration error in the logs of livekit-1, livekit-2" in evidence_of(
        report, "startup.configuration-files-loaded")


def test_the_probe_holds_on_the_healthy_stack() -> None:
    from lkchaos.validate.probes import checklist

    held = checklist(only=["infra.minimum-8gb-ram", "infra.docker-docker-compose",
                           "infra.log-rotation-configured", "startup.containers-show-healthy"])
    assert held["ok"], held["failed"] + held["errors"]
    assert [i["status"] for i in held["items"]] == ["pass"] * 4
    if MACHINE_SHORTFALLS["infra.minimum-4-cpu"]:
        short = checklist(only=["infra.minimum-4-cpu"])
        assert short["ok"] is False and [f["id"] for f in short["failed"]] == [
            "infra.minimum-4-cpu"]


def test_the_checklist_is_a_steady_state_in_chaos_run(tmp_path: Path) -> None:
    """The probe as a user declares it: the steady state of an experiment run by `chaos
    run`, checked before and after its method."""
    held = ["infra.docker-docker-compose", "startup.containers-show-healthy",
            "tls.certificates-not-expiring"]  # fmt: skip
    experiment = {
        "version": "1.0.0", "title": "The checklist holds around a read-only method",
        "description": "The validation checklist as steady state.",
        "steady-state-hypothesis": {"title": "the checklist holds", "probes": [{
            "type": "probe", "name": "checklist-holds",
            "tolerance": {"type": "jsonpath", "path": "$.ok", "expect": True},
            "provider": {"type": "python", "module": "lkchaos.validate.probes",
                         "func": "checklist", "arguments": {"only": held}}}]},
        "method": [{"type": "probe", "name": "nodes-ready", "provider": {
            "type": "python", "module": "lkchaos.livekit.probes", "func": "nodes_health"}}],
    }  # fmt: skip
    path, journal_path = tmp_path / "checklist.json", tmp_path / "journal.json"
    path.write_text(json.dumps(experiment))
    chaos = str(Path(sys.executable).parent / "chaos")
    done = subprocess.run([chaos, "--no-version-check", "run", "--journal-path",
                           str(journal_path), str(path)], capture_output=True, text=True,
                          timeout=300, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    journal = json.loads(journal_path.read_text())
    assert journal["status"] == "completed" and not journal["deviated"]
    for phase in ("before", "after"):
        [probe] = journal["steady_states"][phase]["probes"]
        assert probe["tolerance_met"] is True
        assert [i["id"] for i in probe["output"]["items"]] == held
