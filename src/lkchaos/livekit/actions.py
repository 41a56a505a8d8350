"""Set-up actions on LiveKit: rooms that must survive a fault.

``create_room`` makes a room with a long empty timeout before the fault, so that a later
``compare_room_state`` can prove it was not lost; ``delete_room`` is its rollback (a room that
is already gone is not an error). Both return ``{"room", "sid"/"deleted", "node_url"}``::

    {"type": "action", "name": "a-room-to-keep",
     "provider": {"type": "python", "module": "lkchaos.livekit.actions", "func": "create_room",
                  "arguments": {"name": "held-call"}}}
"""

from typing import Any, Dict

from chaoslib.exceptions import ActivityFailed
from chaoslib.types import Configuration, Secrets
from livekit import api

from lkchaos.errors import LkChaosError
from lkchaos.livekit import client
from lkchaos.settings import Settings

__all__ = ["create_room", "delete_room"]


def _node(settings: Settings, node: int) -> str:
    urls = settings.livekit_node_urls
    if not 0 <= node < len(urls):
        raise ActivityFailed(f"node must be between 0 and {len(urls) - 1} (livekit_node_urls)")
    return urls[node]


def create_room(
    name: str,
    empty_timeout: int = 600,
    node: int = 0,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Dict[str, Any]:
    """Create a room through RoomService on one node (the first by default)."""
    if not name or empty_timeout <= 0:
        raise ActivityFailed("a room needs a name and a positive empty_timeout")
    settings = Settings.load(configuration, secrets)
    url = _node(settings, node)

    async def make(c: api.LiveKitAPI) -> api.Room:
        return await c.room.create_room(
            api.CreateRoomRequest(name=name, empty_timeout=empty_timeout)
        )

    try:
        room = client.call(url, settings, make)
    except (LkChaosError, api.TwirpError, OSError) as exc:
        raise ActivityFailed(f"could not create room {name!r} on {url}: {exc}") from exc
    return {"room": room.name, "sid": room.sid, "node_url": url}


def delete_room(
    name: str, node: int = 0, configuration: Configuration = None, secrets: Secrets = None
) -> Dict[str, Any]:
    """Delete a room (a rollback: a room already gone is fine)."""
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
    return {"room": name, "deleted": deleted, "node_url": url}
