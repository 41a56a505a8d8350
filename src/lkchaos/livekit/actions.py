"""Set-up actions on LiveKit: rooms that must survive a fault.

``create_room`` makes a room with a long empty timeout before the fault, so that a later
``compare_room_state`` can prove it was not lost; ``delete_room`` is its rollback (a room that
is already gone is not an error). Both return ``{"room", "sid"/"deleted", "node_url"}`` once
RoomService lists the room (or no longer does).

``hold_participants`` keeps ``count`` participants (``lkchaos-held-1..n``) connected in a room
through the fault, so that ``compare_room_state`` after it has participants that must still
be there; ``release_participants`` is its rollback. On the reference stack the stack's
prober holds them (its own network, DNS and CA); with ``voice_prober_url`` ``""`` the same
prober started as a child of this process does (:mod:`lkchaos.voice.local_prober`), for as
long as the run lasts. The hold is in the fault
ledger, bounded by ``duration_s`` (at most an hour) and ends by itself::

    {"type": "action", "name": "a-room-to-keep",
     "provider": {"type": "python", "module": "lkchaos.livekit.actions", "func": "create_room",
                  "arguments": {"name": "held-call"}}}

    {"type": "action", "name": "callers-stay-connected",
     "provider": {"type": "python", "module": "lkchaos.livekit.actions",
                  "func": "hold_participants",
                  "arguments": {"room": "held-call", "count": 2, "duration_s": 300}}}

``kill_node_hosting`` kills the LiveKit node that hosts a room (the node Redis's
``room_node_map`` names for it), so a node-loss experiment hits the calls it holds rather
than a node chosen in advance; its rollback is ``lkchaos.docker.actions.start_service`` on the
``service`` it returns, or ``start_service`` on every ``livekit_node`` member.
"""

import time
from dataclasses import dataclass
from typing import Any, Dict

from chaoslib.exceptions import ActivityFailed
from chaoslib.types import Configuration, Secrets
from livekit import api

from lkchaos.errors import LkChaosError
from lkchaos.livekit import client
from lkchaos.livekit import hold as holding
from lkchaos.safety import ledger
from lkchaos.settings import Settings
from lkchaos.values import check_number, check_text
from lkchaos.verify import NotInEffect, until

__all__ = ["create_room", "delete_room", "hold_participants", "release_participants",
           "kill_node_hosting"]

UNDO = "lkchaos.livekit.actions"
HELD = "held_participants"


def _check_room(name: Any, empty_timeout: Any = 1, node: Any = 0) -> None:
    check_text("name", name)
    check_number("empty_timeout", empty_timeout, "seconds", minimum=1, whole=True)
    check_number("node", node, "node index (0 is the first of livekit_node_urls)", whole=True)


def _node(settings: Settings, node: int) -> str:
    urls = settings.livekit_node_urls
    if not 0 <= node < len(urls):
        raise ActivityFailed(f"node must be between 0 and {len(urls) - 1} (livekit_node_urls)")
    return urls[int(node)]


def create_room(
    name: str,
    empty_timeout: int = 600,
    node: int = 0,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Dict[str, Any]:
    """Create a room through RoomService on one node (the first by default)."""
    _check_room(name, empty_timeout, node)
    settings = Settings.load(configuration, secrets)
    url = _node(settings, node)

    async def make(c: api.LiveKitAPI) -> api.Room:
        return await c.room.create_room(
            api.CreateRoomRequest(name=name, empty_timeout=int(empty_timeout))
        )

    try:
        room = client.call(url, settings, make)
    except (LkChaosError, api.TwirpError, OSError) as exc:
        raise ActivityFailed(f"could not create room {name!r} on {url}: {exc}") from exc
    until(lambda: _rooms(settings, name, node), lambda seen: room.sid in seen,
          f"room {name} listed by RoomService", describe=lambda seen: f"sids {sorted(seen)}")
    return {"room": room.name, "sid": room.sid, "node_url": url}


def delete_room(
    name: str, node: int = 0, configuration: Configuration = None, secrets: Secrets = None
) -> Dict[str, Any]:
    """Delete a room (a rollback: a room already gone is fine)."""
    _check_room(name, node=node)
    settings = Settings.load(configuration, secrets)
    url = _node(settings, node)

    async def remove(c: api.LiveKitAPI) -> bool:
        listed = await c.room.list_rooms(api.ListRoomsRequest(names=[name]))
        if not listed.rooms:
            return False
        await c.room.delete_room(api.DeleteRoomRequest(room=name))
        return True

    try:
        deleted = client.call(url, settings, remove)
    except (LkChaosError, api.TwirpError, OSError) as exc:
        raise ActivityFailed(f"could not delete room {name!r} on {url}: {exc}") from exc
    until(lambda: _rooms(settings, name, node), lambda seen: not seen,
          f"room {name} gone from RoomService", describe=lambda seen: f"sids {sorted(seen)}")
    return {"room": name, "deleted": deleted, "node_url": url}


def _rooms(settings: Settings, name: str, node: int) -> set[str]:
    """The sids RoomService lists for rooms named ``name`` now."""
    async def listed(c: api.LiveKitAPI) -> set[str]:
        found = await c.room.list_rooms(api.ListRoomsRequest(names=[name]))
        return {r.sid for r in found.rooms}

    return client.call(_node(settings, node), settings, listed)


def _listed(settings: Settings, room: str) -> set[str]:
    """The identities RoomService lists in ``room`` now (none when the room is gone), asked of
    the first node that answers: RoomService answers for the whole cluster, and a node-loss
    experiment must still see its held participants through the surviving node."""
    async def identities(c: api.LiveKitAPI) -> set[str]:
        listed = await c.room.list_rooms(api.ListRoomsRequest(names=[room]))
        if not listed.rooms:
            return set()
        found = await c.room.list_participants(api.ListParticipantsRequest(room=room))
        return {p.identity for p in found.participants}

    failures: list[str] = []
    for url in settings.livekit_node_urls:
        try:
            return client.call(url, settings, identities)
        except Exception as exc:  # the node is down or refuses: ask the next one
            failures.append(f"{url}: {type(exc).__name__}: {exc}")
    raise LkChaosError("no LiveKit node answered RoomService: " + "; ".join(failures))


def _prober(settings: Settings, method: str, path: str, body: Any = None,
            timeout: float = 60.0) -> Dict[str, Any]:  # fmt: skip
    from lkchaos.voice import prober_client

    _, secret = settings.require_keys()
    url = settings.voice_prober_url
    if not url:  # lkchaos's own prober, a child of this process (lkchaos.voice.local_prober)
        from lkchaos.voice import local_prober

        url = local_prober.local(settings).url()
    return prober_client.call(url, secret, method, path, body, timeout=timeout)


def hold_participants(
    room: str,
    count: int = 2,
    duration_s: float = 600,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Dict[str, Any]:
    """Join ``count`` participants (``lkchaos-held-1..count``, no tracks) to ``room`` and keep
    them connected for ``duration_s`` seconds or until ``release_participants``. Returns once
    RoomService lists all of them: ``{"room", "identities", "joined_s", "until", "listed"}``.
    Rollback: ``release_participants``."""
    try:
        room, count, duration_s = holding.check(room, count, duration_s)
    except holding.HoldError as exc:
        raise ActivityFailed(str(exc)) from exc
    from lkchaos.voice import prober_client

    settings = Settings.load(configuration, secrets)
    fault = ledger.record(settings.state_dir, ledger.Fault(
        HELD, room, UNDO, "release_participants", {"room": room}))  # fmt: skip
    body = {"room": room, "count": count, "duration_s": duration_s}
    try:
        result = _prober(settings, "POST", "/hold", body, timeout=30 + 5 * count)
    except prober_client.NotReached as exc:  # nobody was held: nothing to undo
        ledger.withdraw(settings.state_dir, fault, str(exc))
        raise
    wanted = set(holding.identities(count))
    listed, _ = until(lambda: _listed(settings, room), lambda seen: wanted <= seen,
                      f"{count} held participants in room {room}",
                      describe=lambda seen: f"listed {sorted(seen)}")
    return {**result, "listed": sorted(listed & wanted)}


def release_participants(
    room: str, configuration: Configuration = None, secrets: Secrets = None
) -> Dict[str, Any]:
    """Disconnect the participants ``hold_participants`` keeps in ``room``; returns once
    RoomService lists none of them: ``{"room", "released", "connected_at_release"}``. A
    rollback: nothing held is not an error."""
    try:
        holding.check(room, 1, 1)
    except holding.HoldError as exc:
        raise ActivityFailed(str(exc)) from exc
    settings = Settings.load(configuration, secrets)
    from lkchaos.voice import local_prober

    if settings.voice_prober_url or local_prober.running(settings):
        result = _prober(settings, "DELETE", f"/hold/{room}")
    else:  # no prober child of this process (a new run's recovery, or it crashed): nobody held
        result = {"room": room, "released": 0, "connected_at_release": 0}
    try:
        until(lambda: _listed(settings, room),
              lambda seen: not any(i.startswith(holding.IDENTITY_PREFIX) for i in seen),
              f"release of the participants held in {room}",
              describe=lambda seen: f"listed {sorted(seen)}")
    except NotInEffect:
        ghost = _ghost_node(settings, room)
        if ghost is None:
            raise
        # Nobody can be connected to a room whose node is gone: what LiveKit lists is what
        # that node left in Redis, and it stays there until LiveKit clears it.
        result = {**result, "ghost_node": ghost, "note": (
            f"LiveKit still lists the held participants from Redis, but room {room} is on "
            f"node {ghost}, which is no longer serving: they left with it (the room's entry "
            "is LiveKit's to clear; room_state reports it)")}
    ledger.forget(settings.state_dir, HELD, room)
    return result


def _ghost_node(settings: Settings, room: str) -> str | None:
    """The node Redis maps ``room`` to when that node is no longer serving (gone from
    LiveKit's node list, or its stats stale), else None (also when Redis cannot be read)."""
    from lkchaos.livekit import state

    try:
        store = state.read_store(settings)
    except (LkChaosError, OSError):
        return None
    node_id = store.room_nodes.get(room)
    if not node_id:
        return None
    node = store.nodes.get(node_id)
    return node_id if node is None or not node.available(time.time()) else None


def busiest_room(room_nodes: dict[str, str], live_nodes: set[str], prefix: str) -> str | None:
    """A room whose name starts with ``prefix``, on the live node that hosts the most such
    rooms (ties: the node of the first such room by name), or None when no live node hosts
    one. Rooms mapped to a node that is gone (LiveKit never removes them) are left out."""
    rooms = sorted(r for r, n in room_nodes.items() if r.startswith(prefix) and n in live_nodes)
    if not rooms:
        return None
    counts: dict[str, int] = {}
    for room in rooms:
        counts[room_nodes[room]] = counts.get(room_nodes[room], 0) + 1
    busiest = max(counts, key=counts.__getitem__)  # the first of equal counts: by first room
    return next(r for r in rooms if room_nodes[r] == busiest)


@dataclass(frozen=True)
class Hosting:
    """The LiveKit node hosting a room: its runtime name, LiveKit node id and IP, the room,
    and (found by prefix) every room with that prefix on it."""

    service: str
    node_id: str
    node_ip: str
    room: str
    rooms_on_node: tuple[str, ...] = ()


def node_hosting(settings: Settings, room: str) -> tuple[str, str, str]:
    """(runtime name, node id, node IP) of the LiveKit node hosting ``room``, from Redis's
    ``room_node_map`` and ``nodes``, matched to a ``livekit_node`` container by IP address or
    name. Raises ActivityFailed naming what is missing."""
    found = hosting(settings, room=room)
    return found.service, found.node_id, found.node_ip


def hosting(settings: Settings, room: str | None = None, room_prefix: str | None = None
            ) -> Hosting:  # fmt: skip
    """The node hosting ``room``, or with ``room_prefix`` the live node hosting the most rooms
    whose names start with it (:func:`busiest_room`). Raises ActivityFailed naming what is
    missing."""
    from lkchaos.docker.client import docker_session, runtime_containers
    from lkchaos.livekit import state
    from lkchaos.redis.nodes import matches

    try:
        store = state.read_store(settings)
    except (LkChaosError, OSError) as exc:
        raise ActivityFailed(f"cannot read LiveKit's room state from Redis: {exc}") from exc
    hosted = ", ".join(sorted(store.room_nodes)) or "none"
    if room is None:
        prefix = room_prefix or ""
        room = busiest_room(store.room_nodes, set(store.nodes), prefix)
        if room is None:
            raise ActivityFailed(
                f"no live LiveKit node hosts a room named {prefix}... (rooms with a node: "
                f"{hosted}); start the calls first (held callers' rooms are lkchaos-held-*)"
            )
    node_id = store.room_nodes.get(room)
    if not node_id:
        raise ActivityFailed(
            f"no LiveKit node hosts room {room!r} (rooms with a node: {hosted}); create or "
            "hold the room first (create_room, hold_participants)"
        )
    node = store.nodes.get(node_id)
    if node is None or not node.ip:
        raise ActivityFailed(f"room {room!r} is mapped to node {node_id}, which Redis does not "
                             "list with an address (the node may already be gone)")
    members = list(settings.roles.get("livekit_node", ()))
    if not members:
        raise ActivityFailed("the target maps no livekit_node; add `roles: {livekit_node: "
                             "[NAME, ...]}` to the target file")
    on_node = () if room_prefix is None else tuple(sorted(
        r for r, n in store.room_nodes.items() if r.startswith(room_prefix) and n == node_id))
    with docker_session() as docker:
        containers = runtime_containers(docker, settings)
        for name in members:
            container = containers.get(name)
            if container is not None and matches(node.ip, name, container):
                return Hosting(name, node_id, node.ip, room, on_node)
    raise ActivityFailed(
        f"room {room!r} is on node {node_id} at {node.ip}, and no livekit_node container "
        f"({', '.join(members)}) has that address or name; check the target's roles"
    )


def _check_hosting(room: Any, room_prefix: Any) -> None:
    if (room is None) == (room_prefix is None):
        raise ActivityFailed(
            "give exactly one of room (a room's name) and room_prefix (the node hosting the "
            "most rooms named so is killed, e.g. 'lkchaos-held-' for held callers' rooms)"
        )
    if room is not None:
        check_text("room", room)
    else:
        check_text("room_prefix", room_prefix)


def kill_node_hosting(
    room: str = None,  # type: ignore[assignment]
    signal: str = "SIGKILL",
    room_prefix: str = None,  # type: ignore[assignment]
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Dict[str, Any]:
    """Kill the LiveKit node hosting ``room`` (see :func:`node_hosting`), or with
    ``room_prefix`` instead the live node hosting the most rooms whose names start with it
    (``"lkchaos-held-"``: the held callers' rooms, so the node with the most of them), with
    ``lkchaos.docker.actions.kill_service``: its ledger entry, verification and result, plus
    ``{"room", "node_id", "node_ip", "rooms_on_node"}`` (``rooms_on_node``: the rooms with
    that prefix it hosted, with ``room_prefix``). Rollback: ``start_service`` on
    ``livekit_node`` (every member: starting a running node is a no-op)."""
    from lkchaos.docker import actions as docker_actions

    _check_hosting(room, room_prefix)
    docker_actions._signal_name(signal)
    settings = Settings.load(configuration, secrets)
    found = hosting(settings, room, room_prefix)
    result = docker_actions.kill_service(service=found.service, signal=signal,
                                         configuration=configuration, secrets=secrets)
    about: dict[str, Any] = {"room": found.room, "node_id": found.node_id,
                             "node_ip": found.node_ip}
    if room_prefix is not None:
        about["rooms_on_node"] = list(found.rooms_on_node)
    return {**result, **about}
