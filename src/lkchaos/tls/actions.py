"""Certificate faults: Caddy serves a bad certificate for one of its names, then the original.

``swap_certificate(name, kind, days=None)`` replaces the certificate and key Caddy serves for
``name`` (any name of a Caddy site block with a ``tls <cert> <key>`` line; on the reference
stack ``lk.<domain>`` and ``whip.<domain>``) with a new pair that is bad in one way:

- ``expired``: from the stack CA, expired ``days`` ago (default 1)
- ``not_yet_valid``: from the stack CA, valid only from ``days`` from now (default 1)
- ``wrong_name``: from the stack CA, valid, for ``wrong-name.<domain>`` instead
- ``untrusted``: valid, for the name, from a CA nobody trusts
- ``expiring``: from the stack CA, valid, but expiring in ``days`` (required): not a failure
  for clients, a test of the expiry warnings

then reloads Caddy gracefully (its listeners stay open) and waits until it serves the new
certificate at ``tls_address``; if it does not within the wait, the action fails
(``lkchaos.verify.NotInEffect``). The original is kept aside in the state folder, once, and
the rollback ``restore_certificate(name)`` puts it back byte for byte (same fingerprint),
reloads again and fails if Caddy does not serve it; it does nothing when nothing is swapped.
Both return::

    {"name": "lk.chaos.test", "kind": "expired", "fingerprint": "9c1f...",
     "original_fingerprint": "51ab...", "served_fingerprint": "9c1f...",
     "not_before": "...", "not_after": "...", "reload_s": 0.21}
    {"name": "lk.chaos.test", "restored": true, "fingerprint": "51ab...",
     "served_fingerprint": "51ab...", "reloaded": true, "reload_s": 0.19}

``turn.<domain>`` is served by LiveKit's TURN listener, which reads its certificate only when
it starts; it is not a Caddy site, so it is refused here. Example::

    {"type": "action", "name": "expire-lk-certificate",
     "provider": {"type": "python", "module": "lkchaos.tls.actions",
                  "func": "swap_certificate",
                  "arguments": {"name": "lk.chaos.test", "kind": "expired"}}}
"""

import math
from typing import Any, Dict

from chaoslib.exceptions import ActivityFailed
from chaoslib.types import Configuration, Secrets

from lkchaos import certs
from lkchaos.docker.client import container_state, service_container
from lkchaos.errors import LkChaosError
from lkchaos.safety import ledger
from lkchaos.settings import Settings
from lkchaos.tls import rotation
from lkchaos.values import check_dns_name
from lkchaos.verify import NotInEffect

__all__ = ["swap_certificate", "restore_certificate"]

UNDO = "lkchaos.tls.actions"
KIND = "certificate"
#: The longest ``days`` accepted: ten years.
MAX_DAYS = 3650


def _check(name: Any, kind: Any, days: Any) -> None:
    check_dns_name("name", name)
    if not isinstance(kind, str) or kind not in certs.FAULTY_KINDS:
        raise ActivityFailed(
            f"kind must be one of {', '.join(certs.FAULTY_KINDS)}, not {kind!r}"
        )
    if days is not None:
        if isinstance(days, bool) or not isinstance(days, int | float) or not math.isfinite(days):
            raise ActivityFailed(f"days must be a number of days, not {days!r}")
        if not 0 < days <= MAX_DAYS:
            raise ActivityFailed(f"days must be more than 0 and at most {MAX_DAYS}, not {days}")
        if kind in ("wrong_name", "untrusted"):
            raise ActivityFailed(f"days means nothing for a {kind} certificate: leave it out")
    elif kind == "expiring":
        raise ActivityFailed("an expiring certificate needs days: how soon it expires")


def _site(container: Any, name: str) -> rotation.CaddySite:
    sites = rotation.caddy_sites(container)
    if name not in sites:
        served = ", ".join(sorted(sites)) or "none"
        extra = ""
        if name.startswith("turn."):
            extra = (" (TURN's certificate is LiveKit's, read only when it starts: swapping "
                     "it needs a restart of the LiveKit nodes, not a certificate rotation)")
        raise ActivityFailed(f"Caddy serves no certificate file for {name!r}{extra}; names it "
                             f"serves: {served}")  # fmt: skip
    site = sites[name]
    for path in (site.cert, site.key):
        if not path.is_file():
            raise ActivityFailed(f"{path} (Caddy's file for {name}) does not exist")
    return site


def _issuer(site: rotation.CaddySite) -> certs.Issuer:
    folder = site.cert.parent
    try:
        return certs.load_pair(folder / certs.CA_FILE, folder / certs.CA_KEY_FILE)
    except (OSError, ValueError) as exc:
        raise ActivityFailed(
            f"cannot load the CA and its key from {folder} ({exc}): a bad certificate that "
            "differs from a good one in one way only must be signed by the CA clients trust"
        ) from exc


def swap_certificate(
    name: str,
    kind: str,
    days: float = None,  # type: ignore[assignment]
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Dict[str, Any]:
    """Make Caddy serve a bad certificate for ``name``: ``expired``, ``not_yet_valid``,
    ``wrong_name``, ``untrusted`` or ``expiring`` (in ``days``); the original is kept aside.
    Rollback: ``restore_certificate``."""
    _check(name, kind, days)
    settings = Settings.load(configuration, secrets)
    try:
        with rotation.docker() as client:
            container = service_container(client, settings.compose_project,
                                          rotation.CADDY_SERVICE)  # fmt: skip
            state = container_state(container)["state"]
            if state != "running":
                raise ActivityFailed(f"Caddy is {state}, not running: start it first")
            site = _site(container, name)
            issuer = _issuer(site)
            bad = certs.make_faulty_leaf(issuer, name, kind, days)
            ledger.record(settings.state_dir, ledger.Fault(
                KIND, name, UNDO, "restore_certificate", {"name": name}))  # fmt: skip
            original = rotation.keep_original(settings, site)
            certs.write_pair_atomic(bad, site.cert, site.key)
            reload_s = rotation.reload_caddy(container)
    except (LkChaosError, OSError) as exc:
        raise ActivityFailed(f"swapping the certificate of {name} failed: {exc}; run "
                             "`lkchaos recover` to put the original back") from exc  # fmt: skip
    new = certs.fingerprint(bad.cert)
    served = rotation.wait_served(settings, name, new, rotation.SERVE_WAIT_S)
    if served != new:
        seen = "no certificate at all" if served is None else f"{served[:16]}..."
        raise NotInEffect(
            f"Caddy serves {seen} for {name} at {settings.tls_address} after its reload, not "
            f"the swapped certificate {new[:16]}...; roll back with restore_certificate (or "
            "`lkchaos recover`)"
        )
    return {
        "name": name, "kind": kind, "days": days, "fingerprint": new,
        "original_fingerprint": original, "served_fingerprint": served,
        "not_before": bad.cert.not_valid_before_utc.isoformat(),
        "not_after": bad.cert.not_valid_after_utc.isoformat(),
        "reload_s": round(reload_s, 3),
    }  # fmt: skip


def restore_certificate(
    name: str, configuration: Configuration = None, secrets: Secrets = None
) -> Dict[str, Any]:
    """Put back the original certificate of ``name`` (same fingerprint) and reload Caddy. A
    rollback: does nothing when no swap is in place."""
    check_dns_name("name", name)
    settings = Settings.load(configuration, secrets)
    try:
        result = rotation.restore(settings, name)
    except (LkChaosError, OSError) as exc:
        raise ActivityFailed(f"restoring the certificate of {name} failed: {exc}; check that "
                             "Caddy runs, then run `lkchaos recover`") from exc  # fmt: skip
    served = result["served_fingerprint"]
    if result["reloaded"] and served != result["fingerprint"]:
        seen = "no certificate at all" if served is None else f"{served[:16]}..."
        raise NotInEffect(
            f"the original certificate of {name} is back on disk, but Caddy serves {seen} at "
            f"{settings.tls_address} after its reload: restart Caddy, then `lkchaos recover`"
        )
    ledger.forget(settings.state_dir, KIND, name)
    return result
