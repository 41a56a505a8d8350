"""Both LiveKit nodes are registered in Redis and serve RoomService against shared state."""

from __future__ import annotations

import time
import uuid

import pytest
from livekit import api

from lkchaos.livekit import client as lk
from lkchaos.livekit.probes import nodes_health
from lkchaos.redis import client as redis_client
from lkchaos.settings import Settings


def test_both_nodes_registered_in_redis(settings: Settings) -> None:
    with redis_client.primary(settings) as r:
        nodes = r.hgetall("nodes")
    assert len(nodes) == 2, f"nodes hash holds {len(nodes)} node(s)"


def test_both_nodes_report_ready(settings: Settings) -> None:
    health = nodes_health()
    assert health["ok"] and health["healthy"] == 2, health


@pytest.mark.parametrize("node", [0, 1], ids=["livekit-1", "livekit-2"])
def test_room_created_on_a_node_is_seen_by_both(settings: Settings, node: int) -> None:
    name = f"it-room-{uuid.uuid4().hex[:8]}"
    urls = settings.livekit_node_urls

    async def create(c: api.LiveKitAPI) -> api.Room:
        return await c.room.create_room(api.CreateRoomRequest(name=name, empty_timeout=30))

    async def names(c: api.LiveKitAPI) -> set[str]:
        rooms = await c.room.list_rooms(api.ListRoomsRequest())
        return {r.name for r in rooms.rooms}

    async def delete(c: api.LiveKitAPI) -> None:
        await c.room.delete_room(api.DeleteRoomRequest(room=name))

    created = lk.call(urls[node], settings, create)
    try:
        assert created.name == name and created.sid.startswith("RM_")
        with redis_client.primary(settings) as r:
            assert r.hexists("rooms", name), "the room is not in Redis's rooms hash"
        deadline = time.monotonic() + 5
        while name not in lk.call(urls[1 - node], settings, names):
            assert time.monotonic() < deadline, "the other node never listed the room"
            time.sleep(0.2)
    finally:
        lk.call(urls[node], settings, delete)
