"""A stand-in for the stack's voice prober in unit tests: a local HTTP server."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any


class FakeProber:
    """An HTTP server standing in for the prober: answers each call with the next result."""

    def __init__(self, answers: list[dict[str, Any]], status: int = 200) -> None:
        self.requests: list[dict[str, Any]] = []
        self.authorizations: list[str | None] = []
        queue = iter(answers)
        requests, authorizations = self.requests, self.authorizations

        class Answer(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                requests.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                authorizations.append(self.headers.get("Authorization"))
                body = json.dumps(next(queue)).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Answer)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeProber:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
