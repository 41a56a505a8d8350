"""The media path read from a connection's RTC stats (the SDK's protobufs)."""

from __future__ import annotations

from typing import Any

from livekit.rtc._proto import stats_pb2 as s

from lkchaos.voice.mediapath import path_of, paths


def _candidate(kind: str, cid: str, ctype: int, protocol: str, address: str, port: int,
               relay: int | None = None, url: str = "") -> Any:
    item = s.RtcStats()
    part = getattr(item, kind)
    part.rtc.id = cid
    part.candidate.candidate_type = ctype
    part.candidate.protocol = protocol
    part.candidate.address = address
    part.candidate.port = port
    part.candidate.url = url
    if relay is not None:
        part.candidate.relay_protocol = relay
    return item


def _pair(pid: str, local: str, remote: str, nominated: bool = True, state: int = 4) -> Any:
    item = s.RtcStats()
    item.candidate_pair.rtc.id = pid
    item.candidate_pair.candidate_pair.local_candidate_id = local
    item.candidate_pair.candidate_pair.remote_candidate_id = remote
    item.candidate_pair.candidate_pair.nominated = nominated
    item.candidate_pair.candidate_pair.state = state
    return item


def _transport(selected: str) -> Any:
    item = s.RtcStats()
    item.transport.rtc.id = "T1"
    item.transport.transport.selected_candidate_pair_id = selected
    return item


def test_a_turn_tls_relay_is_named_with_its_url() -> None:
    stats = [
        _candidate("local_candidate", "L1", 0, "udp", "172.29.77.44", 50000),
        _candidate("local_candidate", "L2", 3, "udp", "172.29.77.10", 30001, relay=2,
                   url="turns:turn.chaos.test:443?transport=tcp"),
        _candidate("remote_candidate", "R1", 0, "udp", "172.29.77.12", 7882),
        _pair("P1", "L1", "R1", nominated=False, state=3),
        _pair("P2", "L2", "R1"),
        _transport("P2"),
    ]
    assert path_of(stats) == {
        "path": "turn/tls", "candidate_type": "relay", "protocol": "udp",
        "relay_protocol": "tls", "local": "172.29.77.10:30001", "remote": "172.29.77.12:7882",
        "url": "turns:turn.chaos.test:443?transport=tcp"}


def test_direct_udp_without_a_transport_falls_back_to_the_nominated_pair() -> None:
    stats = [
        _candidate("local_candidate", "L1", 0, "udp", "172.29.77.44", 50000),
        _candidate("remote_candidate", "R1", 0, "udp", "172.29.77.11", 7882),
        _pair("P1", "L1", "R1"),
    ]
    found = path_of(stats)
    assert (found["path"], found["candidate_type"], found["relay_protocol"]) == (
        "udp", "host", None)


def test_ice_tcp_and_no_selected_pair() -> None:
    tcp = [
        _candidate("local_candidate", "L1", 0, "tcp", "172.29.77.44", 9),
        _candidate("remote_candidate", "R1", 0, "tcp", "172.29.77.11", 7881),
        _pair("P1", "L1", "R1"), _transport("P1"),
    ]
    assert path_of(tcp)["path"] == "tcp"
    failed = [_pair("P1", "L1", "R1", nominated=True, state=3)]
    assert paths(failed, [])["publisher"]["path"] is None
    assert paths([], [])["subscriber"]["path"] is None


def test_without_a_nominated_pair_the_busiest_succeeded_pair_is_the_path() -> None:
    quiet, busy = _pair("P1", "L1", "R1", nominated=False), _pair("P2", "L2", "R1",
                                                                 nominated=False)
    busy.candidate_pair.candidate_pair.bytes_received = 5000
    stats = [
        _candidate("local_candidate", "L1", 0, "tcp", "172.29.77.44", 9),
        _candidate("local_candidate", "L2", 0, "udp", "172.29.77.44", 50000),
        _candidate("remote_candidate", "R1", 0, "udp", "172.29.77.11", 7882),
        quiet, busy,
    ]
    assert path_of(stats)["path"] == "udp"


def test_ipv6_candidates_are_written_in_brackets_so_they_read_back() -> None:
    from lkchaos.settings import split_host_port

    stats = [
        _candidate("local_candidate", "L1", 0, "udp", "fd00::44", 50000),
        _candidate("remote_candidate", "R1", 0, "udp", "fd00::11", 7882),
        _pair("P1", "L1", "R1"),
    ]
    found = path_of(stats)
    assert (found["local"], found["remote"]) == ("[fd00::44]:50000", "[fd00::11]:7882")
    assert split_host_port(found["remote"], None) == ("fd00::11", 7882)
