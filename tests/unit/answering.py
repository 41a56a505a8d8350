"""A local HTTP server that gives every request one fixed answer, for probes and clients
that must be tried against a real socket (a node's health, a prober that fails)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


def server(status: int, body: bytes, delay_s: float = 0.0) -> ThreadingHTTPServer:
    """A server (not yet serving) answering every GET and POST with ``status`` and ``body``,
    ``delay_s`` seconds late."""

    class Reply(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            time.sleep(delay_s)
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer  # noqa: N815

        def log_message(self, *args: object) -> None:
            pass

    return ThreadingHTTPServer(("127.0.0.1", 0), Reply)


@contextmanager
def serving(status: int, body: bytes, delay_s: float = 0.0) -> Iterator[str]:
    """:func:`server` serving in a thread for the block: its URL (``http://127.0.0.1:PORT``)."""
    answering = server(status, body, delay_s)
    threading.Thread(target=answering.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{answering.server_address[1]}"
    finally:
        answering.shutdown()
        answering.server_close()


@pytest.fixture
def nodes_answer(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The target's LiveKit nodes answer (one local server, ``LKCHAOS_LIVEKIT_NODE_URLS``):
    `lkchaos validate` refuses a deployment none of whose nodes answers before it checks
    anything."""
    with serving(200, b"OK") as url:
        monkeypatch.setenv("LKCHAOS_LIVEKIT_NODE_URLS", url)
        yield
