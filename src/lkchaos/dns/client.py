"""Resolve names through a chosen DNS server (not the system resolver), with a timeout."""

from __future__ import annotations

import time
from dataclasses import dataclass

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

from lkchaos.settings import Settings

TIMEOUT = 2.0


@dataclass(frozen=True)
class Answer:
    name: str
    rcode: str  # NOERROR, NXDOMAIN, REFUSED, SERVFAIL, TIMEOUT
    addresses: tuple[str, ...]
    latency_ms: float


def resolve(name: str, server: str, rdtype: str = "A", timeout: float = TIMEOUT) -> Answer:
    """Ask ``server`` (``host:port``) for ``name`` over UDP; a timeout is an answer too."""
    host, port = Settings.split_address(server, 53)
    query = dns.message.make_query(name, dns.rdatatype.from_text(rdtype))
    start = time.perf_counter()
    try:
        response = dns.query.udp(query, host, port=port, timeout=timeout)
    except dns.exception.Timeout:
        return Answer(name, "TIMEOUT", (), (time.perf_counter() - start) * 1000)
    latency = (time.perf_counter() - start) * 1000
    addresses = tuple(
        item.to_text() for rrset in response.answer for item in rrset
        if rrset.rdtype == dns.rdatatype.from_text(rdtype)
    )
    return Answer(name, dns.rcode.to_text(response.rcode()), addresses, latency)
