"""Probes on a TLS endpoint, per SNI name: the certificate, protocols, ciphers, HSTS, expiry.

Every probe connects to ``address`` (default: the ``tls_address`` setting, Caddy on the
reference stack) and presents ``name`` as SNI. A server that cannot be reached or refuses is
not an error of the probe: ``ok`` is false and ``error`` says why, so that a tolerance
decides. A missing CA file raises ``ActivityFailed``.

``certificate`` returns::

    {"ok": true, "name": "lk.chaos.test", "address": "127.0.0.1:7443", "reachable": true,
     "fingerprint": "51ab...", "subject": "CN=lk.chaos.test", "issuer": "CN=lkchaos test CA",
     "dns_names": ["lk.chaos.test"], "not_before": "...", "not_after": "...",
     "days_left": 89.9, "expired": false, "not_yet_valid": false, "chain_valid": true,
     "name_matches": true, "verified": true, "verify_error": null, "version": "TLSv1.3",
     "error": null}

``ok`` is ``verified``: what a client trusting the stack CA concludes (chain, dates, name).
``certificate_expiry`` returns ``{"ok", "level", "severity", "min_days_left", "names":
{name: {"level", "days_left", "not_after", "fingerprint", "error"}}, "warn_days",
"critical_days"}`` with ``level`` ``ok``, ``warning`` (within ``warn_days``), ``critical``
(within ``critical_days``), ``expired``, ``not_yet_valid`` or ``error``, the worst of all
names, and ``severity`` 0 to 4 in that order::

    {"type": "probe", "name": "no-certificate-expires-within-30-days",
     "tolerance": {"type": "range", "range": [0, 1], "target": "severity"},
     "provider": {"type": "python", "module": "lkchaos.tls.probes",
                  "func": "certificate_expiry"}}
"""

import datetime as dt
from pathlib import Path
from typing import Any, Dict, List

from chaoslib.exceptions import ActivityFailed
from chaoslib.types import Configuration, Secrets
from cryptography import x509

from lkchaos import certs
from lkchaos.settings import Settings
from lkchaos.tls import client
from lkchaos.values import check_address

__all__ = ["certificate", "certificate_expiry", "protocol_versions", "cipher_strength", "hsts"]

SEVERITY = {"ok": 0, "warning": 1, "critical": 2, "expired": 3, "not_yet_valid": 3, "error": 4}
#: The HSTS max-age the validation checklist asks for: one year.
ONE_YEAR = 31536000


def _check(name: Any, address: Any, timeout: Any) -> None:
    if name is not None and (not isinstance(name, str) or not name):
        raise ActivityFailed(f"name must be a TLS name such as lk.chaos.test, not {name!r}")
    if address is not None:
        check_address("address", address)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout:
        raise ActivityFailed(f"timeout must be a number of seconds above 0, not {timeout!r}")


def _ca(settings: Settings) -> x509.Certificate | None:
    """The CA clients trust, or None for the system's CAs (``ca_file`` empty)."""
    if not settings.ca_file:
        return None
    try:
        return certs.load_cert(Path(settings.ca_file))
    except (OSError, ValueError) as exc:
        raise ActivityFailed(
            f"cannot read the CA certificate {settings.ca_file!r} ({exc}): set ca_file "
            "(LKCHAOS_CA_FILE) to the CA your clients trust"
        ) from exc


def _inspect(name: str, address: str, timeout: float, settings: Settings) -> Dict[str, Any]:
    ca = _ca(settings)
    seen = client.handshake(address, name, timeout=timeout)
    result: Dict[str, Any] = {"ok": False, "name": name, "address": address,
                              "reachable": seen.outcome != "unreachable", "error": seen.error}
    if seen.der is None:
        return result
    cert = x509.load_der_x509_certificate(seen.der)
    now = dt.datetime.now(dt.UTC)
    verdict = client.handshake(address, name, cafile=settings.ca_file or client.SYSTEM_CAS,
                               timeout=timeout)  # fmt: skip
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns_names = san.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        dns_names = []
    result.update(
        fingerprint=certs.fingerprint(cert),
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        dns_names=dns_names,
        not_before=cert.not_valid_before_utc.isoformat(),
        not_after=cert.not_valid_after_utc.isoformat(),
        days_left=round((cert.not_valid_after_utc - now).total_seconds() / 86400, 3),
        expired=cert.not_valid_after_utc < now,
        not_yet_valid=cert.not_valid_before_utc > now,
        # With the system's CAs, the handshake's verification is the chain's.
        chain_valid=client.chain_valid(cert, ca, now) if ca is not None else verdict.ok,
        name_matches=client.name_matches(cert, name),
        verified=verdict.ok,
        verify_error=verdict.error,
        version=seen.version,
        ok=verdict.ok,
        error=verdict.error,
    )
    return result


def certificate(
    name: str = None,  # type: ignore[assignment]
    address: str = None,  # type: ignore[assignment]
    timeout: float = 5.0,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Dict[str, Any]:
    """The certificate served for ``name`` (default: the host of the target's LiveKit URL):
    fingerprint, days left, chain valid against the deployment's CA, name matches, and
    whether a client trusting that CA accepts it (``ok``)."""
    _check(name, address, timeout)
    settings = Settings.load(configuration, secrets)
    return _inspect(name or settings.livekit_host, address or settings.tls_address, timeout,
                    settings)  # fmt: skip


def _level(found: Dict[str, Any], warn_days: float, critical_days: float) -> str:
    if "days_left" not in found:
        return "error"
    if found["not_yet_valid"]:
        return "not_yet_valid"
    days = float(found["days_left"])
    if days <= 0:
        return "expired"
    if days <= critical_days:
        return "critical"
    return "warning" if days <= warn_days else "ok"


def certificate_expiry(
    names: List[str] = None,  # type: ignore[assignment]
    warn_days: float = 60,
    critical_days: float = 30,
    address: str = None,  # type: ignore[assignment]
    timeout: float = 5.0,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Dict[str, Any]:
    """How soon each served certificate expires, as levels: ``warning`` within ``warn_days``
    (60), ``critical`` within ``critical_days`` (30), then ``expired``. Default names: the
    target's ``tls_proxy.names``."""
    for label, value in (("warn_days", warn_days), ("critical_days", critical_days)):
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ActivityFailed(f"{label} must be a number of days, 0 or more, not {value!r}")
    if critical_days > warn_days:
        raise ActivityFailed(
            f"critical_days ({critical_days}) must not exceed warn_days ({warn_days}): the "
            "critical level is the one closer to expiry"
        )
    settings = Settings.load(configuration, secrets)
    if names is None:
        names = list(settings.tls_names)
    if not isinstance(names, list) or not names:
        raise ActivityFailed(f"names must be a non-empty list of TLS names, not {names!r}")
    report: Dict[str, Dict[str, Any]] = {}
    for name in names:
        _check(name, address, timeout)
        found = _inspect(name, address or settings.tls_address, timeout, settings)
        report[name] = {
            "level": _level(found, warn_days, critical_days),
            "days_left": found.get("days_left"),
            "not_after": found.get("not_after"),
            "fingerprint": found.get("fingerprint"),
            "error": None if "days_left" in found else found.get("error"),
        }
    worst = max((r["level"] for r in report.values()), key=lambda lv: SEVERITY[lv])
    days = [r["days_left"] for r in report.values() if r["days_left"] is not None]
    return {
        "ok": worst == "ok", "level": worst, "severity": SEVERITY[worst],
        "min_days_left": min(days) if days else None, "names": report,
        "warn_days": warn_days, "critical_days": critical_days,
    }  # fmt: skip


def protocol_versions(
    name: str,
    address: str = None,  # type: ignore[assignment]
    timeout: float = 5.0,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Dict[str, Any]:
    """Which protocol versions the server accepts for ``name``: ``ok`` when TLS 1.0 and 1.1
    are refused and TLS 1.2 and 1.3 accepted. A handshake cut without a TLS alert, or left
    unanswered, is asked again once after 1 s (:func:`client.handshake_retried`): a refusal
    must not rest on one lost connection."""
    _check(name, address, timeout)
    settings = Settings.load(configuration, secrets)
    target = address or settings.tls_address
    versions: Dict[str, str] = {}
    errors: Dict[str, str] = {}
    for version in client.VERSIONS:
        seen = client.handshake_retried(target, name, version=version, timeout=timeout)
        versions[version] = seen.outcome
        if seen.error:
            errors[version] = seen.error
    old_refused = all(versions[v] in ("refused", "untested") for v in ("TLSv1", "TLSv1.1"))
    modern = all(versions[v] == "accepted" for v in ("TLSv1.2", "TLSv1.3"))
    untested = [v for v, outcome in versions.items() if outcome == "untested"]
    return {"ok": old_refused and modern, "name": name, "address": target,
            "versions": versions, "errors": errors, "untested": untested}  # fmt: skip


def _suite(seen: client.Handshake) -> Dict[str, Any]:
    if not seen.ok or seen.cipher is None:
        return {"cipher": None, "outcome": seen.outcome, "error": seen.error}
    return {
        "cipher": seen.cipher, "bits": seen.bits, "version": seen.version,
        "forward_secrecy": client.forward_secret(seen.cipher, seen.version),
        "aead": client.aead(seen.cipher, seen.version), "outcome": seen.outcome,
    }  # fmt: skip


def cipher_strength(
    name: str,
    address: str = None,  # type: ignore[assignment]
    timeout: float = 5.0,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Dict[str, Any]:
    """The cipher suites negotiated for TLS 1.2 and 1.3, and whether the server accepts weak
    ones when a client offers only those. ``ok``: forward secrecy, AEAD, 128 bits or more,
    and every weak suite refused. The weak offer is asked again once after 1 s when it was
    cut without a TLS alert or left unanswered (:func:`client.handshake_retried`)."""
    _check(name, address, timeout)
    settings = Settings.load(configuration, secrets)
    target = address or settings.tls_address
    negotiated = {v: _suite(client.handshake(target, name, version=v, timeout=timeout))
                  for v in ("TLSv1.2", "TLSv1.3")}  # fmt: skip
    weak = client.handshake_retried(target, name, version="TLSv1.2",
                                    ciphers=client.weak_ciphers(), timeout=timeout)  # fmt: skip
    strong = [s for s in negotiated.values() if s["cipher"]]
    ok = bool(strong) and all(
        s["forward_secrecy"] and s["aead"] and (s["bits"] or 0) >= 128 for s in strong
    ) and not weak.ok
    return {"ok": ok, "name": name, "address": target, "negotiated": negotiated,
            "weak_accepted": weak.cipher if weak.ok else None,
            "weak_outcome": weak.outcome}  # fmt: skip


def hsts(
    name: str,
    path: str = "/",
    min_max_age: int = ONE_YEAR,
    address: str = None,  # type: ignore[assignment]
    timeout: float = 5.0,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Dict[str, Any]:
    """The ``Strict-Transport-Security`` header of an HTTPS ``GET path`` for ``name``: ``ok``
    when its max-age is at least ``min_max_age`` (one year). The certificate is not checked
    here (``certificate`` does that)."""
    _check(name, address, timeout)
    if not isinstance(path, str) or not path.startswith("/"):
        raise ActivityFailed(f"path must start with '/', not {path!r}")
    if isinstance(min_max_age, bool) or not isinstance(min_max_age, int) or min_max_age < 0:
        raise ActivityFailed(f"min_max_age must be a whole number of seconds, not {min_max_age!r}")
    settings = Settings.load(configuration, secrets)
    target = address or settings.tls_address
    try:
        status, headers = client.https_headers(target, name, path, timeout)
    except OSError as exc:
        return {"ok": False, "name": name, "address": target, "status": None, "header": None,
                "max_age": None, "include_subdomains": False, "error": str(exc)}  # fmt: skip
    header = headers.get("strict-transport-security")
    max_age = None
    for part in (header or "").split(";"):
        key, _, value = part.strip().partition("=")
        if key.lower() == "max-age" and value.strip().strip('"').isdigit():
            max_age = int(value.strip().strip('"'))
    return {
        "ok": max_age is not None and max_age >= min_max_age, "name": name, "address": target,
        "status": status, "header": header, "max_age": max_age,
        "include_subdomains": "includesubdomains" in (header or "").lower(), "error": None,
    }  # fmt: skip

