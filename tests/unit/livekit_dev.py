"""What the tests that run a real LiveKit server on loopback share: its binary (built by
`lkchaos stack build`), a key pair it accepts, and free ports."""

from __future__ import annotations

import socket

from lkchaos.stack import layout
from lkchaos.stack.build import cache_dir

LIVEKIT_BIN = cache_dir() / "bin" / f"livekit-server-{layout.LIVEKIT_VERSION}"
KEY = "lkchaos-test"
SECRET = "a-test-secret-long-enough-for-livekit-0123456789"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port free on 127.0.0.1 now (TCP by default; ``socket.SOCK_DGRAM`` for UDP)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
