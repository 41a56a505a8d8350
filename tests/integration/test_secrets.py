"""The LiveKit API secret appears in no file an integration run produced and in no container's
log: not in a journal, the ledger, the audit log, a snapshot, a Chaos Toolkit log, nor any
service's output. Runs last (see conftest), after every other integration test.

The one file that holds the secret by design is the stack's ``stack.env`` (0600), which the
stack is started from; it is checked for its mode instead.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from lkchaos.docker.client import project_containers
from lkchaos.safety.secrets import scan
from lkchaos.settings import Settings
from lkchaos.stack.compose import docker_client

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.order_last
def test_the_api_secret_is_in_no_output(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    secret = settings.livekit_api_secret
    assert len(secret) >= 32
    state = Path(settings.state_dir)
    env_file = state / "stack.env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    for key in (state / "certs").glob("*.key"):
        assert stat.S_IMODE(key.stat().st_mode) & 0o077 == 0, key

    produced = [p for p in state.rglob("*") if p.is_file() and p != env_file]
    produced += list(ROOT.glob("*.log"))
    produced.append(tmp_path_factory.getbasetemp())  # every test's journals and files
    client = docker_client()
    try:
        for name, container in project_containers(client, settings.compose_project).items():
            log = tmp_path / f"{name}.log"
            log.write_bytes(container.logs(stdout=True, stderr=True))
            produced.append(log)
    finally:
        client.close()
    assert len(produced) > 10
    findings = [str(f) for f in scan(produced, secret)]
    assert findings == [], findings
