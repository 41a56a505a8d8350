"""Small servers on 127.0.0.1 that the unit tests run for real: a UDP DNS server and a TLS
listener. Each runs on daemon threads and stops on ``close()``."""

from __future__ import annotations

import socket
import ssl
import struct
import threading
import warnings
from collections.abc import Callable
from pathlib import Path

import dns.message
import dns.rcode
import dns.rrset

from lkchaos.tls import sockets


class LocalDNS:
    """A UDP DNS server answering A queries from ``records``; other names: NXDOMAIN; names in
    ``silent``: no answer at all (a resolver that times out)."""

    def __init__(self, records: dict[str, str], silent: set[str] | frozenset[str] = frozenset()
                 ) -> None:  # fmt: skip
        self.records, self.silent = records, silent
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                data, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            query = dns.message.from_wire(data)
            name = query.question[0].name.to_text().rstrip(".")
            if name in self.silent:
                continue
            reply = dns.message.make_response(query)
            if name in self.records:
                reply.answer.append(dns.rrset.from_text(f"{name}.", 5, "IN", "A",
                                                        self.records[name]))  # fmt: skip
            else:
                reply.set_rcode(dns.rcode.NXDOMAIN)
            try:
                self.sock.sendto(reply.to_wire(), peer)
            except OSError:
                return

    def close(self) -> None:
        self.sock.close()


def configured(ctx: ssl.SSLContext, configure: Callable[[ssl.SSLContext], None] | None
               ) -> ssl.SSLContext:  # fmt: skip
    """``ctx`` after ``configure(ctx)`` (which may set deprecated protocol versions on
    purpose, to serve a weak server)."""
    if configure is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            configure(ctx)
    return ctx


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


def reset_after_hello(conn: socket.socket) -> None:
    """Read the client's first flight (its ClientHello) and cut the connection with a TCP
    reset, no TLS alert: a busy proxy dropping it."""
    conn.recv(4096)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


class Listener:
    """A TCP listener on 127.0.0.1: every connection goes to :meth:`handle` on a thread of
    its own (5 s timeout), then is closed."""

    def listen(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        threading.Thread(target=self._serve, daemon=True).start()

    def handle(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        try:
            self.handle(conn)
        except (OSError, ssl.SSLError):
            pass
        finally:
            conn.close()

    def close(self) -> None:
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() of the thread
        except OSError:
            pass
        self.listener.close()


class TLSListener(Listener):
    """A TLS listener: every connection is wrapped with ``self.ctx`` (read when it arrives)
    and handed to :meth:`handle_tls`."""

    ctx: ssl.SSLContext

    def handle(self, conn: socket.socket) -> None:
        with sockets.wrap(self.ctx, conn, server_side=True) as tls:
            self.handle_tls(tls)

    def handle_tls(self, tls: ssl.SSLSocket) -> None:
        raise NotImplementedError
