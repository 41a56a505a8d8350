"""Certificate faults: the TLS proxy serves a bad certificate for one of its names, then the
original.

``swap_certificate(kind, name=None, days=None)`` replaces the certificate and key the target's TLS
proxy serves for ``name`` with a new pair that is bad in one way:

- ``expired``: from the deployment's CA, expired ``days`` ago (default 1)
- ``not_yet_valid``: from the deployment's CA, valid only from ``days`` from now (default 1)
- ``wrong_name``: from the deployment's CA, valid, for ``wrong-name.<domain>`` instead
- ``untrusted``: valid, for the name, from a CA nobody trusts
- ``expiring``: from the deployment's CA, valid, but expiring in ``days`` (required): not a
  failure for clients, a test of the expiry warnings

The deployment's CA is ``ca.crt`` and ``ca.key`` beside the served certificate (the reference
stack keeps them there); ``untrusted`` needs none. Which file serves ``name``, and how the
proxy reloads, come from the target (:mod:`lkchaos.tls.rotation`): Caddy (its ``tls`` lines
or its admin API's configuration) and nginx (``nginx -T``) are supported, the files must be on
a bind mount of the proxy's container, and a target whose ``tls_proxy`` has ``reload: none``
is refused. After the reload the action waits until the proxy serves the new certificate at
``tls_address``; if it does not within the wait, the action fails
(``lkchaos.verify.NotInEffect``). The original is kept aside in the state folder, once, and
the rollback ``restore_certificate(name)`` puts it back byte for byte (same fingerprint),
reloads again and fails if the proxy does not serve it; it does nothing when nothing is
swapped. Both return::

    {"name": "lk.chaos.test", "kind": "expired", "fingerprint": "9c1f...",
     "original_fingerprint": "51ab...", "served_fingerprint": "9c1f...",
     "not_before": "...", "not_after": "...", "reload_s": 0.21}
    {"name": "lk.chaos.test", "restored": true, "fingerprint": "51ab...",
     "served_fingerprint": "51ab...", "reloaded": true, "reload_s": 0.19}

A name the TLS proxy does not terminate (LiveKit's own TURN/TLS listener, when it is not
behind the proxy) is refused: its certificate is read only when LiveKit starts. On the
reference stack Caddy terminates ``turn.<domain>`` on 443 too, so its certificate swaps like
the others. Example::

    {"type": "action", "name": "expire-lk-certificate",
     "provider": {"type": "python", "module": "lkchaos.tls.actions",
                  "func": "swap_certificate",
                  "arguments": {"name": "lk.chaos.test", "kind": "expired"}}}
"""

import math
from pathlib import Path
from typing import Any, Dict

from chaoslib.exceptions import ActivityFailed
from chaoslib.types import Configuration, Secrets

from lkchaos import certs
from lkchaos.docker.client import container_state
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
    if name is not None:
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


def _site(container: Any, settings: Settings, name: str) -> rotation.Site:
    sites = rotation.served(container, settings)
    proxy = settings.tls_proxy_kind
    found = sites.get(name.lower())
    if found is None:
        swappable = ", ".join(sorted(n for n, s in sites.items() if s.site)) or "none"
        extra = ""
        if name.startswith("turn."):
            extra = (" (if LiveKit's TURN terminates TLS itself, its certificate is read only "
                     "when it starts: swapping it needs a restart of the LiveKit nodes)")
        raise ActivityFailed(f"the TLS proxy ({proxy}) serves no certificate file for "
                             f"{name!r}{extra}; names whose files lkchaos can swap: "
                             f"{swappable}")  # fmt: skip
    if found.site is None:
        raise ActivityFailed(f"the certificate of {name} cannot be swapped: {found.problem}")
    return found.site


def _issuer(site: rotation.Site, kind: str, settings: Settings) -> certs.Issuer:
    """The CA that signs the swapped certificate: ``ca.crt`` and ``ca.key`` beside the served
    certificate, else the target's ``tls_proxy.ca_file`` with its key beside it (``ca.key``,
    or the same name ending in ``.key``), so the CA's key need not be in the proxy's mount."""
    if kind == "untrusted":  # signed by a throwaway CA: the deployment's is not needed
        return certs.make_ca("lkchaos untrusted CA")
    candidates = [(site.cert.parent / certs.CA_FILE, site.cert.parent / certs.CA_KEY_FILE)]
    if settings.ca_file:
        ca = Path(settings.ca_file)
        candidates += [(ca, ca.parent / certs.CA_KEY_FILE), (ca, ca.with_suffix(".key"))]
    tried = []
    for cert, key in candidates:
        try:
            return certs.load_pair(cert, key)
        except (OSError, ValueError) as exc:
            tried.append(f"{cert} + {key} ({exc})")
    raise ActivityFailed(
        f"cannot load the CA and its key (tried {'; '.join(tried)}): a bad certificate that "
        "differs from a good one in one way only must be signed by the CA clients trust; put "
        "ca.crt and ca.key beside the served certificate or the target's tls_proxy.ca_file "
        "and its key beside it, or use kind untrusted"
    )


def _refuse(settings: Settings) -> None:
    reason = rotation.refusal(settings)
    if reason is not None:
        raise ActivityFailed(f"{reason}; `lkchaos target check` lists what this target lacks")


def swap_certificate(
    kind: str,
    name: str = None,  # type: ignore[assignment]
    days: float = None,  # type: ignore[assignment]
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Dict[str, Any]:
    """Make the TLS proxy serve a bad certificate for ``name`` (default: the host callers use,
    from the target's LiveKit URL): ``kind`` is ``expired``, ``not_yet_valid``,
    ``wrong_name``, ``untrusted`` or ``expiring`` (in ``days``); the original is kept aside.
    Rollback: ``restore_certificate``."""
    _check(name, kind, days)
    settings = Settings.load(configuration, secrets)
    _refuse(settings)
    name = (name or settings.livekit_host).lower()
    try:
        with rotation.proxy(settings) as container:
            if container is not None:
                state = container_state(container)["state"]
                if state != "running":
                    raise ActivityFailed(f"the TLS proxy is {state}, not running: start it "
                                         "first")  # fmt: skip
            site = _site(container, settings, name)
            bad = certs.make_faulty_leaf(_issuer(site, kind, settings), name, kind, days)
            ledger.record(settings.state_dir, ledger.Fault(
                KIND, name, UNDO, "restore_certificate", {"name": name}))  # fmt: skip
            original = rotation.keep_original(settings, site)
            rotation.write_pair(site, bad)
            reload_s = rotation.reload_proxy(container, settings)
    except (LkChaosError, OSError) as exc:
        raise ActivityFailed(f"swapping the certificate of {name} failed: {exc}; run "
                             "`lkchaos recover` to put the original back") from exc  # fmt: skip
    new = certs.fingerprint(bad.cert)
    served = rotation.wait_served(settings, name, new, rotation.SERVE_WAIT_S)
    if served != new:
        seen = "no certificate at all" if served is None else f"{served[:16]}..."
        raise NotInEffect(
            f"the TLS proxy serves {seen} for {name} at {settings.tls_address} after its "
            f"reload, not the swapped certificate {new[:16]}...; roll back with "
            "restore_certificate (or `lkchaos recover`)"
        )
    return {
        "name": name, "kind": kind, "days": days, "fingerprint": new,
        "original_fingerprint": original, "served_fingerprint": served,
        "not_before": bad.cert.not_valid_before_utc.isoformat(),
        "not_after": bad.cert.not_valid_after_utc.isoformat(),
        "reload_s": round(reload_s, 3),
    }  # fmt: skip


def restore_certificate(
    name: str = None,  # type: ignore[assignment]
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Dict[str, Any]:
    """Put back the original certificate of ``name`` (default: the host of the target's
    LiveKit URL; same fingerprint) and reload the TLS proxy. A rollback: does nothing when no
    swap is in place."""
    if name is not None:
        check_dns_name("name", name)
    settings = Settings.load(configuration, secrets)
    name = (name or settings.livekit_host).lower()
    try:
        result = rotation.restore(settings, name)
    except (LkChaosError, OSError) as exc:
        raise ActivityFailed(f"restoring the certificate of {name} failed: {exc}; check that "
                             "the TLS proxy runs, then run `lkchaos recover`") from exc  # fmt: skip
    served = result["served_fingerprint"]
    if result["reloaded"] and served != result["fingerprint"]:
        seen = "no certificate at all" if served is None else f"{served[:16]}..."
        raise NotInEffect(
            f"the original certificate of {name} is back on disk, but the TLS proxy serves "
            f"{seen} at {settings.tls_address} after its reload: restart it, then "
            "`lkchaos recover`"
        )
    ledger.forget(settings.state_dir, KIND, name)
    return result
