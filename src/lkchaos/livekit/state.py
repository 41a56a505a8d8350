"""LiveKit's room state as kept in Redis and as RoomService reports it, and how the two differ.

LiveKit's keys and their encodings, and the LiveKit versions they are known for, are in
:mod:`lkchaos.livekit.keys`; :func:`read_store` refuses a version that module does not know.

RoomService ``ListRooms`` reads ``rooms``; ``ListParticipants`` reads ``room_participants:<room>``
unless the server sets ``api.enable_psrpc_for_get_list_participants`` (then it asks the node
hosting the room). ``Room.num_participants`` is a count the room refreshes every 5 s, so it is
up to 5 s behind (livekit/livekit#991): reported as a warning, not a mismatch.

Reading (:func:`read_store`, :func:`read_api`) is kept apart from decoding (:func:`build_store`)
and comparison (:func:`check_store`, :func:`compare_api`, :func:`diff_snapshots`), which are pure.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
import redis
from google.protobuf.message import DecodeError, Message
from livekit import api
from livekit.protocol import agent, agent_dispatch, models

from lkchaos.livekit import client as lk
from lkchaos.livekit import keys
from lkchaos.livekit.keys import (
    DISPATCH_PREFIX,
    JOB_PREFIX,
    NODES,
    PARTICIPANTS_PREFIX,
    ROOM_INTERNAL,
    ROOM_NODE_MAP,
    ROOMS,
)
from lkchaos.redis import client as redis_client
from lkchaos.settings import Settings

T = TypeVar("T")
M = TypeVar("M", bound=Message)


@dataclass(frozen=True)
class Participant:
    identity: str
    sid: str
    kind: str = "STANDARD"

    @property
    def dependent(self) -> bool:
        """Agents and egress: LiveKit leaves them out of ``Room.num_participants``."""
        return self.kind in ("AGENT", "EGRESS")


@dataclass(frozen=True)
class RoomRecord:
    name: str
    sid: str
    num_participants: int = 0


@dataclass(frozen=True)
class NodeRecord:
    id: str
    ip: str = ""
    state: int = keys.NODE_SERVING
    updated_at: int | None = None

    def available(self, now: float) -> bool:
        """LiveKit's own rule: serving, and stats (if any) younger than 5 s."""
        fresh = self.updated_at is None or now - self.updated_at < keys.AVAILABLE_SECONDS
        return self.state == keys.NODE_SERVING and fresh


@dataclass
class StoreState:
    """What Redis holds, decoded."""

    rooms: dict[str, RoomRecord] = field(default_factory=dict)
    participants: dict[str, dict[str, Participant]] = field(default_factory=dict)
    internal: dict[str, list[str]] = field(default_factory=dict)
    nodes: dict[str, NodeRecord] = field(default_factory=dict)
    room_nodes: dict[str, str] = field(default_factory=dict)
    dispatches: dict[str, dict[str, str]] = field(default_factory=dict)
    jobs: dict[str, dict[str, str]] = field(default_factory=dict)
    undecodable: list[str] = field(default_factory=list)
    version: str = ""


@dataclass
class ApiState:
    """What one node's RoomService answers."""

    rooms: dict[str, RoomRecord] = field(default_factory=dict)
    participants: dict[str, dict[str, Participant]] = field(default_factory=dict)


@dataclass(frozen=True)
class Mismatch:
    kind: str
    detail: str
    room: str | None = None
    node: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "room": self.room, "node": self.node, "detail": self.detail}


def _parse(message: M, data: bytes) -> M:
    message.ParseFromString(data)
    return message


def participant_of(info: models.ParticipantInfo) -> Participant:
    return Participant(info.identity, info.sid, models.ParticipantInfo.Kind.Name(info.kind))


def room_of(room: models.Room) -> RoomRecord:
    return RoomRecord(room.name, room.sid, room.num_participants)


def decode_node(data: bytes) -> NodeRecord:
    node: Any = _parse(keys.NodeMessage(), data)
    updated = int(node.stats.updated_at) if node.HasField("stats") else None
    return NodeRecord(str(node.id), str(node.ip), int(node.state), updated)


def decode_room_internal(data: bytes) -> list[str]:
    """The agent names of the dispatches configured when the room was created."""
    internal: Any = _parse(keys.RoomInternalMessage(), data)
    return [
        _parse(agent_dispatch.RoomAgentDispatch(), raw).agent_name
        for raw in internal.agent_dispatches
    ]


def build_store(raw: Mapping[str, Mapping[bytes, bytes]], version: str = "") -> StoreState:
    """Decode the hashes read from Redis (key -> {field: value}); bad values are listed."""
    state = StoreState(version=version)
    for key, fields in raw.items():
        for fbytes, value in fields.items():
            name = fbytes.decode("utf-8", "replace")
            try:
                if key == ROOMS:
                    state.rooms[name] = room_of(_parse(models.Room(), value))
                elif key == ROOM_INTERNAL:
                    state.internal[name] = decode_room_internal(value)
                elif key == NODES:
                    state.nodes[name] = decode_node(value)
                elif key == ROOM_NODE_MAP:
                    state.room_nodes[name] = value.decode("utf-8", "replace")
                elif key.startswith(PARTICIPANTS_PREFIX):
                    info = _parse(models.ParticipantInfo(), value)
                    room = key.removeprefix(PARTICIPANTS_PREFIX)
                    state.participants.setdefault(room, {})[name] = participant_of(info)
                elif key.startswith(DISPATCH_PREFIX):
                    dispatch = _parse(agent_dispatch.AgentDispatch(), value)
                    room = key.removeprefix(DISPATCH_PREFIX)
                    state.dispatches.setdefault(room, {})[name] = dispatch.agent_name
                elif key.startswith(JOB_PREFIX):
                    job = _parse(agent.Job(), value)
                    status = agent.JobStatus.Name(job.state.status)
                    state.jobs.setdefault(key.removeprefix(JOB_PREFIX), {})[name] = status
            except (DecodeError, ValueError):
                state.undecodable.append(f"{key}[{name}]")
    return state


def fetch_raw(r: redis.Redis) -> tuple[dict[str, dict[bytes, bytes]], str]:
    """Every LiveKit room hash, read in one MULTI/EXEC so the view is consistent."""
    names = list(keys.HASHES)
    for prefix in keys.ROOM_PREFIXES:
        names += sorted(k.decode() for k in r.scan_iter(match=f"{prefix}*", count=500))
    pipe = r.pipeline(transaction=True)
    for key in names:
        pipe.hgetall(key)
    pipe.get(keys.VERSION)
    *hashes, version = pipe.execute()
    raw = {key: dict(h) for key, h in zip(names, hashes, strict=True) if h}
    return raw, version.decode() if version else ""


def read_store(settings: Settings, timeout: float = redis_client.TIMEOUT) -> StoreState:
    """Read and decode LiveKit's state from the Redis primary (through Sentinel, or direct).

    Raises :class:`lkchaos.livekit.keys.UnknownLiveKitVersion` before decoding anything when
    Redis records a LiveKit version whose layout is not known."""
    with redis_client.primary(settings, timeout) as r:
        raw, version = fetch_raw(r)
    return build_store(raw, keys.check_version(version))


def read_nodes(settings: Settings, timeout: float = redis_client.TIMEOUT) -> dict[str, NodeRecord]:
    """LiveKit's nodes alone (its ``nodes`` hash, with the version gate of
    :func:`read_store`): node id -> record. One round trip whatever the number of rooms; an
    undecodable value is left out."""
    with redis_client.primary(settings, timeout) as r:
        pipe = r.pipeline(transaction=True)
        pipe.hgetall(keys.NODES)
        pipe.get(keys.VERSION)
        raw, version = pipe.execute()
    store = build_store({keys.NODES: dict(raw or {})},
                        keys.check_version(version.decode() if version else ""))  # fmt: skip
    return store.nodes


def read_api(url: str, settings: Settings, timeout: float = lk.TIMEOUT) -> ApiState:
    """ListRooms, then ListParticipants for every room (concurrently), on one node."""

    async def fetch(c: api.LiveKitAPI) -> ApiState:
        rooms = (await c.room.list_rooms(api.ListRoomsRequest())).rooms
        answers = await asyncio.gather(
            *(c.room.list_participants(api.ListParticipantsRequest(room=r.name)) for r in rooms)
        )
        return ApiState(
            rooms={r.name: room_of(r) for r in rooms},
            participants={
                r.name: {p.identity: participant_of(p) for p in a.participants}
                for r, a in zip(rooms, answers, strict=True)
            },
        )

    return lk.call(url, settings, fetch, timeout)


#: How long a hosting check waits for an answer: LiveKit answers "no response from servers"
#: after psrpc's own 3 s wait for a node to claim the room's request.
HOSTING_TIMEOUT_S = 5.0
#: Most rooms whose hosting one observation checks, and how many at once.
MAX_HOSTING_CHECKS = 200
HOSTING_CONCURRENCY = 16


def unhosted(url: str, settings: Settings, rooms: Sequence[str],
             timeout: float = HOSTING_TIMEOUT_S) -> set[str]:  # fmt: skip
    """Of ``rooms`` (at most :data:`MAX_HOSTING_CHECKS`), those no LiveKit node hosts.

    ``ListDispatch`` (read only) is the one RoomService-side call LiveKit routes to the node
    hosting the room, not to Redis: for a room that Redis lists and no node runs (its close
    lost, as after a Redis failover to a replica that missed it) it answers ``unavailable``
    ("no response from servers", HTTP 503) after 3 s. A room is unhosted when it answers so
    twice in a row (a room being started is hosted by the second); any other answer or error
    says nothing, so the room is left out. Measured on LiveKit 1.13.5."""

    async def fetch(c: api.LiveKitAPI) -> set[str]:
        gate = asyncio.Semaphore(HOSTING_CONCURRENCY)

        async def ask(room: str) -> str | None:
            async with gate:
                for _ in range(2):
                    try:
                        await c.agent_dispatch.list_dispatch(room)
                    except api.TwirpError as exc:
                        if exc.code != "unavailable":
                            return None
                        continue
                    except (aiohttp.ClientError, OSError, TimeoutError):
                        return None
                    return None
                return room

        found = await asyncio.gather(*(ask(r) for r in list(rooms)[:MAX_HOSTING_CHECKS]))
        return {room for room in found if room is not None}

    return lk.call(url, settings, fetch, max(timeout, HOSTING_TIMEOUT_S))


def check_store(store: StoreState, now: float) -> list[Mismatch]:
    """Inconsistencies inside Redis itself."""
    out = [Mismatch("undecodable", f"{item} is not valid protobuf") for item in store.undecodable]
    for node in sorted(store.nodes.values(), key=lambda n: n.id):
        if not node.available(now):
            age = "none" if node.updated_at is None else f"{now - node.updated_at:.0f} s old"
            out.append(Mismatch("node_unavailable", f"state {node.state}, stats {age}", None,
                                node.id))
    for room in sorted(store.rooms):
        node_id = store.room_nodes.get(room)
        if node_id is None:
            out.append(Mismatch("room_without_node", "in rooms, not in room_node_map", room))
        elif node_id not in store.nodes:
            out.append(Mismatch("room_on_unknown_node", "node not in nodes", room, node_id))
        elif not store.nodes[node_id].available(now):
            out.append(Mismatch("room_on_unavailable_node", "node not serving", room, node_id))
    orphans = (
        ("node_map_without_room", store.room_nodes, ROOM_NODE_MAP),
        ("orphan_internal", store.internal, ROOM_INTERNAL),
        ("orphan_participants", store.participants, PARTICIPANTS_PREFIX + "<room>"),
        ("orphan_dispatches", store.dispatches, DISPATCH_PREFIX + "<room>"),
        ("orphan_jobs", store.jobs, JOB_PREFIX + "<room>"),
    )
    for kind, table, where in orphans:
        for room in sorted(set(table) - set(store.rooms)):
            out.append(Mismatch(kind, f"{where} holds a room not in rooms", room))
    return out


def compare_api(store: StoreState, seen: ApiState, url: str) -> list[Mismatch]:
    """Differences between Redis and what one node's RoomService answers."""
    out: list[Mismatch] = []
    for room in sorted(set(store.rooms) - set(seen.rooms)):
        out.append(Mismatch("room_missing_from_api", "not listed by ListRooms", room, url))
    for room in sorted(set(seen.rooms) - set(store.rooms)):
        out.append(Mismatch("room_missing_from_redis", "listed by ListRooms", room, url))
    for room in sorted(set(store.rooms) & set(seen.rooms)):
        if store.rooms[room].sid != seen.rooms[room].sid:
            out.append(Mismatch("room_sid_differs", f"Redis {store.rooms[room].sid}, API "
                                f"{seen.rooms[room].sid}", room, url))
        mine, theirs = store.participants.get(room, {}), seen.participants.get(room, {})
        only_redis, only_api = sorted(set(mine) - set(theirs)), sorted(set(theirs) - set(mine))
        if only_redis or only_api:
            out.append(Mismatch("participants_differ", f"only in Redis {only_redis}, only in "
                                f"ListParticipants {only_api}", room, url))
    return out


def warnings_for(store: StoreState) -> list[Mismatch]:
    """``Room.num_participants`` that disagree with the participants stored (often stale)."""
    out = []
    for room, record in sorted(store.rooms.items()):
        stored = sum(1 for p in store.participants.get(room, {}).values() if not p.dependent)
        if record.num_participants != stored:
            out.append(Mismatch("num_participants_stale", f"Room.num_participants "
                                f"{record.num_participants}, {stored} stored", room))
    return out


@dataclass
class Observation:
    store: StoreState
    apis: dict[str, ApiState | str]
    mismatches: list[Mismatch]
    warnings: list[Mismatch]


def judge(store: StoreState, apis: Mapping[str, ApiState | str], now: float) -> Observation:
    """Every mismatch between Redis and the nodes' answers (a str answer is an error)."""
    found = check_store(store, now)
    for url, seen in apis.items():
        if isinstance(seen, str):
            found.append(Mismatch("node_unreachable", seen, node=url))
        else:
            found += compare_api(store, seen, url)
    return Observation(store, dict(apis), found, warnings_for(store))


API_ERRORS = (api.TwirpError, aiohttp.ClientError, OSError, TimeoutError)


def observe(settings: Settings, urls: Sequence[str], timeout: float) -> Observation:
    """Read Redis (errors propagate) and every node (errors become node_unreachable); then
    ask whether each room on a serving node is hosted (:func:`unhosted`, through the first
    node that answered): ``room_not_hosted`` for each that is not."""
    store = read_store(settings, timeout)
    apis: dict[str, ApiState | str] = {}
    for url in urls:
        try:
            apis[url] = read_api(url, settings, timeout)
        except API_ERRORS as exc:
            apis[url] = f"RoomService at {url} did not answer: {type(exc).__name__}: {exc}"
    obs = judge(store, apis, time.time())
    placed = {m.room for m in obs.mismatches if m.kind.startswith("room_")}
    candidates = sorted(room for room in store.rooms if room not in placed)
    answering = next((url for url, seen in apis.items() if isinstance(seen, ApiState)), None)
    if candidates and answering is not None:
        try:
            lost = unhosted(answering, settings, candidates)
        except API_ERRORS:
            lost = set()
        obs.mismatches += [
            Mismatch("room_not_hosted", "in Redis, but no node runs it (ListDispatch: no "
                     "response from servers): a close LiveKit lost, as in a Redis failover "
                     "to a replica that missed it; its participants are ghosts, and LiveKit "
                     "will not remove it (DeleteRoom does)", room, store.room_nodes.get(room))
            for room in sorted(lost)]  # fmt: skip
    return obs


def settle(
    read: Callable[[], T], done: Callable[[T], bool], wait: float, interval: float = 0.2,
    clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
) -> tuple[T, int, float]:
    """Re-read until ``done`` or ``wait`` seconds passed: (last reading, attempts, seconds)."""
    start, attempts = clock(), 0
    while True:
        value = read()
        attempts += 1
        elapsed = clock() - start
        if done(value) or elapsed >= wait:
            return value, attempts, round(elapsed, 3)
        sleep(min(interval, wait - elapsed))
        interval = min(interval * 1.5, 1.0)


def snapshot_of(obs: Observation, name: str, taken_at: str) -> dict[str, Any]:
    """Rooms, their node, and participant identities -> sids (agents apart), from Redis."""
    store = obs.store
    rooms: dict[str, Any] = {}
    for room, record in sorted(store.rooms.items()):
        people = store.participants.get(room, {})
        rooms[room] = {
            "sid": record.sid,
            "node": store.room_nodes.get(room),
            "participants": {i: p.sid for i, p in sorted(people.items()) if not p.dependent},
            "agents": {i: p.sid for i, p in sorted(people.items()) if p.kind == "AGENT"},
        }
    return {
        "name": name, "taken_at": taken_at, "livekit_version": store.version,
        "consistent": not obs.mismatches,
        "mismatches": [m.as_dict() for m in obs.mismatches], "rooms": rooms,
    }


def diff_snapshots(
    before: Mapping[str, Any], after: Mapping[str, Any], ignore_prefix: str | None = None
) -> dict[str, Any]:
    """What was lost, added, recreated (new sid), moved or rejoined between two snapshots.

    Agents are compared by count per room: a re-dispatched agent has a new identity.
    """
    def rooms(snap: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in snap["rooms"].items()
                if not (ignore_prefix and k.startswith(ignore_prefix))}

    old, new = rooms(before), rooms(after)
    out: dict[str, Any] = {
        "lost_rooms": sorted(set(old) - set(new)), "new_rooms": sorted(set(new) - set(old)),
        "recreated_rooms": [], "moved_rooms": {}, "lost_participants": {},
        "new_participants": {}, "rejoined_participants": {}, "lost_agents": {},
    }
    for room in sorted(set(old) & set(new)):
        was, now = old[room], new[room]
        if was["sid"] != now["sid"]:
            out["recreated_rooms"].append(room)
        if was.get("node") != now.get("node"):
            out["moved_rooms"][room] = {"from": was.get("node"), "to": now.get("node")}
        p_old, p_new = was["participants"], now["participants"]
        for key, ids in (
            ("lost_participants", sorted(set(p_old) - set(p_new))),
            ("new_participants", sorted(set(p_new) - set(p_old))),
            ("rejoined_participants", sorted(i for i in set(p_old) & set(p_new)
                                             if p_old[i] != p_new[i])),
        ):
            if ids:
                out[key][room] = ids
        missing = len(was.get("agents", {})) - len(now.get("agents", {}))
        if missing > 0:
            out["lost_agents"][room] = missing
    out["ok"] = not (out["lost_rooms"] or out["lost_participants"] or out["lost_agents"])
    return out
