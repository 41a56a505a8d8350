"""Resolver faults through the target's dnsmasq (the ``resolver`` role).

Only a target whose resolver is a dnsmasq it lets lkchaos fault (``resolver: {kind: dnsmasq,
may_fault: true}``, and ``roles.resolver`` naming its container) is touched; on any other,
every action here is refused before anything is done, saying why. The resolver's files are
found through its container's bind mounts (see :mod:`lkchaos.dns.client`).

- ``stop_resolver(mode="pause")``: no answer at all; ``pause`` freezes the container (queries
  time out), ``stop`` stops it (its port closes). Rollback: ``start_resolver``.
- ``nxdomain_name(name)``: NXDOMAIN for ``name``, whose lines are hidden in the hosts file,
  then SIGHUP. Rollback: ``restore_name``.
- ``wrong_address(name, address="192.0.2.1")``: ``name`` answers ``address``; hosts file,
  SIGHUP. Rollback: ``restore_name``.
- ``servfail_name(name)``: SERVFAIL for ``name``; hosts file, a ``server=`` block in dnsmasq's
  configuration, and a restart of dns. Rollback: ``restore_name``.

dnsmasq re-reads its hosts file on SIGHUP, at once and without dropping a query; its
configuration only when it starts, so SERVFAIL (and its undoing) restarts the resolver:
for 0.6 to 0.8 s nothing resolves, which the result reports as ``restart_s``. The hosts
file is edited in place with marked lines; the rollbacks remove exactly those, and
``restore_dns`` every fault at once. Names are those of the hosts file (the test domain's).
dnsmasq's answers are cached downstream for its ``local-ttl`` (5 s on the reference stack).
Every action validates first, writes the ledger, then acts, and returns only once the
resolver gives the new answer (NXDOMAIN, the wrong address, SERVFAIL, no answer at all; for a
rollback the original addresses), asked directly at ``dns_server`` within
``LKCHAOS_VERIFY_S`` (10 s by default); otherwise it fails (``lkchaos.verify.NotInEffect``).
It returns what it did::

    {"name": "lk.chaos.test", "fault": "wrong_address", "address": "192.0.2.1",
     "before": ["172.29.77.10"], "reloaded": "sighup", "restart_s": null}

Example::

    {"type": "action", "name": "resolver-down",
     "provider": {"type": "python", "module": "lkchaos.dns.actions", "func": "stop_resolver"}}
"""

import ipaddress
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Dict, List

from chaoslib.exceptions import ActivityFailed
from chaoslib.types import Configuration, Secrets

from lkchaos.dns import client as dns
from lkchaos.docker.client import docker_client
from lkchaos.errors import LkChaosError
from lkchaos.safety import ledger
from lkchaos.settings import Settings
from lkchaos.values import check_dns_name
from lkchaos.verify import until

__all__ = [
    "stop_resolver", "start_resolver", "nxdomain_name", "wrong_address", "servfail_name",
    "restore_name", "restore_dns",
]

UNDO = "lkchaos.dns.actions"
DOWN, NAME = "dns_down", "dns_name"
MODES = ("pause", "stop")
#: TEST-NET-1 (RFC 5737): routed nowhere, so connections to it hang until they time out.
DEFAULT_WRONG_ADDRESS = "192.0.2.1"


def _refuse(settings: Settings, what: str) -> None:
    """Refuse, before anything is done, on a target whose resolver lkchaos may not fault."""
    reason = dns.refusal(settings)
    if reason is None:
        try:
            dns.resolver_name(settings)
        except LkChaosError as exc:
            reason = str(exc)
    if reason is not None:
        raise ActivityFailed(f"{what} is refused: {reason}")


@contextmanager
def _resolver(settings: Settings, what: str) -> Iterator[dns.Resolver]:
    _refuse(settings, what)
    try:
        client = docker_client()
    except LkChaosError as exc:
        raise ActivityFailed(f"{what} failed: {exc}") from exc
    try:
        yield dns.resolver(client, settings)
    except (LkChaosError, OSError) as exc:
        raise ActivityFailed(f"{what} failed: {exc}; `lkchaos recover` undoes what was "
                             "done") from exc  # fmt: skip
    finally:
        client.close()


def _check_name(name: Any) -> str:
    """A host name (lower-cased) that can go into the hosts file and dnsmasq's
    configuration: no options, no newlines, no shell or dnsmasq syntax."""
    return check_dns_name("name", name)


def _check_mode(mode: Any) -> str:
    if not isinstance(mode, str) or mode not in MODES:
        raise ActivityFailed(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    return str(mode)


def _check_address(address: Any) -> str:
    try:
        if not isinstance(address, str):
            raise ValueError(address)
        return str(ipaddress.ip_address(address))
    except ValueError as exc:
        raise ActivityFailed(f"address must be an IPv4 or IPv6 address, not {address!r}") from exc


def _name(found: dns.Resolver, name: Any) -> str:
    key = _check_name(name)
    known = dns.known_names(found.hosts.read_text())
    if key not in known:
        raise ActivityFailed(f"{name!r} is not in the resolver's hosts file ({found.hosts}); "
                             f"names: {', '.join(sorted(known))}")  # fmt: skip
    return key


def _running(found: dns.Resolver) -> None:
    state = found.state
    if state != "running":
        raise ActivityFailed(f"the resolver is {state}, not running: start_resolver first")


def _apply(found: dns.Resolver, settings: Settings, name: str, kind: str,
           address: str | None) -> Dict[str, Any]:  # fmt: skip
    text = found.hosts.read_text()
    before = dns.hosts_names(dns.unhide(text, name)).get(name, [])
    ledger.record(settings.state_dir, ledger.Fault(NAME, name, UNDO, "restore_name",
                                                   {"name": name}))  # fmt: skip
    found.hosts.write_text(dns.hide(text, name, kind, address))  # in place: see dns.client
    restart_s = None
    conf = found.conf.read_text()
    if kind == "servfail" or name in dns.servfail_names(conf):
        edited = dns.add_servfail(conf, name) if kind == "servfail" else (
            dns.remove_servfail(conf, name))  # fmt: skip
        found.conf.write_text(edited)
        restart_s = round(dns.restart(found, settings), 3)
        reloaded = "restart"
    else:
        dns.reload_hosts(found)
        reloaded = "sighup"
    if kind == "servfail":
        _answers(settings, name, lambda a: a.rcode == "SERVFAIL", "SERVFAIL")
    elif kind == "nxdomain":
        _answers(settings, name, lambda a: a.rcode == "NXDOMAIN", "NXDOMAIN")
    elif kind == "wrong_address":
        _answers(settings, name, lambda a: a.rcode == "NOERROR" and a.addresses == (address,),
                 f"the address {address}", rdtype="AAAA" if address and ":" in address else "A")
    return {"name": name, "fault": kind, "address": address, "before": before,
            "reloaded": reloaded, "restart_s": restart_s}  # fmt: skip


def _restored(settings: Settings, name: str, addresses: List[str]) -> None:
    want = tuple(sorted(a for a in addresses if ":" not in a))

    def back(answer: dns.Answer) -> bool:
        return answer.rcode == "NOERROR" and tuple(sorted(answer.addresses)) == want

    _answers(settings, name, back, f"the original address {list(want)}")


def _answers(
    settings: Settings, name: str, holds: Callable[[dns.Answer], bool], what: str,
    rdtype: str = "A",
) -> None:  # fmt: skip
    """Until the resolver answers ``name`` as ``holds`` wants (asked at ``dns_server``)."""
    def look() -> dns.Answer:
        return dns.lookup(name, settings.dns_server, rdtype=rdtype, timeout=0.5)

    until(look, holds, f"{what} for {name} from the resolver at {settings.dns_server}",
          describe=lambda a: f"{a.rcode} {list(a.addresses)}")


def stop_resolver(
    mode: str = "pause", configuration: Configuration = None, secrets: Secrets = None
) -> Dict[str, Any]:
    """Take the resolver down: ``pause`` (it answers nothing; queries time out) or ``stop``
    (its port closes). Rollback: ``start_resolver``."""
    _check_mode(mode)
    settings = Settings.load(configuration, secrets)
    with _resolver(settings, "taking the resolver down") as found:
        _running(found)
        ledger.record(settings.state_dir, ledger.Fault(DOWN, found.name, UNDO,
                                                       "start_resolver"))  # fmt: skip
        if mode == "pause":
            found.container.pause()
        else:
            found.container.stop(timeout=2)
        probe = sorted(dns.known_names(found.hosts.read_text())) or ["localhost"]
        _answers(settings, probe[0], lambda a: a.rcode in ("TIMEOUT", "UNREACHABLE"),
                 "no answer")
        return {"service": found.name, "mode": mode, "before": "running",
                "after": found.state}  # fmt: skip


def start_resolver(configuration: Configuration = None, secrets: Secrets = None) -> Dict[str, Any]:
    """Bring the resolver back (unpause or start it) and have it re-read its hosts file. A
    rollback: does nothing to a running resolver."""
    settings = Settings.load(configuration, secrets)
    with _resolver(settings, "starting the resolver") as found:
        before = found.state
        if before == "paused":
            found.container.unpause()
            dns.reload_hosts(found)  # edits made while it was paused
        elif before != "running":
            found.container.start()
            if dns.servfail_names(found.conf.read_text()):
                dns.start_servfail_responder(found)
        probe = sorted(dns.known_names(found.hosts.read_text())) or ["localhost"]
        _answers(settings, probe[0], lambda a: a.rcode not in ("TIMEOUT", "UNREACHABLE", "ERROR"),
                 "an answer")
        ledger.forget(settings.state_dir, DOWN, found.name)
        return {"service": found.name, "before": before, "after": found.state}


def nxdomain_name(
    name: str, configuration: Configuration = None, secrets: Secrets = None
) -> Dict[str, Any]:
    """The resolver answers NXDOMAIN for ``name`` (its lines hidden from the hosts file, then
    SIGHUP). Rollback: ``restore_name``."""
    _check_name(name)
    settings = Settings.load(configuration, secrets)
    with _resolver(settings, f"NXDOMAIN for {name}") as found:
        key = _name(found, name)
        _running(found)
        return _apply(found, settings, key, "nxdomain", None)


def wrong_address(
    name: str,
    address: str = DEFAULT_WRONG_ADDRESS,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Dict[str, Any]:
    """The resolver answers ``address`` for ``name`` (default 192.0.2.1, routed nowhere).
    Rollback: ``restore_name``."""
    _check_name(name)
    ip = _check_address(address)
    settings = Settings.load(configuration, secrets)
    with _resolver(settings, f"a wrong address for {name}") as found:
        key = _name(found, name)
        _running(found)
        return _apply(found, settings, key, "wrong_address", str(ip))


def servfail_name(
    name: str, configuration: Configuration = None, secrets: Secrets = None
) -> Dict[str, Any]:
    """The resolver answers SERVFAIL for ``name``: forwarded to a responder that fails every
    query, which needs a restart of the resolver. Rollback: ``restore_name``."""
    _check_name(name)
    settings = Settings.load(configuration, secrets)
    with _resolver(settings, f"SERVFAIL for {name}") as found:
        key = _name(found, name)
        _running(found)
        return _apply(found, settings, key, "servfail", None)


def _restore(found: dns.Resolver, settings: Settings, name: str | None) -> Dict[str, Any]:
    hosts, conf = found.hosts.read_text(), found.conf.read_text()
    faulted = dns.hidden_names(hosts) | dns.servfail_names(conf)
    names: List[str] = sorted(faulted if name is None else faulted & {name})
    reloaded, restart_s = None, None
    if names:
        found.hosts.write_text(dns.unhide(hosts, name))
        if dns.servfail_names(conf) & set(names):
            found.conf.write_text(dns.remove_servfail(conf, name))
            if found.state == "running":
                restart_s = round(dns.restart(found, settings), 3)
            reloaded = "restart"
        else:
            reloaded = "sighup" if dns.reload_hosts(found) else None
        if found.state == "running":  # a paused resolver reads the file when it runs again
            restored = dns.hosts_names(found.hosts.read_text())
            for done in names:
                _restored(settings, done, restored.get(done, []))
    for done in names if name is None else [name]:
        ledger.forget(settings.state_dir, NAME, done)
    return {"restored": names, "reloaded": reloaded, "restart_s": restart_s}


def restore_name(
    name: str, configuration: Configuration = None, secrets: Secrets = None
) -> Dict[str, Any]:
    """Undo the fault on ``name`` (whichever it is): the original hosts lines back, and
    SERVFAIL's configuration removed (with a restart). A rollback: nothing when none is in
    place."""
    _check_name(name)
    settings = Settings.load(configuration, secrets)
    with _resolver(settings, f"restoring {name}") as found:
        return {"name": name.lower(), **_restore(found, settings, name.lower())}


def restore_dns(configuration: Configuration = None, secrets: Secrets = None) -> Dict[str, Any]:
    """Undo every lkchaos fault on the resolver: names restored, and the resolver running. A
    rollback: nothing when none is in place."""
    settings = Settings.load(configuration, secrets)
    started = start_resolver(configuration=configuration, secrets=secrets)
    with _resolver(settings, "restoring the resolver") as found:
        return {**_restore(found, settings, None), "resolver": started}
