"""A direct Redis in cluster mode (LiveKit's ``redis.cluster_addresses``) is refused with what
to do, against a real ``redis-server --cluster-enabled yes``: lkchaos reads LiveKit's keys
through one primary, and one cluster node's keys are not the deployment's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lkchaos.errors import LkChaosError
from lkchaos.livekit import state
from lkchaos.redis import client
from lkchaos.settings import Settings
from tests.unit.test_redis_client import (
    MISSING,
    SERVER,
    Server,
    _answers,
    _base,
    _start,
    _stop,
    free_port,
)


@pytest.fixture(scope="module")
def cluster_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if SERVER is None:
        pytest.fail(MISSING)
    port = free_port()
    folder: Path = tmp_path_factory.mktemp("redis-cluster")
    server = _start(folder, [*_base(port), "--cluster-enabled", "yes",
                             "--cluster-config-file", "nodes.conf",
                             "--cluster-port", str(free_port())], port,
                    lambda: _answers(port))  # fmt: skip
    yield server
    _stop(server)


def _direct(port: int) -> Settings:
    return Settings(redis_primary_address=f"127.0.0.1:{port}", sentinel_addresses=(),
                    redis_password="", redis_address_map={})  # fmt: skip


def test_a_node_in_cluster_mode_is_refused_saying_why(cluster_node: Server) -> None:
    settings = _direct(cluster_node.port)
    assert client.is_direct(settings)
    with pytest.raises(client.RedisClusterUnsupported, match="cluster mode.*Redis Cluster"):
        client.primary(settings)
    # What the room-state probes read through: refused the same way, never a CROSSSLOT.
    with pytest.raises(LkChaosError, match="cluster mode"):
        state.read_store(settings)
