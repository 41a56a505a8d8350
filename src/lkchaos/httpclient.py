"""The process's one HTTP client for plain request/response calls (node health, the voice
prober).

Every new ``httpx.Client`` (and so every ``httpx.get``) builds an SSL context and loads the CA
bundle, even for an ``http://`` URL: about 0.1 s of CPU here. A probe the sampling control
calls four times a second would spend most of a core on that, and slow the very stack it
measures. One shared client builds it once. Connections are not kept alive, so each request
still opens its own connection, as a fresh health check should. Timeouts are given per
request.
"""

from __future__ import annotations

import threading

import httpx

__all__ = ["shared_client"]

_lock = threading.Lock()
_client: httpx.Client | None = None


def shared_client() -> httpx.Client:
    """The shared client (thread-safe; created on first use)."""
    global _client
    with _lock:
        if _client is None or _client.is_closed:
            _client = httpx.Client(
                timeout=httpx.Timeout(10.0),
                limits=httpx.Limits(max_keepalive_connections=0),
            )
        return _client
