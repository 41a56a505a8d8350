"""A run passes only when its faults landed and its checks held, on the live stack.

- a fault that cannot be injected makes `chaos run` fail (non-zero), and leaves nothing;
- a method probe that misses its tolerance makes the run deviate;
- a failover with participants held connected through it keeps them all, and the same
  comparison with one participant removed by hand fails.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from livekit import api

from lkchaos.docker import actions as docker_actions
from lkchaos.livekit import actions as lk_actions
from lkchaos.livekit import client as lk
from lkchaos.livekit import probes as lk_probes
from lkchaos.redis import actions as redis_actions
from lkchaos.safety import ledger
from lkchaos.settings import Settings
from tests.integration.conftest import wait_baseline

ROOT = Path(__file__).resolve().parents[2]
CHAOS = str(Path(sys.executable).parent / "chaos")
SAFETY = {"name": "lkchaos-safety",
          "provider": {"type": "python", "module": "lkchaos.safety.control"}}


def _provider(module: str, func: str, **arguments: Any) -> dict[str, Any]:
    return {"type": "python", "module": f"lkchaos.{module}", "func": func,
            "arguments": arguments}


def _run(tmp_path: Path, experiment: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    path, journal = tmp_path / "experiment.json", tmp_path / "journal.json"
    path.write_text(json.dumps({"version": "1.0.0", "description": "verdict test",
                                "controls": [SAFETY], **experiment}))
    done = subprocess.run(
        [CHAOS, "--no-version-check", "run", "--journal-path", str(journal), str(path)],
        cwd=ROOT, timeout=600, check=False, capture_output=True, text=True,
    )
    return done.returncode, json.loads(journal.read_text())


def test_a_fault_that_cannot_be_injected_fails_the_run(
    settings: Settings, tmp_path: Path
) -> None:
    """`mcp` is stopped beforehand: pausing it cannot work, and the run must say so."""
    docker_actions.stop_service(service="mcp", timeout=2)
    ledger.forget(settings.state_dir, "stopped", "mcp")  # the test's own set-up, not a fault
    try:
        code, journal = _run(tmp_path, {
            "title": "pause a service that is not running",
            "method": [{"type": "action", "name": "pause-mcp",
                        "provider": _provider("docker.actions", "pause_service",
                                              service="mcp")}],
        })
    finally:
        docker_actions.start_service(service="mcp")
    assert code != 0
    assert journal["status"] == "failed", journal["status"]
    assert journal["run"][0]["status"] == "failed"
    assert "not running" in journal["run"][0]["exception"][-1]
    assert ledger.pending(settings.state_dir) == []
    assert wait_baseline()["ok"]


def test_a_method_probe_that_misses_its_tolerance_deviates(tmp_path: Path) -> None:
    code, journal = _run(tmp_path, {
        "title": "a method probe expects three ready nodes of two",
        "method": [{"type": "probe", "name": "three-nodes-ready",
                    "provider": _provider("livekit.probes", "nodes_health"),
                    "tolerance": {"type": "jsonpath", "path": "$.healthy", "expect": 3}}],
    })
    assert code != 0
    assert journal["deviated"] is True
    assert "three-nodes-ready" in json.dumps(journal["lkchaos_safety"])


ROOM = "it-held-failover"


@pytest.fixture
def held_room(settings: Settings) -> Iterator[str]:
    lk_actions.create_room(ROOM)
    yield ROOM
    lk_actions.release_participants(ROOM)
    redis_actions.restore_old_primary(service=_killed.get("service", "redis-primary"))
    lk_actions.delete_room(ROOM)
    for fault in ledger.pending(settings.state_dir):
        ledger.forget(settings.state_dir, fault.kind, fault.target)
    assert wait_baseline()["ok"]


_killed: dict[str, str] = {}


def _remove(settings: Settings, room: str, identity: str) -> None:
    async def remove(c: api.LiveKitAPI) -> None:
        await c.room.remove_participant(api.RoomParticipantIdentity(room=room,
                                                                    identity=identity))

    lk.call(settings.livekit_node_urls[0], settings, remove)


def test_held_participants_survive_a_failover_and_a_removal_is_caught(
    settings: Settings, held_room: str
) -> None:
    held = lk_actions.hold_participants(held_room, count=2, duration_s=300)
    assert held["listed"] == ["lkchaos-held-1", "lkchaos-held-2"]
    snap = lk_probes.snapshot_room_state("it-held", wait=10)
    assert set(snap["rooms"][held_room]["participants"]) >= set(held["listed"])

    killed = redis_actions.kill_primary()
    _killed["service"] = killed["killed"]
    time.sleep(8)  # Sentinel's down-after is 2 s; the replica is promoted well within this
    after = lk_probes.compare_room_state("it-held", wait=30, min_participants=2,
                                         ignore_rooms_prefix="lkchaos-probe-")
    assert after["ok"] is True and after["compared"] is True, after

    _remove(settings, held_room, "lkchaos-held-2")
    removed = lk_probes.compare_room_state("it-held", wait=5, min_participants=2,
                                           ignore_rooms_prefix="lkchaos-probe-")
    assert removed["ok"] is False
    assert removed["lost_participants"] == {held_room: ["lkchaos-held-2"]}
