"""A deployment that is plainly down is said once, in words (lkchaos.target.down)."""

from __future__ import annotations

import socket

import pytest

from lkchaos.settings import Settings
from lkchaos.target.down import why_down
from tests.unit.livekit_dev import free_port


def test_a_deployment_none_of_whose_nodes_accepts_a_connection_is_down() -> None:
    urls = (f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}")
    said = why_down(Settings(livekit_node_urls=urls))
    assert said is not None and said.startswith("the deployment is down: no LiveKit node")
    for url in urls:
        assert f"{url}: Connection refused" in said
    assert "`lkchaos target check`" in said  # not the reference stack: no `stack up` advice


def test_one_node_that_accepts_is_not_down() -> None:
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        urls = (f"http://127.0.0.1:{free_port()}",
                f"http://127.0.0.1:{listening.getsockname()[1]}")  # fmt: skip
        assert why_down(Settings(livekit_node_urls=urls)) is None


def test_a_target_without_nodes_says_nothing() -> None:
    assert why_down(Settings(livekit_node_urls=())) is None


def test_a_node_that_accepts_and_never_answers_counts_as_down_when_asked_over_http() -> None:
    # A paused node still accepts connections (the kernel does); it answers nothing.
    with socket.socket() as frozen:
        frozen.bind(("127.0.0.1", 0))
        frozen.listen()
        url = f"http://127.0.0.1:{frozen.getsockname()[1]}"
        settings = Settings(livekit_node_urls=(url,))
        assert why_down(settings) is None  # it accepts
        said = why_down(settings, http_timeout=0.3)
        assert said is not None and said.startswith("the deployment is down: no LiveKit "
                                                    "node answers")
        assert f"{url}: accepts connections but gave no HTTP answer within 0.3 s" in said


class _Container:
    def __init__(self, status: str) -> None:
        self.status = status


def _engine_with(monkeypatch: pytest.MonkeyPatch, statuses: list[str]) -> None:
    import contextlib

    from lkchaos.docker import client

    monkeypatch.setattr(client, "docker_session",
                        lambda timeout: contextlib.nullcontext(object()))
    monkeypatch.setattr(client, "runtime_replicas", lambda engine, settings: [
        (f"svc-{i}", _Container(s)) for i, s in enumerate(statuses)])


def test_a_deployment_none_of_whose_containers_runs_has_nothing_starting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from lkchaos.target.down import none_running

    settings = Settings(compose_project="lkchaos")
    _engine_with(monkeypatch, ["exited", "created"])
    assert none_running(settings) == "no container of compose project 'lkchaos' is running"
    _engine_with(monkeypatch, [])
    assert none_running(settings) is not None
    _engine_with(monkeypatch, ["exited", "restarting"])  # one is starting: wait for it
    assert none_running(settings) is None
    _engine_with(monkeypatch, ["running"])
    assert none_running(settings) is None


def test_an_engine_that_cannot_be_asked_says_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    from lkchaos.target.down import none_running

    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent.sock")
    assert none_running(Settings()) is None
