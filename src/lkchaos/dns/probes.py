"""Probes on name resolution through the deployment's resolver (the ``dns_server`` setting;
on the reference stack its dnsmasq, published on 127.0.0.1:27053), not the system's.

``resolve_names`` asks for each name once over UDP, all at once, and returns::

    {"ok": true, "server": "127.0.0.1:27053", "failed": [], "max_latency_ms": 1.2,
     "rcodes": {"lk.chaos.test": "NOERROR", ...},
     "names": {"lk.chaos.test": {"ok": true, "rcode": "NOERROR",
                                 "addresses": ["172.29.77.10"], "latency_ms": 0.8,
                                 "expected": null}, ...}}

``rcode`` is the DNS answer's (``NOERROR``, ``NXDOMAIN``, ``SERVFAIL``, ``REFUSED``, ...), or
``TIMEOUT`` (no answer within ``timeout``: a resolver stopped, paused or hung, a closed UDP
port included, as the port's ICMP error is not read), ``UNREACHABLE`` (the resolver's host name
does not resolve here, or no route to it) or ``ERROR`` (an unreadable answer). A name is ok
when it gets NOERROR with at least one address, the addresses of ``expected`` when given,
within ``max_latency_ms`` when given. A resolver that does not answer is not an error of the
probe: ``ok`` is false so that a tolerance decides::

    {"type": "probe", "name": "test-names-resolve",
     "tolerance": {"type": "jsonpath", "path": "$.ok", "expect": true},
     "provider": {"type": "python", "module": "lkchaos.dns.probes", "func": "resolve_names"}}
"""

import math
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List

from chaoslib.exceptions import ActivityFailed
from chaoslib.types import Configuration, Secrets

from lkchaos.dns import client
from lkchaos.settings import Settings, is_ip_address
from lkchaos.values import check_address

__all__ = ["resolve_names"]

RDTYPES = ("A", "AAAA", "CNAME", "TXT", "SRV")
#: The most names one call resolves.
MAX_NAMES = 100


def _number(label: str, value: Any, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ActivityFailed(f"{label} must be a number, not {value!r}")
    if value <= 0:
        raise ActivityFailed(f"{label} must be more than 0, not {value}")


def _check(names: Any, expected: Any, rdtype: Any, timeout: Any, max_latency_ms: Any,
           server: Any) -> None:  # fmt: skip
    if not isinstance(names, list) or not names or len(names) > MAX_NAMES:
        raise ActivityFailed(f"names must be a list of 1 to {MAX_NAMES} names, not {names!r}")
    if not all(isinstance(n, str) and n for n in names):
        raise ActivityFailed(f"every name must be a non-empty string: {names!r}")
    if expected is not None:
        if not isinstance(expected, dict) or not all(
            isinstance(v, list) and all(isinstance(a, str) for a in v) for v in expected.values()
        ):
            raise ActivityFailed("expected must map names to lists of addresses, such as "
                                 '{"lk.chaos.test": ["172.29.77.10"]}')  # fmt: skip
        unknown = set(expected) - set(names)
        if unknown:
            raise ActivityFailed(f"expected names that are not resolved: {sorted(unknown)}")
    if rdtype not in RDTYPES:
        raise ActivityFailed(f"rdtype must be one of {', '.join(RDTYPES)}, not {rdtype!r}")
    _number("timeout", timeout)
    _number("max_latency_ms", max_latency_ms, allow_none=True)
    if server is not None:
        check_address("server", server)


def deployment_names(settings: Settings) -> list[str]:
    """The deployment's public DNS names, once each: LiveKit's URL host, then every name the
    TLS proxy serves (``tls_proxy.names``); IP addresses are left out (nothing to resolve).
    The reference stack: ``lk.chaos.test``, ``turn.chaos.test``, ``whip.chaos.test``."""
    found: list[str] = []
    for name in (settings.livekit_host, *settings.tls_names):
        name = (name or "").strip().rstrip(".").lower()
        if name and not is_ip_address(name) and name not in found:
            found.append(name)
    return found


def resolve_names(
    names: List[str] = None,  # type: ignore[assignment]
    expected: Dict[str, List[str]] = None,  # type: ignore[assignment]
    rdtype: str = "A",
    timeout: float = 2.0,
    max_latency_ms: float = None,  # type: ignore[assignment]
    server: str = None,  # type: ignore[assignment]
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Dict[str, Any]:
    """Resolve each name (concurrently) through the deployment's resolver: rcode, addresses
    and latency per name; ``ok`` when every one answers NOERROR with addresses (those of
    ``expected`` when given) in time. Default names: the deployment's public names
    (:func:`deployment_names`: LiveKit's URL host, then every name the TLS proxy serves)."""
    settings = Settings.load(configuration, secrets)
    if names is None:
        names = deployment_names(settings)
        if not names:
            raise ActivityFailed(
                f"the deployment has no names to resolve (LiveKit's URL is "
                f"{settings.livekit_url!r} and the TLS proxy serves none): pass names")
    _check(names, expected, rdtype, timeout, max_latency_ms, server)
    target = server or settings.dns_server
    if not target:
        raise ActivityFailed(f"{client.NO_RESOLVER}: add a resolver (its address) to the target "
                             "file, or pass server")  # fmt: skip
    with ThreadPoolExecutor(max_workers=min(len(names), 16)) as pool:
        found = list(pool.map(lambda n: client.lookup(n, target, rdtype, timeout), names))
    report: Dict[str, Dict[str, Any]] = {}
    for name, answer in zip(names, found, strict=True):
        want = (expected or {}).get(name)
        ok = answer.rcode == "NOERROR" and bool(answer.addresses)
        if want is not None:
            ok = ok and sorted(answer.addresses) == sorted(want)
        if max_latency_ms is not None:
            ok = ok and answer.latency_ms <= max_latency_ms
        report[name] = {"ok": ok, "rcode": answer.rcode, "addresses": list(answer.addresses),
                        "latency_ms": round(answer.latency_ms, 3), "expected": want}  # fmt: skip
    failed = [name for name, found in report.items() if not found["ok"]]
    return {
        "ok": not failed, "server": target, "failed": failed,
        "max_latency_ms": max(r["latency_ms"] for r in report.values()),
        "rcodes": {name: found["rcode"] for name, found in report.items()},
        "names": report,
    }  # fmt: skip
