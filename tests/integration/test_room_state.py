"""Room-state probes against the live stack: real rooms, real participants joined over WebRTC."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from livekit import api, rtc

from lkchaos.livekit import client as lk
from lkchaos.livekit import probes, state
from lkchaos.livekit.background import new_room
from lkchaos.settings import Settings

CONNECT_TIMEOUT = 20.0
STEP_TIMEOUT = 10.0


def ws_url(http: str) -> str:
    return http.replace("https://", "wss://", 1).replace("http://", "ws://", 1)


class Stage:
    """Rooms and participants created by a test, always torn down."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.node = settings.livekit_node_urls[0]
        self.rooms: list[str] = []
        self.people: dict[str, rtc.Room] = {}

    async def create_room(self, name: str) -> None:
        async def create(c: api.LiveKitAPI) -> None:
            await c.room.create_room(api.CreateRoomRequest(name=name, empty_timeout=60))

        self.rooms.append(name)
        await lk.with_api(self.node, self.settings, create)

    async def join(self, room: str, identity: str, node: str | None = None) -> None:
        conn = new_room()
        self.people[identity] = conn
        token = lk.access_token(self.settings, identity, room)
        await asyncio.wait_for(conn.connect(ws_url(node or self.node), token), CONNECT_TIMEOUT)

    async def leave(self, identity: str) -> None:
        conn = self.people.pop(identity)
        await asyncio.wait_for(conn.disconnect(), STEP_TIMEOUT)

    async def delete_room(self, name: str) -> None:
        async def delete(c: api.LiveKitAPI) -> None:
            await c.room.delete_room(api.DeleteRoomRequest(room=name))

        await lk.with_api(self.node, self.settings, delete)
        self.rooms.remove(name)

    async def close(self) -> None:
        for identity in list(self.people):
            with contextlib.suppress(Exception):
                await self.leave(identity)
        for name in list(self.rooms):
            with contextlib.suppress(Exception):
                await self.delete_room(name)


@contextlib.asynccontextmanager
async def stage(settings: Settings) -> AsyncIterator[Stage]:
    staged = Stage(settings)
    try:
        yield staged
    finally:
        await asyncio.wait_for(staged.close(), 60)


async def probe(fn: Any, **kwargs: Any) -> dict[str, Any]:
    """Run a (synchronous) probe off the event loop that keeps the participants connected."""
    result: dict[str, Any] = await asyncio.to_thread(fn, **kwargs)
    return result


def about(rooms: set[str], mismatches: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mismatches on these rooms or on the nodes (other tests' rooms may come and go)."""
    return [m for m in mismatches if m["room"] is None or m["room"] in rooms]


async def until_in_redis(settings: Settings, room: str, identities: set[str]) -> None:
    """Participants are written to Redis as they join: wait (bounded) until all are there."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STEP_TIMEOUT
    while True:
        store = await asyncio.to_thread(state.read_store, settings)
        if identities <= set(store.participants.get(room, {})):
            return
        assert loop.time() < deadline, f"{identities} never all stored in Redis for {room}"
        await asyncio.sleep(0.1)


def test_state_is_consistent_and_a_lost_participant_and_room_are_reported(
    settings: Settings,
) -> None:
    tag = uuid.uuid4().hex[:8]
    room_a, room_b, snap = f"it-state-a-{tag}", f"it-state-b-{tag}", f"it-{tag}"
    alice, bob, carol = f"alice-{tag}", f"bob-{tag}", f"carol-{tag}"
    other_node = settings.livekit_node_urls[-1]

    async def scenario() -> None:
        async with stage(settings) as s:
            await s.create_room(room_a)
            await s.create_room(room_b)
            await s.join(room_a, alice)
            await s.join(room_a, bob, node=other_node)
            await s.join(room_b, carol)
            await until_in_redis(settings, room_a, {alice, bob})
            await until_in_redis(settings, room_b, {carol})

            ours = {room_a, room_b}
            current = await probe(probes.room_state, wait=3.0)
            assert about(ours, current["mismatches"]) == [], current["mismatches"]
            assert current["rooms"] >= 2 and current["participants"] >= 3
            assert current["nodes"] == len(settings.livekit_node_urls)

            taken = await probe(probes.snapshot_room_state, name=snap, wait=3.0)
            assert about(ours, taken["mismatches"]) == [], taken["mismatches"]
            assert set(taken["rooms"][room_a]["participants"]) == {alice, bob}
            assert set(taken["rooms"][room_b]["participants"]) == {carol}
            assert Path(taken["path"]).is_file()

            same = await probe(probes.compare_room_state, name=snap, wait=5.0)
            assert room_a not in same["lost_rooms"] and room_b not in same["lost_rooms"]
            assert room_a not in same["lost_participants"], same

            await s.leave(bob)
            await s.delete_room(room_b)
            after = await probe(probes.compare_room_state, name=snap, wait=3.0)
            assert after["ok"] is False
            assert after["lost_participants"].get(room_a) == [bob], after
            assert room_b in after["lost_rooms"], after
            ignored = await probe(
                probes.compare_room_state, name=snap, wait=0.0,
                ignore_rooms_prefix=f"it-state-b-{tag}",
            )
            assert room_b not in ignored["lost_rooms"]

    try:
        asyncio.run(asyncio.wait_for(scenario(), 180))
    finally:
        path = Path(settings.state_dir) / "snapshots" / f"{snap}.json"
        path.unlink(missing_ok=True)


def test_unreachable_node_gives_ok_false_not_an_error(settings: Settings) -> None:
    result = probes.room_state(urls=["http://127.0.0.1:9"], wait=0.5, timeout=1.0)
    assert result["ok"] is False
    assert "node_unreachable" in [m["kind"] for m in result["mismatches"]], result


def test_roomservice_latency_on_every_node(settings: Settings) -> None:
    result = probes.roomservice_latency(timeout=2.0, max_ms=2000)
    assert result["ok"], result
    assert set(result["nodes"]) == set(settings.livekit_node_urls)
    assert all(n["ms"] is not None and n["ms"] >= 0 for n in result["nodes"].values())
