"""lkchaos's own rooms left on LiveKit nodes that are gone (dead nodes), and closing them.

LiveKit keeps a room in Redis (``rooms``, ``room_node_map``) until the node hosting it closes
it. A node that dies (SIGKILL, a crash, a lost host) closes nothing: its rooms stay, mapped to
a node that is no longer in ``nodes`` (a LiveKit node removes dead nodes' records when it
starts) or whose stats stopped. ``DeleteRoom`` on such a room fails ("could not find object":
LiveKit asks the dead node), while ``CreateRoom`` moves it to a live node (LiveKit's room
allocator places again a room whose node is not available), after which ``DeleteRoom``
closes it. Measured on LiveKit 1.13.5.

A room can also outlive its close on a node that is alive: Redis failed over to a replica
that had not yet received the close (replication is asynchronous), so the room, its
participants and its dispatch are back in Redis while no node runs it (``room_not_hosted``,
:func:`lkchaos.livekit.state.unhosted`). LiveKit never removes it; ``DeleteRoom`` does (the
node it asks has no such room, and deletes it from Redis). Measured on LiveKit 1.13.5, with
the room's keys restored into Redis after its close.

A failover can also keep half of a close: the room gone from ``rooms`` and still in
``room_node_map`` (``node_map_without_room``), mapped to a node that is alive. LiveKit never
removes the entry, and the next steady state's room-state probe reports it. CreateRoom places
the room on its mapped node again, and DeleteRoom then closes it, entry and all.

Both of those last states are also, for a moment, how a room looks while it is created (its
``room_node_map`` entry is written before its record) or closed (its record removed first): a
caller still joining when a run ends (a sampled voice probe's call outlives the run's stop)
is not a lost close. They count only when they last (an unhosted room is still the same room
in Redis once the nodes were asked about it, seconds later; an entry stays :data:`LASTING_S`
without its room): closing a room being created would end a caller's call.

lkchaos closes its own rooms this way (names beginning ``lkchaos-``: its callers', held
calls', load ramps', the checklist's and the shipped experiments' rooms) after each run under
the safety control and in ``lkchaos recover``, so that a node-loss or failover experiment
does not leave the next steady state a ``room_on_unknown_node`` or a ``room_not_hosted``.
Other rooms are the deployment's: they are left as LiveKit keeps them, and ``room_state``
reports them.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import redis
from livekit import api

from lkchaos.errors import LkChaosError
from lkchaos.livekit import client, keys, state
from lkchaos.settings import Settings

#: Rooms lkchaos names: its own to close.
OWN_PREFIX = "lkchaos-"
#: A node whose stats have not been updated for this long is gone (LiveKit updates them every
#: few seconds and calls a node unavailable after 5 s; 30 s leaves a node that is only slow,
#: or whose Redis failed over, alone).
GONE_AFTER_S = 30.0


def _gone(node_id: str, store: state.StoreState, now: float) -> bool:
    node = store.nodes.get(node_id)
    if node is None:
        return True
    if node.updated_at is None:
        return False
    age = now - node.updated_at
    if age >= GONE_AFTER_S:
        return True
    # Unavailable by LiveKit's own rule while a node with fresh stats has its address: an
    # earlier life of that node (restarted, it registers a new id).
    fresh = keys.AVAILABLE_SECONDS
    return age >= fresh and bool(node.ip) and any(
        other.id != node.id and other.ip == node.ip and other.updated_at is not None
        and now - other.updated_at < fresh for other in store.nodes.values())


def own_rooms_on_dead_nodes(store: state.StoreState, now: float) -> dict[str, str]:
    """lkchaos's rooms mapped to a node that is gone: room name -> node id. A node is gone
    when Redis no longer lists it, when its stats are :data:`GONE_AFTER_S` old, or when they
    are older than LiveKit calls available (``keys.AVAILABLE_SECONDS``) and a node with fresh
    stats has its address. ``now`` in Unix seconds, as the nodes' stats."""
    found: dict[str, str] = {}
    for room in store.rooms:
        node_id = store.room_nodes.get(room)
        if room.startswith(OWN_PREFIX) and node_id and _gone(node_id, store, now):
            found[room] = node_id
    return found


def own_map_entries_without_room(store: state.StoreState) -> list[str]:
    """lkchaos's rooms that ``room_node_map`` maps to a node while ``rooms`` lacks them
    (sorted)."""
    return sorted(room for room in store.room_nodes
                  if room.startswith(OWN_PREFIX) and room not in store.rooms)  # fmt: skip


def configured(settings: Settings) -> bool:
    """Whether the target gives what closing rooms needs: LiveKit's nodes and API key, and
    Redis (through Sentinel or direct)."""
    has_redis = bool(settings.sentinel_addresses or settings.redis_primary_address)
    return bool(settings.livekit_node_urls and settings.livekit_api_key
                and settings.livekit_api_secret and has_redis)  # fmt: skip


def _store(settings: Settings, timeout: float) -> state.StoreState:
    try:
        return state.read_store(settings, timeout)
    except redis.RedisError as exc:
        raise LkChaosError(f"cannot read LiveKit's room state from Redis: {exc}") from exc


def close_own_rooms(settings: Settings, timeout: float = client.TIMEOUT) -> list[dict[str, Any]]:
    """Close lkchaos's rooms left on nodes that are gone (see the module docstring):
    CreateRoom, then DeleteRoom, through the first node of ``livekit_node_urls`` that
    answers. Returns one entry a room, ``{"fault": "room R left on node N, which is gone",
    "outcome": "closed" | "error: ..."}``; an empty list when there is none, or when the
    target lacks what it needs (:func:`configured`). Raises :class:`LkChaosError` when
    LiveKit's state in Redis cannot be read."""
    if not configured(settings):
        return []
    store = _store(settings, timeout)
    found = own_rooms_on_dead_nodes(store, time.time())
    faults = {room: f"room {room} left on node {node}, which is gone"
              for room, node in found.items()}  # fmt: skip
    unhosted = own_unhosted(settings, store, set(found), timeout)
    orphans = {room for room in own_map_entries_without_room(store) if room not in found}
    if unhosted or orphans:
        store, unhosted, orphans = _lasting(settings, unhosted, orphans, store, timeout)
    for room in sorted(unhosted):
        faults[room] = (f"room {room} in Redis on node {store.room_nodes.get(room)}, which "
                        "does not run it (a close lost in a Redis failover)")
    orphans -= set(faults)
    for room in sorted(orphans):
        found[room] = store.room_nodes[room]  # placed again, then closed
        faults[room] = (f"room {room} left in room_node_map (on node "
                        f"{store.room_nodes[room]}) without its room (half of a close kept "
                        "by a Redis failover)")
    sids = {room: store.rooms[room].sid for room in faults if room in store.rooms}
    outcomes: dict[str, str] = {}
    for room in sorted(faults):
        try:
            _close(settings, room, timeout, move=room in found)
        except LkChaosError as exc:
            outcomes[room] = f"error: {exc}"
            continue
        outcomes[room] = "closed"
    if outcomes:  # verified: gone from Redis, not only answered
        after = _store(settings, timeout)
        left = after.rooms
        for room in left.keys() & outcomes.keys():
            # The same room still there was not closed; one of the same name with another
            # sid is the room come back already (closed again below).
            if outcomes[room] == "closed" and left[room].sid == sids.get(room):
                outcomes[room] = "error: still in Redis after DeleteRoom"
        for room in found.keys() & outcomes.keys():
            # Placed again (empty_timeout 1 s), a room LiveKit stored late can close by
            # itself before DeleteRoom finds it: gone from Redis, entry and all, is closed.
            if (outcomes[room].startswith("error") and room not in left
                    and room not in after.room_nodes):  # fmt: skip
                outcomes[room] = "closed (by LiveKit once placed again, before DeleteRoom)"
        _close_what_came_back(settings, outcomes, timeout)
        _verify_map_entries_gone(settings, outcomes, orphans, timeout)
    return [{"fault": faults[room], "outcome": outcome}
            for room, outcome in outcomes.items()]  # fmt: skip


#: How long a ``room_node_map`` entry without its room must stay so to be half of a lost
#: close rather than a room being created or closed (seconds). LiveKit writes a room's entry
#: and its record, or removes them, within milliseconds of each other; a node slowed by a
#: fault it is recovering from, within a second or two.
LASTING_S = 3.0


def _lasting(
    settings: Settings, unhosted: set[str], orphans: set[str], first: state.StoreState,
    timeout: float, wait_s: float = LASTING_S,
) -> tuple[state.StoreState, set[str], set[str]]:  # fmt: skip
    """Of ``unhosted`` (rooms in Redis no node runs, as ``first`` listed them) and
    ``orphans`` (map entries without their room), those not created or closed meanwhile, and
    the Redis state last read. An unhosted room must still be in Redis as the same room (the
    same sid) on the same node: asking the nodes about it (:func:`lkchaos.livekit.state.
    unhosted`) took seconds, in which a room being closed is gone. An orphan entry must stay,
    on the same node and without its room, for ``wait_s``; the wait ends early once none is
    left."""
    sids = {room: first.rooms[room].sid for room in unhosted}
    nodes = {room: first.room_nodes.get(room) for room in unhosted | orphans}
    deadline = time.monotonic() + wait_s
    while True:
        store = _store(settings, timeout)
        unhosted = {room for room in unhosted if room in store.rooms
                    and store.rooms[room].sid == sids[room]
                    and store.room_nodes.get(room) == nodes[room]}  # fmt: skip
        orphans = {room for room in orphans if room not in store.rooms
                   and store.room_nodes.get(room) == nodes[room]}  # fmt: skip
        if not orphans or time.monotonic() >= deadline:
            return store, unhosted, orphans
        time.sleep(CAME_BACK_EVERY_S)


#: How long rooms just closed are watched for coming back, and how often (seconds).
CAME_BACK_S = 4.0
CAME_BACK_EVERY_S = 0.5


def _close_what_came_back(settings: Settings, outcomes: dict[str, str], timeout: float,
                          watch_s: float = CAME_BACK_S) -> None:  # fmt: skip
    """Close again, once, each room of ``outcomes`` closed that is back within ``watch_s``.
    A room moved to a live node to be closed starts there and dispatches the agents its
    stored dispatch names; an agent whose job was assigned joins after the close, and its
    join creates the room again (seen after a node-loss experiment: the room closed, then
    listed again with a newer creation time). Such a room runs on a live node: DeleteRoom
    alone closes it."""
    closed = {room for room, outcome in outcomes.items() if outcome == "closed"}
    deadline = time.monotonic() + watch_s
    while closed and time.monotonic() < deadline:
        time.sleep(CAME_BACK_EVERY_S)
        back = closed & set(_store(settings, timeout).rooms)
        for room in sorted(back):
            closed.discard(room)
            try:
                _close(settings, room, timeout, move=False)
            except LkChaosError as exc:
                outcomes[room] = f"error: it came back after its close, and {exc}"
                continue
            outcomes[room] = "closed (twice: it came back after its first close)"


def _verify_map_entries_gone(settings: Settings, outcomes: dict[str, str], orphans: set[str],
                             timeout: float, watch_s: float = CAME_BACK_S) -> None:  # fmt: skip
    """Each of ``orphans`` (map entries without their room) whose outcome is ``closed`` must
    be gone from ``room_node_map`` too: an entry still there without its room after
    ``watch_s`` (a room being created again writes its entry first) is an error."""
    waiting = {room for room in orphans if outcomes.get(room, "").startswith("closed")}
    deadline = time.monotonic() + watch_s
    while waiting:
        store = _store(settings, timeout)
        waiting = {room for room in waiting
                   if room in store.room_nodes and room not in store.rooms}  # fmt: skip
        if not waiting or time.monotonic() >= deadline:
            break
        time.sleep(CAME_BACK_EVERY_S)
    for room in waiting:
        outcomes[room] = "error: still in room_node_map after DeleteRoom"


def own_unhosted(settings: Settings, store: state.StoreState, skip: set[str],
                 timeout: float = client.TIMEOUT) -> set[str]:  # fmt: skip
    """lkchaos's rooms (but ``skip``) that Redis lists and no node runs
    (:func:`lkchaos.livekit.state.unhosted`, through the first node that answers); an empty
    set when no node answers."""
    rooms = sorted(r for r in store.rooms if r.startswith(OWN_PREFIX) and r not in skip)
    if not rooms:
        return set()
    for url in settings.livekit_node_urls:
        try:
            return state.unhosted(url, settings, rooms, timeout)
        except state.API_ERRORS:
            continue
    return set()


#: After CreateRoom placed a room again, how long DeleteRoom's ``not_found`` is taken for the
#: room not stored yet, and how often DeleteRoom is asked again meanwhile (seconds). Seen after
#: a Redis partition (LiveKit 1.13.5): CreateRoom answered, DeleteRoom 6 ms later "requested
#: room does not exist", the room started on the node 4 s later.
PLACED_WAIT_S = 6.0
PLACED_EVERY_S = 0.25


async def move_and_delete(
    c: api.LiveKitAPI, room: str, move: bool, wait_s: float = PLACED_WAIT_S,
    every_s: float = PLACED_EVERY_S,
) -> None:  # fmt: skip
    """DeleteRoom ``room``; with ``move``, CreateRoom first, and DeleteRoom asked again while
    it answers ``not_found``, for up to ``wait_s`` (the last answer raised). Raises
    :class:`livekit.api.TwirpError` (and the client's transport errors)."""
    if move:
        await c.room.create_room(api.CreateRoomRequest(name=room, empty_timeout=1))
    deadline = time.monotonic() + (wait_s if move else 0.0)
    while True:
        try:
            await c.room.delete_room(api.DeleteRoomRequest(room=room))
            return
        except api.TwirpError as exc:
            if exc.code != "not_found" or time.monotonic() >= deadline:
                raise
        await asyncio.sleep(every_s)


def _close(settings: Settings, room: str, timeout: float, move: bool = True) -> None:
    """DeleteRoom through the first node that answers; with ``move``, CreateRoom first (a
    room on a dead node: see the module docstring)."""
    errors: list[str] = []
    for url in settings.livekit_node_urls:
        try:
            client.call(url, settings, lambda c: move_and_delete(c, room, move), timeout)
            return
        except state.API_ERRORS as exc:
            errors.append(f"{url}: {type(exc).__name__}: {exc}")
    raise LkChaosError("no LiveKit node closed it (" + "; ".join(errors) + ")")
