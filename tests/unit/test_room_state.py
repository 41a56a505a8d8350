"""Room-state decoding, comparison, settling and snapshots, without the network."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis
from chaoslib.exceptions import ActivityFailed
from livekit.protocol import agent, agent_dispatch, models

from lkchaos.livekit import client as lk_client
from lkchaos.livekit import probes, state
from lkchaos.livekit.state import ApiState, NodeRecord, Participant, RoomRecord, StoreState
from lkchaos.safety import ledger
from lkchaos.settings import Settings

NOW = 1_800_000_000.0

#: A ``nodes`` value as written by a livekit-server v1.13.5 node of the reference stack.
REAL_NODE = bytes.fromhex(
    "0a0f4e445f4157715967454764696a5772120c3137322e32392e37372e31311802228c0108f58e88d80610d1"
    "9688d8063888d70240ddb00848a9025089018801029501a4702d409d01c3f52840a5017b140e40ad01abaa32"
    "3fd0010d900280a0e3945e98028080918506e0020ef0020292033a08c79688d80610d19688d806180a459a19"
    "5d434d33337b4255cdcccc3f5d9a99193fa501af574b3fad01e524873db501edd5c64ebd011a53bc50b00302"
    "3001"
)


def varint(n: int) -> bytes:
    out = b""
    while True:
        byte, n = n & 0x7F, n >> 7
        out += bytes([byte | (0x80 if n else 0)])
        if not n:
            return out


def field(number: int, payload: bytes | int) -> bytes:
    """One protobuf field, encoded by hand (length-delimited for bytes, varint for ints)."""
    if isinstance(payload, int):
        return varint(number << 3) + varint(payload)
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def node_bytes(node_id: str, state_value: int = 1, updated_at: int | None = int(NOW)) -> bytes:
    stats = b"" if updated_at is None else field(4, field(1, 1) + field(2, updated_at))
    return field(1, node_id.encode()) + field(2, b"10.0.0.1") + stats + field(6, state_value)


def pb(message: Any) -> bytes:
    data: bytes = message.SerializeToString()
    return data


def person(identity: str, sid: str = "", kind: Any = models.ParticipantInfo.STANDARD) -> bytes:
    return pb(models.ParticipantInfo(identity=identity, sid=sid or f"PA_{identity}", kind=kind))


def healthy_raw() -> dict[str, dict[bytes, bytes]]:
    return {
        "rooms": {b"a": pb(models.Room(name="a", sid="RM_a", num_participants=2))},
        "room_node_map": {b"a": b"ND_1"},
        "nodes": {b"ND_1": node_bytes("ND_1"), b"ND_2": node_bytes("ND_2")},
        "room_participants:a": {
            b"alice": person("alice"), b"bob": person("bob"),
            b"agent-1": person("agent-1", kind=models.ParticipantInfo.AGENT),
        },
        "agent_dispatch:a": {b"AD_1": pb(agent_dispatch.AgentDispatch(id="AD_1", agent_name="v"))},
        "agent_job:a": {
            b"AJ_1": pb(agent.Job(id="AJ_1", dispatch_id="AD_1",
                                  state=agent.JobState(status=agent.JS_RUNNING)))
        },
    }


# --- decoding -----------------------------------------------------------------------------


def test_decodes_a_real_node_value() -> None:
    node = state.decode_node(REAL_NODE)
    assert (node.id, node.ip, node.state) == ("ND_AWqYgEGdijWr", "172.29.77.11", 1)
    assert node.updated_at is not None and node.updated_at > 1_700_000_000


def test_decodes_hand_encoded_node_and_skips_unknown_fields() -> None:
    data = node_bytes("ND_x", state_value=2, updated_at=123) + field(7, b"region") + field(5, 0)
    assert state.decode_node(data) == NodeRecord("ND_x", "10.0.0.1", 2, 123)
    assert state.decode_node(field(1, b"ND_y")).updated_at is None


def test_decodes_room_internal_agent_dispatches() -> None:
    dispatch = pb(agent_dispatch.RoomAgentDispatch(agent_name="voice", metadata="{}"))
    tag = field(1, b"k") + field(2, b"v")
    data = field(4, 1) + field(5, dispatch) + field(5, dispatch) + field(8, tag)
    assert state.decode_room_internal(data) == ["voice", "voice"]


def test_build_store_decodes_every_key() -> None:
    raw = healthy_raw()
    raw["room_internal"] = {b"a": field(5, pb(agent_dispatch.RoomAgentDispatch(agent_name="v")))}
    store = state.build_store(raw, "1.13.5")
    assert store.rooms == {"a": RoomRecord("a", "RM_a", 2)}
    assert store.room_nodes == {"a": "ND_1"} and set(store.nodes) == {"ND_1", "ND_2"}
    assert store.participants["a"]["alice"] == Participant("alice", "PA_alice", "STANDARD")
    assert store.participants["a"]["agent-1"].kind == "AGENT"
    assert store.internal == {"a": ["v"]}
    assert store.dispatches == {"a": {"AD_1": "v"}}
    assert store.jobs == {"a": {"AJ_1": "JS_RUNNING"}}
    assert store.version == "1.13.5" and not store.undecodable


def test_garbage_values_are_listed_not_raised() -> None:
    store = state.build_store({"rooms": {b"bad": b"\xff\xff\xff"}, "nodes": {b"n": b"\x0a\x05ab"}})
    assert sorted(store.undecodable) == ["nodes[n]", "rooms[bad]"]
    assert [m.kind for m in state.check_store(store, NOW)] == ["undecodable", "undecodable"]


# --- comparison ---------------------------------------------------------------------------


def kinds(found: list[state.Mismatch]) -> list[str]:
    return [m.kind for m in found]


def test_a_healthy_store_has_no_mismatch_and_no_warning() -> None:
    store = state.build_store(healthy_raw())
    assert state.check_store(store, NOW) == []
    assert state.warnings_for(store) == []  # the agent is not counted, like LiveKit does


def test_store_inconsistencies_are_found() -> None:
    store = StoreState(
        rooms={n: RoomRecord(n, f"RM_{n}") for n in ("lonely", "ghost-node", "stale-node")},
        room_nodes={"ghost-node": "ND_gone", "stale-node": "ND_old", "closed": "ND_old"},
        nodes={"ND_old": NodeRecord("ND_old", updated_at=int(NOW) - 6)},
        participants={"closed": {"x": Participant("x", "PA_x")}},
        internal={"closed": []}, dispatches={"closed": {}}, jobs={"closed": {}},
    )
    found = state.check_store(store, NOW)
    assert kinds(found) == [
        "node_unavailable", "room_on_unknown_node", "room_without_node",
        "room_on_unavailable_node", "node_map_without_room", "orphan_internal",
        "orphan_participants", "orphan_dispatches", "orphan_jobs",
    ]
    assert found[1].room == "ghost-node" and found[1].node == "ND_gone"


@pytest.mark.parametrize(
    ("node", "available"),
    [
        (NodeRecord("n", updated_at=int(NOW) - 4), True),
        (NodeRecord("n", updated_at=int(NOW) - 5), False),
        (NodeRecord("n", updated_at=None), True),
        (NodeRecord("n", state=2, updated_at=int(NOW)), False),
    ],
)
def test_node_availability_follows_livekit(node: NodeRecord, available: bool) -> None:
    assert node.available(NOW) is available


def test_api_differences_are_found() -> None:
    store = state.build_store(healthy_raw())
    store.rooms["only-redis"] = RoomRecord("only-redis", "RM_r")
    seen = ApiState(
        rooms={"a": RoomRecord("a", "RM_other"), "only-api": RoomRecord("only-api", "RM_o")},
        participants={"a": {"alice": Participant("alice", "PA_alice"),
                            "zed": Participant("zed", "PA_zed")}},
    )
    found = state.compare_api(store, seen, "http://n1")
    assert kinds(found) == [
        "room_missing_from_api", "room_missing_from_redis", "room_sid_differs",
        "participants_differ",
    ]
    assert all(m.node == "http://n1" for m in found)
    assert "['agent-1', 'bob']" in found[3].detail and "['zed']" in found[3].detail


def test_unreachable_node_is_a_mismatch() -> None:
    store = state.build_store(healthy_raw())
    seen = ApiState(store.rooms, store.participants)
    obs = state.judge(store, {"http://n1": seen, "http://n2": "refused"}, NOW)
    assert [m.as_dict() for m in obs.mismatches] == [
        {"kind": "node_unreachable", "room": None, "node": "http://n2", "detail": "refused"}
    ]


def test_stale_num_participants_is_only_a_warning() -> None:
    raw = healthy_raw()
    raw["rooms"][b"a"] = pb(models.Room(name="a", sid="RM_a", num_participants=0))
    store = state.build_store(raw)
    assert state.check_store(store, NOW) == []
    assert kinds(state.warnings_for(store)) == ["num_participants_stale"]


# --- settling -----------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def reader(values: list[int], clock: FakeClock, cost: float = 0.1) -> Callable[[], int]:
    it = iter(values)

    def read() -> int:
        clock.now += cost
        return next(it)

    return read


def test_settle_stops_as_soon_as_consistent() -> None:
    clock = FakeClock()
    value, attempts, _ = state.settle(reader([1, 1, 0, 9], clock), lambda v: v == 0, 5.0,
                                      clock=clock, sleep=clock.sleep)
    assert (value, attempts) == (0, 3)


def test_settle_gives_up_at_the_deadline_with_the_last_reading() -> None:
    clock = FakeClock()
    value, attempts, waited = state.settle(reader([1] * 100, clock), lambda v: v == 0, 3.0,
                                           clock=clock, sleep=clock.sleep)
    assert value == 1 and 3.0 <= waited < 3.2 and attempts < 20
    assert max(clock.sleeps) <= 1.0


def test_settle_without_wait_reads_once() -> None:
    clock = FakeClock()
    assert state.settle(reader([1, 0], clock), lambda v: v == 0, 0.0, clock=clock,
                        sleep=clock.sleep)[:2] == (1, 1)
    assert clock.sleeps == []


# --- snapshots ----------------------------------------------------------------------------


def observation(raw: dict[str, dict[bytes, bytes]]) -> state.Observation:
    return state.judge(state.build_store(raw), {}, NOW)


def test_snapshot_keeps_participants_and_counts_agents_apart() -> None:
    snap = state.snapshot_of(observation(healthy_raw()), "base", "t")
    assert snap["consistent"] is True and snap["mismatches"] == []
    assert snap["rooms"]["a"] == {
        "sid": "RM_a", "node": "ND_1",
        "participants": {"alice": "PA_alice", "bob": "PA_bob"},
        "agents": {"agent-1": "PA_agent-1"},
    }


def test_diff_of_identical_snapshots_is_ok() -> None:
    snap = state.snapshot_of(observation(healthy_raw()), "base", "t")
    diff = state.diff_snapshots(snap, snap)
    assert diff["ok"] and not diff["lost_rooms"] and not diff["lost_participants"]


def test_diff_reports_losses_and_changes() -> None:
    before = healthy_raw()
    before["rooms"][b"gone"] = pb(models.Room(name="gone", sid="RM_g"))
    before["rooms"][b"tmp-x"] = pb(models.Room(name="tmp-x", sid="RM_t"))
    after = healthy_raw()
    after["rooms"][b"a"] = pb(models.Room(name="a", sid="RM_a2"))
    after["rooms"][b"new"] = pb(models.Room(name="new", sid="RM_n"))
    after["room_node_map"][b"a"] = b"ND_2"
    after["room_participants:a"] = {
        b"alice": person("alice", sid="PA_again"), b"carol": person("carol")
    }
    old = state.snapshot_of(observation(before), "b", "t")
    new = state.snapshot_of(observation(after), "b", "t")
    diff = state.diff_snapshots(old, new, ignore_prefix="tmp-")
    assert diff["ok"] is False
    assert diff["lost_rooms"] == ["gone"] and diff["new_rooms"] == ["new"]
    assert diff["lost_participants"] == {"a": ["bob"]}
    assert diff["new_participants"] == {"a": ["carol"]}
    assert diff["rejoined_participants"] == {"a": ["alice"]}
    assert diff["recreated_rooms"] == ["a"]
    assert diff["moved_rooms"] == {"a": {"from": "ND_1", "to": "ND_2"}}
    assert diff["lost_agents"] == {"a": 1}


def test_a_redispatched_agent_with_a_new_identity_is_not_a_loss() -> None:
    after = healthy_raw()
    del after["room_participants:a"][b"agent-1"]
    after["room_participants:a"][b"agent-2"] = person("agent-2", kind=models.ParticipantInfo.AGENT)
    old = state.snapshot_of(observation(healthy_raw()), "b", "t")
    assert state.diff_snapshots(old, state.snapshot_of(observation(after), "b", "t"))["ok"]


# --- probes, with the readers replaced --------------------------------------------------


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Probes see a fixed Settings (state in tmp_path) and whatever ``raw`` holds."""
    fixed = Settings(state_dir=str(tmp_path), livekit_node_urls=("http://n1",))
    world: dict[str, Any] = {"raw": healthy_raw(), "error": None}

    def fake_observe(settings: Settings, urls: list[str], timeout: float) -> state.Observation:
        if world["error"] is not None:
            raise world["error"]
        store = state.build_store(world["raw"])
        return state.judge(store, {"http://n1": ApiState(store.rooms, store.participants)}, NOW)

    monkeypatch.setattr(Settings, "load", classmethod(lambda cls, c=None, s=None: fixed))
    monkeypatch.setattr(state, "observe", fake_observe)
    yield world


def test_room_state_probe_counts(stack: dict[str, Any]) -> None:
    result = probes.room_state(wait=0)
    assert result["ok"] is True and result["mismatches"] == []
    assert (result["rooms"], result["participants"], result["nodes"]) == (1, 3, 2)
    assert (result["dispatches"], result["jobs"]) == (1, 1)
    assert result["api"] == {"http://n1": {"rooms": 1, "participants": 3}}
    json.dumps(result)


def test_snapshot_then_compare(stack: dict[str, Any], tmp_path: Path) -> None:
    taken = probes.snapshot_room_state("before-fault", wait=0)
    path = tmp_path / "snapshots" / "before-fault.json"
    assert taken["path"] == str(path) and taken["ok"] is True
    assert json.loads(path.read_text())["rooms"]["a"]["participants"] == {
        "alice": "PA_alice", "bob": "PA_bob"}
    assert probes.compare_room_state("before-fault", wait=0)["ok"] is True

    del stack["raw"]["room_participants:a"][b"bob"]
    result = probes.compare_room_state("before-fault", wait=0)
    assert result["ok"] is False and result["lost_participants"] == {"a": ["bob"]}
    assert result["snapshot"] == "before-fault" and result["taken_at"] == taken["taken_at"]


def test_compare_without_a_snapshot_says_to_take_one(stack: dict[str, Any]) -> None:
    with pytest.raises(ActivityFailed, match="run snapshot_room_state"):
        probes.compare_room_state("never-taken", wait=0)


def test_missing_snapshot_passes_only_before_any_fault(
    stack: dict[str, Any], tmp_path: Path
) -> None:
    before = probes.compare_room_state("never-taken", wait=0, missing_ok=True)
    assert before["ok"] is True and before["compared"] is False
    ledger.record(tmp_path, ledger.Fault("stopped", "redis-primary", "lkchaos.docker.actions",
                                         "start_service", {"service": "redis-primary"}))
    after = probes.compare_room_state("never-taken", wait=0, missing_ok=True)
    assert after["ok"] is False and after["compared"] is False
    assert "stopped on redis-primary" in after["note"]


def test_a_snapshot_with_too_few_participants_compares_nothing(stack: dict[str, Any]) -> None:
    probes.snapshot_room_state("thin", wait=0)  # room a: alice and bob (its agent apart)
    assert probes.compare_room_state("thin", wait=0, min_participants=2)["ok"] is True
    thin = probes.compare_room_state("thin", wait=0, min_participants=4)
    assert thin["ok"] is False and thin["compared"] is False and "holds 2" in thin["note"]
    ignored = probes.compare_room_state("thin", wait=0, min_participants=1,
                                        ignore_rooms_prefix="a")
    assert ignored["ok"] is False
    with pytest.raises(ActivityFailed, match="min_participants"):
        probes.compare_room_state("thin", wait=0, min_participants=-1)


def test_compare_rejects_a_file_that_is_not_a_snapshot(
    stack: dict[str, Any], tmp_path: Path
) -> None:
    (tmp_path / "snapshots").mkdir()
    (tmp_path / "snapshots" / "junk.json").write_text("[1, 2]")
    with pytest.raises(ActivityFailed, match="not a room-state snapshot"):
        probes.compare_room_state("junk", wait=0)


@pytest.mark.parametrize("name", ["../escape", "", "a/b", ".hidden"])
def test_unsafe_snapshot_names_are_refused(stack: dict[str, Any], name: str) -> None:
    with pytest.raises(ActivityFailed, match="file name"):
        probes.snapshot_room_state(name, wait=0)


def test_unreachable_redis_is_an_activity_failure(stack: dict[str, Any]) -> None:
    stack["error"] = redis.ConnectionError("connection refused")
    with pytest.raises(ActivityFailed, match="Sentinel"):
        probes.room_state(wait=0)


def test_roomservice_latency_reports_slow_and_silent_nodes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fixed = Settings(livekit_node_urls=("http://fast", "http://down"))
    monkeypatch.setattr(Settings, "load", classmethod(lambda cls, c=None, s=None: fixed))

    def fake_call(url: str, settings: Settings, fn: Any, timeout: float) -> tuple[float, int]:
        if url == "http://down":
            raise aiohttp.ClientConnectionError("refused")
        return 12.34, 2

    monkeypatch.setattr(lk_client, "call", fake_call)
    result = probes.roomservice_latency()
    assert result["ok"] is False and result["slowest_ms"] == 12.3
    assert result["nodes"]["http://down"]["error"].startswith("ClientConnectionError")
    ok = probes.roomservice_latency(urls=["http://fast"], max_ms=50)
    assert ok["ok"] is True
    assert probes.roomservice_latency(urls=["http://fast"], max_ms=5)["ok"] is False


# --- readers, against fakes ---------------------------------------------------------------


class FakePipeline:
    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.queued: list[Any] = []

    def hgetall(self, key: str) -> None:
        self.queued.append(self.data.get(key, {}))

    def get(self, key: str) -> None:
        self.queued.append(self.data.get(key))

    def execute(self) -> list[Any]:
        return list(self.queued)


class FakeRedis:
    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.transaction: bool | None = None

    def __enter__(self) -> FakeRedis:  # as `with redis_client.primary(...)` uses it
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def scan_iter(self, match: str, count: int) -> Iterator[bytes]:
        prefix = match.rstrip("*")
        return iter(k.encode() for k in self.data if k.startswith(prefix))

    def pipeline(self, transaction: bool) -> FakePipeline:
        self.transaction = transaction
        return FakePipeline(self.data)


def test_fetch_raw_reads_every_livekit_hash_in_one_transaction() -> None:
    data: dict[str, Any] = {**healthy_raw(), "livekit_version": b"1.13.5", "room_lock:a": b"x"}
    fake = FakeRedis(data)
    raw, version = state.fetch_raw(fake)  # type: ignore[arg-type]
    assert fake.transaction is True and version == "1.13.5"
    assert set(raw) == set(healthy_raw())


def test_read_api_lists_participants_of_every_room(monkeypatch: pytest.MonkeyPatch) -> None:
    rooms = [models.Room(name="a", sid="RM_a"), models.Room(name="b", sid="RM_b")]

    class FakeRoomService:
        async def list_rooms(self, req: Any) -> Any:
            return type("R", (), {"rooms": rooms})()

        async def list_participants(self, req: Any) -> Any:
            people = [models.ParticipantInfo(identity=f"{req.room}-1", sid="PA")]
            return type("P", (), {"participants": people})()

    fake_api = type("A", (), {"room": FakeRoomService()})()
    monkeypatch.setattr(lk_client, "call", lambda url, s, fn, t: asyncio.run(fn(fake_api)))
    seen = state.read_api("http://n1", Settings())
    assert set(seen.rooms) == {"a", "b"}
    assert {r: set(p) for r, p in seen.participants.items()} == {"a": {"a-1"}, "b": {"b-1"}}


def test_observe_turns_a_silent_node_into_a_mismatch(monkeypatch: pytest.MonkeyPatch) -> None:
    store = state.build_store(healthy_raw())

    def fake_read_api(url: str, settings: Settings, timeout: float) -> ApiState:
        if url == "http://down":
            raise aiohttp.ClientConnectionError("refused")
        return ApiState(store.rooms, store.participants)

    asked: list[tuple[str, list[str]]] = []

    def fake_unhosted(url: str, settings: Settings, rooms: list[str]) -> set[str]:
        asked.append((url, list(rooms)))
        return set()

    monkeypatch.setattr(state, "read_store", lambda settings, timeout: store)
    monkeypatch.setattr(state, "read_api", fake_read_api)
    monkeypatch.setattr(state, "unhosted", fake_unhosted)
    obs = state.observe(Settings(), ["http://up", "http://down"], 1.0)
    assert [(m.kind, m.node) for m in obs.mismatches] == [("node_unreachable", "http://down")]
    assert "ClientConnectionError" in obs.mismatches[0].detail
    # whether each room is run by a node is asked once, of a node that answered
    assert asked == [("http://up", sorted(store.rooms))]


def test_a_room_no_node_runs_is_a_mismatch_and_misplaced_rooms_are_not_asked(
        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    raw = healthy_raw()
    store = state.build_store(raw)
    room = sorted(store.rooms)[0]
    asked: list[list[str]] = []

    def fake_unhosted(url: str, settings: Settings, rooms: list[str]) -> set[str]:
        asked.append(list(rooms))
        return {room}

    monkeypatch.setattr(state, "read_store", lambda settings, timeout: store)
    monkeypatch.setattr(state, "read_api",
                        lambda url, settings, timeout: ApiState(store.rooms, store.participants))
    monkeypatch.setattr(state, "unhosted", fake_unhosted)
    obs = state.observe(Settings(), ["http://up"], 1.0)
    assert [(m.kind, m.room) for m in obs.mismatches] == [("room_not_hosted", room)]
    # a room already placed wrong (on a node that is gone) is that mismatch, not asked
    store.room_nodes[room] = "ND_gone"
    asked.clear()
    obs = state.observe(Settings(), ["http://up"], 1.0)
    assert all(room not in rooms for rooms in asked)
    assert ("room_on_unknown_node", room) in [(m.kind, m.room) for m in obs.mismatches]


def test_missing_api_keys_are_an_activity_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Settings, "load", classmethod(lambda cls, c=None, s=None: Settings()))
    monkeypatch.setattr(state, "read_store", lambda settings, timeout: StoreState())
    with pytest.raises(ActivityFailed, match="API key"):
        probes.room_state(urls=["http://n1"], wait=0)
