"""LiveKit's webhooks reach the stack's receiver, signed; the runtime heals a crashed service;
node loss hits the node that hosts the call."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from lkchaos.docker import actions as docker_actions
from lkchaos.hooks import client as hooks_client
from lkchaos.hooks.probes import room_webhooks, webhooks_for_call
from lkchaos.livekit import actions as livekit_actions
from lkchaos.settings import Settings
from lkchaos.stack import layout
from tests.integration.conftest import wait_baseline


def test_a_calls_webhooks_arrive_once_each_and_in_order() -> None:
    verdict = webhooks_for_call(timeout=45, finish_wait_s=60)
    assert verdict["call"]["ok"], verdict["call"]
    assert verdict["ok"], verdict
    # The caller and the agent: each joined, published its audio and left.
    assert len(verdict["participants"]) == 2, verdict["participants"]
    assert verdict["events"][0] == "room_started" and verdict["events"][-1] == "room_finished"
    assert verdict["events"].count("participant_joined") == 2
    assert verdict["events"].count("track_published") >= 2


def test_a_webhook_with_a_forged_signature_is_refused_and_not_recorded(
    settings: Settings,
) -> None:
    url = f"http://127.0.0.1:{layout.host_port('hooks')}"
    since = time.time()
    body = '{"event": "room_started", "room": {"name": "forged-room"}, "id": "EV_forged"}'
    answer = httpx.post(f"{url}/livekit", content=body, timeout=5,
                        headers={"Authorization": "not-a-token",
                                 "Content-Type": "application/webhook+json"})
    assert answer.status_code == 401
    assert hooks_client.livekit_events(url, room="forged-room", since=since) == []
    judged = room_webhooks("forged-room", since_s=60)
    assert judged["events"] == [] and judged["lost"] == ["room_started"]


def _restarts(settings: Settings, service: str) -> dict[str, Any]:
    from lkchaos.docker.client import docker_session, runtime_container

    with docker_session() as docker:
        container = runtime_container(docker, settings, service)
        container.reload()
        state = container.attrs["State"]
        return {"running": state["Running"], "started_at": state["StartedAt"],
                "restart_count": container.attrs["RestartCount"]}


def test_a_crashed_agent_is_healed_by_the_runtime_and_answers_again(settings: Settings) -> None:
    before = _restarts(settings, "agent")
    result = docker_actions.crash_service(service="agent_worker")
    try:
        assert result["restart_policy"] == "unless-stopped"
        assert result["restarted"] is True, result
        after = _restarts(settings, "agent")
        assert after["running"] and after["started_at"] != before["started_at"]
        assert after["restart_count"] == before["restart_count"] + 1
    finally:
        docker_actions.start_service(service="agent_worker")
    state = wait_baseline()
    assert state["ok"], state


@pytest.fixture
def held_room() -> Any:
    room = "lkchaos-it-hosting"
    livekit_actions.hold_participants(room=room, count=1, duration_s=120)
    yield room
    livekit_actions.release_participants(room=room)


def test_the_node_hosting_a_room_is_found_by_its_address(
    settings: Settings, held_room: str
) -> None:
    from lkchaos.livekit import state

    service, node_id, node_ip = livekit_actions.node_hosting(settings, held_room)
    store = state.read_store(settings)
    assert store.room_nodes[held_room] == node_id
    assert store.nodes[node_id].ip == node_ip
    octet = int(node_ip.rsplit(".", 1)[1])
    assert layout.HOST_OCTET[service] == octet


def test_a_room_no_node_hosts_is_refused_with_what_to_do() -> None:
    from chaoslib.exceptions import ActivityFailed

    with pytest.raises(ActivityFailed, match="no LiveKit node hosts room 'no-such-room'"):
        livekit_actions.kill_node_hosting(room="no-such-room")


def test_an_alert_delivery_without_alertmanagers_token_is_refused() -> None:
    url = f"http://127.0.0.1:{layout.host_port('hooks')}"
    since = time.time()
    forged = {"alerts": [{"status": "resolved", "labels": {"alertname": "ForgedAlert"}}]}
    answer = httpx.post(f"{url}/alertmanager", json=forged, timeout=5)
    assert answer.status_code == 401
    wrong = httpx.post(f"{url}/alertmanager", json=forged, timeout=5,
                       headers={"Authorization": "Bearer not-the-token"})
    assert wrong.status_code == 401
    assert hooks_client.alert_deliveries(url, alertname="ForgedAlert", since=since) == []
