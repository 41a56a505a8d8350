"""TLS handshakes and one HTTPS request against a server, by address and SNI name.

Every connection has a timeout. Nothing here raises for what the server does: a refused
handshake, a certificate that does not verify or a closed port is a :class:`Handshake` with
``ok`` false and the reason, so that probes can report it and let a tolerance decide.
"""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from lkchaos.errors import ConfigError
from lkchaos.settings import Settings
from lkchaos.tls import sockets

TIMEOUT = 5.0
#: Protocol versions a probe tries, oldest first, by the names ``ssl`` reports.
VERSIONS: dict[str, ssl.TLSVersion] = {
    "TLSv1": ssl.TLSVersion.TLSv1,
    "TLSv1.1": ssl.TLSVersion.TLSv1_1,
    "TLSv1.2": ssl.TLSVersion.TLSv1_2,
    "TLSv1.3": ssl.TLSVersion.TLSv1_3,
}


@dataclass(frozen=True)
class Handshake:
    """The outcome of one TLS handshake.

    ``outcome`` is ``accepted``, ``refused`` (the server ended the handshake), ``unverified``
    (it completed, but the certificate did not verify), ``untested`` (this machine's TLS
    library cannot offer what was asked), ``timeout`` (connected, but no answer to the
    handshake within the timeout: nothing is known of what the server accepts) or
    ``unreachable`` (no TCP connection).
    """

    outcome: str
    version: str | None = None
    cipher: str | None = None
    bits: int | None = None
    der: bytes | None = field(default=None, repr=False)
    error: str | None = None
    #: For ``refused``: the server said so with a TLS alert. False when the connection was
    #: cut without one (reset, or closed mid-handshake): a busy proxy may do that too, so
    #: such a refusal alone is weak evidence of what the server accepts.
    alert: bool = False

    @property
    def ok(self) -> bool:
        return self.outcome == "accepted"


#: Outcomes in which the server gave no answer: they say nothing of its TLS, only that it
#: could not be asked (a busy network, a busy proxy, a deployment down).
NO_ANSWER = ("unreachable", "timeout")

#: ``cafile`` meaning the system's trusted CAs (a target without ``tls_proxy.ca_file``).
SYSTEM_CAS = ":system:"


def context(
    cafile: str | None = None,
    version: str | None = None,
    ciphers: str | None = None,
) -> ssl.SSLContext:
    """A client context: verifying against ``cafile`` (chain and name) if given, against the
    system's CAs for :data:`SYSTEM_CAS`, else not at all."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if cafile == SYSTEM_CAS:
        ctx.load_default_certs()
    elif cafile:
        try:
            ctx.load_verify_locations(cafile=cafile)
        except (OSError, ssl.SSLError) as exc:
            reason = "no such file" if isinstance(exc, FileNotFoundError) else str(exc)
            raise ConfigError(
                f"cannot load the CA certificate {cafile!r} ({reason}): set the target's "
                "tls_proxy.ca_file (LKCHAOS_CA_FILE) to the PEM file of the CA that signs "
                "the deployment's certificates, or leave it out to trust this machine's CAs"
            ) from exc
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if version is not None:
        if version in ("TLSv1", "TLSv1.1"):
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # OpenSSL 3 will not offer them otherwise
        with warnings.catch_warnings():  # TLS 1.0/1.1 are deprecated: that is the point
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ctx.maximum_version = VERSIONS[version]
    if ciphers is not None:
        ctx.set_ciphers(ciphers)
    return ctx


def weak_ciphers() -> str:
    """Every TLS 1.2 suite this machine can offer that lacks forward secrecy or AEAD, as an
    OpenSSL cipher string: what a server with "strong cipher suites only" must refuse."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.set_ciphers("ALL:COMPLEMENTOFALL:@SECLEVEL=0")
    weak = [
        c["name"] for c in ctx.get_ciphers()
        if c.get("protocol") != "TLSv1.3"
        and not (c.get("aead") and c.get("kea") in ("kx-ecdhe", "kx-dhe"))
    ]
    return ":".join(weak) + ":@SECLEVEL=0"


def handshake(
    address: str,
    server_name: str,
    cafile: str | None = None,
    version: str | None = None,
    ciphers: str | None = None,
    timeout: float = TIMEOUT,
) -> Handshake:
    """Connect to ``address`` (``host:port``), present ``server_name`` and shake hands."""
    try:
        ctx = context(cafile, version, ciphers)
    except (ssl.SSLError, ValueError) as exc:
        return Handshake("untested", error=f"this machine cannot offer it: {exc}")
    host, port = Settings.split_address(address, 443)
    try:
        raw = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        return Handshake("unreachable", error=f"cannot connect to {address}: {exc}")
    try:
        with sockets.wrap(ctx, raw, server_hostname=server_name) as tls:
            cipher = tls.cipher()
            return Handshake(
                "accepted",
                version=tls.version(),
                cipher=cipher[0] if cipher else None,
                bits=cipher[2] if cipher else None,
                der=tls.getpeercert(binary_form=True),
            )
    except ssl.SSLCertVerificationError as exc:
        return Handshake("unverified", error=str(exc.verify_message or exc))
    except ssl.SSLError as exc:
        if exc.reason in ("NO_PROTOCOLS_AVAILABLE", "NO_CIPHERS_AVAILABLE"):
            return Handshake("untested", error=f"this machine cannot offer it: {exc}")
        cut = isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError)
        return Handshake("refused", error=str(exc), alert=not cut)
    except TimeoutError:  # silence is not a refusal: nothing was decided
        return Handshake("timeout", error=f"{address} ({server_name}) connected but did not "
                                          f"answer the handshake within {timeout:g} s")
    except OSError as exc:  # reset during the handshake: the server refused
        return Handshake("refused", error=f"{type(exc).__name__}: {exc}")
    finally:
        raw.close()


def handshake_retried(
    address: str,
    server_name: str,
    *,
    attempts: int = 2,
    pause_s: float = 1.0,
    **kwargs: Any,
) -> Handshake:
    """:func:`handshake` (``kwargs`` as there), asked again up to ``attempts`` times in all,
    ``pause_s`` seconds apart, while the outcome is one of :data:`NO_ANSWER` or a refusal
    without a TLS alert (the connection cut): one connection lost on a busy network is not a
    finding about the server. The last outcome is returned."""
    seen = handshake(address, server_name, **kwargs)
    for _ in range(attempts - 1):
        cut = seen.outcome == "refused" and not seen.alert
        if seen.outcome not in NO_ANSWER and not cut:
            break
        time.sleep(pause_s)
        seen = handshake(address, server_name, **kwargs)
    return seen


def https_headers(
    address: str, server_name: str, path: str = "/", timeout: float = TIMEOUT
) -> tuple[int, dict[str, str]]:
    """One ``GET`` over TLS (certificate not checked): the status and the headers, lower-case
    names. Raises ``OSError`` (``ssl.SSLError`` included) when there is no answer."""
    host, port = Settings.split_address(address, 443)
    ctx = context()
    ctx.set_alpn_protocols(["http/1.1"])
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {server_name}\r\nUser-Agent: lkchaos\r\n"
        "Connection: close\r\n\r\n"
    )
    with socket.create_connection((host, port), timeout=timeout) as raw:
        with sockets.wrap(ctx, raw, server_hostname=server_name) as tls:
            tls.sendall(request.encode())
            data = b""
            while b"\r\n\r\n" not in data and len(data) < 65536:
                chunk = tls.recv(4096)
                if not chunk:
                    break
                data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode("iso-8859-1")
    lines = head.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) < 2 or not parts[1].isdigit():
        raise OSError(f"not an HTTP answer: {lines[0]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        key, sep, value = line.partition(":")
        if sep:
            headers[key.strip().lower()] = value.strip()
    return int(parts[1]), headers


def name_matches(cert: x509.Certificate, name: str) -> bool:
    """Whether ``name`` is one of the certificate's DNS names (a leading ``*.`` matches one
    label), as a browser checks it: the subject alternative names only."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    wanted = name.lower().rstrip(".")
    for pattern in san.get_values_for_type(x509.DNSName):
        pattern = pattern.lower().rstrip(".")
        if pattern == wanted:
            return True
        if pattern.startswith("*.") and "." in wanted:
            if wanted.split(".", 1)[1] == pattern[2:]:
                return True
    return False


def chain_valid(cert: x509.Certificate, ca: x509.Certificate, at: dt.datetime) -> bool:
    """Signed by ``ca``, and ``ca`` valid at ``at`` (the leaf's own dates are reported apart)."""
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return ca.not_valid_before_utc <= at <= ca.not_valid_after_utc


def forward_secret(cipher: str, version: str | None) -> bool:
    """TLS 1.3 suites always are; before it, the ephemeral key exchanges (ECDHE, DHE)."""
    return version == "TLSv1.3" or cipher.startswith(("ECDHE-", "DHE-"))


def aead(cipher: str, version: str | None) -> bool:
    return version == "TLSv1.3" or any(m in cipher for m in ("GCM", "CHACHA20", "CCM"))
