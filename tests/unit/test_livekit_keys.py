"""LiveKit's key layout: the versions it is known for, and the refusal of any other."""

from __future__ import annotations

from typing import Any

import pytest
from livekit.protocol import models

from lkchaos.errors import LkChaosError
from lkchaos.livekit import keys, state
from lkchaos.redis import client as redis_client
from lkchaos.settings import Settings
from lkchaos.stack import layout
from tests.unit.test_room_state import FakeRedis, node_bytes


def test_the_reference_stacks_livekit_is_known_and_was_run() -> None:
    pinned = keys.normalise(layout.LIVEKIT_VERSION)
    assert pinned in keys.KNOWN_VERSIONS
    assert keys.KNOWN_VERSIONS[pinned].startswith("run:")


@pytest.mark.parametrize("found", ["1.13.5", "v1.13.5", " 1.13.0 ", "1.12.0"])
def test_known_versions_pass(found: str) -> None:
    assert keys.check_version(found) == keys.normalise(found)


def test_no_recorded_version_is_read_with_the_known_layout() -> None:
    assert keys.check_version("") == ""


@pytest.mark.parametrize("found", ["1.14.0", "1.11.3", "2.0.0", "1.13.5-rc1", "garbage"])
def test_an_unknown_version_is_refused_naming_both_sides(found: str) -> None:
    with pytest.raises(keys.UnknownLiveKitVersion) as caught:
        keys.check_version(found)
    message = str(caught.value)
    assert f"Redis records LiveKit {found}" in message
    assert "1.12.0, 1.13.0, 1.13.1, 1.13.2, 1.13.3, 1.13.4, 1.13.5 only" in message
    assert "pin the livekit-server" in message and "report LiveKit" in message
    assert isinstance(caught.value, LkChaosError) and caught.value.found == found


# --- read_store applies the gate ---------------------------------------------------------


def redis_holding(version: bytes | None) -> dict[str, Any]:
    room = models.Room(name="a", sid="RM_a", num_participants=1).SerializeToString()
    person = models.ParticipantInfo(identity="alice", sid="PA_1").SerializeToString()
    data: dict[str, Any] = {keys.ROOMS: {b"a": room}, keys.ROOM_NODE_MAP: {b"a": b"ND_1"},
                            f"{keys.PARTICIPANTS_PREFIX}a": {b"alice": person}}  # fmt: skip
    if version is not None:
        data[keys.VERSION] = version
    return data


def read(monkeypatch: pytest.MonkeyPatch, data: dict[str, Any]) -> state.StoreState:
    monkeypatch.setattr(redis_client, "primary", lambda s, t: FakeRedis(data))
    return state.read_store(Settings())


def test_read_store_reads_a_known_version(monkeypatch: pytest.MonkeyPatch) -> None:
    store = read(monkeypatch, redis_holding(b"1.13.5"))
    assert store.version == "1.13.5" and set(store.rooms) == {"a"}
    assert set(store.participants["a"]) == {"alice"} and store.room_nodes == {"a": "ND_1"}


def test_read_store_reads_a_redis_without_a_version(monkeypatch: pytest.MonkeyPatch) -> None:
    store = read(monkeypatch, redis_holding(None))
    assert store.version == "" and set(store.rooms) == {"a"}


def test_read_store_refuses_an_unknown_version(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(keys.UnknownLiveKitVersion, match="Redis records LiveKit 1.20.0"):
        read(monkeypatch, redis_holding(b"1.20.0"))


def test_read_nodes_reads_the_nodes_hash_alone_with_the_same_gate(
        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    data = {**redis_holding(b"1.13.5"), keys.NODES: {b"ND_1": node_bytes("ND_1")}}
    monkeypatch.setattr(redis_client, "primary", lambda s, t: FakeRedis(data))
    nodes = state.read_nodes(Settings())
    assert set(nodes) == {"ND_1"} and nodes["ND_1"].ip == "10.0.0.1"
    data[keys.VERSION] = b"1.20.0"
    with pytest.raises(keys.UnknownLiveKitVersion, match="Redis records LiveKit 1.20.0"):
        state.read_nodes(Settings())
