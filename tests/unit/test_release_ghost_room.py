"""Releasing held participants whose room's LiveKit node is gone: LiveKit keeps listing them
from Redis (the dead node's entries), so a release that waited for the listing to empty never
ended, its ledger entry could not be undone, and every later run was refused for a pending
fault. RoomService and Redis are stood in for here: what they answer after a node loss."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from chaoslib.exceptions import ActivityFailed

from lkchaos.livekit import actions, state
from lkchaos.safety import ledger

ROOM = "held-room-failover"
STALE = {"lkchaos-held-1", "lkchaos-held-2"}


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("LKCHAOS_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("LKCHAOS_VERIFY_S", "0.5")
    monkeypatch.setenv("LIVEKIT_API_KEY", "APIheld")
    monkeypatch.setenv("LIVEKIT_API_SECRET", "s" * 40)
    monkeypatch.setenv("LKCHAOS_VOICE_PROBER_URL", "")  # no prober: nothing to tell
    monkeypatch.setattr(actions, "_listed", lambda settings, room: set(STALE))
    ledger.record(tmp_path, ledger.Fault(actions.HELD, ROOM, actions.UNDO,
                                         "release_participants", {"room": ROOM}))
    return tmp_path


def _store(node: state.NodeRecord | None) -> state.StoreState:
    store = state.StoreState(room_nodes={ROOM: "ND_dead"})
    if node is not None:
        store.nodes[node.id] = node
    return store


def test_a_room_on_a_node_that_is_gone_is_released_saying_why(
    held: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(state, "read_store", lambda settings: _store(None))
    result = actions.release_participants(ROOM)
    assert result["ghost_node"] == "ND_dead" and "no longer serving" in result["note"]
    assert ledger.pending(held) == []


def test_a_node_whose_stats_went_stale_counts_as_gone(
    held: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    old = state.NodeRecord("ND_dead", "10.0.0.2", updated_at=int(time.time()) - 60)
    monkeypatch.setattr(state, "read_store", lambda settings: _store(old))
    assert actions.release_participants(ROOM)["ghost_node"] == "ND_dead"


def test_participants_still_listed_on_a_live_node_are_not_taken_for_released(
    held: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    live = state.NodeRecord("ND_dead", "10.0.0.2", updated_at=int(time.time()))
    monkeypatch.setattr(state, "read_store", lambda settings: _store(live))
    with pytest.raises(ActivityFailed, match="release of the participants held"):
        actions.release_participants(ROOM)
    assert [f.target for f in ledger.pending(held)] == [ROOM]
