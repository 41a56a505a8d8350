"""The helper that runs a real LiveKit server for unit tests survives a port taken between
choosing it and the server binding it (as another test worker's WebRTC client can)."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest

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
