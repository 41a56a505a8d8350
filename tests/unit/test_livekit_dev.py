"""The helper that runs a real LiveKit server for unit tests survives a port taken between
choosing it and the server binding it (as another test worker's WebRTC client can)."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest

from lkchaos.stack import layout
from tests.unit import livekit_dev


def test_a_server_whose_udp_port_was_taken_starts_again_on_new_ports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("", 0))
        number = int(taken.getsockname()[1])
        real = livekit_dev.free_port
        handed: list[int] = []

        def first_udp_port_taken(kind: int = socket.SOCK_STREAM) -> int:
            port = number if kind == socket.SOCK_DGRAM and not handed else real(kind)
            if kind == socket.SOCK_DGRAM:
                handed.append(port)
            return port

        monkeypatch.setattr(livekit_dev, "free_port", first_udp_port_taken)
        with livekit_dev.dev_server(tmp_path) as url:
            assert httpx.get(url + "/", timeout=5).status_code == 200
    assert handed[0] == number and len(handed) == 2 and handed[1] != number


def test_any_other_failure_to_start_is_raised_at_once() -> None:
    calls: list[int] = []

    def launch(started: list[object]) -> None:
        calls.append(1)
        raise RuntimeError("the servers did not start: bad configuration")

    with pytest.raises(RuntimeError, match="bad configuration"):
        livekit_dev.start_on_free_ports(launch)  # type: ignore[arg-type]
    assert calls == [1]


def test_ports_handed_out_are_neither_ephemeral_nor_the_stacks() -> None:
    """A port chosen here is never one a bind to port 0 or an outgoing connection takes, nor
    one the reference stack publishes (it may be coming up beside the unit tests)."""
    low, high = (int(n) for n in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
                 .split())  # fmt: skip
    ports = livekit_dev.PORTS
    assert ports.stop <= low or ports.start > high
    assert not {port for _, _, port in layout.HOST_PORTS.values()} & set(ports)


def test_each_worker_hands_out_ports_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "4")
    slices = []
    for n in range(4):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", f"gw{n}")
        slices.append(set(livekit_dev.worker_ports()))
    assert all(len(s) > 1000 for s in slices)
    assert all(not a & b for i, a in enumerate(slices) for b in slices[i + 1:])
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw2")
    handed = [livekit_dev.free_port() for _ in range(3)] + [
        livekit_dev.free_port(socket.SOCK_DGRAM) for _ in range(3)]
    assert len(set(handed)) == 6 and set(handed) <= slices[2]
    with socket.socket() as held:  # a port of the slice someone holds is passed over
        # The next port of the slice this test can hold: the ones before it are held already
        # (a server an earlier test of this very worker, gw2, still runs), passed over too.
        for port in range(handed[-1] + 1, max(slices[2]) + 1):
            try:
                held.bind(("", port))
                break
            except OSError:
                continue
        else:
            pytest.fail(f"no port of the slice after {handed[-1]} is free to hold")
        assert livekit_dev.free_port() != port
