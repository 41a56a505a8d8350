"""The rendered Caddyfile run by the stack's own Caddy build (with the layer-4 app) on loopback.

The stack's names and services are swapped for loopback ports: two HTTP servers stand in for
the LiveKit nodes' HTTP port, two TCP echo servers for their TURN port behind the TLS
terminator. Skipped when that Caddy build is not in the cache (``lkchaos stack build`` makes
it once).
"""

from __future__ import annotations

import http.server
import json
import socket
import socketserver
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from lkchaos import certs
from lkchaos.stack import build, render
from lkchaos.stack.render import StackConfig
from tests.unit.livekit_dev import free_port

CFG = StackConfig()
CADDY = next(b for b in build.GO_BINARIES if b.name == "caddy")
#: How long Caddy may take to start listening (it starts in well under a second here).
START_S = 10.0
#: Socket timeout for every client call in these tests.
IO_S = 5.0


def caddy_binary() -> Path:
    path = build.cache_dir() / "bin" / CADDY.cache_name
    if not path.is_file():
        pytest.skip(f"Caddy with the layer-4 app is not built here ({path} is missing); "
                    "`lkchaos stack build` builds it once")  # fmt: skip
    return path


class NodeHTTP(http.server.BaseHTTPRequestHandler):
    """Answers every GET with the node's name, as LiveKit's ``/`` answers 200."""

    def do_GET(self) -> None:
        body = self.server.node_name.encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


class NodeTCP(socketserver.BaseRequestHandler):
    """Echoes each chunk back prefixed with the node's name: a stand-in for TURN over TCP."""

    def handle(self) -> None:
        name = self.server.node_name.encode()  # type: ignore[attr-defined]
        self.request.settimeout(IO_S)
        while data := self.request.recv(4096):
            self.request.sendall(name + b":" + data)


class ThreadingHTTP(http.server.ThreadingHTTPServer):
    daemon_threads = True


class ThreadingTCP(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def serve(server: socketserver.BaseServer, name: str) -> socketserver.BaseServer:
    server.node_name = name  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@dataclass
class Running:
    https: int
    internal: int
    metrics: int
    ca: Path
    http_nodes: dict[str, socketserver.BaseServer]
    turn_nodes: dict[str, socketserver.BaseServer]


def host_variant(text: str, ports: dict[str, int], certs_dir: Path) -> str:
    """The rendered Caddyfile with the stack's names and ports replaced by loopback ones.

    Everything binds to 127.0.0.1, so the server options name that address: they apply to
    the listener whose address they spell."""
    swaps = [
        ("\tauto_https disable_certs\n",
         f"\tauto_https disable_certs\n\tdefault_bind 127.0.0.1\n\tadmin 127.0.0.1:{ports['admin']}"
         f"\n\thttp_port {ports['http']}\n\thttps_port {ports['https']}\n"),
        ("servers :443 {", f"servers 127.0.0.1:{ports['https']} {{"),
        ("/certs/", f"{certs_dir}/"),
        ("tcp/livekit-1:5349", f"tcp/127.0.0.1:{ports['turn-1']}"),
        ("tcp/livekit-2:5349", f"tcp/127.0.0.1:{ports['turn-2']}"),
        ("livekit-1:7880", f"127.0.0.1:{ports['node-1']}"),
        ("livekit-2:7880", f"127.0.0.1:{ports['node-2']}"),
        ("reverse_proxy ingress:8080", f"reverse_proxy 127.0.0.1:{ports['closed']}"),
        ("http://:7880 {", f"http://:{ports['internal']} {{"),
        ("http://:9180 {", f"http://:{ports['metrics']} {{"),
    ]
    for old, new in swaps:
        assert old in text, f"the rendered Caddyfile no longer has {old!r}: update this test"
        text = text.replace(old, new)
    return text


@pytest.fixture(scope="module")
def caddy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    binary = caddy_binary()
    tmp = tmp_path_factory.mktemp("caddy-l4")
    certs_dir = tmp / "certs"
    certs.ensure_stack_certs(certs_dir, CFG.tls_names)
    names = ("admin", "http", "https", "internal", "metrics", "closed")
    ports = {name: free_port() for name in names}
    http_nodes = {n: serve(ThreadingHTTP(("127.0.0.1", 0), NodeHTTP), n)
                  for n in ("node-1", "node-2")}  # fmt: skip
    turn_nodes = {n: serve(ThreadingTCP(("127.0.0.1", 0), NodeTCP), n)
                  for n in ("turn-1", "turn-2")}  # fmt: skip
    for name, server in [*http_nodes.items(), *turn_nodes.items()]:
        address = server.server_address
        assert isinstance(address, tuple)
        ports[name] = int(address[1])
    config = tmp / "Caddyfile"
    config.write_text(host_variant(render.caddyfile(CFG), ports, certs_dir))
    home = {"HOME": str(tmp), "XDG_DATA_HOME": str(tmp / "data"),
            "XDG_CONFIG_HOME": str(tmp / "config")}  # fmt: skip
    log = (tmp / "caddy.log").open("w")
    proc = subprocess.Popen(
        [str(binary), "run", "--config", str(config), "--adapter", "caddyfile"],
        stdout=log, stderr=subprocess.STDOUT, env=home,
    )
    try:
        deadline = time.monotonic() + START_S
        while True:
            try:
                socket.create_connection(("127.0.0.1", ports["internal"]), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"Caddy did not start:\n{(tmp / 'caddy.log').read_text()}")
                time.sleep(0.05)
        yield Running(ports["https"], ports["internal"], ports["metrics"],
                      certs_dir / certs.CA_FILE, http_nodes, turn_nodes)  # fmt: skip
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()
        for server in [*http_nodes.values(), *turn_nodes.values()]:
            server.shutdown()
            server.server_close()


def tls_exchange(run: Running, name: str, payload: bytes) -> tuple[bytes, list[str]]:
    """Open TLS to :443 with SNI ``name`` (verified against the stack CA), send, read the
    reply until the peer closes or a first chunk arrives; return it and the cert's names."""
    context = ssl.create_default_context(cafile=str(run.ca))
    with socket.create_connection(("127.0.0.1", run.https), timeout=IO_S) as raw, \
            context.wrap_socket(raw, server_hostname=name) as conn:  # fmt: skip
        cert = conn.getpeercert() or {}
        sans = [str(entry[1]) for entry in cert.get("subjectAltName", ()) if entry[0] == "DNS"]
        conn.sendall(payload)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
            if not payload.startswith(b"GET "):
                break
        return b"".join(chunks), sans


def http_get(name: str, path: str = "/") -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n").encode()


def test_rendered_caddyfile_adapts_to_one_tls_listener_with_layer4_first() -> None:
    binary = caddy_binary()
    proc = subprocess.run([str(binary), "adapt", "--adapter", "caddyfile", "--config", "-"],
                          input=render.caddyfile(CFG), capture_output=True, text=True,
                          timeout=30, check=True)  # fmt: skip
    servers = json.loads(proc.stdout)["apps"]["http"]["servers"]
    by_port = {tuple(s["listen"]): s for s in servers.values()}
    assert set(by_port) == {(":443",), (":7880",), (":9180",)}
    wrappers = by_port[(":443",)]["listener_wrappers"]
    assert [w["wrapper"] for w in wrappers] == ["layer4", "tls"]
    (route,) = wrappers[0]["routes"]
    assert route["match"] == [{"tls": {"sni": ["turn.chaos.test"]}}]
    assert [h["handler"] for h in route["handle"]] == ["tls", "proxy"]
    assert [u["dial"] for u in route["handle"][1]["upstreams"]] == [
        ["tcp/livekit-1:5349"], ["tcp/livekit-2:5349"]
    ]


def test_turn_name_is_terminated_and_proxied_as_tcp_to_both_nodes(caddy: Running) -> None:
    seen = set()
    for i in range(4):
        reply, sans = tls_exchange(caddy, "turn.chaos.test", f"allocate-{i}".encode())
        assert sans == ["turn.chaos.test"]
        node, _, echoed = reply.partition(b":")
        assert echoed == f"allocate-{i}".encode()
        seen.add(node.decode())
    assert seen == {"turn-1", "turn-2"}


def test_lk_name_is_served_by_the_http_app_with_hsts(caddy: Running) -> None:
    reply, sans = tls_exchange(caddy, "lk.chaos.test", http_get("lk.chaos.test"))
    head, _, body = reply.partition(b"\r\n\r\n")
    assert sans == ["lk.chaos.test"]
    assert head.startswith(b"HTTP/1.1 200")
    assert b"Strict-Transport-Security: max-age=31536000" in head
    assert body in (b"node-1", b"node-2")


def test_whip_without_an_ingress_answers_502_at_once(caddy: Running) -> None:
    reply, sans = tls_exchange(caddy, "whip.chaos.test", http_get("whip.chaos.test", "/w"))
    head, _, body = reply.partition(b"\r\n\r\n")
    assert sans == ["whip.chaos.test"]
    assert head.startswith(b"HTTP/1.1 502")
    assert body.startswith(b"no WHIP ingress answered at ingress:8080")


def test_internal_listener_balances_both_nodes_and_survives_losing_one(caddy: Running) -> None:
    url = f"http://127.0.0.1:{caddy.internal}/"
    with httpx.Client(timeout=IO_S) as client:
        bodies = {client.get(url).text for _ in range(4)}
        assert bodies == {"node-1", "node-2"}
        metrics = client.get(f"http://127.0.0.1:{caddy.metrics}/metrics").text
        assert 'caddy_reverse_proxy_upstreams_healthy{upstream="127.0.0.1:' in metrics
        node = caddy.http_nodes["node-1"]
        node.shutdown()
        node.server_close()
        after = [client.get(url) for _ in range(4)]
    assert [(r.status_code, r.text) for r in after] == [(200, "node-2")] * 4


def test_turn_survives_losing_one_node(caddy: Running) -> None:
    node = caddy.turn_nodes["turn-1"]
    node.shutdown()
    node.server_close()
    replies = [tls_exchange(caddy, "turn.chaos.test", b"refresh")[0] for _ in range(4)]
    assert replies == [b"turn-2:refresh"] * 4
