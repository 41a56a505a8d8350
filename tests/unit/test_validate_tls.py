"""The TLS and Caddy checks against a local TLS server (Python's ssl) that routes by SNI as
the target's proxy does: LiveKit's ``OK`` on the lk name, a STUN server on the TURN name, a
404 on the WHIP name. Each certificate or protocol problem is served for real and must turn
exactly its items."""

from __future__ import annotations

import datetime as dt
import re
import socket
import ssl
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from lkchaos import certs
from lkchaos.settings import Settings
from lkchaos.tls import client as tls_client
from lkchaos.validate.checks import caddy, network
from lkchaos.validate.checks import tls as tls_checks
from lkchaos.validate.model import Context
from tests.unit.local_servers import (
    Listener,
    TLSListener,
    configured,
    reset_after_hello,
    server_context,
)

LK, TURN, WHIP = "lk.example.test", "turn.example.test", "whip.example.test"
NAMES = (LK, TURN, WHIP)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _write(tmp: Path, stem: str, pair: certs.Issuer, chain: tuple[x509.Certificate, ...] = ()
           ) -> tuple[Path, Path]:  # fmt: skip
    cert, key = tmp / f"{stem}.crt", tmp / f"{stem}.key"
    cert.write_bytes(b"".join(certs.cert_pem(c) for c in (pair.cert, *chain)))
    key.write_bytes(certs.key_pem(pair.key))
    return cert, key


def _intermediate(root: certs.Issuer) -> certs.Issuer:
    """A CA signed by ``root`` (whose own CA may sign one more level)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test intermediate CA")])
    start = _now() - dt.timedelta(hours=1)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(root.cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(root.key, hashes.SHA256()))  # fmt: skip
    return certs.Issuer(cert, key)


def _root_with_depth() -> certs.Issuer:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test root CA")])
    start = _now() - dt.timedelta(hours=1)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .sign(key, hashes.SHA256()))  # fmt: skip
    return certs.Issuer(cert, key)


def _rsa_leaf(issuer: certs.Issuer, names: tuple[str, ...], tmp: Path) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    start = _now() - dt.timedelta(hours=1)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(issuer.cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start)
            .not_valid_after(start + dt.timedelta(days=90))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
                           critical=False)
            .sign(issuer.key, hashes.SHA256()))  # fmt: skip
    cert_path, key_path = tmp / "rsa.crt", tmp / "rsa.key"
    cert_path.write_bytes(certs.cert_pem(cert))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    return cert_path, key_path


def _stun_reply(request: bytes, peer: tuple[str, int]) -> bytes:
    txid = request[8:20]
    port = peer[1] ^ (network.STUN_MAGIC >> 16)
    raw = bytes(b ^ m for b, m in zip(socket.inet_aton(peer[0]),
                                      struct.pack("!I", network.STUN_MAGIC), strict=True))
    attr = struct.pack("!HHBBH", 0x0020, 8, 0, 1, port) + raw
    return struct.pack("!HHI", 0x0101, len(attr), network.STUN_MAGIC) + txid + attr


class ProxyServer(TLSListener):
    """A TLS listener on 127.0.0.1 that answers by SNI: ``lk``: 200 ``OK`` with HSTS (101 to
    a WebSocket upgrade); ``turn``: STUN binding responses; ``whip``: 404. Its first
    ``silent`` connections are accepted and never answered (a proxy too busy to shake hands);
    the ``reset`` after them are cut (TCP reset) once their ClientHello is in."""

    def __init__(self, cert: Path, key: Path,
                 configure: Callable[[ssl.SSLContext], None] | None = None,
                 hsts: str = "max-age=31536000", silent: int = 0,
                 prefix: str = "", reset: int = 0) -> None:  # fmt: skip
        self.prefix = prefix  # LiveKit served under this path only (a proxy's location)
        ctx = server_context(cert, key)
        ctx.set_ciphers("ECDHE+AESGCM:ECDHE+CHACHA20")
        ctx.set_alpn_protocols(["h2", "http/1.1"])
        self.sni: dict[int, str] = {}
        ctx.sni_callback = self._remember
        self.ctx, self.hsts = configured(ctx, configure), hsts
        self.silent, self.reset, self.connections = silent, reset, 0
        self.listen()

    def handle(self, conn: socket.socket) -> None:
        self.connections += 1
        if self.connections <= self.silent:
            while conn.recv(4096):  # until the client gives up
                pass
            return
        if self.connections <= self.silent + self.reset:
            reset_after_hello(conn)
            return
        super().handle(conn)

    def _remember(self, sock: Any, name: str | None, _ctx: ssl.SSLContext) -> None:
        self.sni[id(sock)] = name or ""

    def handle_tls(self, tls: ssl.SSLSocket) -> None:
        name = self.sni.pop(id(tls), "")
        data = tls.recv(4096)
        if name == TURN:
            tls.sendall(_stun_reply(data, tls.getpeername()))
            return
        while data and b"\r\n\r\n" not in data:
            data += tls.recv(4096)
        path = data.split(b" ", 2)[1].decode() if data.count(b" ") >= 2 else ""
        if name == LK and not path.startswith(self.prefix + "/"):
            tls.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        elif name == LK and b"Upgrade: websocket" in data:
            tls.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                        b"Connection: Upgrade\r\n\r\n")
        elif name == LK:
            tls.sendall(b"HTTP/1.1 200 OK\r\nStrict-Transport-Security: "
                        + self.hsts.encode() + b"\r\nContent-Length: 2\r\n\r\nOK")
        else:
            tls.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")


@pytest.fixture
def root(tmp_path: Path) -> tuple[certs.Issuer, Path]:
    ca = certs.make_ca()
    path = tmp_path / "ca.crt"
    path.write_bytes(certs.cert_pem(ca.cert))
    return ca, path


Serve = Callable[..., tuple[ProxyServer, Context]]


@pytest.fixture
def serve(tmp_path: Path, root: tuple[certs.Issuer, Path]) -> Iterator[Serve]:
    servers: list[ProxyServer] = []

    def start(leaf: certs.Issuer | None = None, chain: tuple[x509.Certificate, ...] = (),
              files: tuple[Path, Path] | None = None, ca_file: Path | None = None,
              timeout_s: float = 5.0, url: str = f"wss://{LK}",
              **kwargs: Any) -> tuple[ProxyServer, Context]:  # fmt: skip
        if files is None:
            files = _write(tmp_path, "leaf", leaf or certs.make_leaf(root[0], list(NAMES)), chain)
        server = ProxyServer(*files, **kwargs)
        servers.append(server)
        settings = Settings(tls_address=server.address, tls_names=NAMES,
                            ca_file=str(ca_file or root[1]), livekit_url=url,
                            livekit_api_key="APItest", livekit_api_secret="s" * 40,
                            dns_server="")  # fmt: skip
        return server, Context(settings, timeout_s=timeout_s)

    yield start
    for server in servers:
        server.close()


def _status(ctx: Context, check: Callable[[Context], Any]) -> str:
    return str(check(ctx).status)


def test_a_good_configuration_passes_every_certificate_and_protocol_item(serve: Serve) -> None:
    _, ctx = serve()
    for check in (tls_checks.chains_complete, tls_checks.match_domain, tls_checks.not_expired,
                  tls_checks.not_expiring, tls_checks.intermediates, tls_checks.root_trusted,
                  tls_checks.forward_secrecy, tls_checks.strong_suites, tls_checks.weak_suites,
                  tls_checks.tls12_only):  # fmt: skip
        finding = check(ctx)
        assert finding.status == "pass", (check.__name__, finding.evidence)
        assert set(finding.data["names"]) == set(NAMES)
    assert "signed directly by the trusted CA" in tls_checks.intermediates(ctx).evidence


def test_an_expired_certificate_fails_expiry_and_chain_but_not_the_name(
        serve: Serve, root: tuple[certs.Issuer, Path]) -> None:  # fmt: skip
    end = _now() - dt.timedelta(days=2)
    leaf = certs.make_leaf(root[0], list(NAMES), end - dt.timedelta(days=90), end)
    _, ctx = serve(leaf)
    assert tls_checks.not_expired(ctx).status == "fail"
    assert tls_checks.chains_complete(ctx).status == "fail"
    assert tls_checks.not_expiring(ctx).status == "fail"
    assert tls_checks.match_domain(ctx).status == "pass"
    assert "expired" in tls_checks.not_expired(ctx).evidence


@pytest.mark.parametrize(("days", "status"), [(10, "fail"), (45, "warn"), (75, "pass")])
def test_expiry_thresholds_are_30_and_60_days(
        serve: Serve, root: tuple[certs.Issuer, Path], days: int, status: str) -> None:  # fmt: skip
    leaf = certs.make_leaf(root[0], list(NAMES), _now() - dt.timedelta(hours=1),
                           _now() + dt.timedelta(days=days))  # fmt: skip
    _, ctx = serve(leaf)
    finding = tls_checks.not_expiring(ctx)
    assert finding.status == status, finding.evidence
    assert finding.data["names"][LK]["days_left"] == pytest.approx(days, abs=0.1)
    assert tls_checks.not_expired(ctx).status == "pass"


def test_a_certificate_for_other_names_fails_the_name_match(
        serve: Serve, root: tuple[certs.Issuer, Path]) -> None:  # fmt: skip
    _, ctx = serve(certs.make_leaf(root[0], [LK, WHIP]))
    finding = tls_checks.match_domain(ctx)
    assert finding.status == "fail"
    assert finding.data["names"][TURN]["status"] == "fail"
    assert finding.data["names"][LK]["status"] == "pass"


def test_an_untrusted_issuer_fails_root_trust(serve: Serve) -> None:
    _, ctx = serve(certs.make_leaf(certs.make_ca("somebody else's CA"), list(NAMES)))
    assert tls_checks.root_trusted(ctx).status == "fail"
    assert tls_checks.chains_complete(ctx).status == "fail"
    assert tls_checks.match_domain(ctx).status == "pass"


def test_intermediates_served_pass_and_missing_ones_fail(
        serve: Serve, tmp_path: Path) -> None:  # fmt: skip
    top = _root_with_depth()
    middle = _intermediate(top)
    (tmp_path / "root.crt").write_bytes(certs.cert_pem(top.cert))
    leaf = certs.make_leaf(middle, list(NAMES))
    _, served = serve(leaf, chain=(middle.cert,), ca_file=tmp_path / "root.crt")
    finding = tls_checks.intermediates(served)
    assert finding.status == "pass", finding.evidence
    assert "test intermediate CA" in finding.evidence
    assert tls_checks.chains_complete(served).status == "pass"

    _, bare = serve(leaf, ca_file=tmp_path / "root.crt")
    assert tls_checks.intermediates(bare).status == "fail"
    assert "test intermediate CA" in tls_checks.intermediates(bare).evidence
    assert tls_checks.chains_complete(bare).status == "fail"


def _weak(ctx: ssl.SSLContext) -> None:
    ctx.minimum_version = ssl.TLSVersion.TLSv1
    ctx.set_ciphers("ALL:@SECLEVEL=0")


def test_old_protocols_and_weak_suites_are_offered_for_real_and_found(serve: Serve) -> None:
    _, ctx = serve(configure=_weak)
    old = tls_checks.tls12_only(ctx)
    assert old.status == "fail", old.evidence
    assert old.data["names"][LK]["TLSv1"] == "accepted"
    assert tls_checks.weak_suites(ctx).status == "fail"
    strong = tls_checks.strong_suites(ctx)
    assert strong.status == "fail"
    assert "ECDHE-ECDSA-AES128-SHA" in strong.evidence


def test_static_rsa_key_exchange_fails_forward_secrecy(
        serve: Serve, root: tuple[certs.Issuer, Path], tmp_path: Path) -> None:  # fmt: skip
    files = _rsa_leaf(root[0], NAMES, tmp_path)
    _, ctx = serve(files=files, configure=lambda c: c.set_ciphers("ECDHE+AESGCM:AES128-GCM-SHA256"))
    finding = tls_checks.forward_secrecy(ctx)
    assert finding.status == "fail"
    assert "AES128-GCM-SHA256" in finding.evidence
    assert tls_checks.weak_suites(ctx).status == "fail"


def test_hsts_needs_a_year_and_is_asked_of_the_http_names_only(serve: Serve) -> None:
    _, good = serve()
    finding = tls_checks.hsts(good)
    assert set(finding.data["names"]) == {LK, WHIP}
    assert finding.data["names"][LK]["status"] == "pass"
    assert finding.data["names"][WHIP]["status"] == "fail"  # the test server sends none there
    _, short = serve(hsts="max-age=86400")
    assert "under a year" in tls_checks.hsts(short).data["names"][LK]["evidence"]


def test_ssl_labs_is_manual_and_names_the_hosts(serve: Serve) -> None:
    _, ctx = serve()
    finding = tls_checks.ssl_labs(ctx)
    assert finding.status == "manual"
    assert LK in finding.evidence and "public Internet" in finding.evidence


def test_sni_routing_tells_livekit_turn_and_whip_apart(serve: Serve) -> None:
    _, ctx = serve()
    routes = {name: caddy.route(ctx, name)["upstream"] for name in NAMES}
    assert routes == {LK: "livekit", TURN: "turn", WHIP: "other"}
    assert caddy.termination(ctx).status == "pass"
    assert caddy.upstreams(ctx).status == "pass"


def test_sni_routing_fails_when_the_turn_name_reaches_http(serve: Serve) -> None:
    _, ctx = serve()
    swapped = Settings(**{**ctx.settings.__dict__, "tls_names": (LK, "turn-x.example.test")})
    route = caddy.route(Context(swapped), "turn-x.example.test")
    assert route["upstream"] == "none"
    assert "no STUN answer" in route["evidence"] or "Error" in route["evidence"]


def test_alpn_offers_h2_and_http1(serve: Serve) -> None:
    _, ctx = serve()
    finding = caddy.alpn(ctx)
    assert finding.status == "pass"
    assert finding.data["names"][LK]["offered_both"] == "h2"
    _, only_h1 = serve(configure=lambda c: c.set_alpn_protocols(["http/1.1"]))
    assert caddy.alpn(only_h1).status == "warn"


def test_websocket_upgrade_goes_through(serve: Serve) -> None:
    _, ctx = serve()
    finding = caddy.websocket(ctx)
    assert finding.status == "pass", finding.evidence
    assert finding.data["status"] == 101


def test_livekit_under_a_path_is_asked_there(serve: Serve) -> None:
    # A proxy that serves LiveKit under /livekit/ (wss://lk.example.test/livekit): its
    # clients connect to /livekit/rtc, and only /livekit/ answers LiveKit's "OK".
    _, ctx = serve(prefix="/livekit", url=f"wss://{LK}/livekit/")
    assert caddy.route(ctx, LK)["upstream"] == "livekit"
    finding = caddy.websocket(ctx)
    assert finding.status == "pass", finding.evidence
    assert "GET /livekit/rtc" in finding.evidence


class _Plain(Listener):
    """A plain HTTP server answering every request with ``answer(request)``."""

    def __init__(self, answer: Callable[[bytes], bytes]) -> None:
        self.answer = answer
        self.listen()

    def handle(self, conn: socket.socket) -> None:
        conn.sendall(self.answer(conn.recv(4096)))


def _host_header(request: bytes) -> str:
    for line in request.decode().split("\r\n"):
        if line.lower().startswith("host:"):
            return line.split(":", 1)[1].strip()
    return ""


def test_http_redirect_to_https(serve: Serve, monkeypatch: pytest.MonkeyPatch) -> None:
    _, ctx = serve()
    good = _Plain(lambda r: (f"HTTP/1.1 308 Permanent Redirect\r\nLocation: https://"
                             f"{_host_header(r)}/\r\nContent-Length: 0\r\n\r\n").encode())
    plain = _Plain(lambda r: b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK")
    try:
        monkeypatch.setattr(caddy, "http_address", lambda s: f"127.0.0.1:{good.port}")
        finding = caddy.redirect(ctx)
        assert finding.status == "pass", finding.evidence
        assert set(finding.data["names"]) == {LK, WHIP}
        monkeypatch.setattr(caddy, "http_address", lambda s: f"127.0.0.1:{plain.port}")
        assert caddy.redirect(ctx).status == "fail"
    finally:
        good.close()
        plain.close()


def test_health_checks_ask_each_node(serve: Serve) -> None:
    _, ctx = serve()
    ready = _Plain(lambda r: b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK")
    lost = _Plain(lambda r: b"HTTP/1.1 406 Not Acceptable\r\nContent-Length: 9\r\n\r\nNot Ready")
    try:
        urls = (f"http://127.0.0.1:{ready.port}", f"http://127.0.0.1:{lost.port}")
        settings = Settings(**{**ctx.settings.__dict__, "livekit_node_urls": urls})
        finding = caddy.health_checks(Context(settings))
        assert finding.status == "fail"
        assert finding.data["nodes"] == [[urls[0], 200], [urls[1], 406]]
        both = Settings(**{**ctx.settings.__dict__, "livekit_node_urls": urls[:1] * 2})
        assert caddy.health_checks(Context(both)).status == "pass"
    finally:
        ready.close()
        lost.close()


def test_load_balancing_without_node_metrics_is_manual_and_one_node_is_na(serve: Serve) -> None:
    _, ctx = serve()
    assert caddy.load_balancing(ctx).status == "manual"
    one = Settings(**{**ctx.settings.__dict__, "livekit_node_urls": ("http://127.0.0.1:1",)})
    assert caddy.load_balancing(Context(one)).status == "n/a"


def test_static_files_and_compression_say_how_they_tell(serve: Serve) -> None:
    _, ctx = serve()
    assert caddy.static_files(ctx).status == "manual"
    finding = caddy.compression(ctx)
    assert finding.status == "manual"
    assert "Content-Encoding" in finding.evidence


def test_a_name_that_cannot_be_reached_once_is_tried_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tls_checks, "RETRY_S", 0.0)
    ctx = Context(Settings(tls_names=("lk.example.test", "whip.example.test")))
    tries: dict[str, int] = {}

    def flaky(name: str) -> tuple[str, str, dict[str, Any]]:
        tries[name] = tries.get(name, 0) + 1
        if name == "lk.example.test" and tries[name] == 1:
            raise ssl.SSLError("tlsv1 alert protocol version")
        if name == "whip.example.test":
            raise ConnectionRefusedError("refused")
        return "pass", "fine", {}

    finding = tls_checks.per_name(ctx, flaky)
    lk, whip = finding.data["names"]["lk.example.test"], finding.data["names"]["whip.example.test"]
    assert lk["status"] == "pass" and "a first try failed: SSLError" in lk["evidence"]
    assert whip["status"] == "error" and "ConnectionRefusedError" in whip["evidence"]
    assert tries == {"lk.example.test": 2, "whip.example.test": 2}
    assert finding.status == "error"

    def unparsable(name: str) -> tuple[str, str, dict[str, Any]]:
        tries[name] = tries.get(name, 0) + 1
        raise ValueError("not a certificate")

    tries.clear()
    assert tls_checks.per_name(ctx, unparsable).status == "error"
    assert tries == {"lk.example.test": 1, "whip.example.test": 1}  # not a network loss


#: Every item that shakes hands with each name, and what it says of a good server.
HANDSHAKING = (tls_checks.chains_complete, tls_checks.match_domain, tls_checks.not_expired,
               tls_checks.intermediates, tls_checks.root_trusted, tls_checks.forward_secrecy,
               tls_checks.strong_suites, tls_checks.weak_suites, tls_checks.tls12_only)  # fmt: skip


@pytest.fixture
def no_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tls_checks, "RETRY_S", 0.0)


@pytest.mark.parametrize(("silent", "status"), [(1, "pass"), (10_000, "error")],
                         ids=["unanswered-once", "never-answered"])  # fmt: skip
@pytest.mark.parametrize("check", HANDSHAKING, ids=lambda c: c.__name__)
def test_an_unanswered_handshake_is_asked_again_and_never_judged(
        serve: Serve, no_pause: None, check: Callable[[Context], Any], silent: int, status: str
) -> None:  # fmt: skip
    """Once: asked again, and the good server passes. Always: an error (nothing was judged),
    never a fail built on silence."""
    server, ctx = serve(silent=silent, timeout_s=0.3)
    finding = check(ctx)
    assert finding.status == status, finding.evidence
    assert server.connections > 1
    if status == "error":
        assert re.search(r"did not answer the handshake within 0.3 s|handshake operation "
                         "timed out", finding.evidence), finding.evidence  # fmt: skip


def test_weak_suites_are_found_after_a_handshake_left_unanswered(
        serve: Serve, no_pause: None) -> None:  # fmt: skip
    _, ctx = serve(configure=_weak, silent=1, timeout_s=0.3)
    finding = tls_checks.weak_suites(ctx)  # silence is not a refusal of the weak suites
    assert finding.data["names"][LK]["status"] == "fail", finding.evidence  # LK's was unanswered


def test_weak_suites_refused_by_a_reset_are_asked_again_before_passing(
        serve: Serve, no_pause: None) -> None:  # fmt: skip
    """A connection cut without a TLS alert is not the server's answer: the weak suites are
    offered again, and this server accepts them."""
    _, ctx = serve(configure=_weak, reset=1)
    finding = tls_checks.weak_suites(ctx)
    lk = finding.data["names"][LK]
    assert lk["status"] == "fail" and lk["outcome"] == "accepted", finding.evidence


def test_a_refusal_of_the_weak_suites_names_how_it_was_refused(
        serve: Serve, no_pause: None) -> None:  # fmt: skip
    server, ctx = serve()
    finding = tls_checks.weak_suites(ctx)
    assert finding.status == "pass", finding.evidence
    lk = finding.data["names"][LK]
    assert lk["alert"] is True and "refused with a TLS alert" in lk["evidence"], lk
    assert "HANDSHAKE_FAILURE" in lk["error"].upper() or "ALERT" in lk["error"].upper(), lk
    assert server.connections == len(NAMES)  # an alert is an answer: not asked again
    reset, reset_ctx = serve(reset=2 * len(NAMES))
    cut = tls_checks.weak_suites(reset_ctx)  # every offer cut: a pass that says so
    assert cut.status == "pass", cut.evidence
    assert "without a TLS alert, twice" in cut.data["names"][LK]["evidence"], cut.evidence
    assert reset.connections == 2 * len(NAMES)


def test_a_handshake_without_an_answer_is_a_timeout_and_asked_again(serve: Serve) -> None:
    server, _ = serve(silent=1)
    seen = tls_client.handshake(server.address, LK, timeout=0.3)
    assert seen.outcome == "timeout" and not seen.ok, seen
    assert "did not answer the handshake within 0.3 s" in (seen.error or "")
    server.silent = 2
    again = tls_client.handshake_retried(server.address, LK, pause_s=0.0, timeout=0.3)
    assert again.ok and server.connections == 3
    server.silent = 10
    last = tls_client.handshake_retried(server.address, LK, attempts=3, pause_s=0.0,
                                        timeout=0.2)  # fmt: skip
    assert last.outcome == "timeout" and server.connections == 6


def test_a_handshake_cut_without_an_alert_is_asked_again(serve: Serve) -> None:
    server, _ = serve(reset=1)
    cut = tls_client.handshake(server.address, LK, timeout=2)
    assert cut.outcome == "refused" and not cut.alert, cut
    server.reset = 2
    again = tls_client.handshake_retried(server.address, LK, pause_s=0.0, timeout=2)
    assert again.ok and server.connections == 3


@pytest.mark.parametrize("content", [None, b"not a certificate\n"])
def test_a_ca_file_that_cannot_be_loaded_is_named_with_what_to_set(
        tmp_path: Path, content: bytes | None) -> None:  # fmt: skip
    # Missing, or not PEM: a configuration error naming the file, not "cannot reach it" or
    # "this machine cannot offer it".
    from lkchaos.errors import ConfigError

    path = tmp_path / "ca.crt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=re.escape(repr(str(path))) + ".*tls_proxy.ca_file"):
        tls_client.handshake("127.0.0.1:9", "lk.example", cafile=str(path))
