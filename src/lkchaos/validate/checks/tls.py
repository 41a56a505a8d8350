"""TLS items, for each public name of the target at its TLS proxy's address.

The names are the target's ``tls_proxy.names`` (the ``tls_names`` setting: ``lk.``, ``turn.``
and ``whip.`` under the reference stack's domain); each is reached at ``tls_address`` with its
name as SNI. Certificates are checked against the target's CA (``ca_file``), else this
machine's trusted CAs. Every protocol and cipher finding comes from real handshakes: TLS 1.0
and 1.1 are offered with OpenSSL's security level lowered in the client (it refuses to offer
them otherwise), weak suites are offered and must be refused, and the TLS 1.2 suites the
server accepts are listed by offering each one alone (PSK and SRP suites are left out: no
client can negotiate them without a pre-shared secret).

The Caddy items (the proxy in front of these names) are in :mod:`lkchaos.validate.checks.caddy`.
"""

from __future__ import annotations

import datetime as dt
import re
import socket
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from lkchaos.settings import Settings
from lkchaos.tls import client, sockets
from lkchaos.validate.checks import network
from lkchaos.validate.model import Context, Finding, Status, check

T = TypeVar("T")

ONE_YEAR = 31536000
FAIL_DAYS, WARN_DAYS = 30, 60
#: Suites no client can negotiate without a pre-shared secret.
_NEEDS_PSK = ("psk", "srp")


# --- facts ----------------------------------------------------------------------------------

def _timeout(ctx: Context) -> float:
    return min(ctx.timeout_s, 5.0)


def cafile(settings: Settings) -> str:
    return settings.ca_file or client.SYSTEM_CAS


def handshake(ctx: Context, name: str, **kwargs: Any) -> client.Handshake:
    """A handshake with ``name`` at the target's TLS address, asked again after
    :data:`RETRY_S` when the server gave no answer or cut the connection without a TLS alert
    (still cut: the refusal is returned); still no answer raises ``OSError``, so that
    the item is an ``error`` (nothing was judged), never a ``fail`` built on silence."""
    seen = client.handshake_retried(ctx.settings.tls_address, name, pause_s=RETRY_S,
                                    timeout=_timeout(ctx), **kwargs)  # fmt: skip
    if seen.outcome in client.NO_ANSWER:
        raise OSError(f"{seen.error}, twice {RETRY_S:g} s apart (is the deployment up?)")
    return seen


def answered(ask: Callable[[], T]) -> T:
    """``ask()``, asked once more after :data:`RETRY_S` if the connection was lost or timed
    out (a TLS alert is the server's answer and is not asked again)."""
    try:
        return ask()
    except ssl.SSLError:
        raise
    except OSError:
        time.sleep(RETRY_S)
        return ask()


def trust_store(settings: Settings) -> list[x509.Certificate]:
    """The CA certificates clients trust: the target's CA file, else the system bundle."""
    path = settings.ca_file or ssl.get_default_verify_paths().cafile or ""
    if not path or not Path(path).is_file():
        return []
    return list(x509.load_pem_x509_certificates(Path(path).read_bytes()))


def _served(settings: Settings, name: str, timeout: float) -> dict[str, Any]:
    """One handshake without verification: the chain the server sends, version, cipher."""
    host, port = Settings.split_address(settings.tls_address, 443)
    ctx = client.context()
    with socket.create_connection((host, port), timeout=timeout) as raw:
        with sockets.wrap(ctx, raw, server_hostname=name) as tls:
            # Public from Python 3.13; on the underlying object before (3.10 on).
            owner = tls if hasattr(tls, "get_unverified_chain") else getattr(tls, "_sslobj", None)
            chain = getattr(owner, "get_unverified_chain", lambda: None)() or []
            ders = [c if isinstance(c, bytes) else c.public_bytes(ssl._ssl.ENCODING_DER)  # type: ignore[attr-defined]
                    for c in chain]  # fmt: skip
            if not ders:  # no chain API: the leaf only
                ders = [tls.getpeercert(binary_form=True) or b""]
            cipher = tls.cipher()
            return {"chain": [x509.load_der_x509_certificate(d) for d in ders],
                    "version": tls.version(), "cipher": cipher[0] if cipher else None}


def inspect(ctx: Context, name: str) -> dict[str, Any]:
    """The certificate facts of ``name``, once per run."""
    def compute() -> dict[str, Any]:
        # A fact is computed once per run, an exception included: the retries are here.
        served = answered(lambda: _served(ctx.settings, name, _timeout(ctx)))
        verified = handshake(ctx, name, cafile=cafile(ctx.settings))
        served["verified"] = verified
        served["walk"] = walk(served["chain"], trust_store(ctx.settings))
        return served

    found: dict[str, Any] = ctx.fact(f"tls.inspect:{name}", compute)
    return found


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def walk(chain: list[x509.Certificate], store: list[x509.Certificate]) -> dict[str, Any]:
    """Follow the served chain from the leaf: ``intermediates`` served and linked, the
    ``anchor`` (the trusted CA that signs the last one) or ``missing`` (the issuer neither
    served nor trusted)."""
    result: dict[str, Any] = {"intermediates": [], "anchor": None, "missing": None}
    current = chain[0]
    rest = chain[1:]
    for _ in range(10):
        anchor = next((ca for ca in store if _issued_by(current, ca)), None)
        if anchor is not None:
            result["anchor"] = anchor.subject.rfc4514_string()
            return result
        parent = next((c for c in rest if _issued_by(current, c)), None)
        if parent is None or parent == current:
            result["missing"] = current.issuer.rfc4514_string()
            return result
        result["intermediates"].append(parent.subject.rfc4514_string())
        current = parent
    result["missing"] = current.issuer.rfc4514_string()
    return result


#: Seconds before a name that could not be reached, or gave no answer, is asked again.
RETRY_S = 1.0


def per_name(ctx: Context, judge: Any, names: tuple[str, ...] | None = None) -> Finding:
    """Run ``judge(name) -> (status, evidence, data)`` for each name; the worst status wins.
    A name that cannot be reached is tried once more after :data:`RETRY_S`: one connection
    lost on a busy network is not a finding, two in a row are."""
    order: tuple[Status, ...] = ("n/a", "pass", "manual", "warn", "error", "fail")
    names = ctx.settings.tls_names if names is None else names
    if not names:
        return Finding("n/a", "the target names no TLS names (tls_proxy.names)")
    def attempt(name: str) -> tuple[tuple[str, str, dict[str, Any]], Exception | None]:
        try:
            return judge(name), None
        except (OSError, ValueError) as exc:
            return ("error", f"cannot reach it: {type(exc).__name__}: {exc}", {}), exc

    results, worst = {}, "n/a"
    for name in names:
        (status, text, data), failed = attempt(name)
        if isinstance(failed, OSError):
            time.sleep(RETRY_S)
            (status, text, data), again = attempt(name)
            if again is None:
                text += f" (a first try failed: {type(failed).__name__}: {failed})"
        results[name] = {**data, "status": status, "evidence": text}
        worst = max(worst, status, key=order.index)
    evidence = "; ".join(f"{n}: {r['evidence']}" for n, r in results.items())
    return Finding(worst, evidence, {"names": results})  # type: ignore[arg-type]


# --- certificates -----------------------------------------------------------------------

@check("tls.certificate-chains-complete")
def chains_complete(ctx: Context) -> Finding:
    def judge(name: str) -> tuple[str, str, dict[str, Any]]:
        seen = inspect(ctx, name)["verified"]
        if seen.ok:
            return "pass", f"verified ({seen.version})", {}
        return "fail", f"does not verify: {seen.error}", {"outcome": seen.outcome}
    return per_name(ctx, judge)


@check("tls.certificates-match-domain")
def match_domain(ctx: Context) -> Finding:
    def judge(name: str) -> tuple[str, str, dict[str, Any]]:
        leaf = inspect(ctx, name)["chain"][0]
        cn = [a.value for a in leaf.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]
        try:
            san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            dns = san.get_values_for_type(x509.DNSName)
        except x509.ExtensionNotFound:
            dns = []
        data = {"cn": [str(c) for c in cn], "san": dns}
        if client.name_matches(leaf, name):
            return "pass", f"SAN {', '.join(dns)} (CN {', '.join(map(str, cn))})", data
        return "fail", f"not in the SAN ({', '.join(dns) or 'none'}; CN {cn})", data
    return per_name(ctx, judge)


def _dates(ctx: Context, name: str) -> tuple[dt.datetime, dt.datetime, float]:
    leaf = inspect(ctx, name)["chain"][0]
    now = dt.datetime.now(dt.UTC)
    days = (leaf.not_valid_after_utc - now).total_seconds() / 86400
    return leaf.not_valid_before_utc, leaf.not_valid_after_utc, days


@check("tls.certificates-not-expired")
def not_expired(ctx: Context) -> Finding:
    def judge(name: str) -> tuple[str, str, dict[str, Any]]:
        start, end, days = _dates(ctx, name)
        data = {"not_before": start.isoformat(), "not_after": end.isoformat()}
        if days < 0:
            return "fail", f"expired {end:%Y-%m-%d %H:%M} UTC ({-days:.1f} days ago)", data
        if start > dt.datetime.now(dt.UTC):
            return "fail", f"not valid before {start:%Y-%m-%d %H:%M} UTC", data
        return "pass", f"valid {start:%Y-%m-%d} to {end:%Y-%m-%d}", data
    return per_name(ctx, judge)


@check("tls.certificates-not-expiring")
def not_expiring(ctx: Context) -> Finding:
    def judge(name: str) -> tuple[str, str, dict[str, Any]]:
        _, end, days = _dates(ctx, name)
        data = {"days_left": round(days, 1), "not_after": end.isoformat()}
        text = f"{days:.1f} days left (expires {end:%Y-%m-%d})"
        if days < FAIL_DAYS:
            return "fail", f"{text}, under {FAIL_DAYS}", data
        if days < WARN_DAYS:
            return "warn", f"{text}, under {WARN_DAYS}", data
        return "pass", text, data
    return per_name(ctx, judge)


@check("tls.intermediate-certificates-included")
def intermediates(ctx: Context) -> Finding:
    def judge(name: str) -> tuple[str, str, dict[str, Any]]:
        found = inspect(ctx, name)["walk"]
        if found["missing"]:
            return "fail", (f"issuer {found['missing']} neither served nor a trusted CA "
                            "(serve the full chain)"), found  # fmt: skip
        if found["intermediates"]:
            return "pass", f"served {', '.join(found['intermediates'])}", found
        return "pass", f"signed directly by the trusted CA {found['anchor']}: none needed", found
    return per_name(ctx, judge)


@check("tls.root-ca-trusted")
def root_trusted(ctx: Context) -> Finding:
    store = ctx.settings.ca_file or "this machine's trusted CAs"

    def judge(name: str) -> tuple[str, str, dict[str, Any]]:
        found = inspect(ctx, name)["walk"]
        if found["anchor"]:
            return "pass", f"anchored at {found['anchor']} ({store})", found
        return "fail", f"no CA in {store} signs the chain (issuer {found['missing']})", found
    return per_name(ctx, judge)


# --- protocols and suites -------------------------------------------------------------------

def tls12_suites() -> list[str]:
    """Every TLS 1.2 suite this machine can offer, PSK and SRP suites left out."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.set_ciphers("ALL:COMPLEMENTOFALL:@SECLEVEL=0")
    return [c["name"] for c in ctx.get_ciphers() if c.get("protocol") != "TLSv1.3"
            and not any(p in (c.get("kea") or "") + (c.get("auth") or "") for p in _NEEDS_PSK)]


def accepted_suites(ctx: Context, name: str) -> dict[str, Any]:
    """The TLS 1.2 suites ``name`` accepts (each offered alone), and the default handshake."""
    def compute() -> dict[str, Any]:
        default = handshake(ctx, name)
        accepted = [suite for suite in tls12_suites()
                    if handshake(ctx, name, version="TLSv1.2",
                                 ciphers=f"{suite}:@SECLEVEL=0").ok]  # fmt: skip
        return {"accepted": accepted, "default": [default.version, default.cipher],
                "default_outcome": default.outcome, "default_error": default.error}  # fmt: skip

    found: dict[str, Any] = ctx.fact(f"tls.suites:{name}", compute)
    return found


@check("tls.perfect-forward-secrecy")
def forward_secrecy(ctx: Context) -> Finding:
    def judge(name: str) -> tuple[str, str, dict[str, Any]]:
        found = accepted_suites(ctx, name)
        version, cipher = found["default"]
        without = [s for s in found["accepted"] if not client.forward_secret(s, "TLSv1.2")]
        if found["default_outcome"] != "accepted":
            return "fail", (f"a client's default handshake is {found['default_outcome']}: "
                            f"{found['default_error']}"), found  # fmt: skip
        if not cipher or not client.forward_secret(cipher, version):
            return "fail", f"default handshake {version} {cipher} has no forward secrecy", found
        if without:
            return "fail", f"accepts suites without forward secrecy: {', '.join(without)}", found
        return "pass", (f"default {version} {cipher}; every accepted TLS 1.2 suite is "
                        "ECDHE/DHE"), found  # fmt: skip
    return per_name(ctx, judge)


@check("tls.strong-cipher-suites")
def strong_suites(ctx: Context) -> Finding:
    def judge(name: str) -> tuple[str, str, dict[str, Any]]:
        found = accepted_suites(ctx, name)
        weak = [s for s in found["accepted"]
                if not (client.aead(s, "TLSv1.2") and client.forward_secret(s, "TLSv1.2"))]
        shown = ", ".join(found["accepted"]) or "none (TLS 1.3 only)"
        if weak:
            return "fail", f"accepts weak TLS 1.2 suites: {', '.join(weak)}", found
        return "pass", f"TLS 1.2 suites accepted: {shown}", found
    return per_name(ctx, judge)


@check("tls.weak-cipher-suites")
def weak_suites(ctx: Context) -> Finding:
    def judge(name: str) -> tuple[str, str, dict[str, Any]]:
        # A cut without a TLS alert is asked again (handshake): a pass must not rest on
        # one lost connection.
        seen = handshake(ctx, name, version="TLSv1.2", ciphers=client.weak_ciphers())
        data = {"outcome": seen.outcome, "cipher": seen.cipher, "error": seen.error,
                "alert": seen.alert}  # fmt: skip
        if seen.outcome == "refused":
            how = "with a TLS alert" if seen.alert else "without a TLS alert, twice"
            return "pass", f"only weak suites offered: handshake refused {how} ({seen.error})", data
        if seen.ok:
            return "fail", f"accepted the weak suite {seen.cipher}", data
        return "error", f"{seen.outcome}: {seen.error}", data
    return per_name(ctx, judge)


@check("tls.tls-1-2-only")
def tls12_only(ctx: Context) -> Finding:
    def judge(name: str) -> tuple[str, str, dict[str, Any]]:
        outcomes = {v: handshake(ctx, name, version=v)
                    for v in ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")}  # fmt: skip
        data = {v: s.outcome for v, s in outcomes.items()}
        old = [v for v in ("TLSv1", "TLSv1.1") if outcomes[v].ok]
        untested = [v for v in ("TLSv1", "TLSv1.1") if outcomes[v].outcome == "untested"]
        modern = [v for v in ("TLSv1.2", "TLSv1.3") if outcomes[v].ok]
        if old:
            return "fail", f"accepts {', '.join(old)}", data
        if untested:
            return "error", (f"this machine's OpenSSL cannot offer {', '.join(untested)}: "
                             f"{outcomes[untested[0]].error}"), data  # fmt: skip
        if not modern:
            return "fail", "refuses TLS 1.2 and 1.3 too", data
        return "pass", f"TLS 1.0/1.1 refused; accepts {', '.join(modern)}", data
    return per_name(ctx, judge)


def http_names(settings: Settings) -> tuple[str, ...]:
    """The TLS names that serve HTTP (all but the TURN name)."""
    return tuple(n for n in settings.tls_names if network.name_role(settings, n) != "turn")


@check("tls.hsts-header-configured")
def hsts(ctx: Context) -> Finding:
    def judge(name: str) -> tuple[str, str, dict[str, Any]]:
        status, headers = client.https_headers(ctx.settings.tls_address, name,
                                               timeout=_timeout(ctx))  # fmt: skip
        value = headers.get("strict-transport-security")
        match = re.search(r"max-age\s*=\s*\"?(\d+)", value or "", re.I)
        data = {"http_status": status, "header": value}
        if not match:
            return "fail", f"no Strict-Transport-Security header (HTTP {status})", data
        if int(match[1]) < ONE_YEAR:
            return "fail", f"max-age {match[1]} s is under a year ({ONE_YEAR} s)", data
        return "pass", f"Strict-Transport-Security: {value}", data
    return per_name(ctx, judge, http_names(ctx.settings))


@check("tls.ssl-labs-rating")
def ssl_labs(ctx: Context) -> Finding:
    names = ", ".join(ctx.settings.tls_names)
    return Finding("manual", f"SSL Labs tests only names reachable from the public Internet: "
                   f"run https://www.ssllabs.com/ssltest/ for {names} and record the grade "
                   "(A or A+)")  # fmt: skip

