"""The shared HTTP client and the node health probe that uses it, against local servers."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer

import pytest

from lkchaos.httpclient import shared_client
from lkchaos.livekit.probes import nodes_health


def _server(status: int, body: bytes, delay_s: float = 0.0) -> HTTPServer:
    class Reply(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            time.sleep(delay_s)
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    return ThreadingHTTPServer(("127.0.0.1", 0), Reply)


@pytest.fixture
def nodes() -> Iterator[list[str]]:
    servers = [_server(200, b"OK"), _server(406, b"Not Ready")]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield [f"http://127.0.0.1:{s.server_address[1]}" for s in servers]
    for server in servers:
        server.shutdown()
        server.server_close()


def test_one_client_serves_every_call() -> None:
    assert shared_client() is shared_client()


def test_a_closed_client_is_replaced() -> None:
    shared_client().close()
    assert not shared_client().is_closed


def test_nodes_health_counts_ready_nodes(nodes: list[str]) -> None:
    result = nodes_health(urls=nodes, timeout=2, configuration={})
    assert (result["ok"], result["healthy"]) == (False, 1)
    assert result["nodes"][nodes[0]] == {"status": 200, "body": "OK"}
    assert result["nodes"][nodes[1]] == {"status": 406, "body": "Not Ready"}
    assert result["reason"] == f"{nodes[1]}: 406 Not Ready"
    alone = nodes_health(urls=nodes[:1], timeout=2, configuration={})
    assert (alone["ok"], alone["reason"]) == (True, "")


def test_nodes_health_reports_a_node_that_does_not_answer(nodes: list[str]) -> None:
    closed = _server(200, b"")
    url = f"http://127.0.0.1:{closed.server_address[1]}"
    closed.server_close()
    result = nodes_health(urls=[nodes[0], url], timeout=1, configuration={})
    assert result["healthy"] == 1
    assert result["nodes"][url]["status"] == 0
    assert "ConnectError" in result["nodes"][url]["body"]
    assert result["reason"].startswith(f"{url}: ConnectError")


def test_a_node_answering_after_the_timeout_is_told_from_one_not_ready() -> None:
    slow = _server(200, b"OK", delay_s=0.5)
    threading.Thread(target=slow.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{slow.server_address[1]}"
    try:
        late = nodes_health(urls=[url], timeout=0.2, configuration={})
        assert (late["ok"], late["nodes"][url]["status"]) == (False, 0)
        assert late["reason"] == f"{url}: no answer within 0.2 s (ReadTimeout)"
        # with the load balancer's own timeout (Caddy's health_timeout, 1 s) it is ready
        assert nodes_health(urls=[url], timeout=1.0, configuration={})["ok"]
    finally:
        slow.shutdown()
        slow.server_close()
