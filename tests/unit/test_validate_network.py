"""The network checks against real local servers: a DNS server (dnspython on UDP), a STUN
server, TCP listeners, and nmap scanning this machine's loopback; and the port map for the
reference stack and for a user's target."""

from __future__ import annotations

import json
import random
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from lkchaos.settings import Settings
from lkchaos.stack import layout, render
from lkchaos.validate.checks import network
from lkchaos.validate.model import CHECKS, Context
from tests.unit.local_servers import LocalDNS


class StunServer:
    """Answers STUN binding requests on UDP with the sender's address."""

    def __init__(self) -> None:
        from tests.unit.test_validate_tls import _stun_reply

        self.reply = _stun_reply
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                data, peer = self.sock.recvfrom(2048)
                self.sock.sendto(self.reply(data, peer), peer)
            except OSError:
                return

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def dns_server() -> Iterator[LocalDNS]:
    server = LocalDNS({"lk.example.test": "192.0.2.10", "turn.example.test": "192.0.2.10"})
    yield server
    server.close()


def _user(**values: object) -> Settings:
    base: dict[str, object] = {
        "tls_address": "127.0.0.1:1", "livekit_url": "wss://lk.example.test",
        "tls_names": ("lk.example.test", "turn.example.test", "whip.example.test"),
        "livekit_node_urls": ("http://10.0.0.11:7880", "http://10.0.0.12:7880"),
        "ingress_rtmp_url": "", "ingress_whip_url": "", "dns_server": "",
        "compose_project": "mine"}  # fmt: skip
    return Settings(**{**base, **values})  # type: ignore[arg-type]


def _at(mapped: dict[str, list[network.Endpoint] | str], child: str) -> list[network.Endpoint]:
    where = mapped[child]
    assert not isinstance(where, str), where
    return where


def test_every_dns_child_and_port_child_has_a_check() -> None:
    for child in ("lk", "lk-turn", "lk-whip"):
        assert f"infra.dns-records-configured.{child}" in CHECKS
    for child in ("port-443", "port-7880", "port-7881", "port-5349", "port-3478", "port-1935",
                  "port-8080", "ports-50000"):  # fmt: skip
        assert f"infra.firewall-rules-configured.{child}" in CHECKS
    assert "infra.firewall-rules-configured" not in CHECKS  # the runner rolls the children up


def test_dns_children_resolve_through_the_targets_resolver(dns_server: LocalDNS) -> None:
    ctx = Context(_user(dns_server=dns_server.address))
    lk = CHECKS["infra.dns-records-configured.lk"](ctx)
    assert lk.status == "pass"
    assert lk.data["addresses"] == ["192.0.2.10"]
    whip = CHECKS["infra.dns-records-configured.lk-whip"](ctx)
    assert whip.status == "fail"
    assert "NXDOMAIN" in whip.evidence
    none = CHECKS["infra.dns-records-configured.lk-whip"](
        Context(_user(dns_server=dns_server.address, tls_names=("lk.example.test",))))
    assert none.status == "n/a"


def _reference(state_dir: Path) -> Settings:
    """Settings of the reference stack, whose facts (as `lkchaos stack up` writes them) are
    in ``state_dir``."""
    facts = render.deployment_facts(render.StackConfig())
    (state_dir / render.FACTS_FILE).write_text(json.dumps(facts))
    return Settings(ca_file="", state_dir=str(state_dir))


def test_the_reference_stack_port_map_names_its_published_ports_and_container_addresses(
        tmp_path: Path) -> None:  # fmt: skip
    settings = _reference(tmp_path)
    assert network.is_reference(settings)
    assert not network.is_reference(Settings(ca_file="", state_dir=str(tmp_path / "none")))
    mapped = network.port_map(settings)
    https = f"127.0.0.1:{layout.host_port('caddy_https')}"
    assert {e.address for e in _at(mapped, "port-443")} == {https}
    udp = [e.address for e in _at(mapped, "port-3478")]
    assert udp == ["172.29.77.11:3478", "172.29.77.12:3478"]
    assert [e.kind for e in _at(mapped, "port-5349")] == ["turn-tls"]
    assert [e.port for e in _at(mapped, "port-1935")] == [layout.host_port("ingress_rtmp")]
    assert [e.port for e in _at(mapped, "ports-50000")] == [7882, 7882]


def test_a_user_target_maps_ports_to_its_names_and_says_what_it_lacks() -> None:
    mapped = network.port_map(_user())
    assert not network.is_reference(_user())
    assert mapped["port-1935"] == "the target has no Ingress RTMP URL"
    assert [e.address for e in _at(mapped, "port-3478")] == ["turn.example.test:3478"]
    assert [e.address for e in _at(mapped, "port-7881")] == ["10.0.0.11:7881", "10.0.0.12:7881"]
    no_turn = network.port_map(_user(tls_names=("lk.example.test",)))
    assert no_turn["port-3478"] == no_turn["port-5349"] == "the target has no TURN name"
    finding = CHECKS["infra.firewall-rules-configured.port-1935"](Context(_user()))
    assert finding.status == "n/a"


def test_the_targets_own_rtc_tcp_and_turn_udp_ports_are_checked_or_not_applicable() -> None:
    # LiveKit's rtc.tcp_port and turn.udp_port as the deployment sets them, not the defaults.
    moved = network.port_map(_user(livekit_rtc_tcp_port=7801, livekit_turn_udp_port=3480))
    assert [e.address for e in _at(moved, "port-7881")] == ["10.0.0.11:7801", "10.0.0.12:7801"]
    assert [e.address for e in _at(moved, "port-3478")] == ["turn.example.test:3480"]
    off = network.port_map(_user(livekit_rtc_tcp_port=0, livekit_turn_udp_port=0))
    assert off["port-7881"] == "LiveKit's TCP fallback is off (livekit.rtc_tcp_port 0)"
    assert off["port-3478"] == "LiveKit's TURN over UDP is off (livekit.turn_udp_port 0)"
    settings = _user(livekit_rtc_tcp_port=0, livekit_turn_udp_port=0)
    for child in ("port-7881", "port-3478"):
        finding = CHECKS[f"infra.firewall-rules-configured.{child}"](Context(settings))
        assert finding.status == "n/a", finding.evidence


def test_tcp_ports_are_checked_by_connecting() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    try:
        ctx = Context(_user(ingress_whip_url=f"http://127.0.0.1:{port}/w"), timeout_s=3)
        assert CHECKS["infra.firewall-rules-configured.port-8080"](ctx).status == "pass"
    finally:
        listener.close()
    closed = CHECKS["infra.firewall-rules-configured.port-8080"](ctx)
    assert closed.status == "fail"
    assert "ConnectionRefused" in closed.evidence


def test_stun_binding_is_a_real_exchange() -> None:
    server = StunServer()
    try:
        mapped = network.stun_udp("127.0.0.1", server.port, timeout=2)
        assert mapped is not None and mapped.startswith("127.0.0.1:")
    finally:
        server.close()
    assert network.stun_udp("127.0.0.1", server.port, timeout=0.5) is None


def test_stun_answers_to_another_transaction_are_not_taken() -> None:
    from tests.unit.test_validate_tls import _stun_reply

    request, txid = network.stun_request()
    reply = _stun_reply(request, ("192.0.2.7", 4242))
    assert network.stun_mapped(reply, txid) == "192.0.2.7:4242"
    assert network.stun_mapped(reply, b"x" * 12) is None
    assert network.stun_mapped(b"HTTP/1.1 200 OK\r\n\r\n", txid) is None


def _free_run(width: int) -> tuple[int, list[socket.socket]]:
    """``width`` consecutive free TCP ports, listening."""
    for _ in range(50):
        base = random.randint(40000, 55000)
        socks = []
        try:
            for port in range(base, base + width):
                socks.append(socket.create_server(("127.0.0.1", port)))
            return base, socks
        except OSError:
            for sock in socks:
                sock.close()
    raise RuntimeError("no free run of ports")


@pytest.mark.skipif(shutil.which("nmap") is None, reason="needs nmap (scripts/bootstrap.sh)")
def test_the_port_scan_lists_open_ports_not_expected() -> None:
    base, socks = _free_run(3)
    try:
        # Expected: the node's HTTP port (base) and the TLS proxy (base + 2); base + 1 is not.
        # No RTC TCP port (7881 by default): the scan spans the expected ports, and this
        # machine's ports between 7881 and the run are other tests' servers, which a connect
        # scan would reach (a server counting its connections would count nmap's).
        ctx = Context(_user(livekit_node_urls=(f"http://127.0.0.1:{base}",),
                            tls_address=f"127.0.0.1:{base + 2}", livekit_rtc_tcp_port=0),
                      timeout_s=30)  # fmt: skip
        scan = CHECKS["vuln.port-scan-results"](ctx)
        assert scan.data["ports"] == f"1-1024,{base}-{base + 2}", scan.data
        assert base + 1 in scan.data["unexpected"]["127.0.0.1"], scan.evidence
        assert base not in scan.data["unexpected"]["127.0.0.1"]
        assert {base, base + 1, base + 2} <= set(scan.data["open"]["127.0.0.1"])
        assert scan.status == "warn"
        exposed = CHECKS["vuln.unnecessary-services-exposed"](ctx)
        assert exposed.status == "warn"  # loopback: shared with this machine's own services
        assert str(base + 1) in exposed.evidence
    finally:
        for sock in socks:
            sock.close()


def test_nmap_missing_is_an_error_that_says_what_to_install(
        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setattr("lkchaos.validate.checks.network.shutil.which", lambda _: None)
    with pytest.raises(RuntimeError, match="Debian package nmap"):
        network.nmap_scan(["127.0.0.1"], "1-10", 5)


def test_connectivity_needs_every_name_resolved_and_answering_tls(
        dns_server: LocalDNS, tmp_path: Path) -> None:  # fmt: skip
    from lkchaos import certs
    from tests.unit.test_validate_tls import ProxyServer

    ca = certs.make_ca()
    names = ["lk.example.test", "turn.example.test"]
    leaf = certs.make_leaf(ca, names)
    certs.write_pair(leaf, tmp_path / "l.crt", tmp_path / "l.key")
    server = ProxyServer(tmp_path / "l.crt", tmp_path / "l.key")
    try:
        ctx = Context(_user(dns_server=dns_server.address, tls_address=server.address,
                            tls_names=tuple(names)))  # fmt: skip
        finding = network.connectivity(ctx)
        assert finding.status == "pass", finding.evidence
        assert [row["addresses"] for row in finding.data["names"]] == [["192.0.2.10"]] * 2
        missing = Context(_user(dns_server=dns_server.address, tls_address=server.address))
        failed = network.connectivity(missing)
        assert failed.status == "fail"
        assert "whip.example.test (no address)" in failed.evidence
    finally:
        server.close()
