"""Network items: DNS of every public name, the document's ports, reachability, a port scan.

The document's ports (443, 7880, 7881, 5349, 3478, 1935, 8080, 50000-60000) are mapped to
where the target has them (:func:`port_map`): the TLS proxy's address for 443, each LiveKit
node's HTTP URL for 7880, the Ingress URLs for 1935 and 8080, the TURN name for 3478/5349. A
port the target does not use is ``n/a`` with why. On the reference stack, which publishes
its ports on 127.0.0.1 and keeps UDP inside its network, the map names its published ports
and, for what it does not publish (RTC TCP 7881, TURN/UDP 3478, the muxed ICE UDP port
7882), the containers' addresses in the stack network, which this machine routes to.

TCP ports are checked by connecting; UDP ports by a real exchange, a STUN binding request
(RFC 5389) answered with the address the server saw. LiveKit's muxed ICE port answers STUN
only inside an ICE session (a request must carry a session's user fragment), so for the RTC
UDP port the finding says that no answer proves nothing and a connected participant is the
evidence (the LiveKit items).

The port scan uses nmap (Debian package ``nmap``): a TCP connect scan of the deployment's
addresses, bounded to ports 1-1024 and the span of the target's expected ports.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import socket
import struct
import subprocess
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from lkchaos.dns import client as dns_client
from lkchaos.settings import Settings, is_ip_address, split_host_port
from lkchaos.validate import facts
from lkchaos.validate.model import Context, Finding, check, early

#: The roles of the document's public names (``lk.delo.sh``, ``lk-turn.``, ``lk-whip.``).
NAME_ROLES = ("lk", "turn", "whip")
STUN_MAGIC = 0x2112A442
STUN_TIMEOUT = 2.0


# --- the target's names and ports -------------------------------------------------------

def is_reference(settings: Settings) -> bool:
    """Whether the target is the reference stack (its facts in the state folder match)."""
    return facts.reference(settings) is not None


def reference_address(settings: Settings, service: str) -> str:
    """A reference stack service's address in its network (from its facts)."""
    found = facts.reference(settings)
    if found is None:
        raise KeyError("the target is not the reference stack")
    return facts.address(found, service)


def public_names(settings: Settings) -> dict[str, str | None]:
    """``lk``/``turn``/``whip`` -> the target's name for it, or None when it has none: LiveKit's
    URL host, and the TLS names whose first label says ``turn`` or ``whip``."""
    names: dict[str, str | None] = {"lk": settings.livekit_host or None, "turn": None,
                                    "whip": None}  # fmt: skip
    for name in settings.tls_names:
        label = name.split(".", 1)[0].lower()
        for role in ("turn", "whip"):
            if role in label and names[role] is None:
                names[role] = name
    return names


def livekit_path(settings: Settings) -> str:
    """The path LiveKit is served under behind the proxy, from its URL (``""`` for
    ``wss://lk.example.com``, ``"/livekit"`` for ``wss://example.com/livekit/``): LiveKit's
    clients put ``/rtc`` and ``/twirp`` under it, and a health check asks ``<path>/``."""
    return urlsplit(settings.livekit_url).path.rstrip("/")


def name_role(settings: Settings, name: str) -> str:
    """The role (``lk``, ``turn``, ``whip``) of one of the target's TLS names, else ``other``."""
    for role, value in public_names(settings).items():
        if value == name:
            return role
    return "other"


@dataclass(frozen=True)
class Endpoint:
    """Where one of the document's ports is on the target. ``kind``: ``tcp`` (connect),
    ``tls`` (connect and shake hands as ``name``), ``stun`` (a STUN binding over UDP),
    ``turn-tls`` (STUN over TLS as ``name``)."""

    host: str
    port: int
    kind: str
    name: str | None = None
    label: str = ""

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def _url_endpoint(url: str, default_port: int, label: str) -> Endpoint | None:
    if not url:
        return None
    parts = urlsplit(url)
    if not parts.hostname:
        return None
    return Endpoint(parts.hostname, parts.port or default_port, "tcp", label=label)


def _node_hosts(settings: Settings) -> list[tuple[str, str]]:
    """(label, host) of each LiveKit node where its RTC ports are."""
    if is_reference(settings):
        return [(node, reference_address(settings, node)) for node in ("livekit-1", "livekit-2")]
    hosts = []
    for index, url in enumerate(settings.livekit_node_urls, 1):
        host = urlsplit(url).hostname
        if host:
            hosts.append((f"node {index}", host))
    return hosts


def port_map(settings: Settings) -> dict[str, list[Endpoint] | str]:
    """Each port child of ``infra.firewall-rules-configured`` -> where to check it on the
    target, or why it does not apply."""
    names = public_names(settings)
    host, port = Settings.split_address(settings.tls_address, 443)
    tls = [Endpoint(host, port, "tls", name, name) for name in settings.tls_names]
    nodes = [_url_endpoint(url, 7880, f"node {i}")
             for i, url in enumerate(settings.livekit_node_urls, 1)]  # fmt: skip
    # The document's ports are LiveKit's defaults; the target says where its own are
    # (livekit.rtc_tcp_port, livekit.turn_udp_port; 0: that listener is off).
    tcp_port, turn_udp = settings.livekit_rtc_tcp_port, settings.livekit_turn_udp_port
    rtc_tcp = [Endpoint(h, tcp_port, "tcp", label=label) for label, h in _node_hosts(settings)]
    turn = names["turn"]
    mapped: dict[str, list[Endpoint] | str] = {
        "port-443": tls or "the target names no TLS names (tls_proxy.names)",
        "port-7880": [n for n in nodes if n] or "the target names no LiveKit node URLs",
        "port-7881": ("LiveKit's TCP fallback is off (livekit.rtc_tcp_port 0)" if not tcp_port
                      else rtc_tcp or "the target names no LiveKit node URLs"),
    }
    if turn is None:
        mapped["port-5349"] = mapped["port-3478"] = "the target has no TURN name"
    else:
        mapped["port-5349"] = (
            [Endpoint(host, port, "turn-tls", turn, f"{turn} via the TLS proxy")]
            if turn in settings.tls_names else [Endpoint(turn, 5349, "turn-tls", turn, turn)])
        if not turn_udp:
            mapped["port-3478"] = "LiveKit's TURN over UDP is off (livekit.turn_udp_port 0)"
        elif is_reference(settings):
            mapped["port-3478"] = [Endpoint(h, turn_udp, "stun", label=label)
                                   for label, h in _node_hosts(settings)]  # fmt: skip
        else:
            mapped["port-3478"] = [Endpoint(turn, turn_udp, "stun", label=turn)]
    rtmp = _url_endpoint(settings.ingress_rtmp_url, 1935, "Ingress RTMP")
    mapped["port-1935"] = [rtmp] if rtmp else "the target has no Ingress RTMP URL"
    whip = _url_endpoint(settings.ingress_whip_url, 8080, "Ingress WHIP")
    mapped["port-8080"] = [whip] if whip else "the target has no Ingress WHIP URL"
    if is_reference(settings):
        mapped["ports-50000"] = [Endpoint(h, 7882, "stun", label=f"{label} ICE UDP mux")
                                 for label, h in _node_hosts(settings)]  # fmt: skip
    else:
        mapped["ports-50000"] = [Endpoint(h, p, "stun", label=f"{label} RTC UDP")
                                 for label, h in _node_hosts(settings)
                                 for p in (50000, 55000, 59999)]  # fmt: skip
    return mapped


# --- primitives ---------------------------------------------------------------------------

def tcp_connect(host: str, port: int, timeout: float) -> tuple[bool, str]:
    """Whether a TCP connection opens, and what happened, with the time it took."""
    start = time.perf_counter()
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True, f"connected in {(time.perf_counter() - start) * 1000:.0f} ms"
    except OSError as exc:
        return False, f"{type(exc).__name__}: {exc}"


def stun_request() -> tuple[bytes, bytes]:
    """A STUN binding request and its transaction id."""
    txid = secrets.token_bytes(12)
    return struct.pack("!HHI", 0x0001, 0, STUN_MAGIC) + txid, txid


def stun_mapped(data: bytes, txid: bytes) -> str | None:
    """The (XOR-)MAPPED-ADDRESS of a binding success response to ``txid``, else None."""
    if len(data) < 20:
        return None
    kind, length, magic = struct.unpack("!HHI", data[:8])
    if kind != 0x0101 or magic != STUN_MAGIC or data[8:20] != txid:
        return None
    pos, end = 20, min(len(data), 20 + length)
    while pos + 4 <= end:
        attr, size = struct.unpack("!HH", data[pos:pos + 4])
        value = data[pos + 4:pos + 4 + size]
        if attr in (0x0020, 0x0001) and len(value) >= 8 and value[1] == 1:
            port = struct.unpack("!H", value[2:4])[0]
            raw = value[4:8]
            if attr == 0x0020:
                port ^= STUN_MAGIC >> 16
                raw = bytes(b ^ m for b, m in zip(raw, struct.pack("!I", STUN_MAGIC), strict=True))
            return f"{ipaddress.IPv4Address(raw)}:{port}"
        pos += 4 + size + (-size % 4)
    return None


def stun_udp(host: str, port: int, timeout: float = STUN_TIMEOUT, tries: int = 2) -> str | None:
    """A STUN binding over UDP: the mapped address the server answered, or None."""
    try:
        infos = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_DGRAM)
    except OSError:
        return None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout / tries)
        for _ in range(tries):
            request, txid = stun_request()
            try:
                sock.sendto(request, infos[0][4])
                deadline = time.monotonic() + timeout / tries
                while time.monotonic() < deadline:
                    data, _ = sock.recvfrom(2048)
                    mapped = stun_mapped(data, txid)
                    if mapped:
                        return mapped
            except OSError:  # timeout, or ICMP port unreachable
                continue
    return None


def _probe(endpoint: Endpoint, settings: Settings, timeout: float) -> tuple[bool, str]:
    if endpoint.kind == "tcp":
        return tcp_connect(endpoint.host, endpoint.port, timeout)
    if endpoint.kind == "stun":
        mapped = stun_udp(endpoint.host, endpoint.port, min(timeout, STUN_TIMEOUT))
        return (mapped is not None,
                f"STUN binding answered (mapped {mapped})" if mapped else "no STUN answer")
    if endpoint.kind == "turn-tls":
        from lkchaos.validate.checks import turn

        return turn.stun_over_tls(endpoint.address, endpoint.name or endpoint.host,
                                  settings, timeout)  # fmt: skip
    from lkchaos.tls import client

    seen = client.handshake_retried(endpoint.address, endpoint.name or endpoint.host,
                                    timeout=timeout)  # fmt: skip
    return seen.ok, f"TLS {seen.version}" if seen.ok else f"TLS {seen.outcome}: {seen.error}"


def _port_finding(ctx: Context, child: str) -> Finding:
    started = time.monotonic()
    where = port_map(ctx.settings)[child]
    if isinstance(where, str):
        return Finding("n/a", where)
    results = []
    for endpoint in where:
        ok, what = _probe(endpoint, ctx.settings, min(ctx.timeout_s, 5.0))
        results.append({"address": endpoint.address, "kind": endpoint.kind,
                        "label": endpoint.label, "ok": ok, "evidence": what})  # fmt: skip
    failed = [r for r in results if not r["ok"]]
    text = "; ".join(f"{r['label'] or r['address']} ({r['address']}): {r['evidence']}"
                     for r in results)  # fmt: skip
    if child == "ports-50000" and failed:
        return _rtc_udp(ctx, results, started)
    data: dict[str, Any] = {"endpoints": results}
    transport = {"port-3478": "udp", "port-5349": "tls"}.get(child)
    if transport is not None and not failed and ctx.settings.livekit_api_key:
        from lkchaos.validate.checks import turn

        try:
            runs = [r for r in turn.turn_results(ctx) if r["transport"] == transport]
        except Exception as exc:  # the allocation is evidence here, not the item itself
            text += f"; TURN allocation not tried: {exc}"
        else:
            data["turn"] = runs
            text += "".join(f"; {turn.summary(r)[1]}" for r in runs)
    return Finding("fail" if failed else "pass", text, data)


#: Participants placed at most, to see media reach each node (LiveKit picks a room's node).
RTC_UDP_TRIES = 6


def _rtc_udp(ctx: Context, stun: list[dict[str, Any]], started: float) -> Finding:
    """The RTC UDP item when STUN alone got no answer (LiveKit answers it only inside an ICE
    session): a participant's published audio must flow over UDP straight to the node (no
    TURN relay).

    Where LiveKit's ``nodes`` hash in Redis can be read, a room is created on each serving
    node by its id (``CreateRoomRequest.node_id``), so every node's port is shown whichever
    node the selector favours, behind a load balancer or NAT too (a node is named by its URL
    where its announced IP is a URL's host, else by that IP). Where Redis cannot be read,
    LiveKit's node selector places each room, so participants are placed (at most
    :data:`RTC_UDP_TRIES`) until media has reached every node's address. Either way a node
    is tried again while the check's time lasts; placed by id, every node's first room is
    tried at the same time."""
    nodes = list(zip(_node_hosts(ctx.settings), ctx.settings.livekit_node_urls, strict=False))
    if not nodes:
        return Finding("warn", "no STUN answer and no LiveKit node URL to place a participant "
                       "through; set the target's livekit.nodes", {"endpoints": stun})
    # The whole item (its STUN probes included, from ``started``) within the check's time:
    # the runner stops waiting past it. At least 3 s for one participant.
    deadline = max(started + ctx.timeout_s - 1.0, time.monotonic() + 3.0)
    serving = _serving_nodes(ctx.settings, min(ctx.timeout_s / 4, 2.0))
    if serving:
        return _rtc_udp_placed(ctx, nodes, serving, stun, deadline)
    return _rtc_udp_selected(ctx, nodes, stun, deadline)


def _media(ctx: Context, url: str, deadline: float, node_id: str = "") -> dict[str, Any] | None:
    """One participant's media path through ``url`` (see ``_livekit_media.media_path``), or
    None when too little of the check's time is left to try."""
    from lkchaos.livekit.background import LEAVE_SLACK_S
    from lkchaos.livekit.isolated import run_isolated
    from lkchaos.validate.checks._livekit_media import media_path
    from lkchaos.validate.checks.livekit import room_name

    remaining = deadline - time.monotonic()
    if remaining < 1.0:
        return None
    timeout = min(remaining, 10.0)
    found = run_isolated(media_path, ctx.settings, url, timeout, room_name("udp"), node_id,
                         timeout_s=timeout + LEAVE_SLACK_S)  # fmt: skip
    return {**found, "url": url}


def _udp_remote(found: dict[str, Any]) -> str | None:
    path = found.get("path") or {}
    return str(path["remote"]) if path.get("path") == "udp" and path.get("remote") else None


def _why(tries: list[dict[str, Any]]) -> str:
    return "; ".join(f"{t['url']}" + (f" (room on {t['node_id']})" if t.get("node_id") else "")
                     + ": " + (t["reason"] or f"media took {(t.get('path') or {}).get('path')}"
                               ", not UDP") for t in tries)  # fmt: skip


_NOTE = " (STUN alone gets no answer outside an ICE session)"


def _rtc_udp_placed(ctx: Context, nodes: list[tuple[tuple[str, str], str]],
                    serving: dict[str, str], stun: list[dict[str, Any]],
                    deadline: float) -> Finding:  # fmt: skip
    """A room on each serving node (``serving``: node id -> announced IP), by its id."""
    urls = {host: url for (_, host), url in nodes}
    labels = {host: label for (label, host), _ in nodes}
    first = nodes[0][1]
    # node id -> (name, the URL its room is created through)
    targets = {node_id: (labels.get(ip, f"node {node_id} ({ip})"), urls.get(ip, first))
               for node_id, ip in sorted(serving.items(), key=lambda kv: kv[1])}  # fmt: skip
    shown: dict[str, str] = {}  # node id -> the address its media reached
    tries: list[dict[str, Any]] = []

    def record(node_id: str, found: dict[str, Any]) -> None:
        tries.append(found)
        remote = _udp_remote(found)
        if remote:
            shown[node_id] = remote

    # A room on every node at once first (each participant a process of its own: one
    # node's ICE does not wait for another's), then the nodes not shown yet in turn.
    with ThreadPoolExecutor(max_workers=len(targets),
                            thread_name_prefix="lkchaos-rtc-udp") as pool:  # fmt: skip
        placing = {node_id: pool.submit(_media, ctx, targets[node_id][1], deadline, node_id)
                   for node_id in targets}  # fmt: skip
        for node_id, future in placing.items():
            if (found := future.result()) is not None:
                record(node_id, found)
    for attempt in range(max(RTC_UDP_TRIES - len(targets), 0)):
        waiting = [n for n in targets if n not in shown]
        if not waiting:
            break
        node_id = waiting[attempt % len(waiting)]
        found = _media(ctx, targets[node_id][1], deadline, node_id)
        if found is None:
            break
        record(node_id, found)
    reached = {split_host_port(remote, None)[0]: remote for remote in shown.values()}
    data = {"endpoints": stun, "media": tries, "reached": reached, "node_ids":
            {ip: node_id for node_id, ip in serving.items()}}  # fmt: skip
    text = "; ".join(f"{targets[n][0]}: a participant's audio flowed over UDP to {shown[n]}"
                     for n in targets if n in shown)  # fmt: skip
    missing = [n for n in targets if n not in shown]
    if missing:
        why = _why([t for t in tries if t["node_id"] in missing]) or \
            "the check's time ran out before a room was tried there"
        text = (text + "; " if text else "") + (
            f"no participant's media flowed over UDP to "
            f"{', '.join(targets[n][0] for n in missing)} ({why})")
        return Finding("fail", text + _NOTE, data)
    return Finding("pass", text + _NOTE, data)


def _rtc_udp_selected(ctx: Context, nodes: list[tuple[tuple[str, str], str]],
                      stun: list[dict[str, Any]], deadline: float) -> Finding:  # fmt: skip
    """Rooms placed by LiveKit's node selector (Redis could not be read to place them)."""
    hosts = {host: label for (label, host), _ in nodes}
    reached: dict[str, str] = {}  # remote host -> "address:port"
    tries: list[dict[str, Any]] = []
    for attempt in range(RTC_UDP_TRIES):
        waiting = [url for (_, host), url in nodes if host not in reached] or \
            [url for _, url in nodes]
        found = _media(ctx, waiting[attempt % len(waiting)], deadline)
        if found is None:
            break
        tries.append(found)
        remote = _udp_remote(found)
        if remote:
            reached[split_host_port(remote, None)[0]] = remote
        if set(hosts) <= set(reached) or len(reached) >= len(hosts):
            break
    data = {"endpoints": stun, "media": tries, "reached": reached, "node_ids": {}}
    if not reached:
        return Finding("fail", f"no participant's media flowed over UDP to a node "
                       f"({_why(tries)}){_NOTE}", data)  # fmt: skip
    unplaced = " (LiveKit's node selector placed the rooms: the nodes' ids could not be " \
        "read from Redis to place a room on each)"
    if not set(hosts) & set(reached):
        # The nodes announce addresses other than their URLs' hosts (a load balancer, NAT):
        # as many distinct addresses as nodes is the evidence.
        text = (f"a participant's audio flowed over UDP to {', '.join(sorted(reached.values()))}"
                " (the nodes' announced addresses)")
        if len(reached) < len(hosts):
            return Finding("warn", f"{text}: {len(reached)} address(es) for {len(hosts)} "
                           f"nodes in {len(tries)} rooms, so not every node's RTC UDP port "
                           f"is shown{unplaced}{_NOTE}", data)  # fmt: skip
        return Finding("pass", text + _NOTE, data)
    shown = "; ".join(f"{hosts[h]}: a participant's audio flowed over UDP to {reached[h]}"
                      for h in hosts if h in reached)  # fmt: skip
    missing = [hosts[h] for h in hosts if h not in reached]
    if missing:
        return Finding("warn", f"{shown}; LiveKit placed none of {len(tries)} rooms on "
                       f"{', '.join(missing)}, so its RTC UDP port is not shown{unplaced}"
                       f"{_NOTE}", data)  # fmt: skip
    return Finding("pass", shown + _NOTE, data)


def _serving_nodes(settings: Settings, timeout: float) -> dict[str, str]:
    """LiveKit's serving nodes: node id -> the IP it announces (LiveKit's ``nodes`` hash in
    Redis); empty where Redis cannot be read from here (its own items report why)."""
    from lkchaos.livekit import state

    try:
        nodes = state.read_nodes(settings, timeout)
    except Exception:  # the Redis items report why it cannot be read
        return {}
    now = time.time()
    return {node.id: node.ip for node in nodes.values() if node.available(now)}


def _register_port(child: str) -> None:
    def port_check(ctx: Context) -> Finding:
        return _port_finding(ctx, child)

    port_check.__name__ = f"port_{child.replace('-', '_')}"
    if child == "ports-50000":  # media to every node's RTC UDP port: the run's longest
        early(port_check)
    check(f"infra.firewall-rules-configured.{child}")(port_check)


for _child in ("port-443", "port-7880", "port-7881", "port-5349", "port-3478", "port-1935",
               "port-8080", "ports-50000"):  # fmt: skip
    _register_port(_child)


# --- DNS ------------------------------------------------------------------------------------

def resolve(settings: Settings, name: str, timeout: float) -> tuple[list[str], str]:
    """``name``'s IPv4 addresses from the target's resolver (``dns_server``), else from this
    machine's; and where they came from."""
    if settings.dns_server:
        answer = dns_client.lookup(name, settings.dns_server, timeout=min(timeout, 3.0))
        return list(answer.addresses), f"{answer.rcode} from {settings.dns_server}"
    try:
        infos = socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_STREAM)
    except OSError as exc:
        return [], f"system resolver: {exc}"
    return sorted({str(info[4][0]) for info in infos}), "system resolver"


def _register_dns(child: str, role: str) -> None:
    def dns_check(ctx: Context) -> Finding:
        name = public_names(ctx.settings)[role]
        if name is None:
            return Finding("n/a", f"the target has no {role} name (tls_proxy.names)")
        addresses, source = resolve(ctx.settings, name, ctx.timeout_s)
        data = {"name": name, "addresses": addresses, "source": source}
        if not addresses:
            return Finding("fail", f"{name} does not resolve ({source})", data)
        return Finding("pass", f"{name} -> {', '.join(addresses)} ({source})", data)

    dns_check.__name__ = f"dns_{role}"
    check(f"infra.dns-records-configured.{child}")(dns_check)


for _child, _role in (("lk", "lk"), ("lk-turn", "turn"), ("lk-whip", "whip")):
    _register_dns(_child, _role)


# --- reachability -------------------------------------------------------------------------

@check("infra.network-connectivity-validated")
def connectivity(ctx: Context) -> Finding:
    """Every public name resolves and its TLS endpoint answers a handshake from here."""
    from lkchaos.tls import client

    rows, bad = [], []
    for name in ctx.settings.tls_names:
        addresses, source = resolve(ctx.settings, name, ctx.timeout_s)
        seen = client.handshake_retried(ctx.settings.tls_address, name,
                                        timeout=min(ctx.timeout_s, 5))  # fmt: skip
        rows.append({"name": name, "addresses": addresses, "tls": seen.outcome})
        if not addresses or not seen.ok:
            bad.append(f"{name} ({'no address' if not addresses else seen.outcome})")
    text = (f"from this machine ({socket.gethostname()}) through {ctx.settings.tls_address}: "
            + (f"unreachable: {', '.join(bad)}" if bad else
               f"{len(rows)} names resolve and answer TLS"))  # fmt: skip
    if bad:
        return Finding("fail", text, {"names": rows})
    return Finding("warn" if is_reference(ctx.settings) else "pass",
                   text + ("; the reference stack is reachable from this machine only, so "
                           "'external networks' means this machine" if is_reference(ctx.settings)
                           else ""), {"names": rows})  # fmt: skip


# --- port scan ----------------------------------------------------------------------------

def expected_ports(settings: Settings) -> dict[str, set[int]]:
    """Address -> the TCP ports the target is expected to have open there."""
    expected: dict[str, set[int]] = {}
    for where in port_map(settings).values():
        if isinstance(where, str):
            continue
        for endpoint in where:
            if endpoint.kind in ("tcp", "tls", "turn-tls"):
                expected.setdefault(endpoint.host, set()).add(endpoint.port)
    found = facts.reference(settings)
    if found is not None:
        published = found.get("host_ports") or {}
        expected.setdefault("127.0.0.1", set()).update(int(p) for p in published.values())
        for address, ports in (found.get("listening") or {}).items():
            expected.setdefault(address, set()).update(int(p) for p in ports)
    return expected


def scan_targets(settings: Settings) -> dict[str, set[int]]:
    """Address -> expected ports, for the addresses to scan: the expected ports' hosts (names
    resolved) and every address a public name resolves to."""
    targets: dict[str, set[int]] = {}
    for host, ports in expected_ports(settings).items():
        if is_ip_address(host):
            addresses = [host]
        else:
            addresses, _ = resolve(settings, host, 5.0)
        for address in addresses:
            targets.setdefault(address, set()).update(ports)
    for name in settings.tls_names:
        for address in resolve(settings, name, 5.0)[0]:
            targets.setdefault(address, set())
    return targets


def nmap_scan(addresses: list[str], ports: str, timeout: float) -> dict[str, list[int]]:
    """Open TCP ports per address, by an nmap connect scan; raises RuntimeError when nmap
    is missing or fails."""
    nmap = shutil.which("nmap")
    if nmap is None:
        raise RuntimeError("nmap is not installed: install the Debian package nmap "
                           "(scripts/bootstrap.sh does)")  # fmt: skip
    command = [nmap, "-sT", "-Pn", "-n", "-T4", "--max-retries", "1", "--open",
               "--host-timeout", f"{int(timeout)}s", "-p", ports, "-oX", "-", *addresses]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout + 10,
                              check=False, env={**os.environ, "LC_ALL": "C"})  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"nmap did not finish within {timeout + 10:.0f} s") from exc
    if done.returncode != 0:
        raise RuntimeError(f"nmap failed ({done.returncode}): {done.stderr.strip()[:300]}")
    found: dict[str, list[int]] = {address: [] for address in addresses}
    for host in ET.fromstring(done.stdout).iter("host"):
        address = host.find("address")
        if address is None:
            continue
        ports_found = [int(p.get("portid", "0")) for p in host.iter("port")
                       if (s := p.find("state")) is not None and s.get("state") == "open"]
        found[address.get("addr", "")] = sorted(ports_found)
    return found


def _scan(ctx: Context) -> dict[str, Any]:
    targets = scan_targets(ctx.settings)
    every = sorted({p for ports in targets.values() for p in ports})
    span = f"1-1024,{max(1025, every[0])}-{max(1025, every[-1])}" if every else "1-1024"
    found = nmap_scan(sorted(targets), span, max(ctx.timeout_s - 5, 10.0))
    unexpected = {address: [p for p in ports if p not in targets.get(address, set())]
                  for address, ports in found.items()}  # fmt: skip
    return {"ports": span, "open": found,
            "unexpected": {a: p for a, p in unexpected.items() if p}}  # fmt: skip


def _describe(scan: dict[str, Any]) -> str:
    opened = "; ".join(f"{a}: {', '.join(map(str, p)) or 'none'}" for a, p in scan["open"].items())
    return f"TCP ports {scan['ports']} scanned with nmap; open: {opened}"


@early
@check("vuln.port-scan-results")
def port_scan(ctx: Context) -> Finding:
    scan = ctx.fact("network.scan", lambda: _scan(ctx))
    extra = "; ".join(f"{a}: {', '.join(map(str, p))}" for a, p in scan["unexpected"].items())
    if extra:
        return Finding("warn", f"open and not expected: {extra} ({_describe(scan)})", scan)
    return Finding("pass", f"only the expected ports are open ({_describe(scan)})", scan)


@check("vuln.unnecessary-services-exposed")
def unnecessary_services(ctx: Context) -> Finding:
    scan = ctx.fact("network.scan", lambda: _scan(ctx))
    loopback = {a: p for a, p in scan["unexpected"].items() if ipaddress.ip_address(a).is_loopback}
    other = {a: p for a, p in scan["unexpected"].items() if a not in loopback}
    if other:
        extra = "; ".join(f"{a}: {', '.join(map(str, p))}" for a, p in other.items())
        return Finding("fail", f"services the deployment does not need are exposed: {extra}",
                       scan)  # fmt: skip
    if loopback:
        extra = "; ".join(f"{a}: {', '.join(map(str, p))}" for a, p in loopback.items())
        return Finding("warn", f"open on loopback and not the deployment's expected ports: "
                       f"{extra} (this machine's own services share the address: review them)",
                       scan)  # fmt: skip
    return Finding("pass", f"nothing open beyond the expected ports ({_describe(scan)})", scan)
