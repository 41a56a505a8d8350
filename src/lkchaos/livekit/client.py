"""The one way lkchaos reaches LiveKit's server APIs (RoomService, AgentDispatch).

``livekit-api`` is asynchronous; activities are synchronous, so :func:`call` runs one
coroutine against one node with a client that always has a timeout and is always closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aiohttp
from livekit import api

from lkchaos.settings import Settings

T = TypeVar("T")

TIMEOUT = 5.0


def http_url(url: str) -> str:
    """LiveKit's API clients want http(s); accept ws(s) too."""
    return url.replace("wss://", "https://", 1).replace("ws://", "http://", 1)


async def with_api(
    url: str,
    settings: Settings,
    fn: Callable[[api.LiveKitAPI], Awaitable[T]],
    timeout: float = TIMEOUT,
) -> T:
    key, secret = settings.require_keys()
    lk = api.LiveKitAPI(
        http_url(url), key, secret, timeout=aiohttp.ClientTimeout(total=timeout)
    )
    try:
        return await fn(lk)
    finally:
        await lk.aclose()


def call(
    url: str,
    settings: Settings,
    fn: Callable[[api.LiveKitAPI], Awaitable[T]],
    timeout: float = TIMEOUT,
) -> T:
    """Run ``fn(client)`` against the node at ``url`` and return its result."""
    return asyncio.run(with_api(url, settings, fn, timeout))


def access_token(
    settings: Settings, identity: str, room: str, ttl_seconds: int = 600
) -> str:
    """A join token for ``room`` (publish and subscribe)."""
    import datetime as dt

    key, secret = settings.require_keys()
    return (
        api.AccessToken(key, secret)
        .with_identity(identity)
        .with_ttl(dt.timedelta(seconds=ttl_seconds))
        .with_grants(api.VideoGrants(room_join=True, room=room))
        .to_jwt()
    )
