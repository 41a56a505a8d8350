"""Certificates for the reference stack: a private CA and leaf certificates signed by it.

The stack never talks to a public CA. ``ensure_stack_certs`` makes the CA once and one leaf
per TLS name; later chaos actions swap leaves for bad ones (expired, wrong name, untrusted)
built with :func:`make_leaf` and its ``not_before``/``not_after``/``issuer`` arguments.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_FILE = "ca.crt"
CA_KEY_FILE = "ca.key"


@dataclass(frozen=True)
class Issuer:
    """A certificate and its private key, able to sign leaves."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def make_ca(common_name: str = "lkchaos test CA", days: int = 3650) -> Issuer:
    """A self-signed CA certificate (ECDSA P-256) valid from one hour ago for ``days``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    start = _now() - dt.timedelta(hours=1)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issuer(cert, key)


def make_leaf(
    issuer: Issuer,
    names: list[str],
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> Issuer:
    """A server certificate for ``names`` (DNS names or IP addresses) signed by ``issuer``.

    By default valid from one hour ago for 90 days. Pass ``not_before``/``not_after`` to make
    an expired or not-yet-valid certificate.
    """
    if not names:
        raise ValueError("a leaf certificate needs at least one name")
    key = ec.generate_private_key(ec.SECP256R1())
    start = not_before or _now() - dt.timedelta(hours=1)
    end = not_after or start + dt.timedelta(days=90)
    if end <= start:
        raise ValueError(f"not_after ({end}) must be later than not_before ({start})")
    alt_names: list[x509.GeneralName] = []
    for name in names:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt_names.append(x509.DNSName(name))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(issuer.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
        .sign(issuer.key, hashes.SHA256())
    )
    return Issuer(cert, key)


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def write_pair(pair: Issuer, cert_path: Path, key_path: Path) -> None:
    """Write a certificate (0644) and its key (0600, private from the moment it is written:
    the stack's servers run as root in their containers and read it all the same)."""
    replace_file(key_path, key_pem(pair.key), mode=KEY_MODE)
    replace_file(cert_path, cert_pem(pair.cert))


def load_pair(cert_path: Path, key_path: Path) -> Issuer:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{key_path} does not hold an EC private key")
    return Issuer(cert, key)


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 fingerprint, lower-case hex."""
    return cert.fingerprint(hashes.SHA256()).hex()


def _signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def ensure_stack_certs(certs_dir: Path, names: list[str], min_days_left: int = 7) -> list[Path]:
    """Make the stack CA (once) and a leaf per name signed by it; return the files written.

    Existing leaves are kept while they are still valid for ``min_days_left`` days and signed
    by the current CA, so a restart does not change fingerprints; others are replaced.
    """
    certs_dir.mkdir(parents=True, exist_ok=True)
    for kept in certs_dir.glob("*.key"):  # written by an older lkchaos: make them private
        if kept.stat().st_mode & 0o077:
            kept.chmod(KEY_MODE)
    ca_cert, ca_key = certs_dir / CA_FILE, certs_dir / CA_KEY_FILE
    written: list[Path] = []
    if ca_cert.is_file() and ca_key.is_file():
        ca = load_pair(ca_cert, ca_key)
    else:
        ca = make_ca()
        write_pair(ca, ca_cert, ca_key)
        written.append(ca_cert)
    horizon = _now() + dt.timedelta(days=min_days_left)
    for name in names:
        crt, key = certs_dir / f"{name}.crt", certs_dir / f"{name}.key"
        if crt.is_file() and key.is_file():
            current = x509.load_pem_x509_certificate(crt.read_bytes())
            if _signed_by(current, ca.cert) and current.not_valid_after_utc > horizon:
                continue
        write_pair(make_leaf(ca, [name]), crt, key)
        written.append(crt)
    return written


#: Kinds of bad leaf :func:`make_faulty_leaf` builds.
FAULTY_KINDS = ("expired", "not_yet_valid", "wrong_name", "untrusted", "expiring")


def make_faulty_leaf(issuer: Issuer, name: str, kind: str, days: float | None = None) -> Issuer:
    """A leaf for ``name`` that is wrong in one way only, the rest being as a good leaf's.

    - ``expired``: signed by ``issuer``, expired ``days`` ago (default 1).
    - ``not_yet_valid``: signed by ``issuer``, valid from ``days`` from now (default 1).
    - ``wrong_name``: signed by ``issuer``, valid, for ``wrong-name.<parent of name>`` only.
    - ``untrusted``: valid, for ``name``, signed by a throwaway CA nobody trusts.
    - ``expiring``: signed by ``issuer``, valid now, expiring in ``days`` (required).
    """
    if kind not in FAULTY_KINDS:
        raise ValueError(f"unknown kind {kind!r}; kinds: {', '.join(FAULTY_KINDS)}")
    if days is not None and days <= 0:
        raise ValueError(f"days must be more than zero, not {days}")
    now = _now()
    if kind == "expired":
        end = now - dt.timedelta(days=days or 1)
        return make_leaf(issuer, [name], end - dt.timedelta(days=90), end)
    if kind == "not_yet_valid":
        start = now + dt.timedelta(days=days or 1)
        return make_leaf(issuer, [name], start, start + dt.timedelta(days=90))
    if kind == "wrong_name":
        parent = name.partition(".")[2] or name
        return make_leaf(issuer, [f"wrong-name.{parent}"])
    if kind == "untrusted":
        return make_leaf(make_ca("lkchaos untrusted CA"), [name])
    if days is None:
        raise ValueError("an expiring certificate needs days (how soon it expires)")
    return make_leaf(issuer, [name], now - dt.timedelta(hours=1), now + dt.timedelta(days=days))


def write_pair_atomic(pair: Issuer, cert_path: Path, key_path: Path) -> None:
    """Like :func:`write_pair`, but each file is replaced in one step (a temporary file in the
    same folder, then a rename), so a server reading the folder never sees half a file."""
    replace_file(key_path, key_pem(pair.key), mode=KEY_MODE)
    replace_file(cert_path, cert_pem(pair.cert))


#: Mode of private key files.
KEY_MODE = 0o600


def replace_file(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename (atomic on POSIX).

    The temporary file is created with ``mode`` (never wider, whatever the umask), so a
    private file is private from its first byte.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.lkchaos-tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have narrowed it; never widen beyond ``mode``
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(path)


def load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())
