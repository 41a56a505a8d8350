"""The agent worker is registered with LiveKit and joins the rooms it is dispatched to."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import httpx
import pytest
from livekit import api

from lkchaos.docker.client import service_container
from lkchaos.livekit import client as lk
from lkchaos.settings import Settings
from lkchaos.stack import layout

AGENT_NAME = "lkchaos-agent"


def test_agent_worker_health() -> None:
    response = httpx.get(f"http://127.0.0.1:{layout.host_port('agent_health')}/", timeout=5)
    assert response.status_code == 200


def test_job_processes_are_forked_with_the_pipeline_already_imported(
    docker: Any, settings: Settings
) -> None:
    # Each job runs in a process of its own, forked from the framework's forkserver: the
    # pipeline's modules must be imported there once (AgentServer's preload_modules), not by
    # every job process (about a second of CPU per call here: BENCHMARKS).
    container = service_container(docker, settings.compose_project, "agent")
    records = [json.loads(line) for line in container.logs().decode().splitlines()
               if line.startswith("{") and '"preloading plugins"' in line]
    assert records, "the worker never logged its forkserver preload list"
    assert "voicestack.agent" in records[-1]["packages"], records[-1]


@pytest.mark.parametrize("node", [0, 1], ids=["via-livekit-1", "via-livekit-2"])
def test_agent_joins_a_room_it_is_dispatched_to(settings: Settings, node: int) -> None:
    room = f"it-agent-{uuid.uuid4().hex[:8]}"

    async def scenario(c: api.LiveKitAPI) -> tuple[list[str], bool]:
        await c.room.create_room(api.CreateRoomRequest(name=room, empty_timeout=30))
        dispatch = await c.agent_dispatch.create_dispatch(
            api.CreateAgentDispatchRequest(agent_name=AGENT_NAME, room=room)
        )
        agents: list[str] = []
        try:
            deadline = time.monotonic() + 20
            while not agents and time.monotonic() < deadline:
                listed = await c.room.list_participants(api.ListParticipantsRequest(room=room))
                # Joined and media connected, not only signalling.
                agents = [p.identity for p in listed.participants
                          if p.kind == api.ParticipantInfo.Kind.AGENT
                          and p.state == api.ParticipantInfo.State.ACTIVE]
                await asyncio.sleep(0.25)
        finally:
            await c.agent_dispatch.delete_dispatch(dispatch.id, room)
            await c.room.delete_room(api.DeleteRoomRequest(room=room))
        # The agent must leave with the room, not bring it back.
        await asyncio.sleep(3)
        rooms = await c.room.list_rooms(api.ListRoomsRequest(names=[room]))
        return agents, bool(rooms.rooms)

    agents, reappeared = lk.call(settings.livekit_node_urls[node], settings, scenario, timeout=30)
    assert agents, f"no agent joined {room} within 20 s of its dispatch"
    assert not reappeared, f"{room} was back after it was deleted"
