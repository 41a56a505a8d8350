"""A TLS wrap that fails leaves no socket open (lkchaos.tls.sockets)."""

from __future__ import annotations

import gc
import select
import socket
import ssl
import struct
import warnings
from collections.abc import Callable

from lkchaos.tls import sockets


def _reset_by_its_peer() -> socket.socket:
    """A server's end of a TCP connection whose client reset it (an RST, not a FIN) before
    any handshake: what a client that gave up on a slow server leaves."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname(), timeout=5)
        conn, _ = listener.accept()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()
    assert select.select([conn], [], [], 5)[0], "the reset never arrived"
    return conn


def _unclosed(action: Callable[[], object]) -> tuple[BaseException | None, list[str]]:
    """What ``action`` raised, and the sockets the garbage collector then found unclosed."""
    raised: BaseException | None = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        try:
            action()
        except Exception as exc:  # noqa: BLE001 - returned for the test to judge
            raised = exc
        gc.collect()
    return raised, [str(w.message) for w in caught if w.category is ResourceWarning]


def test_a_peer_gone_before_the_handshake_leaves_no_socket_open() -> None:
    conn = _reset_by_its_peer()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    raised, unclosed = _unclosed(lambda: sockets.wrap(ctx, conn, server_side=True))
    assert isinstance(raised, ConnectionResetError), raised
    assert unclosed == []
    assert conn.fileno() == -1  # handed over to the wrap, which closed what it made of it


def test_a_handshake_refused_by_the_server_is_raised_with_nothing_left_open() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        raw = socket.create_connection(listener.getsockname(), timeout=5)
        conn, _ = listener.accept()
    with conn:
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")  # not TLS
        ctx = ssl.create_default_context()
        raised, unclosed = _unclosed(
            lambda: sockets.wrap(ctx, raw, server_hostname="lk.chaos.test")
        )
    assert isinstance(raised, ssl.SSLError), raised
    assert unclosed == []
