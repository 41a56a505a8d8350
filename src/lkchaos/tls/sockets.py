"""A connected socket wrapped in TLS, with nothing left open when that fails.

``SSLContext.wrap_socket`` detaches the socket it is given and makes a new ``SSLSocket`` of
its file descriptor. Before CPython 3.11.8 and 3.12.2 (python/cpython#113280) the new socket
was not closed when its constructor raised on a peer that had already reset the connection
(``ConnectionResetError`` from the check for data sent before the handshake): the caller holds
only the detached socket, and the descriptor stays open until the garbage collector finds it
(a ``ResourceWarning``). :func:`wrap` closes it.
"""

from __future__ import annotations

import socket
import ssl


def wrap(
    ctx: ssl.SSLContext,
    raw: socket.socket,
    *,
    server_hostname: str | None = None,
    server_side: bool = False,
) -> ssl.SSLSocket:
    """``ctx.wrap_socket(raw, ...)`` (the handshake made on connect, as by default).

    Raises what ``wrap_socket`` raises (``OSError``, ``ssl.SSLError`` included, and
    ``ValueError``), with the socket it was making closed."""
    try:
        return ctx.wrap_socket(raw, server_side=server_side, server_hostname=server_hostname)
    except Exception as exc:
        _close_half_made(exc)
        raise


def _close_half_made(exc: BaseException) -> None:
    """Close every ``SSLSocket`` the failed constructor's frames were making."""
    tb = exc.__traceback__
    while tb is not None:
        made = tb.tb_frame.f_locals.get("self")
        if isinstance(made, ssl.SSLSocket):
            try:
                made.close()
            except OSError:
                pass
        tb = tb.tb_next
