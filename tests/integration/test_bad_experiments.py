"""Every bad experiment of tests/bad_experiments/ is refused by `chaos run` on the live stack,
names its problem, and leaves the deployment exactly as it was.

After each case, checked directly on the backends: Toxiproxy's API (no lkchaos toxic, every
proxy enabled), every container's state and start time (nothing killed, paused or
restarted), the resolver's answer for every name of its hosts file, the certificate Caddy
serves for each of its names, the fault ledger (empty) and the audit log (no fault
injected). The containers' iptables rules and qdiscs are listed once, after all cases: every
network fault is written to the ledger and the audit log before the sidecar applies it, so a
case that left none there applied none; the listing proves it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from lkchaos.dns import client as dns
from lkchaos.docker.client import project_containers
from lkchaos.network import sidecar
from lkchaos.safety import audit, ledger
from lkchaos.settings import Settings
from lkchaos.stack.compose import docker_client
from lkchaos.tls import rotation

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "bad_experiments"
CHAOS = str(Path(sys.executable).parent / "chaos")
EXPECTED: dict[str, dict[str, Any]] = json.loads((CORPUS / "expected.json").read_text())


def _deployment(settings: Settings) -> dict[str, Any]:
    """What a bad experiment must not change, read from each backend."""
    toxiproxy = httpx.get(f"{settings.toxiproxy_url}/proxies", timeout=5).json()
    client = docker_client()
    try:
        containers = {
            name: (c.attrs["State"]["Status"], c.attrs["State"]["StartedAt"])
            for name, c in project_containers(client, settings.compose_project).items()
        }
        caddy = project_containers(client, settings.compose_project)["caddy"]
        names = sorted(rotation.caddy_sites(caddy))
        found = dns.resolver(client, settings)
        hosts = sorted(dns.hosts_names(found.hosts.read_text()))
    finally:
        client.close()
    return {
        "toxics": {name: p.get("toxics") for name, p in toxiproxy.items()},
        "enabled": {name: p.get("enabled") for name, p in toxiproxy.items()},
        "containers": containers,
        "answers": {n: (a.rcode, sorted(a.addresses)) for n in hosts
                    for a in [dns.lookup(n, settings.dns_server)]},
        "certificates": {n: rotation.served_fingerprint(settings, n) for n in names},
    }


@pytest.fixture(scope="module")
def baseline(settings: Settings) -> Iterator[dict[str, Any]]:
    before = _deployment(settings)
    assert not any(before["toxics"].values()) and all(before["enabled"].values()), before
    yield before
    # After every case: no lkchaos rule or qdisc in any running container of the project.
    client = docker_client()
    try:
        for name, container in project_containers(client, settings.compose_project).items():
            if container.status == "running" and name != "prober":
                left = sidecar.clear(client, container, delete=False)
                assert left == {"rules": [], "qdiscs": []}, (name, left)
    finally:
        client.close()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_experiment_is_refused_and_changes_nothing(
    name: str, baseline: dict[str, Any], settings: Settings, tmp_path: Path
) -> None:
    expected = EXPECTED[name]
    audit_before = len(audit.read(settings.state_dir))
    # The keys in the environment, as a user running against their own deployment has them.
    env = {**os.environ, "LIVEKIT_API_KEY": settings.livekit_api_key,
           "LIVEKIT_API_SECRET": settings.livekit_api_secret,
           "LKCHAOS_STATE_DIR": settings.state_dir}
    done = subprocess.run(
        [CHAOS, "--no-version-check", "run", "--journal-path", str(tmp_path / "journal.json"),
         str(CORPUS / name)],
        cwd=tmp_path, timeout=120, check=False, capture_output=True, text=True, env=env,
    )
    said = done.stdout + done.stderr
    journal_path = tmp_path / "journal.json"
    if journal_path.is_file():  # refused at the start of the run rather than at validation
        journal = json.loads(journal_path.read_text())
        assert journal["status"] != "completed" or journal["deviated"], journal["status"]
        assert not journal["run"], "a method activity ran"
    else:
        assert done.returncode != 0, said
    if expected["level"] != "file":
        # lkchaos names the activity and the argument; Chaos Toolkit's own validation refuses
        # a few cases first (an unknown function or module, a missing argument), naming them
        # in its own words.
        named = expected["activity"] in said and expected["contains"] in said
        text = (CORPUS / name).read_text()
        own = [f"'{word}'" for word in (expected.get("argument"), expected["activity"]) if word]
        own += [f"'{w}'" for w in ("_target", "kill_everything", "lkchaos.kubernetes.actions")
                if w in text]
        assert named or any(word in said for word in own), said
    assert ledger.pending(settings.state_dir) == []
    # Faults on this deployment only: the second deployment's tests may run meanwhile.
    injected = [e for e in audit.read(settings.state_dir)[audit_before:]
                if e.get("outcome") == "injected"
                and e.get("deployment") == ledger.current_deployment()]  # fmt: skip
    assert injected == [], injected
    assert _deployment(settings) == baseline
