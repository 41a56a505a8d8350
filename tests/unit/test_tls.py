"""TLS faults and probes without the stack: bad certificates of each kind, the probes against
a local TLS server (Python's ssl) serving each of them, protocol and cipher checks, HSTS, and
the swap and restore actions against a fake Caddy container whose "reload" makes that local
server re-read its files."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from chaoslib.exceptions import ActivityFailed
from cryptography import x509

from lkchaos import certs
from lkchaos.safety import ledger
from lkchaos.settings import Settings
from lkchaos.stack.render import StackConfig, caddyfile
from lkchaos.tls import actions, client, probes, rotation
from tests.unit.local_servers import TLSListener, configured, reset_after_hello, server_context

NAME = "lk.chaos.test"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class TLSServer(TLSListener):
    """A TLS server on 127.0.0.1 that loads its certificate files again on ``reload()`` and
    answers any request with an HSTS header."""

    def __init__(self, cert: Path, key: Path, configure: Any = None) -> None:
        self.cert, self.key, self.configure = cert, key, configure
        self.hsts = "max-age=31536000; includeSubDomains"
        #: Connections counted from 1; those numbered in ``cut`` are reset after their
        #: ClientHello, without a TLS alert.
        self.connections, self.cut = 0, set[int]()
        self.reload()
        self.listen()

    def handle(self, conn: socket.socket) -> None:
        self.connections += 1
        if self.connections in self.cut:
            reset_after_hello(conn)
            return
        super().handle(conn)

    def reload(self) -> None:
        self.ctx = configured(server_context(self.cert, self.key), self.configure)

    def handle_tls(self, tls: ssl.SSLSocket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = tls.recv(4096)
            if not chunk:
                return
            data += chunk
        tls.sendall(b"HTTP/1.1 200 OK\r\nStrict-Transport-Security: " + self.hsts.encode()
                    + b"\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK")


@pytest.fixture
def certs_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "certs"
    certs.ensure_stack_certs(folder, [NAME, "whip.chaos.test"])
    return folder


@contextmanager
def serving(pair: certs.Issuer, folder: Path, configure: Any = None) -> Iterator[TLSServer]:
    crt, key = folder / "served.crt", folder / "served.key"
    certs.write_pair(pair, crt, key)
    server = TLSServer(crt, key, configure)
    try:
        yield server
    finally:
        server.close()


def conf(server: TLSServer, folder: Path) -> dict[str, Any]:
    return {"tls_address": server.address, "ca_file": str(folder / "ca.crt")}


def test_faulty_leaves_are_wrong_in_one_way_only() -> None:
    ca = certs.make_ca()
    expired = certs.make_faulty_leaf(ca, NAME, "expired", days=3)
    assert expired.cert.not_valid_after_utc < _now() - dt.timedelta(days=2)
    expired.cert.verify_directly_issued_by(ca.cert)
    future = certs.make_faulty_leaf(ca, NAME, "not_yet_valid")
    assert future.cert.not_valid_before_utc > _now()
    wrong = certs.make_faulty_leaf(ca, NAME, "wrong_name")
    assert not client.name_matches(wrong.cert, NAME)
    assert client.name_matches(wrong.cert, "wrong-name.chaos.test")
    wrong.cert.verify_directly_issued_by(ca.cert)
    stranger = certs.make_faulty_leaf(ca, NAME, "untrusted")
    assert client.name_matches(stranger.cert, NAME)
    assert not client.chain_valid(stranger.cert, ca.cert, _now())
    expiring = certs.make_faulty_leaf(ca, NAME, "expiring", days=20)
    left = expiring.cert.not_valid_after_utc - _now()
    assert dt.timedelta(days=19) < left <= dt.timedelta(days=20)
    assert client.chain_valid(expiring.cert, ca.cert, _now())


def test_faulty_leaf_arguments_are_checked() -> None:
    ca = certs.make_ca()
    with pytest.raises(ValueError, match="unknown kind"):
        certs.make_faulty_leaf(ca, NAME, "stale")
    with pytest.raises(ValueError, match="needs days"):
        certs.make_faulty_leaf(ca, NAME, "expiring")
    with pytest.raises(ValueError, match="more than zero"):
        certs.make_faulty_leaf(ca, NAME, "expired", days=0)


def test_atomic_write_replaces_both_files(tmp_path: Path) -> None:
    ca = certs.make_ca()
    first, second = certs.make_leaf(ca, [NAME]), certs.make_leaf(ca, [NAME])
    crt, key = tmp_path / "a.crt", tmp_path / "a.key"
    certs.write_pair(first, crt, key)
    certs.write_pair_atomic(second, crt, key)
    assert certs.fingerprint(certs.load_cert(crt)) == certs.fingerprint(second.cert)
    assert certs.load_pair(crt, key).key.private_numbers() == second.key.private_numbers()
    assert oct(crt.stat().st_mode & 0o777) == "0o644"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.crt", "a.key"]


@pytest.mark.parametrize(
    ("kind", "days", "expect"),
    [
        ("good", None, {"ok": True, "chain_valid": True, "name_matches": True}),
        ("expired", None, {"ok": False, "expired": True, "chain_valid": True,
                           "name_matches": True}),
        ("not_yet_valid", None, {"ok": False, "not_yet_valid": True, "chain_valid": True}),
        ("wrong_name", None, {"ok": False, "name_matches": False, "chain_valid": True,
                              "expired": False}),
        ("untrusted", None, {"ok": False, "chain_valid": False, "name_matches": True}),
        ("expiring", 20, {"ok": True, "chain_valid": True}),
    ],
)
def test_certificate_probe_sees_each_kind(
    certs_dir: Path, kind: str, days: int | None, expect: dict[str, Any]
) -> None:
    ca = certs.load_pair(certs_dir / "ca.crt", certs_dir / "ca.key")
    pair = certs.make_leaf(ca, [NAME]) if kind == "good" else certs.make_faulty_leaf(
        ca, NAME, kind, days)
    with serving(pair, certs_dir) as server:
        found = probes.certificate(NAME, configuration=conf(server, certs_dir))
    assert found["fingerprint"] == certs.fingerprint(pair.cert)
    assert {key: found[key] for key in expect} == expect, found
    assert found["verified"] is found["ok"]
    if not found["ok"]:
        assert found["verify_error"], found


@pytest.mark.parametrize(("days", "level", "severity"),
                         [(90, "ok", 0), (45, "warning", 1), (20, "critical", 2)])
def test_expiry_levels(certs_dir: Path, days: int, level: str, severity: int) -> None:
    ca = certs.load_pair(certs_dir / "ca.crt", certs_dir / "ca.key")
    with serving(certs.make_faulty_leaf(ca, NAME, "expiring", days), certs_dir) as server:
        found = probes.certificate_expiry([NAME], configuration=conf(server, certs_dir))
    assert (found["level"], found["severity"]) == (level, severity), found
    assert found["ok"] is (level == "ok")
    assert days - 1 < found["min_days_left"] <= days


def test_expired_and_unreachable_levels(certs_dir: Path) -> None:
    ca = certs.load_pair(certs_dir / "ca.crt", certs_dir / "ca.key")
    with serving(certs.make_faulty_leaf(ca, NAME, "expired"), certs_dir) as server:
        found = probes.certificate_expiry([NAME], configuration=conf(server, certs_dir))
        assert found["level"] == "expired" and found["min_days_left"] < 0
        address = server.address
    gone = probes.certificate_expiry([NAME], timeout=1, configuration={
        "tls_address": address, "ca_file": str(certs_dir / "ca.crt")})
    assert gone["level"] == "error" and gone["severity"] == 4
    assert gone["names"][NAME]["error"]


def test_expiry_arguments_are_checked() -> None:
    with pytest.raises(ActivityFailed, match="closer to expiry"):
        probes.certificate_expiry([NAME], warn_days=30, critical_days=60)
    with pytest.raises(ActivityFailed, match="non-empty list"):
        probes.certificate_expiry([])


def test_unreachable_server_is_not_an_error(certs_dir: Path) -> None:
    with socket.socket() as sock:  # bound, never listening (and no other test's): refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        found = probes.certificate(NAME, address=f"127.0.0.1:{port}", timeout=1,
                                   configuration={"ca_file": str(certs_dir / "ca.crt")})
    assert found["ok"] is False and found["reachable"] is False and found["error"]


def test_a_missing_ca_file_raises(tmp_path: Path) -> None:
    with pytest.raises(ActivityFailed, match="ca_file"):
        probes.certificate(NAME, configuration={"ca_file": str(tmp_path / "none.crt")})


def modern(ctx: ssl.SSLContext) -> None:
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers("ECDHE+AESGCM:ECDHE+CHACHA20")


def legacy(ctx: ssl.SSLContext) -> None:
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    ctx.minimum_version = ssl.TLSVersion.TLSv1


def test_protocols_and_ciphers_of_a_modern_server(certs_dir: Path) -> None:
    pair = certs.load_pair(certs_dir / f"{NAME}.crt", certs_dir / f"{NAME}.key")
    with serving(pair, certs_dir, modern) as server:
        versions = probes.protocol_versions(NAME, configuration=conf(server, certs_dir))
        ciphers = probes.cipher_strength(NAME, configuration=conf(server, certs_dir))
    assert versions["versions"] == {"TLSv1": "refused", "TLSv1.1": "refused",
                                    "TLSv1.2": "accepted", "TLSv1.3": "accepted"}
    assert versions["ok"] is True
    assert ciphers["ok"] is True, ciphers
    assert ciphers["weak_accepted"] is None
    suite = ciphers["negotiated"]["TLSv1.2"]
    assert suite["forward_secrecy"] and suite["aead"] and suite["bits"] >= 128


def test_protocols_and_ciphers_of_a_legacy_server(certs_dir: Path) -> None:
    pair = certs.load_pair(certs_dir / f"{NAME}.crt", certs_dir / f"{NAME}.key")
    with serving(pair, certs_dir, legacy) as server:
        versions = probes.protocol_versions(NAME, configuration=conf(server, certs_dir))
        ciphers = probes.cipher_strength(NAME, configuration=conf(server, certs_dir))
    if versions["untested"]:
        pytest.skip(f"this machine's OpenSSL cannot offer {versions['untested']}")
    assert versions["versions"]["TLSv1"] == "accepted"
    assert versions["ok"] is False
    assert ciphers["ok"] is False and ciphers["weak_accepted"], ciphers
    assert not client.aead(ciphers["weak_accepted"], "TLSv1.2") or not client.forward_secret(
        ciphers["weak_accepted"], "TLSv1.2")


def test_a_refusal_cut_without_an_alert_is_asked_again(certs_dir: Path) -> None:
    """A weak server whose connection is reset once (no TLS alert) is asked again: the
    probes judge what it accepts, not one lost connection."""
    pair = certs.load_pair(certs_dir / f"{NAME}.crt", certs_dir / f"{NAME}.key")
    with serving(pair, certs_dir, legacy) as server:
        server.cut = {1}  # the TLS 1.0 offer
        versions = probes.protocol_versions(NAME, configuration=conf(server, certs_dir))
        if versions["untested"]:
            pytest.skip(f"this machine's OpenSSL cannot offer {versions['untested']}")
        assert versions["versions"]["TLSv1"] == "accepted", versions
        assert server.connections == 5  # four versions, the first asked twice
        server.connections, server.cut = 0, {3}  # the weak offer, after TLS 1.2 and 1.3
        ciphers = probes.cipher_strength(NAME, configuration=conf(server, certs_dir))
        assert ciphers["ok"] is False and ciphers["weak_accepted"], ciphers
        assert server.connections == 4


def test_hsts(certs_dir: Path) -> None:
    pair = certs.load_pair(certs_dir / f"{NAME}.crt", certs_dir / f"{NAME}.key")
    with serving(pair, certs_dir) as server:
        found = probes.hsts(NAME, configuration=conf(server, certs_dir))
        assert found == {"ok": True, "name": NAME, "address": server.address, "status": 200,
                         "header": server.hsts, "max_age": 31536000,
                         "include_subdomains": True, "error": None}
        server.hsts = "max-age=300"
        short = probes.hsts(NAME, configuration=conf(server, certs_dir))
    assert short["ok"] is False and short["max_age"] == 300


def test_caddyfile_names_and_files() -> None:
    text = caddyfile(StackConfig())
    assert rotation.parse_caddyfile(text) == {
        NAME: ("/certs/lk.chaos.test.crt", "/certs/lk.chaos.test.key"),
        "turn.chaos.test": ("/certs/turn.chaos.test.crt", "/certs/turn.chaos.test.key"),
        "whip.chaos.test": ("/certs/whip.chaos.test.crt", "/certs/whip.chaos.test.key"),
    }
    other = "https://a.test:443, b.test {\n\ttls /certs/ab.pem /certs/ab-key.pem\n}\n"
    assert rotation.parse_caddyfile(other) == {"a.test": ("/certs/ab.pem", "/certs/ab-key.pem"),
                                               "b.test": ("/certs/ab.pem", "/certs/ab-key.pem")}


class FakeCaddy:
    """A Caddy container: bind mounts, a state, and an exec of `caddy reload` that reloads
    the local TLS server."""

    labels = {"com.docker.compose.service": "caddy"}
    name = "lkchaos-caddy-1"

    def __init__(self, certs_dir: Path, caddyfile_path: Path) -> None:
        self.attrs: dict[str, Any] = {"State": {"Status": "running"}, "Mounts": [
            {"Type": "bind", "Source": str(certs_dir), "Destination": "/certs"},
            {"Type": "bind", "Source": str(caddyfile_path), "Destination": "/etc/caddy/Caddyfile"},
        ]}
        self.server: TLSServer | None = None
        self.execs: list[list[str]] = []

    def reload(self) -> None:
        pass

    def exec_run(self, cmd: list[str], **kwargs: Any) -> tuple[int, bytes]:
        self.execs.append(cmd)
        assert self.server is not None
        self.server.reload()
        return 0, b""


class FakeDocker:
    def __init__(self, container: FakeCaddy) -> None:
        self.containers = self
        self.container = container

    def list(self, **kwargs: Any) -> list[FakeCaddy]:
        return [self.container]


@pytest.fixture
def caddy(tmp_path: Path, certs_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("LKCHAOS_STATE_DIR", str(tmp_path / "state"))
    path = tmp_path / "Caddyfile"
    path.write_text(caddyfile(StackConfig()))
    fake = FakeCaddy(certs_dir, path)

    @contextmanager
    def docker() -> Iterator[FakeDocker]:
        yield FakeDocker(fake)

    monkeypatch.setattr(rotation, "docker", docker)
    fake.server = TLSServer(certs_dir / f"{NAME}.crt", certs_dir / f"{NAME}.key")
    yield fake
    fake.server.close()


def test_swap_and_restore_bring_back_the_exact_original(caddy: FakeCaddy, certs_dir: Path,
                                                        tmp_path: Path) -> None:
    assert caddy.server is not None
    configuration = conf(caddy.server, certs_dir)
    original = certs.fingerprint(certs.load_cert(certs_dir / f"{NAME}.crt"))
    original_key = (certs_dir / f"{NAME}.key").read_bytes()
    swapped = actions.swap_certificate(name=NAME, kind="expired", configuration=configuration)
    assert swapped["original_fingerprint"] == original
    assert swapped["served_fingerprint"] == swapped["fingerprint"] != original
    assert caddy.execs[-1][-1] == "--force" and "reload" in caddy.execs[-1]
    faults = ledger.pending(tmp_path / "state")
    assert [(f.kind, f.target, f.undo_func) for f in faults] == [
        ("certificate", NAME, "restore_certificate")]
    seen = probes.certificate(NAME, configuration=configuration)
    assert seen["expired"] is True and seen["ok"] is False
    # a second swap keeps the first original aside
    again = actions.swap_certificate(name=NAME, kind="untrusted", configuration=configuration)
    assert again["original_fingerprint"] == original
    restored = actions.restore_certificate(NAME, configuration=configuration)
    assert restored["restored"] is True
    assert restored["fingerprint"] == restored["served_fingerprint"] == original
    assert (certs_dir / f"{NAME}.key").read_bytes() == original_key
    assert probes.certificate(NAME, configuration=configuration)["ok"] is True
    assert ledger.pending(tmp_path / "state") == []
    assert rotation.kept(Settings.load()) == []
    again_restored = actions.restore_certificate(NAME, configuration=configuration)
    assert again_restored["restored"] is False


def test_the_sweep_restores_a_swap_left_behind(caddy: FakeCaddy, certs_dir: Path) -> None:
    assert caddy.server is not None
    configuration = conf(caddy.server, certs_dir)
    original = certs.fingerprint(certs.load_cert(certs_dir / f"{NAME}.crt"))
    actions.swap_certificate(name=NAME, kind="wrong_name", configuration=configuration)
    settings = Settings.load(configuration)
    report = rotation.sweep(settings)
    assert len(report) == 1 and NAME in report[0]["fault"]
    assert certs.fingerprint(certs.load_cert(certs_dir / f"{NAME}.crt")) == original
    assert rotation.sweep(settings) == []


@pytest.mark.parametrize(
    ("name", "kind", "days", "message"),
    [
        ("", "expired", None, "name must be"),
        (NAME, "stale", None, "kind must be one of"),
        (NAME, "expiring", None, "needs days"),
        (NAME, "expired", -1, "more than 0"),
        (NAME, "expired", True, "number of days"),
        (NAME, "untrusted", 5, "means nothing"),
    ],
)
def test_swap_arguments_are_checked_before_anything(
    name: str, kind: str, days: Any, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rotation, "docker", None)  # any use of Docker would fail differently
    with pytest.raises(ActivityFailed, match=message):
        actions.swap_certificate(name=name, kind=kind, days=days)


def test_names_caddy_does_not_serve_are_refused(caddy: FakeCaddy, certs_dir: Path) -> None:
    assert caddy.server is not None
    with pytest.raises(ActivityFailed, match="serves no certificate file for 'media.chaos.test'; "
                                             "names whose files lkchaos can swap: lk.chaos.test"):
        actions.swap_certificate(name="media.chaos.test", kind="expired",
                                 configuration=conf(caddy.server, certs_dir))
    caddy.attrs["State"]["Status"] = "exited"
    with pytest.raises(ActivityFailed, match="not running"):
        actions.swap_certificate(name=NAME, kind="expired",
                                 configuration=conf(caddy.server, certs_dir))


def test_served_certificate_loads(certs_dir: Path) -> None:
    pair = certs.load_pair(certs_dir / f"{NAME}.crt", certs_dir / f"{NAME}.key")
    with serving(pair, certs_dir) as server:
        seen = client.handshake(server.address, NAME)
    assert seen.der is not None
    assert x509.load_der_x509_certificate(seen.der) == pair.cert


def test_the_reference_caddy_serves_its_two_names(caddy: FakeCaddy, certs_dir: Path) -> None:
    expected = {NAME, "whip.chaos.test"}
    assert rotation.served_names(FakeDocker(caddy), Settings.load()) == expected
    sites = rotation.caddy_sites(caddy)
    assert set(sites) == expected
    assert sites[NAME] == rotation.Site(NAME, certs_dir / f"{NAME}.crt", certs_dir / f"{NAME}.key")
