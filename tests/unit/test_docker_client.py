"""Listing a compose project's containers while compose replaces some of them."""

from __future__ import annotations

import gc
import socket
import warnings
from pathlib import Path
from typing import Any

import pytest
from docker.errors import NotFound

from lkchaos.docker.client import project_containers


class _Container:
    def __init__(self, service: str) -> None:
        self.name = f"lkchaos-{service}-1"
        self.labels = {"com.docker.compose.service": service}


class _Containers:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: list[dict[str, Any]] = []

    def list(self, **kwargs: Any) -> list[_Container]:
        self.calls.append(kwargs)
        if self.failures:
            self.failures -= 1
            raise NotFound("No such container: 5b0903e2")  # removed between list and inspect
        return [_Container("livekit-1"), _Container("redis-primary")]


class _Client:
    def __init__(self, failures: int) -> None:
        self.containers = _Containers(failures)


def test_a_container_removed_while_listing_means_listing_again() -> None:
    client = _Client(failures=2)
    found = project_containers(client, "lkchaos")
    assert sorted(found) == ["livekit-1", "redis-primary"]
    assert len(client.containers.calls) == 3
    assert client.containers.calls[0] == {
        "all": True, "filters": {"label": "com.docker.compose.project=lkchaos"}}


def test_a_listing_that_keeps_failing_is_reported() -> None:
    with pytest.raises(NotFound):
        project_containers(_Client(failures=10), "lkchaos")


def test_an_engine_that_refuses_is_a_clear_error(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # A dead engine leaves its socket file behind; a TCP DOCKER_HOST may refuse: both must
    # say how to start the engine, and the refused socket must not be left open.
    from lkchaos.docker.client import docker_client
    from lkchaos.errors import StackError

    stale = tmp_path / "docker.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as left_behind:
        left_behind.bind(str(stale))  # the file stays, nothing listens
    monkeypatch.setenv("DOCKER_HOST", f"unix://{stale}")
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        with pytest.raises(StackError, match=rf"nothing answers on unix://{stale} .*Start it"):
            docker_client(timeout=2)
        gc.collect()
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:1")
    with pytest.raises(StackError, match=r"cannot reach the Docker engine at tcp://127.0.0.1:1 "
                                         ".*Start it"):  # fmt: skip
        docker_client(timeout=2)
