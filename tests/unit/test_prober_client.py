"""The prober's one HTTP client, against a real local HTTP server answering as told."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from chaoslib.exceptions import ActivityFailed

from lkchaos.voice import prober_client
from lkchaos.voice.credential import authorization


class _Prober:
    """Answers every request with ``status`` and ``body``; records what it was asked."""

    def __init__(self, status: int, body: bytes) -> None:
        self.status, self.body = status, body
        self.seen: list[tuple[str, str, str | None, bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                outer.seen.append((self.command, self.path, self.headers.get("Authorization"),
                                   self.rfile.read(length)))  # fmt: skip
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body)

            do_POST = do_DELETE = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def prober(request: pytest.FixtureRequest) -> Iterator[_Prober]:
    status, body = request.param
    server = _Prober(status, body)
    yield server
    server.close()


@pytest.mark.parametrize("prober", [(200, b'{"room": "held-call", "released": 2}')],
                         indirect=True)
def test_a_request_carries_the_credential_and_returns_the_answer(prober: _Prober) -> None:
    result = prober_client.call(prober.url, "the-secret", "DELETE", "/hold/held-call",
                                timeout=5)  # fmt: skip
    assert result == {"room": "held-call", "released": 2}
    assert prober.seen == [("DELETE", "/hold/held-call", authorization("the-secret"), b"")]


@pytest.mark.parametrize("prober", [(200, b"{}")], indirect=True)
def test_the_body_is_sent_as_json(prober: _Prober) -> None:
    prober_client.call(prober.url, "s", "POST", "/hold", {"room": "r", "count": 2}, timeout=5)
    assert json.loads(prober.seen[0][3]) == {"room": "r", "count": 2}


@pytest.mark.parametrize(("prober", "message"), [
    ((401, b'{"error": "unauthorized"}'), "refused the credential.*API secret"),
    ((403, b"{}"), "refused the credential"),
    ((400, b'{"error": "count must be 1..20"}'), r"refused its arguments: count must be 1..20 "
                                                 r"\(POST /hold\)"),
    ((500, b"boom"), r"failed: 500 boom \(POST /hold\)"),
    ((200, b"not json"), "not JSON"),
    ((200, b"[1, 2]"), "list, not an object"),
], indirect=["prober"])  # fmt: skip
def test_each_failure_says_what_went_wrong(prober: _Prober, message: str) -> None:
    with pytest.raises(ActivityFailed, match=message):
        prober_client.call(prober.url, "s", "POST", "/hold", {}, timeout=5)


def test_an_unreachable_prober_says_to_check_the_stack() -> None:
    with socket.socket() as sock:  # bound, never listening (and no other test's): refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        with pytest.raises(ActivityFailed,
                           match="did not answer POST /round-trip.*stack status"):
            prober_client.call(f"http://127.0.0.1:{port}", "s", "POST", "/round-trip", {},
                               timeout=2)  # fmt: skip
