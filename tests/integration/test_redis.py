"""Sentinel names the primary and one replica; writes on the primary reach the replica."""

from __future__ import annotations

import time
import uuid

from lkchaos.redis import client as redis_client
from lkchaos.redis.probes import replication, sentinel_master
from lkchaos.settings import Settings


def test_sentinels_agree_on_the_primary_and_its_replica(settings: Settings) -> None:
    # Either node may be the primary: a failover experiment earlier in the session leaves the
    # old replica promoted (that is what failing over means), and nothing fails back.
    state = sentinel_master()
    assert state["ok"], state
    nodes = {"redis-primary:6379", "redis-replica:6379"}
    assert state["master"] in nodes, state
    assert state["sentinels"] == 3 and state["replicas"] == 1
    (other,) = nodes - {state["master"]}
    host, port = other.split(":")
    assert redis_client.replicas(settings) == [(host, int(port))]


def test_primary_reports_its_replica() -> None:
    info = replication()
    assert info["role"] == "master" and info["connected_slaves"] == 1


def test_a_key_written_on_the_primary_is_read_on_the_replica(settings: Settings) -> None:
    key, value = f"lkchaos:it:{uuid.uuid4().hex}", uuid.uuid4().hex
    host, port = settings.map_redis_address(*redis_client.replicas(settings)[0])
    with redis_client.primary(settings, decode=True) as primary, redis_client.connect(
        host, port
    ) as replica:
        primary.set(key, value, ex=60)
        try:
            deadline = time.monotonic() + 5
            while replica.get(key) != value:
                assert time.monotonic() < deadline, "the replica never saw the write"
                time.sleep(0.05)
            assert replica.info("replication")["role"] == "slave"
        finally:
            primary.delete(key)
