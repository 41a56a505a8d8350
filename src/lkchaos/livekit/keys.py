"""LiveKit's own keys in Redis: their names, how their values are encoded, and the LiveKit
server versions this layout is known for.

The layout (``pkg/service/redisstore.go`` and ``pkg/routing/redisrouter.go`` of livekit-server);
every hash value is a protobuf message unless said otherwise:

- ``rooms``: hash, room name -> ``livekit.Room``
- ``room_internal``: hash, room name -> ``livekit.RoomInternal`` (agent dispatches set at creation)
- ``room_participants:<room>``: hash, identity -> ``livekit.ParticipantInfo``
- ``nodes``: hash, node id -> ``livekit.Node`` (stats refreshed every 2 s)
- ``room_node_map``: hash, room name -> node id (plain text)
- ``agent_dispatch:<room>``: hash, dispatch id -> ``livekit.AgentDispatch`` (jobs stripped)
- ``agent_job:<room>``: hash, job id -> ``livekit.Job`` (room stripped, participant identity only)
- ``room_lock:<room>``: string, a lock token with a 5 s TTL
- ``livekit_version``: string, the version of the newest livekit-server that has started
  against this Redis (each server raises it when it starts, none lowers it)

``livekit.Node`` and ``livekit.RoomInternal`` are LiveKit's internal messages, whose ``.proto``
is not shipped in Python: :data:`NodeMessage` and :data:`RoomInternalMessage` declare the
fields read here with LiveKit's numbers and wire types. ``livekit.Node`` carries no version.

The running version is the one in ``livekit_version`` (:func:`check_version`): a version not in
:data:`KNOWN_VERSIONS` is refused with :class:`UnknownLiveKitVersion`, since its keys or
encodings may differ and a reading could be wrong without showing it. A Redis with no
``livekit_version`` (one that lost its data, until a LiveKit node starts again) is read with
this layout and its version reported as ``""``.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message

from lkchaos.errors import LkChaosError

ROOMS = "rooms"
ROOM_INTERNAL = "room_internal"
NODES = "nodes"
ROOM_NODE_MAP = "room_node_map"
PARTICIPANTS_PREFIX = "room_participants:"
DISPATCH_PREFIX = "agent_dispatch:"
JOB_PREFIX = "agent_job:"
VERSION = "livekit_version"
#: Hashes read whole, and prefixes of the per-room hashes.
HASHES = (ROOMS, ROOM_INTERNAL, NODES, ROOM_NODE_MAP)
ROOM_PREFIXES = (PARTICIPANTS_PREFIX, DISPATCH_PREFIX, JOB_PREFIX)
#: LiveKit stops choosing a node whose stats are this old (``selector.AvailableSeconds``).
AVAILABLE_SECONDS = 5
#: ``livekit.NodeState.SERVING``.
NODE_SERVING = 1

_SOURCE = ("read: the same key names and encodings as 1.13.5 in livekit-server's source "
           "(pkg/service/redisstore.go, pkg/routing/redisrouter.go)")  # fmt: skip
#: LiveKit server versions whose layout is the one above, and how that is known.
KNOWN_VERSIONS: dict[str, str] = {
    "1.13.5": "run: the reference stack's LiveKit, read by the integration suite",
    "1.13.4": _SOURCE,
    "1.13.3": _SOURCE,
    "1.13.2": _SOURCE,
    "1.13.1": _SOURCE,
    "1.13.0": _SOURCE,
    "1.12.0": _SOURCE,
}


class UnknownLiveKitVersion(LkChaosError):
    """LiveKit's version recorded in Redis is not one whose key layout lkchaos knows."""

    def __init__(self, found: str) -> None:
        self.found = found
        known = ", ".join(sorted(KNOWN_VERSIONS, key=_sort_key))
        super().__init__(
            f"Redis records LiveKit {found} (key {VERSION!r}: the newest livekit-server that "
            f"started against it), and lkchaos knows LiveKit's Redis keys for {known} only, so "
            "it will not read them: a layout it does not know could be misread without any "
            "sign. Run one of those versions (pin the livekit-server image or binary), or "
            f"report LiveKit {found} to lkchaos so that its layout is checked and added"
        )


def _sort_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) if part.isdigit() else -1 for part in version.split("."))


def normalise(version: str) -> str:
    """``v1.13.5`` and `` 1.13.5`` are ``1.13.5``."""
    text = version.strip()
    return text[1:] if text[:1] in ("v", "V") else text


def check_version(found: str) -> str:
    """The recorded version, normalised, when its layout is known (``""`` when none is
    recorded); :class:`UnknownLiveKitVersion` otherwise."""
    version = normalise(found)
    if version and version not in KNOWN_VERSIONS:
        raise UnknownLiveKitVersion(version)
    return version


def _internal_types() -> tuple[type[Message], type[Message]]:
    """``livekit.Node`` and ``livekit.RoomInternal``: the fields read here, with LiveKit's
    numbers and wire types (enums as int32; other fields skipped as unknown)."""
    f = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(
        name="lkchaos_livekit_internal.proto", package="lkchaos.internal", syntax="proto3"
    )
    stats = ".lkchaos.internal.NodeStats"
    schema: dict[str, list[tuple[str, int, Any, str]]] = {
        "NodeStats": [("started_at", 1, f.TYPE_INT64, ""), ("updated_at", 2, f.TYPE_INT64, "")],
        "Node": [("id", 1, f.TYPE_STRING, ""), ("ip", 2, f.TYPE_STRING, ""),
                 ("stats", 4, f.TYPE_MESSAGE, stats), ("state", 6, f.TYPE_INT32, "")],
        "RoomInternal": [("agent_dispatches", 5, f.TYPE_BYTES, "")],
    }
    for name, fields in schema.items():
        msg = proto.message_type.add(name=name)
        for fname, number, ftype, type_name in fields:
            label = f.LABEL_REPEATED if fname == "agent_dispatches" else f.LABEL_OPTIONAL
            one = msg.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                one.type_name = type_name
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    node, internal = (pool.FindMessageTypeByName(f"lkchaos.internal.{n}")
                      for n in ("Node", "RoomInternal"))
    return message_factory.GetMessageClass(node), message_factory.GetMessageClass(internal)


NodeMessage, RoomInternalMessage = _internal_types()
