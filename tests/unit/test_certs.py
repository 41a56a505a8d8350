"""The stack's private CA and leaves: chains, names, validity windows, reuse."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
from pathlib import Path

import pytest
from cryptography import x509

from lkchaos import certs
from lkchaos.tls import sockets


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def test_leaf_is_signed_by_the_ca_and_names_its_hosts() -> None:
    ca = certs.make_ca()
    leaf = certs.make_leaf(ca, ["lk.chaos.test", "127.0.0.1"])
    leaf.cert.verify_directly_issued_by(ca.cert)
    san = leaf.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["lk.chaos.test"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert leaf.cert.not_valid_after_utc - leaf.cert.not_valid_before_utc == dt.timedelta(days=90)


def test_expired_and_not_yet_valid_windows() -> None:
    ca = certs.make_ca()
    expired = certs.make_leaf(
        ca, ["lk.chaos.test"], _now() - dt.timedelta(days=10), _now() - dt.timedelta(days=1)
    )
    assert expired.cert.not_valid_after_utc < _now()
    future = certs.make_leaf(ca, ["lk.chaos.test"], _now() + dt.timedelta(days=1))
    assert future.cert.not_valid_before_utc > _now()


def test_bad_arguments_are_refused() -> None:
    ca = certs.make_ca()
    with pytest.raises(ValueError, match="at least one name"):
        certs.make_leaf(ca, [])
    with pytest.raises(ValueError, match="must be later"):
        certs.make_leaf(ca, ["x.test"], _now(), _now() - dt.timedelta(days=1))


def test_ensure_stack_certs_is_stable_across_runs(tmp_path: Path) -> None:
    names = ["lk.chaos.test", "turn.chaos.test"]
    written = certs.ensure_stack_certs(tmp_path, names)
    assert {p.name for p in written} == {"ca.crt", "lk.chaos.test.crt", "turn.chaos.test.crt"}
    before = (tmp_path / "lk.chaos.test.crt").read_bytes()
    assert certs.ensure_stack_certs(tmp_path, names) == []
    assert (tmp_path / "lk.chaos.test.crt").read_bytes() == before


def test_ensure_stack_certs_replaces_foreign_or_expiring_leaves(tmp_path: Path) -> None:
    certs.ensure_stack_certs(tmp_path, ["lk.chaos.test"])
    ca = certs.load_pair(tmp_path / "ca.crt", tmp_path / "ca.key")
    stranger = certs.make_leaf(certs.make_ca("someone else"), ["lk.chaos.test"])
    certs.write_pair(stranger, tmp_path / "lk.chaos.test.crt", tmp_path / "lk.chaos.test.key")
    assert [p.name for p in certs.ensure_stack_certs(tmp_path, ["lk.chaos.test"])] == [
        "lk.chaos.test.crt"
    ]
    expiring = certs.make_leaf(ca, ["lk.chaos.test"], not_after=_now() + dt.timedelta(days=2))
    certs.write_pair(expiring, tmp_path / "lk.chaos.test.crt", tmp_path / "lk.chaos.test.key")
    assert certs.ensure_stack_certs(tmp_path, ["lk.chaos.test"]) != []
    fresh = x509.load_pem_x509_certificate((tmp_path / "lk.chaos.test.crt").read_bytes())
    fresh.verify_directly_issued_by(ca.cert)
    assert fresh.not_valid_after_utc > _now() + dt.timedelta(days=30)


def test_a_real_tls_handshake_trusts_the_chain(tmp_path: Path) -> None:
    """Python's own TLS stack accepts the leaf for its name, and only for its name."""
    certs.ensure_stack_certs(tmp_path, ["lk.chaos.test"])
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(tmp_path / "lk.chaos.test.crt", tmp_path / "lk.chaos.test.key")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve(count: int) -> None:
        for _ in range(count):
            conn, _ = listener.accept()
            try:
                with sockets.wrap(server_ctx, conn, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                pass

    thread = threading.Thread(target=serve, args=(2,), daemon=True)
    thread.start()
    client_ctx = ssl.create_default_context(cafile=str(tmp_path / "ca.crt"))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with client_ctx.wrap_socket(raw, server_hostname="lk.chaos.test") as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with pytest.raises(ssl.SSLCertVerificationError, match="match"):
            client_ctx.wrap_socket(raw, server_hostname="wrong.chaos.test")
    thread.join(timeout=5)
    listener.close()


def test_fingerprint_is_sha256_hex() -> None:
    leaf = certs.make_leaf(certs.make_ca(), ["a.test"])
    fp = certs.fingerprint(leaf.cert)
    assert len(fp) == 64 and int(fp, 16) >= 0
