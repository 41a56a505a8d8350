"""lkchaos's own rooms left on a LiveKit node that died: found, and closed through LiveKit.

The live test runs a real redis-server and the pinned livekit-server: a node hosting rooms is
killed (SIGKILL), a second node starts on the same Redis (LiveKit removes the dead node's
record when a node starts), and the rooms stay in Redis, mapped to a node that is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from livekit import api

from lkchaos.errors import LkChaosError
from lkchaos.livekit import client, dead_nodes, state
from lkchaos.livekit.dead_nodes import GONE_AFTER_S, close_own_rooms, own_rooms_on_dead_nodes
from lkchaos.settings import Settings
from tests.unit import livekit_dev
from tests.unit.livekit_dev import KEY, SECRET, free_port, stop_process

NOW = 1_000_000.0


def _store(rooms: dict[str, str], nodes: dict[str, float | None]) -> state.StoreState:
    return state.StoreState(
        rooms={name: state.RoomRecord(name, f"RM_{name}") for name in rooms},
        room_nodes=dict(rooms),
        nodes={node_id: state.NodeRecord(node_id, f"10.0.0.{n}", updated_at=None if at is None
                                         else int(at))
               for n, (node_id, at) in enumerate(nodes.items(), 1)},
    )  # fmt: skip


def _settings(url: str, redis: str) -> Settings:
    """A target of the node at ``url`` with its Redis at ``redis`` (direct)."""
    return Settings(livekit_node_urls=(url,), livekit_api_key=KEY, livekit_api_secret=SECRET,
                    sentinel_addresses=(), redis_primary_address=redis)  # fmt: skip


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
    direct = _settings("http://127.0.0.1:9", f"127.0.0.1:{free_port()}")
    with pytest.raises(LkChaosError, match="cannot read LiveKit's room state from Redis"):
        close_own_rooms(direct, timeout=1.0)


def test_a_room_without_a_node_or_a_node_without_stats_is_not_on_a_dead_node() -> None:
    store = _store(rooms={"lkchaos-probe-1": "ND_new"}, nodes={"ND_new": None})
    store.rooms["lkchaos-probe-2"] = state.RoomRecord("lkchaos-probe-2", "RM_2")
    assert own_rooms_on_dead_nodes(store, NOW) == {}


# -- against a real LiveKit ---------------------------------------------------------------------
@pytest.fixture
def node_lost(tmp_path: Path) -> Iterator[Settings]:
    """Settings for a deployment whose first node died hosting ``lkchaos-probe-left``
    and ``customer-call``; its second node serves."""
    started: list[subprocess.Popen[bytes]] = []
    try:
        def first(procs: list[subprocess.Popen[bytes]]) -> tuple[int, str]:
            redis_port = livekit_dev.start_redis(tmp_path, procs)
            return redis_port, livekit_dev.start_node(tmp_path, procs, redis_port, "node-1")

        (redis_port, url1), started = livekit_dev.start_on_free_ports(first)
        redis = f"127.0.0.1:{redis_port}"

        async def rooms(c: api.LiveKitAPI) -> None:
            for name in ("lkchaos-probe-left", "customer-call"):
                await c.room.create_room(api.CreateRoomRequest(name=name, empty_timeout=600))

        client.call(url1, _settings(url1, redis), rooms)
        started[1].send_signal(signal.SIGKILL)
        started[1].wait(timeout=10)
        # A node starting removes the records of nodes whose stats are 5 s old (LiveKit's
        # "available" rule): the dead one's, once that long has passed.
        time.sleep(6)
        yield _settings(livekit_dev.start_node(tmp_path, started, redis_port, "node-2"), redis)
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
    dead = _settings(f"http://127.0.0.1:{free_port()}", node_lost.redis_primary_address)
    closed = close_own_rooms(dead, timeout=2.0)
    assert len(closed) == 1 and closed[0]["outcome"].startswith("error: no LiveKit node closed")
    assert "lkchaos-probe-left" in state.read_store(dead).rooms


# -- a room whose close a Redis failover lost -------------------------------------------------
@contextlib.contextmanager
def _closes_lost(tmp_path: Path, rooms: tuple[str, ...], closed: tuple[str, ...],
                 kept: tuple[bytes, ...]) -> Iterator[Settings]:  # fmt: skip
    """Settings for one node on its own Redis where ``rooms`` were created, then ``closed``
    closed, and the Redis keys ``kept`` put back as they were before the close (as a replica
    that missed it, promoted, would hold them)."""
    import redis as redis_lib

    def launch(procs: list[subprocess.Popen[bytes]]) -> tuple[int, str]:
        redis_port = livekit_dev.start_redis(tmp_path, procs)
        return redis_port, livekit_dev.start_node(tmp_path, procs, redis_port, "node-1")

    (redis_port, url), started = livekit_dev.start_on_free_ports(launch)
    try:
        settings = _settings(url, f"127.0.0.1:{redis_port}")

        async def create(c: api.LiveKitAPI) -> None:
            for name in rooms:
                await c.room.create_room(api.CreateRoomRequest(name=name, empty_timeout=600))

        async def close(c: api.LiveKitAPI) -> None:
            for name in closed:
                await c.room.delete_room(api.DeleteRoomRequest(room=name))

        client.call(url, settings, create)
        with redis_lib.Redis(port=redis_port, socket_timeout=5) as r:
            before = {key: r.dump(key) for key in kept if r.exists(key)}
            client.call(url, settings, close)
            assert not set(closed) & set(state.read_store(settings).rooms)
            for key, value in before.items():  # the failover: the replica missed the close
                r.restore(key, 0, value, replace=True)
        yield settings
    finally:
        for process in reversed(started):
            stop_process(process)


@pytest.fixture
def close_lost(tmp_path: Path) -> Iterator[Settings]:
    """Two rooms' close lost whole: ``lkchaos-probe-ghost`` and ``customer-ghost`` listed,
    run by no node; ``lkchaos-probe-live`` hosted."""
    with _closes_lost(tmp_path, ("lkchaos-probe-ghost", "customer-ghost", "lkchaos-probe-live"),
                      ("lkchaos-probe-ghost", "customer-ghost"),
                      (b"rooms", b"room_node_map", b"room_internal")) as settings:
        yield settings


def test_rooms_no_node_runs_are_found_and_only_lkchaos_rooms_closed(close_lost: Settings) -> None:
    settings = close_lost
    url = settings.livekit_node_urls[0]
    obs = state.observe(settings, [url], timeout=2.0)
    lost = {m.room: m for m in obs.mismatches if m.kind == "room_not_hosted"}
    assert set(lost) == {"lkchaos-probe-ghost", "customer-ghost"}, obs.mismatches
    assert lost["customer-ghost"].node == state.read_store(settings).room_nodes["customer-ghost"]
    assert "no node runs it" in lost["customer-ghost"].detail

    closed = close_own_rooms(settings)
    assert [c["outcome"] for c in closed] == ["closed"]
    assert closed[0]["fault"].startswith("room lkchaos-probe-ghost in Redis on node ")
    rooms = set(state.read_store(settings).rooms)
    assert "lkchaos-probe-ghost" not in rooms
    assert {"customer-ghost", "lkchaos-probe-live"} <= rooms  # not lkchaos's / hosted
    assert close_own_rooms(settings) == []


def test_a_room_that_comes_back_after_its_close_is_closed_again(close_lost: Settings) -> None:
    # An agent whose job was assigned as the room started joins after the close, and its
    # join creates the room again: here a CreateRoom the moment the room is gone does so.
    settings = close_lost
    url = settings.livekit_node_urls[0]

    def come_back() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if "lkchaos-probe-ghost" not in state.read_store(settings).rooms:
                async def create(c: api.LiveKitAPI) -> None:
                    await c.room.create_room(api.CreateRoomRequest(name="lkchaos-probe-ghost",
                                                                   empty_timeout=600))

                client.call(url, settings, create)
                return
            time.sleep(0.05)

    joiner = threading.Thread(target=come_back)
    joiner.start()
    closed = close_own_rooms(settings)
    joiner.join(timeout=30)
    assert [c["outcome"] for c in closed] == [
        "closed (twice: it came back after its first close)"], closed
    assert "lkchaos-probe-ghost" not in state.read_store(settings).rooms


def test_a_room_back_before_its_close_is_verified_is_closed_again(
    close_lost: Settings, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The agent's join can create the room again before the close is checked in Redis: a room
    # of the same name with another sid came back, it was not left unclosed (CI saw this order
    # of the race above reported as "still in Redis after DeleteRoom").
    settings = close_lost
    url = settings.livekit_node_urls[0]
    real_close = dead_nodes._close
    sid_before = state.read_store(settings).rooms["lkchaos-probe-ghost"].sid
    calls: list[str] = []

    def close_then_come_back(s: Settings, room: str, timeout: float, move: bool = True) -> None:
        real_close(s, room, timeout, move)
        calls.append(room)
        if len(calls) == 1:
            async def create(c: api.LiveKitAPI) -> None:
                await c.room.create_room(api.CreateRoomRequest(name=room, empty_timeout=600))

            client.call(url, s, create)
            assert state.read_store(s).rooms[room].sid != sid_before

    monkeypatch.setattr(dead_nodes, "_close", close_then_come_back)
    closed = close_own_rooms(settings)
    assert [c["outcome"] for c in closed] == [
        "closed (twice: it came back after its first close)"], closed
    assert calls == ["lkchaos-probe-ghost"] * 2
    assert "lkchaos-probe-ghost" not in state.read_store(settings).rooms


def test_a_room_a_delete_left_in_place_is_an_error(
    close_lost: Settings, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # DeleteRoom answered, but the same room (the same sid) is still in Redis: not closed.
    monkeypatch.setattr(dead_nodes, "_close", lambda *args, **kwargs: None)
    closed = close_own_rooms(close_lost)
    assert [c["outcome"] for c in closed] == ["error: still in Redis after DeleteRoom"], closed


# -- half of a close kept by a Redis failover --------------------------------------------------
@pytest.fixture
def map_entries_kept(tmp_path: Path) -> Iterator[Settings]:
    """Half of two rooms' close kept: their ``rooms`` records gone, their ``room_node_map``
    entries back (``lkchaos-probe-orphan`` and ``customer-orphan``, on the live node)."""
    names = ("lkchaos-probe-orphan", "customer-orphan")
    with _closes_lost(tmp_path, names, names, (b"room_node_map",)) as settings:
        store = state.read_store(settings)
        assert set(names) <= set(store.room_nodes) and not set(names) & set(store.rooms)
        yield settings


def test_a_map_entry_left_without_its_room_is_closed_only_if_lkchaos(
    map_entries_kept: Settings,
) -> None:
    settings = map_entries_kept
    url = settings.livekit_node_urls[0]
    obs = state.observe(settings, [url], timeout=2.0)
    assert {m.room for m in obs.mismatches if m.kind == "node_map_without_room"} == {
        "lkchaos-probe-orphan", "customer-orphan"}, obs.mismatches

    closed = close_own_rooms(settings)
    assert [c["outcome"] for c in closed] == ["closed"], closed
    assert closed[0]["fault"].startswith("room lkchaos-probe-orphan left in room_node_map")
    store = state.read_store(settings)
    assert "lkchaos-probe-orphan" not in store.room_nodes
    assert "lkchaos-probe-orphan" not in store.rooms
    assert "customer-orphan" in store.room_nodes  # the deployment's: reported, not touched
    assert close_own_rooms(settings) == []


# -- a room being created or closed as the run ends --------------------------------------------
@pytest.fixture
def one_node(tmp_path: Path) -> Iterator[Settings]:
    """One LiveKit node on its own Redis, no room."""
    with _closes_lost(tmp_path, (), (), ()) as settings:
        yield settings


def _in_a_second(action: Callable[[], None]) -> threading.Thread:
    def later() -> None:
        time.sleep(1.0)
        action()

    thread = threading.Thread(target=later)
    thread.start()
    return thread


def test_a_room_being_created_as_the_run_ends_is_left_to_its_caller(one_node: Settings) -> None:
    # LiveKit writes a room's room_node_map entry before its record: for that moment it looks
    # like half of a lost close. A caller still joining (a sampled call outliving the run's
    # stop) must keep its room.
    import redis as redis_lib

    settings = one_node
    url = settings.livekit_node_urls[0]
    (node_id,) = state.read_store(settings).nodes
    with redis_lib.Redis.from_url(f"redis://{settings.redis_primary_address}") as r:
        r.hset("room_node_map", "lkchaos-probe-joining", node_id)

    async def create(c: api.LiveKitAPI) -> None:
        await c.room.create_room(api.CreateRoomRequest(name="lkchaos-probe-joining",
                                                       empty_timeout=600))

    joining = _in_a_second(lambda: client.call(url, settings, create))
    closed = close_own_rooms(settings)
    joining.join(timeout=30)
    assert closed == []
    store = state.read_store(settings)
    assert "lkchaos-probe-joining" in store.rooms
    assert store.room_nodes["lkchaos-probe-joining"] == node_id


def test_a_room_being_closed_as_the_run_ends_is_not_a_lost_close(one_node: Settings) -> None:
    # Closing, LiveKit removes the room's record first and its room_node_map entry after.
    import redis as redis_lib

    settings = one_node
    (node_id,) = state.read_store(settings).nodes
    with redis_lib.Redis.from_url(f"redis://{settings.redis_primary_address}") as r:
        r.hset("room_node_map", "lkchaos-probe-leaving", node_id)
        leaving = _in_a_second(lambda: r.hdel("room_node_map", "lkchaos-probe-leaving"))
        assert close_own_rooms(settings) == []
        leaving.join(timeout=30)


def test_a_room_closed_while_the_nodes_are_asked_about_it_is_not_a_lost_close(
    close_lost: Settings, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Closing, a node stops running the room before its record leaves Redis: asked in that
    # moment, no node runs it; by the time the nodes have answered (seconds), it is gone.
    import redis as redis_lib

    settings = close_lost
    real_unhosted = dead_nodes.own_unhosted

    def asked_while_it_closes(*args: Any, **kwargs: Any) -> set[str]:
        found = real_unhosted(*args, **kwargs)
        assert found == {"lkchaos-probe-ghost"}
        with redis_lib.Redis.from_url(f"redis://{settings.redis_primary_address}") as r:
            r.hdel("rooms", "lkchaos-probe-ghost")
            r.hdel("room_node_map", "lkchaos-probe-ghost")
        return found

    monkeypatch.setattr(dead_nodes, "own_unhosted", asked_while_it_closes)
    assert close_own_rooms(settings) == []


# -- a room placed again that LiveKit stores late ----------------------------------------------
class _Rooms:
    """A RoomService whose DeleteRoom answers ``not_found`` ``missing`` times first."""

    def __init__(self, missing: int) -> None:
        self.missing = missing
        self.calls: list[str] = []

    async def create_room(self, req: api.CreateRoomRequest) -> None:
        self.calls.append(f"create {req.name}")

    async def delete_room(self, req: api.DeleteRoomRequest) -> None:
        self.calls.append(f"delete {req.room}")
        if self.missing > 0:
            self.missing -= 1
            raise api.TwirpError("not_found", "requested room does not exist", status=404)


class _Client:
    def __init__(self, missing: int) -> None:
        self.room = _Rooms(missing)


def test_a_room_placed_again_is_deleted_once_livekit_has_stored_it() -> None:
    c = _Client(missing=2)
    asyncio.run(dead_nodes.move_and_delete(c, "lkchaos-probe-late", move=True,  # type: ignore[arg-type]
                                           wait_s=5.0, every_s=0.01))
    assert c.room.calls == ["create lkchaos-probe-late"] + ["delete lkchaos-probe-late"] * 3


def test_a_room_not_placed_again_or_never_stored_is_not_found() -> None:
    once = _Client(missing=1)
    with pytest.raises(api.TwirpError):  # no CreateRoom: not_found is the answer
        asyncio.run(dead_nodes.move_and_delete(once, "lkchaos-probe-gone", move=False))  # type: ignore[arg-type]
    assert once.room.calls == ["delete lkchaos-probe-gone"]
    never = _Client(missing=10_000)
    with pytest.raises(api.TwirpError):
        asyncio.run(dead_nodes.move_and_delete(never, "lkchaos-probe-gone", move=True,  # type: ignore[arg-type]
                                               wait_s=0.1, every_s=0.01))
    assert 2 < len(never.room.calls) < 20


def test_a_room_livekit_closed_itself_once_placed_again_is_closed(
    map_entries_kept: Settings, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Placed again with a 1 s empty timeout, the room can close by itself before DeleteRoom
    # finds it (every DeleteRoom answered not_found): gone from Redis, entry and all.
    import redis as redis_lib

    settings = map_entries_kept

    def closed_by_livekit(s: Settings, room: str, timeout: float, move: bool = True) -> None:
        with redis_lib.Redis.from_url(f"redis://{s.redis_primary_address}") as r:
            r.hdel("room_node_map", room)
        raise LkChaosError("no LiveKit node closed it (requested room does not exist)")

    monkeypatch.setattr(dead_nodes, "_close", closed_by_livekit)
    closed = close_own_rooms(settings)
    assert [c["outcome"] for c in closed] == [
        "closed (by LiveKit once placed again, before DeleteRoom)"], closed


def test_a_room_still_mapped_after_every_delete_failed_is_an_error(
    map_entries_kept: Settings, monkeypatch: pytest.MonkeyPatch,
) -> None:
    def not_closed(s: Settings, room: str, timeout: float, move: bool = True) -> None:
        raise LkChaosError("no LiveKit node closed it (requested room does not exist)")

    monkeypatch.setattr(dead_nodes, "_close", not_closed)
    closed = close_own_rooms(map_entries_kept)
    assert [c["outcome"] for c in closed] == [
        "error: no LiveKit node closed it (requested room does not exist)"], closed
