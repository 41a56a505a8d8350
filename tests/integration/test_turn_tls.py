"""TURN over TLS through Caddy's :443 carries a call when the caller has no UDP at all.

A caller in its own container on the stack network, every UDP packet in and out dropped by
iptables in its namespace, and ICE restricted to TURN relays (``stack/tools/turncaller``, on
LiveKit's Go SDK): the only way its media can reach LiveKit is the TURN/TLS server LiveKit
advertises, ``turns:turn.<domain>:443``, which Caddy's layer 4 app routes by SNI to LiveKit's
TURN (``external_tls``). The call must connect both ways, the agent must join, its audio
packets must reach the caller, and the selected pairs must be TLS relays from that URL.
The same caller with TURN refused (the TLS name routed nowhere) must fail: the check is able
to see a call that could not be relayed.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import docker
import pytest

from lkchaos.network import sidecar
from lkchaos.settings import Settings
from lkchaos.stack import build

ROOT = Path(__file__).resolve().parents[2]
#: Every UDP packet dropped in the caller's namespace; names come from /etc/hosts (--add-host),
#: so that no DNS over UDP is needed either.
NO_UDP = "iptables -A OUTPUT -p udp -j DROP && iptables -A INPUT -p udp -j DROP"


def _caddy(client: Any, project: str) -> tuple[str, str]:
    """(network name, IP address) of the stack's Caddy container."""
    found = client.containers.list(filters={"label": [
        f"com.docker.compose.project={project}", "com.docker.compose.service=caddy"]})
    assert found, "the reference stack's Caddy is not running: start it with `lkchaos stack up`"
    networks = found[0].attrs["NetworkSettings"]["Networks"]
    name, net = next(iter(networks.items()))
    return name, net["IPAddress"]


def _call(room: str, hosts: dict[str, str]) -> dict[str, Any]:
    settings = Settings.load()
    key, secret = settings.require_keys()
    binary = build.build_tool("turncaller", lambda line: None)
    client = docker.from_env()
    network, _ = _caddy(client, settings.compose_project)
    command = [
        "docker", "run", "--rm", "--network", network, "--cap-add", "NET_ADMIN",
        *[arg for name, ip in hosts.items() for arg in ("--add-host", f"{name}:{ip}")],
        "-v", f"{binary}:/turncaller:ro", "-v", f"{settings.ca_file}:/ca.crt:ro",
        "-e", "SSL_CERT_FILE=/ca.crt", "-e", f"LIVEKIT_API_KEY={key}",
        "-e", f"LIVEKIT_API_SECRET={secret}",
        sidecar.ensure_image(client),
        "sh", "-c",
        f"{NO_UDP} && exec /turncaller --url wss://lk.{settings.domain} "
        '--api-key "$LIVEKIT_API_KEY" --api-secret "$LIVEKIT_API_SECRET" '
        f"--room {room} --agent-name {settings.agent_name} --relay-only --timeout 40s",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120,
                          env={**os.environ})  # fmt: skip
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, f"the caller printed no report (exit {done.returncode}): {done.stderr[-2000:]}"
    report: dict[str, Any] = json.loads(lines[-1])
    return report


@pytest.fixture(scope="module")
def names() -> dict[str, str]:
    settings = Settings.load()
    _, caddy_ip = _caddy(docker.from_env(), settings.compose_project)
    return {f"lk.{settings.domain}": caddy_ip, f"turn.{settings.domain}": caddy_ip}


def test_a_caller_without_udp_is_relayed_over_turn_tls_on_443(names: dict[str, str]) -> None:
    report = _call("lkchaos-turn-tls", names)
    assert report["ok"], report
    assert report["agent_joined"] and report["packets_from_agent"] > 0, report
    domain = Settings.load().domain
    for side in ("publisher", "subscriber"):
        pair = report[side]
        assert pair is not None, f"no selected pair on the {side}: {report}"
        assert pair["candidate_type"] == "relay" and pair["relay_protocol"] == "tls", pair
        assert pair["url"].startswith(f"turns:turn.{domain}:443"), pair


def test_the_same_caller_fails_when_turn_cannot_be_reached(names: dict[str, str]) -> None:
    # turn.<domain> pointed at an address where nothing listens: no relay, and no UDP.
    unreachable = {**names, f"turn.{Settings.load().domain}": "127.0.0.1"}
    report = _call("lkchaos-turn-none", unreachable)
    assert not report["ok"], report
    assert report["packets_from_agent"] == 0, report
