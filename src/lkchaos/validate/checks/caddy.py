"""Caddy items: the TLS proxy in front of the target's names, seen from outside.

Which upstream answers a name (``caddy.sni-routing-correct``): LiveKit answers ``GET /`` with
``OK``; the TURN name must answer a STUN binding over TLS and give a TURN allocation over TLS
that relays (:mod:`lkchaos.validate.checks.turn`); the WHIP name must reach something that is
neither LiveKit nor a proxy error (502-504). Load balancing is seen in each LiveKit node's own
request counter (``livekit_node_twirp_request_status``) rising for requests sent through the
proxy; only the reference stack's per-node metrics endpoints are known, so on another target
it is manual. The proxy's health checks are LiveKit's own (``GET /`` on each node: 200 when
ready, 406 when the node lost Redis), asked of each node directly. The HTTP to HTTPS redirect
is asked of port 80 of the proxy's host (on the reference stack, which does not publish it,
Caddy's address in the stack network).
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import secrets
import socket
import urllib.error
import urllib.request
from typing import Any

from lkchaos.settings import Settings, join_host_port
from lkchaos.tls import client, sockets
from lkchaos.validate import facts
from lkchaos.validate.checks import network
from lkchaos.validate.checks.tls import answered, http_names, inspect, per_name
from lkchaos.validate.model import Context, Finding, check


def _timeout(ctx: Context) -> float:
    return min(ctx.timeout_s, 5.0)


def exchange(address: str, name: str, request: bytes, timeout: float,
             alpn: tuple[str, ...] = ("http/1.1",), limit: int = 65536) -> dict[str, Any]:
    """Send ``request`` over TLS to ``address`` as ``name`` (certificate not checked here:
    the certificate items do that); the status, lower-case headers, body start and the ALPN
    protocol chosen. Raises OSError when there is no HTTP answer."""
    host, port = Settings.split_address(address, 443)
    ctx = client.context()
    ctx.set_alpn_protocols(list(alpn))
    data = b""
    with socket.create_connection((host, port), timeout=timeout) as raw:
        with sockets.wrap(ctx, raw, server_hostname=name) as tls:
            chosen = tls.selected_alpn_protocol()
            if request:
                tls.sendall(request)
                while len(data) < limit:
                    chunk = tls.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                    head, sep, body = data.partition(b"\r\n\r\n")
                    if sep and (b" 101 " in head.split(b"\r\n", 1)[0]
                                or len(body) >= _length(head)):
                        break
    parsed = parse_http(data) if request else {"status": None, "headers": {}, "body": b""}
    return {**parsed, "alpn": chosen}


def _length(head: bytes) -> int:
    match = re.search(rb"\r\ncontent-length:\s*(\d+)", head, re.I)
    return int(match[1]) if match else 1 << 30


def parse_http(data: bytes) -> dict[str, Any]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("iso-8859-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) < 2 or not parts[1].isdigit():
        raise OSError(f"not an HTTP answer: {lines[0][:80]!r}")
    headers = {}
    for line in lines[1:]:
        key, sep, value = line.partition(":")
        if sep:
            headers[key.strip().lower()] = value.strip()
    return {"status": int(parts[1]), "headers": headers, "body": body[:512]}


def get(name: str, path: str = "/", extra: str = "") -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: {name}\r\nUser-Agent: lkchaos-validate\r\n{extra}"
            "Connection: close\r\n\r\n").encode()


PROXY_ERRORS = (502, 503, 504)


def route(ctx: Context, name: str) -> dict[str, Any]:
    """What answers ``name`` behind the proxy: ``upstream`` (``livekit``, ``turn``,
    ``other``, or ``proxy-error``) and the evidence; once per run."""
    def compute() -> dict[str, Any]:
        role = network.name_role(ctx.settings, name)
        if role == "turn":
            from lkchaos.validate.checks import turn

            ok, text = turn.stun_over_tls(ctx.settings.tls_address, name, ctx.settings,
                                          _timeout(ctx))  # fmt: skip
            return {"role": role, "upstream": "turn" if ok else "none", "evidence": text}
        path = network.livekit_path(ctx.settings) + "/" if role == "lk" else "/"
        got = answered(lambda: exchange(ctx.settings.tls_address, name, get(name, path),
                                        _timeout(ctx)))  # fmt: skip
        status, body = got["status"], got["body"].strip()
        if status in PROXY_ERRORS:
            upstream = "proxy-error"
        elif status == 200 and body == b"OK":
            upstream = "livekit"
        else:
            upstream = "other"
        text = f"GET {path} -> {status} {body[:60].decode('utf-8', 'replace')!r}"
        return {"role": role, "upstream": upstream, "evidence": text, "http_status": status}

    found: dict[str, Any] = ctx.fact(f"caddy.route:{name}", compute)
    return found


@check("caddy.tls-termination-working")
def termination(ctx: Context) -> Finding:
    def judge(name: str) -> tuple[str, str, dict[str, Any]]:
        seen = inspect(ctx, name)["verified"]
        if not seen.ok:
            return "fail", f"handshake {seen.outcome}: {seen.error}", {}
        found = route(ctx, name)
        ok = found["upstream"] not in ("none",)
        return ("pass" if ok else "fail"), f"{seen.version}; {found['evidence']}", found
    return per_name(ctx, judge)


_EXPECTED = {"lk": "livekit", "turn": "turn", "whip": "other"}


@check("caddy.sni-routing-correct")
def sni_routing(ctx: Context) -> Finding:
    def judge(name: str) -> tuple[str, str, dict[str, Any]]:
        found = route(ctx, name)
        want = _EXPECTED.get(found["role"])
        if want is None:
            return "manual", f"{found['evidence']}: confirm this is the right upstream", found
        text = found["evidence"]
        if found["role"] == "turn":
            from lkchaos.validate.checks import turn

            try:
                tls_runs = [r for r in turn.turn_results(ctx) if r["transport"] == "tls"]
            except Exception as exc:  # evidence only: the STUN answer decides the route
                text += f"; TURN allocation not tried: {exc}"
            else:
                text += "".join(f"; {turn.summary(r)[1]}" for r in tls_runs)
        if found["upstream"] == want:
            return "pass", f"{want} answers: {text}", found
        return "fail", f"expected {want}, got {found['upstream']}: {text}", found
    return per_name(ctx, judge)


@check("caddy.upstream-connections-successful")
def upstreams(ctx: Context) -> Finding:
    def judge(name: str) -> tuple[str, str, dict[str, Any]]:
        found = route(ctx, name)
        ok = found["upstream"] not in ("proxy-error", "none")
        return ("pass" if ok else "fail"), found["evidence"], found
    return per_name(ctx, judge)


def node_metrics_urls(settings: Settings) -> list[str]:
    """Each LiveKit node's Prometheus endpoint, where known (the reference stack's facts)."""
    found = facts.reference(settings)
    return [str(url) for url in (found or {}).get("node_metrics_urls") or []]


def twirp_count(url: str, timeout: float) -> float:
    """The node's ``livekit_node_twirp_request_status`` total for ``ListRooms``."""
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (http URL)
        text = response.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("livekit_node_twirp_request_status{")
               and 'method="ListRooms"' in line)  # fmt: skip


def admin_token(settings: Settings) -> str:
    from livekit import api

    key, secret = settings.require_keys()
    return (api.AccessToken(key, secret).with_ttl(dt.timedelta(minutes=5))
            .with_grants(api.VideoGrants(room_list=True)).to_jwt())  # fmt: skip


@check("caddy.load-balancing-working")
def load_balancing(ctx: Context) -> Finding:
    nodes = ctx.settings.livekit_node_urls
    if len(nodes) < 2:
        return Finding("n/a", f"one LiveKit node ({', '.join(nodes)}): nothing to balance")
    urls = node_metrics_urls(ctx.settings)
    name = network.public_names(ctx.settings)["lk"]
    if not urls or name is None:
        return Finding("manual", "the target names no per-node metrics endpoint: send requests "
                       "through the proxy and confirm that every node's request count rises")
    before = [twirp_count(u, _timeout(ctx)) for u in urls]
    token, sent = admin_token(ctx.settings), 8
    body = b"{}"
    request = (f"POST /twirp/livekit.RoomService/ListRooms HTTP/1.1\r\nHost: {name}\r\n"
               f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body
    statuses = [exchange(ctx.settings.tls_address, name, request, _timeout(ctx))["status"]
                for _ in range(sent)]  # fmt: skip
    after = [twirp_count(u, _timeout(ctx)) for u in urls]
    rises = [round(b - a) for a, b in zip(before, after, strict=True)]
    data = {"requests": sent, "statuses": statuses, "per_node": rises}
    text = (f"{sent} ListRooms through {name}: " + ", ".join(
        f"node {i} +{r}" for i, r in enumerate(rises, 1)) + f" (HTTP {sorted(set(statuses))})")
    return Finding("pass" if all(r > 0 for r in rises) else "fail", text, data)


@check("caddy.health-checks-passing")
def health_checks(ctx: Context) -> Finding:
    rows = []
    for url in ctx.settings.livekit_node_urls:
        try:
            with urllib.request.urlopen(url.rstrip("/") + "/", timeout=_timeout(ctx)) as r:  # noqa: S310
                rows.append((url, r.status))
        except urllib.error.HTTPError as exc:
            rows.append((url, exc.code))
        except OSError as exc:
            rows.append((url, f"{type(exc).__name__}: {exc}"))
    text = ("the proxy's health check (GET / on each node, 200 when ready): "
            + ", ".join(f"{u} -> {s}" for u, s in rows))  # fmt: skip
    if not rows:
        return Finding("n/a", "the target names no LiveKit node URLs")
    ok = all(s == 200 for _, s in rows)
    return Finding("pass" if ok else "fail", text, {"nodes": [[u, s] for u, s in rows]})


def http_address(settings: Settings) -> str:
    """Where the proxy's plain HTTP listener is: port 80 of the TLS proxy's host, or on the
    reference stack (which does not publish it) Caddy's address in the stack network."""
    if network.is_reference(settings):
        return f"{network.reference_address(settings, 'caddy')}:80"
    return join_host_port(Settings.split_address(settings.tls_address, 443)[0], 80)


@check("caddy.http-https-redirect")
def redirect(ctx: Context) -> Finding:
    address = http_address(ctx.settings)
    host, port = Settings.split_address(address, 80)

    def judge(name: str) -> tuple[str, str, dict[str, Any]]:
        with socket.create_connection((host, port), timeout=_timeout(ctx)) as sock:
            sock.sendall(get(name))
            data = b""
            while b"\r\n\r\n" not in data and len(data) < 65536:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
        got = parse_http(data)
        location = got["headers"].get("location", "")
        data_out = {"http_status": got["status"], "location": location}
        if got["status"] in (301, 302, 307, 308) and location.startswith(f"https://{name}"):
            return "pass", f"http://{name}/ at {address} -> {got['status']} {location}", data_out
        return "fail", f"http://{name}/ at {address} -> {got['status']} {location!r}", data_out
    return per_name(ctx, judge, http_names(ctx.settings))


@check("caddy.alpn-negotiation-working")
def alpn(ctx: Context) -> Finding:
    def judge(name: str) -> tuple[str, str, dict[str, Any]]:
        both = exchange(ctx.settings.tls_address, name, b"", _timeout(ctx), ("h2", "http/1.1"))
        h1 = exchange(ctx.settings.tls_address, name, b"", _timeout(ctx), ("http/1.1",))
        data = {"offered_both": both["alpn"], "offered_http1": h1["alpn"]}
        text = f"h2+http/1.1 -> {both['alpn']}, http/1.1 -> {h1['alpn']}"
        if h1["alpn"] != "http/1.1":
            return "fail", text, data
        return ("pass" if both["alpn"] == "h2" else "warn"), text, data
    return per_name(ctx, judge, http_names(ctx.settings))


@check("caddy.websocket-upgrades-successful")
def websocket(ctx: Context) -> Finding:
    from lkchaos.livekit.client import access_token

    name = network.public_names(ctx.settings)["lk"]
    if name is None:
        return Finding("n/a", "the target has no LiveKit name")
    room = "lkchaos-validate-" + secrets.token_hex(3)
    token = access_token(ctx.settings, "lkchaos-validate", room, ttl_seconds=120)
    key = base64.b64encode(secrets.token_bytes(16)).decode()
    path = network.livekit_path(ctx.settings) + "/rtc"
    request = (f"GET {path}?access_token={token}&protocol=15&auto_subscribe=1 HTTP/1.1\r\n"
               f"Host: {name}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()
    got = exchange(ctx.settings.tls_address, name, request, _timeout(ctx))
    data = {"status": got["status"], "upgrade": got["headers"].get("upgrade")}
    text = f"GET {path} through {ctx.settings.tls_address} as {name} -> {got['status']}"
    if got["status"] == 101 and got["headers"].get("upgrade", "").lower() == "websocket":
        return Finding("pass", text + " Switching Protocols", data)
    return Finding("fail", f"{text} {got['body'][:80]!r}", data)


@check("caddy.static-file-serving")
def static_files(ctx: Context) -> Finding:
    if not ((facts.reference(ctx.settings) or {}).get("caddy") or {"file_server": True}) \
            .get("file_server", True):
        return Finding("n/a", "the reference stack's Caddyfile has no file_server: Caddy "
                       "serves no static files there")
    return Finding("manual", "whether the proxy serves static files is in its configuration, "
                   "not visible from outside: if it does (Caddy file_server), fetch one file "
                   "through each name and confirm its content")  # fmt: skip


@check("caddy.compression-working")
def compression(ctx: Context) -> Finding:
    name = network.public_names(ctx.settings)["lk"]
    seen = None
    if name is not None:
        path = network.livekit_path(ctx.settings) + "/"
        got = exchange(ctx.settings.tls_address, name,
                       get(name, path, extra="Accept-Encoding: zstd, gzip\r\n"), _timeout(ctx))
        seen = got["headers"].get("content-encoding")
        if seen:
            return Finding("pass", f"GET {path} on {name} answered Content-Encoding: {seen}")
    if not ((facts.reference(ctx.settings) or {}).get("caddy") or {"encode": True}) \
            .get("encode", True):
        return Finding("n/a", "the reference stack's Caddyfile has no encode directive: "
                       "compression is not enabled there")
    return Finding("manual", "no Content-Encoding on GET / (LiveKit's small answers are not "
                   "compressed): if compression is enabled (Caddy encode), fetch a large "
                   "response with Accept-Encoding: gzip and confirm it is compressed")
