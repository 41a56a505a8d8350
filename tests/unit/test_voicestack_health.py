"""The voicestack services' Docker health check (stack/voice/voicestack/health.sh), run with
bash against real sockets on 127.0.0.1."""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "stack" / "voice" / "voicestack" / "health.sh"


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
        status = 200 if self.path in ("/", "/health") else 503
        self.send_response(status)
        self.end_headers()
        self.wfile.write(b"OK" if status == 200 else b"not ready")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=10, check=False)  # fmt: skip


def test_a_2xx_answer_is_healthy(http_port: int) -> None:
    assert check(str(http_port), "/health").returncode == 0
    assert check(str(http_port), "/").returncode == 0


def test_any_other_status_is_unhealthy_and_says_which(http_port: int) -> None:
    done = check(str(http_port), "/busy")
    assert done.returncode == 1
    assert "GET /busy" in done.stdout and "503" in done.stdout


def test_nothing_listening_is_unhealthy() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        done = check(str(port), "/health")
    assert done.returncode == 1 and f"127.0.0.1:{port}" in done.stdout


def test_a_process_that_takes_the_connection_and_never_answers_fails_within_its_bound() -> None:
    """A frozen service (SIGSTOP): the kernel completes the handshake, nothing answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(4)
        done = check(str(sock.getsockname()[1]), "/health")
    assert done.returncode == 1 and "no answer within 2 s" in done.stdout


def test_the_ready_file_is_required_when_named(http_port: int, tmp_path: Path) -> None:
    ready = tmp_path / "registered"
    done = check(str(http_port), "/", str(ready))
    assert done.returncode == 1 and "not ready" in done.stdout
    ready.write_text("")  # empty: the worker's id was not written yet
    assert check(str(http_port), "/", str(ready)).returncode == 1
    ready.write_text("AW_abc\n")
    assert check(str(http_port), "/", str(ready)).returncode == 0
