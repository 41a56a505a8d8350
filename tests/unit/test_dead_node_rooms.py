"""lkchaos's own rooms left on a LiveKit node that died: found, and closed through LiveKit.

The live test runs a real redis-server and the pinned livekit-server: a node hosting rooms is
killed (SIGKILL), a second node starts on the same Redis (LiveKit removes the dead node's
record when a node starts), and the rooms stay in Redis, mapped to a node that is gone.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from livekit import api

from lkchaos.errors import LkChaosError
from lkchaos.livekit import client, state
from lkchaos.livekit.dead_nodes import GONE_AFTER_S, close_own_rooms, own_rooms_on_dead_nodes
from lkchaos.settings import Settings
from tests.unit import livekit_dev
from tests.unit.livekit_dev import KEY, LIVEKIT_BIN, SECRET, free_port, stop_process

NOW = 1_000_000.0


def _store(rooms: dict[str, str], nodes: dict[str, float | None]) -> state.StoreState:
    return state.StoreState(
        rooms={name: state.RoomRecord(name, f"RM_{name}") for name in rooms},
        room_nodes=dict(rooms),
        nodes={node_id: state.NodeRecord(node_id, f"10.0.0.{n}", updated_at=None if at is None
                                         else int(at))
               for n, (node_id, at) in enumerate(nodes.items(), 1)},
    )  # fmt: skip


def test_only_lkchaos_rooms_on_nodes_that_are_gone_are_on_dead_nodes() -> None:
    store = _store(
        rooms={"lkchaos-probe-1": "ND_dead", "lkchaos-held-2": "ND_stale",
               "lkchaos-probe-3": "ND_live", "lkchaos-probe-4": "ND_slow",
               "customer-call": "ND_dead"},
        nodes={"ND_live": NOW - 1, "ND_stale": NOW - GONE_AFTER_S,
               "ND_slow": NOW - GONE_AFTER_S + 5},
    )  # fmt: skip
    # the deployment's own room is never lkchaos's to close; a node late by less than
    # GONE_AFTER_S (a Redis failover) keeps its rooms
    assert own_rooms_on_dead_nodes(store, NOW) == {"lkchaos-probe-1": "ND_dead",
                                                   "lkchaos-held-2": "ND_stale"}


def test_an_earlier_life_of_a_restarted_node_is_gone_within_seconds() -> None:
    # livekit-2 killed 12 s ago and started again: a new id at the same address, fresh.
    store = _store(rooms={"lkchaos-probe-1": "ND_old", "lkchaos-probe-2": "ND_late"},
                   nodes={"ND_old": NOW - 12, "ND_new": NOW - 1, "ND_late": NOW - 12})
    store.nodes["ND_new"] = state.NodeRecord("ND_new", store.nodes["ND_old"].ip,
                                             updated_at=int(NOW - 1))  # fmt: skip
    # ND_late's address has no fresh node: only late (a Redis failover), kept
    assert own_rooms_on_dead_nodes(store, NOW) == {"lkchaos-probe-1": "ND_old"}


def test_a_target_without_livekit_keys_or_redis_has_nothing_to_close() -> None:
    assert close_own_rooms(Settings(livekit_node_urls=(), sentinel_addresses=())) == []
    assert close_own_rooms(Settings(livekit_api_key="", livekit_api_secret="")) == []


def test_an_unreachable_redis_is_said_in_words() -> None:
    direct = Settings(livekit_node_urls=("http://127.0.0.1:9",), livekit_api_key=KEY,
                      livekit_api_secret=SECRET, sentinel_addresses=(),
                      redis_primary_address=f"127.0.0.1:{free_port()}")  # fmt: skip
    with pytest.raises(LkChaosError, match="cannot read LiveKit's room state from Redis"):
        close_own_rooms(direct, timeout=1.0)


def test_a_room_without_a_node_or_a_node_without_stats_is_not_on_a_dead_node() -> None:
    store = _store(rooms={"lkchaos-probe-1": "ND_new"}, nodes={"ND_new": None})
    store.rooms["lkchaos-probe-2"] = state.RoomRecord("lkchaos-probe-2", "RM_2")
    assert own_rooms_on_dead_nodes(store, NOW) == {}


# -- against a real LiveKit ---------------------------------------------------------------------
def _node(folder: Path, redis_port: int, started: list[subprocess.Popen[bytes]],
          name: str) -> str:  # fmt: skip
    port = free_port()
    config = {
        "port": port, "bind_addresses": ["127.0.0.1"],
        "rtc": {"tcp_port": free_port(), "udp_port": free_port(socket.SOCK_DGRAM),
                "use_external_ip": False, "node_ip": "127.0.0.1"},
        "redis": {"address": f"127.0.0.1:{redis_port}"}, "keys": {KEY: SECRET},
    }  # fmt: skip
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(config))
    with (folder / f"{name}.log").open("wb") as log:
        started.append(subprocess.Popen([str(LIVEKIT_BIN), "--config", f"{name}.yaml"],
                                        cwd=folder, stdout=log, stderr=log))  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    livekit_dev.wait_serving(url, started[-1:], folder / f"{name}.log")
    return url


@pytest.fixture
def node_lost(tmp_path: Path) -> Iterator[Settings]:
    """Settings for a deployment whose first node died hosting ``lkchaos-probe-left``
    and ``customer-call``; its second node serves."""
    if not os.access(LIVEKIT_BIN, os.X_OK):
        pytest.skip(f"no livekit-server binary at {LIVEKIT_BIN}: `lkchaos stack build` builds it")
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        pytest.skip("no redis-server on PATH: apt-get install redis-server")
    started: list[subprocess.Popen[bytes]] = []
    try:
        def first(procs: list[subprocess.Popen[bytes]]) -> tuple[int, str]:
            redis_port = free_port()
            with (tmp_path / "redis.log").open("wb") as log:
                procs.append(subprocess.Popen(
                    [redis_server, "--port", str(redis_port), "--bind", "127.0.0.1", "--save",
                     "", "--appendonly", "no"], stdout=log, stderr=log))  # fmt: skip
            return redis_port, _node(tmp_path, redis_port, procs, "node-1")

        (redis_port, url1), started = livekit_dev.start_on_free_ports(first)
        settings = Settings(livekit_node_urls=(url1,), livekit_api_key=KEY,
                            livekit_api_secret=SECRET, sentinel_addresses=(),
                            redis_primary_address=f"127.0.0.1:{redis_port}")  # fmt: skip

        async def rooms(c: api.LiveKitAPI) -> None:
            for name in ("lkchaos-probe-left", "customer-call"):
                await c.room.create_room(api.CreateRoomRequest(name=name, empty_timeout=600))

        client.call(url1, settings, rooms)
        started[1].send_signal(signal.SIGKILL)
        started[1].wait(timeout=10)
        # A node starting removes the records of nodes whose stats are 5 s old (LiveKit's
        # "available" rule): the dead one's, once that long has passed.
        time.sleep(6)
        url2 = _node(tmp_path, redis_port, started, "node-2")
        yield Settings(livekit_node_urls=(url2,), livekit_api_key=KEY,
                       livekit_api_secret=SECRET, sentinel_addresses=(),
                       redis_primary_address=f"127.0.0.1:{redis_port}")  # fmt: skip
    finally:
        for process in reversed(started):
            stop_process(process)


def test_rooms_of_a_dead_node_are_closed_through_livekit(node_lost: Settings) -> None:
    settings = node_lost
    store = state.read_store(settings)
    assert {"lkchaos-probe-left", "customer-call"} <= set(store.rooms)
    assert store.room_nodes["lkchaos-probe-left"] not in store.nodes  # the node is gone

    async def delete(c: api.LiveKitAPI) -> None:
        await c.room.delete_room(api.DeleteRoomRequest(room="lkchaos-probe-left"))

    # LiveKit's DeleteRoom alone cannot close it: it asks the dead node
    with pytest.raises(api.TwirpError):
        client.call(settings.livekit_node_urls[0], settings, delete)

    closed = close_own_rooms(settings)
    assert closed == [{"fault": "room lkchaos-probe-left left on node "
                                f"{store.room_nodes['lkchaos-probe-left']}, which is gone",
                       "outcome": "closed"}]  # fmt: skip
    after = state.read_store(settings)
    assert "lkchaos-probe-left" not in after.rooms
    assert "lkchaos-probe-left" not in after.room_nodes
    assert "customer-call" in after.rooms  # the deployment's own room is left as it is
    assert close_own_rooms(settings) == []  # nothing left to close


def test_no_live_node_leaves_the_room_and_says_why(node_lost: Settings) -> None:
    dead = Settings(livekit_node_urls=(f"http://127.0.0.1:{free_port()}",),
                    livekit_api_key=KEY, livekit_api_secret=SECRET, sentinel_addresses=(),
                    redis_primary_address=node_lost.redis_primary_address)  # fmt: skip
    closed = close_own_rooms(dead, timeout=2.0)
    assert len(closed) == 1 and closed[0]["outcome"].startswith("error: no LiveKit node closed")
    assert "lkchaos-probe-left" in state.read_store(dead).rooms
