"""TURN over TLS through Caddy's 443 carries a call when the caller can use nothing else.

The caller (the stack's prober) is left with DNS and TCP to port 443 only: every other UDP
packet and every TCP connection to LiveKit's ICE/TCP port (7881) is dropped in its network
namespace. ICE must then relay through `turns:turn.chaos.test:443`, which Caddy's layer-4 app
terminates and proxies to LiveKit's TURN. The round trip's media path says which way the
media went.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lkchaos.docker.client import docker_session, runtime_container
from lkchaos.network import sidecar
from lkchaos.settings import Settings
from lkchaos.voice.probes import voice_round_trip

#: Loopback (Docker's embedded DNS answers there), DNS and TCP stay; every other UDP packet,
#: ICE/TCP to LiveKit (7881) and TURN over TCP (3478) go.
ONLY_TLS = """
set -e
iptables -w -N LKCHAOS_ONLY_TLS
iptables -w -A LKCHAOS_ONLY_TLS -o lo -j RETURN
iptables -w -A LKCHAOS_ONLY_TLS -i lo -j RETURN
iptables -w -A LKCHAOS_ONLY_TLS -p udp --dport 53 -j RETURN
iptables -w -A LKCHAOS_ONLY_TLS -p udp --sport 53 -j RETURN
iptables -w -A LKCHAOS_ONLY_TLS -p udp -j DROP
iptables -w -A LKCHAOS_ONLY_TLS -p tcp --dport 7881 -j DROP
iptables -w -A LKCHAOS_ONLY_TLS -p tcp --dport 3478 -j DROP
iptables -w -I OUTPUT -j LKCHAOS_ONLY_TLS
iptables -w -I INPUT -j LKCHAOS_ONLY_TLS
"""
UNDO = """
iptables -w -D OUTPUT -j LKCHAOS_ONLY_TLS 2>/dev/null || true
iptables -w -D INPUT -j LKCHAOS_ONLY_TLS 2>/dev/null || true
iptables -w -F LKCHAOS_ONLY_TLS 2>/dev/null || true
iptables -w -X LKCHAOS_ONLY_TLS 2>/dev/null || true
"""


@pytest.fixture
def caller_with_only_tls(settings: Settings) -> Iterator[None]:
    with docker_session() as docker:
        prober = runtime_container(docker, settings, "prober")
        sidecar.ensure_image(docker)
        sidecar.run(docker, prober, UNDO + ONLY_TLS)
        try:
            yield
        finally:
            sidecar.run(docker, prober, UNDO)


def test_without_the_block_the_call_goes_direct_over_udp() -> None:
    result = voice_round_trip(timeout=45)
    assert result["ok"], result
    assert result["media_path"]["publisher"]["path"] == "udp", result["media_path"]
