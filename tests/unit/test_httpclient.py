"""The shared HTTP client and the node health probe that uses it, against local servers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lkchaos.httpclient import shared_client
from lkchaos.livekit.probes import nodes_health
from tests.unit import answering
from tests.unit.answering import serving


@pytest.fixture
def nodes() -> Iterator[list[str]]:
    with serving(200, b"OK") as ready, serving(406, b"Not Ready") as not_ready:
        yield [ready, not_ready]


def test_one_client_serves_every_call() -> None:
    assert shared_client() is shared_client()


def test_a_closed_client_is_replaced() -> None:
    shared_client().close()
    assert not shared_client().is_closed


def test_nodes_health_counts_ready_nodes(nodes: list[str]) -> None:
    result = nodes_health(urls=nodes, timeout=2, configuration={})
    assert (result["ok"], result["healthy"]) == (False, 1)
    assert result["nodes"][nodes[0]] == {"status": 200, "body": "OK"}
    assert result["nodes"][nodes[1]] == {"status": 406, "body": "Not Ready"}
    assert result["reason"] == f"{nodes[1]}: 406 Not Ready"
    alone = nodes_health(urls=nodes[:1], timeout=2, configuration={})
    assert (alone["ok"], alone["reason"]) == (True, "")


def test_nodes_health_reports_a_node_that_does_not_answer(nodes: list[str]) -> None:
    closed = answering.server(200, b"")
    url = f"http://127.0.0.1:{closed.server_address[1]}"
    closed.server_close()
    result = nodes_health(urls=[nodes[0], url], timeout=1, configuration={})
    assert result["healthy"] == 1
    assert result["nodes"][url]["status"] == 0
    assert "ConnectError" in result["nodes"][url]["body"]
    assert result["reason"].startswith(f"{url}: ConnectError")


def test_a_node_answering_after_the_timeout_is_told_from_one_not_ready() -> None:
    with serving(200, b"OK", delay_s=0.5) as url:
        late = nodes_health(urls=[url], timeout=0.2, configuration={})
        assert (late["ok"], late["nodes"][url]["status"]) == (False, 0)
        assert late["reason"] == f"{url}: no answer within 0.2 s (ReadTimeout)"
        # with the load balancer's own timeout (Caddy's health_timeout, 1 s) it is ready
        assert nodes_health(urls=[url], timeout=1.0, configuration={})["ok"]
