"""TLS to a plain Redis, and plain Redis to a TLS-only one, against real ``redis-server``
processes: each says which way the server speaks and what to set, not a raw ConnectionError.
A server that only stalls is not taken for one that speaks the other way."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from lkchaos.errors import ConfigError
from lkchaos.redis import client
from lkchaos.settings import Settings
from tests.unit.test_redis_client import (  # noqa: F401 (tls_node is a fixture)
    MISSING,
    PASSWORD,
    SERVER,
    Server,
    _answers,
    _base,
    _start,
    _stop,
    free_port,
    tls_node,
)


@pytest.fixture(scope="module")
def plain_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A plain Redis (no TLS), with a password."""
    if SERVER is None:
        pytest.fail(MISSING)
    port = free_port()
    server = _start(tmp_path_factory.mktemp("redis-plain"),
                    [*_base(port), "--requirepass", PASSWORD], port,
                    lambda: _answers(port, PASSWORD))  # fmt: skip
    yield server
    _stop(server)


def direct(port: int, **extra: object) -> Settings:
    return Settings(sentinel_addresses=(), redis_address_map={},  # type: ignore[arg-type]
                    redis_primary_address=f"127.0.0.1:{port}", redis_password=PASSWORD,
                    **extra)  # fmt: skip


def test_tls_to_a_plain_server_says_to_set_tls_off(plain_node: Server) -> None:
    with pytest.raises(client.RedisTlsMismatch) as caught:
        client.primary(direct(plain_node.port, redis_tls=True), timeout=1)
    message = str(caught.value)
    assert (f"Redis at 127.0.0.1:{plain_node.port}: the server at 127.0.0.1:{plain_node.port} "
            "does not speak TLS: set tls off (it answers plain Redis") in message
    assert "LKCHAOS_REDIS_TLS=false" in message and PASSWORD not in message
    assert isinstance(caught.value, ConfigError)


def test_plain_to_a_tls_server_says_to_set_tls(tls_node: tuple[Server, Path]) -> None:  # noqa: F811
    server, _ = tls_node
    with pytest.raises(client.RedisTlsMismatch) as caught:
        client.primary(direct(server.port), timeout=1)
    message = str(caught.value)
    assert (f"the server at 127.0.0.1:{server.port} requires TLS: set tls: {{}} (it completed "
            "a TLS handshake") in message
    assert "LKCHAOS_REDIS_TLS=true" in message


def test_a_sentinel_spoken_to_the_wrong_way_is_named(plain_node: Server) -> None:
    settings = Settings(sentinel_addresses=(f"127.0.0.1:{plain_node.port}",),
                        redis_address_map={}, redis_tls=True)  # fmt: skip
    with pytest.raises(client.RedisTlsMismatch, match=f"Sentinel at 127.0.0.1:{plain_node.port}: "
                                                      "the server .* does not speak TLS"):
        client.ask_sentinels(settings, timeout=1)


def test_a_server_that_only_stalls_is_not_called_plain() -> None:
    # Accepts connections (the kernel does) and never answers: neither TLS nor plain Redis.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        with pytest.raises(redis.TimeoutError):
            client.primary(direct(port, redis_tls=True), timeout=0.5)
        with pytest.raises(redis.TimeoutError):
            client.primary(direct(port), timeout=0.5)


def test_a_refused_connection_is_not_a_tls_mismatch() -> None:
    with pytest.raises(redis.ConnectionError):
        client.primary(direct(free_port()), timeout=0.5)
    with pytest.raises(redis.ConnectionError):
        client.primary(direct(free_port(), redis_tls=True), timeout=0.5)
