"""Resolve names through a chosen DNS server (not the system resolver), with a timeout; and
reach the target's resolver (dnsmasq, the ``resolver`` role) to alter its answers.

Only a dnsmasq the target lets lkchaos fault (``resolver: {kind: dnsmasq, may_fault: true}``)
is reached: :func:`resolver` refuses any other (:func:`refusal` says why). Its files are found
through its container's bind mounts: its configuration at :data:`CONF_MOUNT` (dnsmasq's
default), and the hosts file it answers from, the first ``addn-hosts=`` file of that
configuration that is bind-mounted (else :data:`HOSTS_MOUNT`, the reference stack's)."""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
from chaoslib.exceptions import ActivityFailed

from lkchaos import roles
from lkchaos.docker.client import container_state, docker_client, runtime_container
from lkchaos.errors import ConfigError, StackError
from lkchaos.settings import Settings

TIMEOUT = 2.0


@dataclass(frozen=True)
class Answer:
    name: str
    rcode: str  # NOERROR, NXDOMAIN, REFUSED, SERVFAIL, TIMEOUT
    addresses: tuple[str, ...]
    latency_ms: float


def resolve(name: str, server: str, rdtype: str = "A", timeout: float = TIMEOUT) -> Answer:
    """Ask ``server`` (``host:port``; the host an address or a name this machine resolves)
    for ``name`` over UDP; a timeout is an answer too. Raises OSError when the server's own
    name does not resolve."""
    host, port = Settings.split_address(server, 53)
    host = _address_of(host, port)
    query = dns.message.make_query(name, dns.rdatatype.from_text(rdtype))
    start = time.perf_counter()
    try:
        response = dns.query.udp(query, host, port=port, timeout=timeout)
    except dns.exception.Timeout:
        return Answer(name, "TIMEOUT", (), (time.perf_counter() - start) * 1000)
    latency = (time.perf_counter() - start) * 1000
    addresses = tuple(
        item.to_text() for rrset in response.answer for item in rrset
        if rrset.rdtype == dns.rdatatype.from_text(rdtype)
    )
    return Answer(name, dns.rcode.to_text(response.rcode()), addresses, latency)


def _address_of(host: str, port: int) -> str:
    """``host`` as an IP address (a resolver named by host name, e.g. ``dns.internal:53``,
    is looked up through this machine's own resolver: DNS queries go to an address)."""
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except OSError as exc:
        raise OSError(f"the resolver's host name {host!r} does not resolve here ({exc})") from exc
    return str(found[0][4][0])


def lookup(name: str, server: str, rdtype: str = "A", timeout: float = TIMEOUT) -> Answer:
    """Like :func:`resolve`, but a server that cannot be asked at all (its host name does not
    resolve, no route) or a reply that cannot be read is an answer too: ``UNREACHABLE``,
    ``ERROR``. A closed UDP port reads ``TIMEOUT``: the query's socket is not connected, so
    the port's ICMP error is not read."""
    start = time.perf_counter()
    try:
        return resolve(name, server, rdtype, timeout)
    except OSError:
        return Answer(name, "UNREACHABLE", (), (time.perf_counter() - start) * 1000)
    except dns.exception.DNSException:
        return Answer(name, "ERROR", (), (time.perf_counter() - start) * 1000)


# The target's resolver: dnsmasq, answering from a hosts file that is
# bind-mounted from this machine and re-read on SIGHUP. Faults edit that file in place (a
# single-file bind mount keeps pointing at the file's inode, so it must not be replaced by a
# rename) with lines lkchaos marks, so that undoing them gives back the original text exactly:
#
#   #lkchaos-hidden lk.chaos.test 172.29.77.10 lk.chaos.test     <- the original, hidden
#   192.0.2.1 lk.chaos.test #lkchaos-fault lk.chaos.test wrong_address
#
# SERVFAIL needs more than the hosts file: dnsmasq answers SERVFAIL only when the server it
# forwards to does, so a ``server=/<name>/`` block is added to its configuration (read only
# when it starts) pointing at a responder that answers SERVFAIL to everything.

HIDDEN = "#lkchaos-hidden "
FAULT = "#lkchaos-fault "
#: The hosts file when the configuration names none that is bind-mounted (the reference's).
HOSTS_MOUNT = "/etc/dnsmasq.d/hosts"
#: dnsmasq's configuration file, where it reads it by default.
CONF_MOUNT = "/etc/dnsmasq.conf"
NO_RESOLVER = "the target has no resolver"
NO_FAULT = ("the target's resolver has may_fault: false: lkchaos only asks it questions; set "
            "may_fault: true to allow DNS faults")  # fmt: skip
#: Port of the SERVFAIL responder inside the dns container.
SERVFAIL_PORT = 5354
#: A UDP server (Perl is in every Debian image) that answers every query with SERVFAIL.
SERVFAIL_RESPONDER = f"""$0 = "lkchaos-servfail";
use IO::Socket::INET;
my $s = IO::Socket::INET->new(LocalAddr => "127.0.0.1:{SERVFAIL_PORT}", Proto => "udp")
  or die "lkchaos-servfail: $!";
while (defined $s->recv(my $q, 4096)) {{
  next if length($q) < 12;
  my $flags = (unpack("n", substr($q, 2, 2)) & 0x7900) | 0x8082;
  $s->send(substr($q, 0, 2) . pack("n", $flags) . substr($q, 4, 2) . "\\0" x 6
           . substr($q, 12));
}}
"""


def _fields(line: str) -> list[str]:
    return line.split("#", 1)[0].split()


def hosts_names(text: str) -> dict[str, list[str]]:
    """Name -> addresses, as dnsmasq answers them now (hidden lines do not count)."""
    names: dict[str, list[str]] = {}
    for line in text.splitlines():
        fields = _fields(line)
        for name in fields[1:]:
            names.setdefault(name.lower(), []).append(fields[0])
    return names


def hidden_names(text: str) -> set[str]:
    """Names with an lkchaos fault in the hosts file."""
    found = set()
    for line in text.splitlines():
        for marker in (HIDDEN, FAULT):
            if marker in line:
                found.add(line.split(marker, 1)[1].split()[0])
    return found


def known_names(text: str) -> set[str]:
    return set(hosts_names(unhide(text)))


def hide(text: str, name: str, kind: str, address: str | None = None) -> str:
    """``text`` with every line naming ``name`` hidden (other names of such lines kept) and,
    with ``address``, a line answering ``name`` with it. A fault already there is undone
    first, so faults on one name do not stack."""
    name = name.lower()
    out: list[str] = []
    for line in unhide(text, name).splitlines():
        fields = _fields(line)
        if name not in [f.lower() for f in fields[1:]]:
            out.append(line)
            continue
        out.append(f"{HIDDEN}{name} {line}")
        others = [f for f in fields[1:] if f.lower() != name]
        if others:
            out.append(f"{fields[0]} {' '.join(others)} {FAULT}{name} keep")
    if address is not None:
        out.append(f"{address} {name} {FAULT}{name} {kind}")
    return "\n".join(out) + ("\n" if text.endswith("\n") or not text else "")


def unhide(text: str, name: str | None = None) -> str:
    """``text`` without lkchaos's faults (on ``name`` only, or all)."""
    out: list[str] = []
    for line in text.splitlines():
        if FAULT in line and (name is None or line.split(FAULT, 1)[1].split()[0] == name):
            continue
        if line.startswith(HIDDEN):
            target, _, original = line[len(HIDDEN):].partition(" ")
            if name is None or target == name:
                out.append(original)
                continue
        out.append(line)
    return "\n".join(out) + ("\n" if text.endswith("\n") else "")


def _block(name: str) -> tuple[str, str]:
    return f"# lkchaos-fault {name} servfail: begin", f"# lkchaos-fault {name} servfail: end"


def add_servfail(conf: str, name: str) -> str:
    """dnsmasq's configuration with ``name`` forwarded to the SERVFAIL responder."""
    conf = remove_servfail(conf, name)
    begin, end = _block(name)
    sep = "" if conf.endswith("\n") or not conf else "\n"
    return f"{conf}{sep}{begin}\nserver=/{name}/127.0.0.1#{SERVFAIL_PORT}\n{end}\n"


def remove_servfail(conf: str, name: str | None = None) -> str:
    """dnsmasq's configuration without lkchaos's SERVFAIL blocks (for ``name``, or all)."""
    out: list[str] = []
    skipping = False
    for line in conf.splitlines(keepends=True):
        stripped = line.strip()
        if stripped.startswith("# lkchaos-fault ") and stripped.endswith("servfail: begin"):
            if name is None or stripped.split()[2] == name:
                skipping = True
                continue
        if skipping:
            if stripped.startswith("# lkchaos-fault ") and stripped.endswith("servfail: end"):
                skipping = False
            continue
        out.append(line)
    return "".join(out)


def servfail_names(conf: str) -> set[str]:
    return {
        line.split()[2] for line in conf.splitlines()
        if line.startswith("# lkchaos-fault ") and line.rstrip().endswith("servfail: begin")
    }


@dataclass(frozen=True)
class Resolver:
    """The resolver's container, its runtime name and, on this machine, the files it answers
    from."""

    container: Any
    hosts: Path
    conf: Path
    name: str = "dns"

    @property
    def state(self) -> str:
        return str(container_state(self.container)["state"])


def refusal(settings: Settings) -> str | None:
    """Why lkchaos may not fault this target's resolver, or None."""
    if not settings.dns_server:
        return NO_RESOLVER
    if not settings.resolver_may_fault:
        return NO_FAULT
    return None


def resolver_name(settings: Settings) -> str:
    """The resolver's runtime name (the ``resolver`` role); ConfigError when unmapped."""
    try:
        return roles.resolve_one(settings, "resolver", "the resolver")
    except ActivityFailed as exc:
        raise ConfigError(str(exc)) from exc


def _bound(container: Any) -> dict[str, Path]:
    return {
        str(m.get("Destination")): Path(str(m.get("Source")))
        for m in container.attrs.get("Mounts") or [] if m.get("Type") == "bind"
    }


def _on_host(bound: dict[str, Path], inside: str) -> Path | None:
    """The file ``inside`` the container, on this machine through a bind mount, or None."""
    target = PurePosixPath(inside)
    for dest, source in sorted(bound.items(), key=lambda item: -len(item[0])):
        mount = PurePosixPath(dest)
        if target == mount:
            return source
        if mount in target.parents:
            return source.joinpath(*target.relative_to(mount).parts)
    return None


def hosts_files(conf: str) -> list[str]:
    """The ``addn-hosts=`` paths of a dnsmasq configuration, in order."""
    found = []
    for line in conf.splitlines():
        key, sep, value = line.split("#", 1)[0].strip().partition("=")
        if sep and key.strip() == "addn-hosts" and value.strip():
            found.append(value.strip())
    return found


def resolver(client: Any, settings: Settings) -> Resolver:
    """Find the resolver's container and the files it bind-mounts (ConfigError if it cannot
    be used, or may not be faulted)."""
    reason = refusal(settings)
    if reason is not None:
        raise ConfigError(reason)
    name = resolver_name(settings)
    container = runtime_container(client, settings, name)
    bound = _bound(container)
    conf = bound.get(CONF_MOUNT)
    if conf is None or not conf.is_file():
        raise ConfigError(
            f"the resolver {name!r} does not bind-mount its configuration {CONF_MOUNT} from a "
            "file on this machine: lkchaos edits dnsmasq's files here, so mount it from the "
            "Docker host (and run lkchaos there)"
        )
    candidates = [*hosts_files(conf.read_text()), HOSTS_MOUNT]
    for inside in candidates:
        hosts = _on_host(bound, inside)
        if hosts is not None and hosts.is_file():
            return Resolver(container, hosts, conf, name)
    raise ConfigError(
        f"none of the resolver {name!r}'s hosts files ({', '.join(dict.fromkeys(candidates))}) "
        "is bind-mounted from a file on this machine: lkchaos answers faults through dnsmasq's "
        "addn-hosts file, so mount it from the Docker host"
    )


def reload_hosts(found: Resolver) -> bool:
    """SIGHUP: dnsmasq re-reads its hosts file at once. False when it is not running (a
    paused or stopped dnsmasq reads the file when it runs again: unpausing sends SIGHUP)."""
    if found.state != "running":
        return False
    found.container.kill(signal="SIGHUP")
    return True


def wait_answering(server: str, name: str, wait_s: float = 15.0) -> float:
    """Poll ``server`` until it answers at all (any rcode); returns the seconds waited."""
    start = time.monotonic()
    while True:
        answer = lookup(name, server, timeout=0.5)
        if answer.rcode not in ("TIMEOUT", "UNREACHABLE", "ERROR"):
            return time.monotonic() - start
        if time.monotonic() - start > wait_s:
            raise StackError(f"the resolver at {server} does not answer {wait_s:.0f} s after "
                             "its restart: see the resolver container's logs")  # fmt: skip
        time.sleep(0.05)


def restart(found: Resolver, settings: Settings) -> float:
    """Restart dnsmasq (its configuration is read only at start), start the SERVFAIL
    responder if the configuration forwards to it, and wait until it answers again. Returns
    the seconds from the restart to the first answer for a name without a fault: how long
    nothing resolved."""
    conf = found.conf.read_text()
    names = sorted(hosts_names(found.hosts.read_text()))
    healthy = [n for n in names if n not in servfail_names(conf)] or names or ["localhost"]
    start = time.monotonic()
    found.container.restart(timeout=2)
    if servfail_names(conf):
        start_servfail_responder(found)
    wait_answering(settings.dns_server, healthy[0])
    return time.monotonic() - start


def start_servfail_responder(found: Resolver) -> None:
    code, output = found.container.exec_run(["perl", "-e", SERVFAIL_RESPONDER], detach=True)
    if code not in (0, None):
        raise StackError(f"cannot start the SERVFAIL responder (perl) in {found.name}: "
                         f"{output!r}")


def sweep(settings: Settings) -> list[dict[str, Any]]:
    """Undo every lkchaos fault left in the resolver's files (for ``lkchaos recover``), and
    have a running resolver re-read its hosts file in any case (a file restored while it was
    paused is read only then). Nothing on a target whose resolver lkchaos may not fault: it
    never changed it."""
    if refusal(settings) is not None:
        return []
    client = docker_client()
    try:
        found = resolver(client, settings)
        hosts, conf = found.hosts.read_text(), found.conf.read_text()
        names = sorted(hidden_names(hosts) | servfail_names(conf))
        if names:
            found.hosts.write_text(unhide(hosts))
        if servfail_names(conf):
            found.conf.write_text(remove_servfail(conf))
            if found.state == "running":
                restart(found, settings)
        else:
            reload_hosts(found)
    except OSError as exc:
        raise StackError(f"cannot restore the resolver's files: {exc}") from exc
    finally:
        client.close()
    return [{"fault": f"DNS answers for {name} altered", "outcome": "restored"}
            for name in names]  # fmt: skip
