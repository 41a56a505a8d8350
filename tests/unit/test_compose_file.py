"""docker-compose.chaos.yml agrees with lkchaos.stack.layout (names, ports, versions, addresses)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from lkchaos.stack import layout

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.chaos.yml").read_text())
    assert data["name"] == layout.PROJECT
    return dict(data["services"])


def test_services_match_the_layout(services: dict[str, Any]) -> None:
    assert set(services) == set(layout.SERVICES)


def test_published_ports_match_the_layout_and_stay_on_loopback(services: dict[str, Any]) -> None:
    published = set()
    for name, svc in services.items():
        for spec in svc.get("ports", []):
            host_ip, host_port, rest = spec.split(":")
            assert host_ip == "127.0.0.1", f"{name} publishes {spec} beyond loopback"
            published.add((name, int(rest.split("/")[0]), int(host_port)))
    assert {(s, c, h) for s, c, h in layout.HOST_PORTS.values()} <= published


def test_fixed_addresses_match_the_layout(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        address = svc["networks"]["chaos"]["ipv4_address"]
        assert address.endswith(f"}}.{layout.HOST_OCTET[name]}"), (name, address)


def test_upstream_images_carry_the_pinned_versions(services: dict[str, Any]) -> None:
    assert services["livekit-1"]["image"] == f"livekit/livekit-server:{layout.LIVEKIT_VERSION}"
    assert services["toxiproxy"]["image"].endswith(":" + layout.TOXIPROXY_VERSION.lstrip("v"))
    assert services["caddy"]["image"] == "caddy:" + layout.CADDY_VERSION.lstrip("v")


def test_every_service_has_a_healthcheck(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        assert svc.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


def test_the_system_restarts_as_production_does_and_the_harness_on_failure(
    services: dict[str, Any],
) -> None:
    for name, svc in services.items():
        expected = "on-failure" if name == "prober" else "unless-stopped"
        assert svc.get("restart") == expected, (name, svc.get("restart"))


def test_the_agent_reaches_livekit_through_the_load_balancer_not_one_node(
    services: dict[str, Any],
) -> None:
    agent = services["agent"]
    assert agent["environment"]["LIVEKIT_URL"] == "ws://toxiproxy:17880"
    assert layout.TOXIPROXY_LINKS["agent_livekit"][1] == "caddy:7880"
    assert "livekit-1" not in agent["depends_on"]


def test_every_scraped_service_is_in_the_stack() -> None:
    from lkchaos.stack import monitoring

    for targets, _ in monitoring.JOBS.values():
        for target in targets:
            host = target.split(":")[0]
            assert host == "localhost" or host in layout.SERVICES, target
    for instance in monitoring.REDIS_INSTANCES:
        assert instance.split(":")[0] in layout.SERVICES
