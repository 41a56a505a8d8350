"""A deployment that is plainly down is said once, in words (lkchaos.target.down)."""

from __future__ import annotations

import socket

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
