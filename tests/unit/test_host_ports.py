"""The ports the deployments publish on the host are outside the kernel's ephemeral range:
there, any outgoing connection's local end can hold the port when the deployment starts, and
the engine refuses it ("bind: address already in use")."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILES = [ROOT / "docker-compose.chaos.yml", ROOT / "stack" / "second" / "compose.yaml"]
#: Linux's default ``net.ipv4.ip_local_port_range``.
EPHEMERAL = range(32768, 61000)


def published(compose: Path) -> dict[str, list[int]]:
    """Service -> the host ports it publishes (``[ip:]host:container[/proto]`` entries)."""
    services = yaml.safe_load(compose.read_text())["services"]
    found: dict[str, list[int]] = {}
    for name, service in services.items():
        for entry in service.get("ports") or []:
            parts = str(entry).split("/")[0].split(":")
            assert len(parts) >= 2, f"{compose.name}: {name} publishes {entry!r} on a random port"
            found.setdefault(name, []).append(int(parts[-2]))
    return found


@pytest.mark.parametrize("compose", COMPOSE_FILES, ids=lambda p: p.name)
def test_no_published_port_is_ephemeral(compose: Path) -> None:
    ports = published(compose)
    assert ports, f"{compose} publishes no port"
    ephemeral = {name: [p for p in found if p in EPHEMERAL] for name, found in ports.items()}
    assert not {n: p for n, p in ephemeral.items() if p}, ephemeral


def test_the_two_deployments_share_no_host_port() -> None:
    first, second = ({p for found in published(c).values() for p in found}
                     for c in COMPOSE_FILES)  # fmt: skip
    assert not first & second
