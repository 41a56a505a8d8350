"""The media path a WebRTC connection ended up on, from the SDK's RTC stats.

A LiveKit client has two peer connections (publisher, subscriber); each picks one ICE
candidate pair. Its local candidate says how media flows: ``host``/``srflx``/``prflx``
candidates over UDP or TCP, or a ``relay`` (TURN) candidate reached over UDP, TCP or TLS. The
W3C names (``RTCIceCandidateStats.candidateType``, ``relayProtocol``) are the SDK's too.

:func:`path_of` reads one connection's stats (a list of ``livekit.rtc`` ``RtcStats``
protobufs, as ``Room.get_rtc_stats()`` returns them) and answers::

    {"path": "turn/tls", "candidate_type": "relay", "protocol": "tcp",
     "relay_protocol": "tls", "local": "172.29.77.44:41234", "remote": "172.29.77.12:7882",
     "url": "turns:turn.chaos.test:443?transport=tcp"}

``path`` is ``udp``, ``tcp``, ``turn/udp``, ``turn/tcp`` or ``turn/tls``; ``None`` when no pair
was selected (the connection never completed).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lkchaos.settings import join_host_port

_CANDIDATE_TYPES = {0: "host", 1: "srflx", 2: "prflx", 3: "relay"}
_RELAY_PROTOCOLS = {0: "udp", 1: "tcp", 2: "tls"}


def _selected_pair_id(stats: Sequence[Any]) -> str | None:
    for item in stats:
        if item.WhichOneof("stats") == "transport":
            chosen = item.transport.transport.selected_candidate_pair_id
            if chosen:
                return str(chosen)
    # No transport names one: the nominated succeeded pair, else (the ICE-controlled side of a
    # connection may not flag nomination) the succeeded pair that carried the most bytes.
    succeeded = [item.candidate_pair for item in stats
                 if item.WhichOneof("stats") == "candidate_pair"
                 and item.candidate_pair.candidate_pair.state == 4]  # PAIR_SUCCEEDED
    if not succeeded:
        return None
    best = max(succeeded, key=lambda c: (c.candidate_pair.nominated,
                                          c.candidate_pair.bytes_received
                                          + c.candidate_pair.bytes_sent))
    return str(best.rtc.id)


def path_of(stats: Sequence[Any]) -> dict[str, Any]:
    """The selected path of one peer connection (see the module docstring)."""
    empty: dict[str, Any] = {"path": None, "candidate_type": None, "protocol": None,
                             "relay_protocol": None, "local": None, "remote": None, "url": None}
    chosen = _selected_pair_id(stats)
    if chosen is None:
        return empty
    pairs = {str(i.candidate_pair.rtc.id): i.candidate_pair.candidate_pair
             for i in stats if i.WhichOneof("stats") == "candidate_pair"}
    locals_ = {str(i.local_candidate.rtc.id): i.local_candidate.candidate
               for i in stats if i.WhichOneof("stats") == "local_candidate"}
    remotes = {str(i.remote_candidate.rtc.id): i.remote_candidate.candidate
               for i in stats if i.WhichOneof("stats") == "remote_candidate"}
    pair = pairs.get(chosen)
    if pair is None:
        return empty
    local = locals_.get(str(pair.local_candidate_id))
    remote = remotes.get(str(pair.remote_candidate_id))
    if local is None:
        return empty
    kind = _CANDIDATE_TYPES.get(int(local.candidate_type), "unknown")
    protocol = str(local.protocol or "").lower() or None
    relay = _RELAY_PROTOCOLS.get(int(local.relay_protocol)) if kind == "relay" and \
        local.HasField("relay_protocol") else None
    if kind == "relay":
        path = f"turn/{relay or protocol or 'unknown'}"
    else:
        path = protocol or "unknown"
    return {
        "path": path,
        "candidate_type": kind,
        "protocol": protocol,
        "relay_protocol": relay,
        "local": join_host_port(local.address, local.port) if local.address else None,
        "remote": join_host_port(remote.address, remote.port)
        if remote is not None and remote.address
        else None,
        "url": str(local.url) or None,
    }


def paths(publisher: Sequence[Any], subscriber: Sequence[Any]) -> dict[str, Any]:
    """Both connections' paths: ``{"publisher": {...}, "subscriber": {...}}``."""
    return {"publisher": path_of(publisher), "subscriber": path_of(subscriber)}
