"""The RTC UDP port item against a real livekit-server (``--dev`` on loopback): STUN alone
gets no answer outside an ICE session, so a participant's published audio must be seen
flowing over UDP to the node."""

from __future__ import annotations

from pathlib import Path

import pytest

from lkchaos.settings import Settings
from lkchaos.validate.checks import network  # registers the item's check
from lkchaos.validate.model import CHECKS, Context
from tests.unit.livekit_dev import KEY, SECRET, dev_server

ITEM = "infra.firewall-rules-configured.ports-50000"


def _settings(node_url: str) -> Settings:
    # No Sentinel answers on port 9: a reference stack running beside the tests is not read.
    return Settings(livekit_url=node_url.replace("http", "ws", 1), livekit_node_urls=(node_url,),
                    livekit_api_key=KEY, livekit_api_secret=SECRET, tls_names=(),
                    dns_server="", sentinel_addresses=("127.0.0.1:9",))  # fmt: skip


@pytest.fixture
def no_engine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")


def test_media_over_udp_to_the_node_passes_where_stun_gets_no_answer(
        tmp_path: Path, no_engine: None) -> None:  # fmt: skip
    with dev_server(tmp_path) as url:
        found = CHECKS[ITEM](Context(_settings(url), timeout_s=10.0))
    assert found.status == "pass", found.evidence
    # This machine's dev server announces every address of the machine: whichever media
    # reached, it is shown; where it matches the node's URL host, by the node's name.
    assert "a participant's audio flowed over UDP to " in found.evidence
    assert all(not e["ok"] for e in found.data["endpoints"])  # STUN: no answer
    media = found.data["media"][-1]
    assert media["path"]["path"] == "udp" and media["path"]["candidate_type"] == "host"


def test_a_node_no_participant_reaches_fails_with_why(tmp_path: Path, no_engine: None) -> None:
    found = CHECKS[ITEM](Context(_settings("http://127.0.0.1:9"), timeout_s=3.0))
    assert found.status == "fail"
    assert found.evidence.startswith("no participant's media flowed over UDP to a node "
                                     "(http://127.0.0.1:9: could not create a room")


def test_the_item_keeps_within_its_time_when_no_media_ever_flows(
        no_engine: None, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """UDP blocked: every try waits out its ICE time. The tries are given no more than the
    check's time in all (the runner stops waiting past it), and each one's reason is kept."""
    import asyncio

    from lkchaos.validate.checks import _livekit_media

    given: list[float] = []

    async def no_pair(settings: Settings, url: str, timeout: float, room: str,
                      node_id: str = "") -> dict:
        given.append(timeout)
        await asyncio.sleep(min(timeout, 0.2))
        return {"node": url, "room": room, "path": None,
                "reason": f"no ICE candidate pair was selected within {timeout:g} s"}

    monkeypatch.setattr(_livekit_media, "media_path", no_pair)
    found = CHECKS[ITEM](Context(_settings("http://127.0.0.1:9"), timeout_s=12.0))
    assert found.status == "fail" and "no ICE candidate pair was selected" in found.evidence
    assert len(found.data["media"]) == len(given) >= 1
    assert given[0] <= 10.0 and all(t >= 1.0 for t in given)
    assert given == sorted(given, reverse=True)  # what is left only shrinks


def _two_nodes(monkeypatch: pytest.MonkeyPatch, media_on: set[str],
               ids: dict[str, str] | None = None) -> list[tuple[str, str]]:  # fmt: skip
    """Two nodes whose node ids and announced IPs (``ids``; by default the URLs' loopback
    hosts) Redis lists; the fake media path reports UDP to the node a room was created on,
    for the IPs in ``media_on``. Returns the calls (url, node_id) made."""
    import asyncio

    from lkchaos.livekit import state
    from lkchaos.validate.checks import _livekit_media

    ids = ids or {"ND_one": "127.0.0.2", "ND_two": "127.0.0.3"}
    nodes = {i: state.NodeRecord(i, ip, updated_at=None) for i, ip in ids.items()}
    monkeypatch.setattr(state, "read_nodes", lambda settings, timeout: nodes)
    calls: list[tuple[str, str]] = []

    async def placed(settings: Settings, url: str, timeout: float, room: str,
                     node_id: str = "") -> dict:  # fmt: skip
        calls.append((url, node_id))
        await asyncio.sleep(0)
        ip = ids.get(node_id, list(ids.values())[1])  # unplaced: the selector's one choice
        path = {"path": "udp", "remote": f"{ip}:7882"} if ip in media_on else None
        return {"node": url, "room": room, "node_id": node_id, "path": path,
                "reason": "" if path else "no ICE candidate pair was selected within 1 s"}

    monkeypatch.setattr(_livekit_media, "media_path", placed)
    # STUN to these loopback addresses gets no answer either way; do not wait it out.
    monkeypatch.setattr(network, "_probe", lambda endpoint, settings, timeout:
                        (False, "no STUN answer"))  # fmt: skip
    return calls


def _two_node_settings() -> Settings:
    return Settings(livekit_url="ws://127.0.0.2:7880",
                    livekit_node_urls=("http://127.0.0.2:7880", "http://127.0.0.3:7880"),
                    livekit_api_key=KEY, livekit_api_secret=SECRET, tls_names=(),
                    dns_server="")  # fmt: skip


def test_each_room_is_created_on_the_node_whose_port_is_shown(
        no_engine: None, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """A node the selector never picks is still shown: its room is created on it by id."""
    calls = _two_nodes(monkeypatch, {"127.0.0.2", "127.0.0.3"})
    found = CHECKS[ITEM](Context(_two_node_settings(), timeout_s=12.0))
    assert found.status == "pass", found.evidence
    assert sorted(calls) == [("http://127.0.0.2:7880", "ND_one"),
                             ("http://127.0.0.3:7880", "ND_two")]  # fmt: skip
    assert found.data["reached"] == {"127.0.0.2": "127.0.0.2:7882",
                                     "127.0.0.3": "127.0.0.3:7882"}


def test_a_node_placed_by_id_whose_media_never_flows_fails(
        no_engine: None, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """Placed on the node and still no UDP: that node's port is shut, a fail (not 'not shown')."""
    calls = _two_nodes(monkeypatch, {"127.0.0.2"})
    found = CHECKS[ITEM](Context(_two_node_settings(), timeout_s=12.0))
    assert found.status == "fail", found.evidence
    assert "no participant's media flowed over UDP to node 2" in found.evidence
    assert "room on ND_two" in found.evidence
    assert ("http://127.0.0.3:7880", "ND_two") in calls


def test_without_redis_a_node_the_selector_never_picks_is_a_warning(
        no_engine: None, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    from lkchaos.livekit import state

    _two_nodes(monkeypatch, {"127.0.0.2", "127.0.0.3"})

    def unreachable(settings: Settings, timeout: float) -> dict[str, state.NodeRecord]:
        raise ConnectionError("Redis unreachable")

    monkeypatch.setattr(state, "read_nodes", unreachable)
    found = CHECKS[ITEM](Context(_two_node_settings(), timeout_s=12.0))
    assert found.status == "warn", found.evidence
    assert "placed none of" in found.evidence and "node 1" in found.evidence
    assert "could not be read from Redis" in found.evidence


def test_behind_a_load_balancer_each_node_is_placed_on_through_the_one_url(
        no_engine: None, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """One URL (a load balancer) and two nodes announcing other addresses: a room on each by
    its id, through that URL, and each node named by its id and address."""
    calls = _two_nodes(monkeypatch, {"10.1.0.7", "10.1.0.8"},
                       {"ND_a": "10.1.0.7", "ND_b": "10.1.0.8"})
    settings = Settings(livekit_url="ws://127.0.0.2:7880",
                        livekit_node_urls=("http://127.0.0.2:7880",), livekit_api_key=KEY,
                        livekit_api_secret=SECRET, tls_names=(), dns_server="")  # fmt: skip
    found = CHECKS[ITEM](Context(settings, timeout_s=12.0))
    assert found.status == "pass", found.evidence
    assert sorted(calls) == [("http://127.0.0.2:7880", "ND_a"), ("http://127.0.0.2:7880", "ND_b")]
    assert "node ND_a (10.1.0.7): a participant's audio flowed over UDP to 10.1.0.7:7882" \
        in found.evidence
    assert "node ND_b (10.1.0.8)" in found.evidence


def test_a_node_is_tried_again_while_the_checks_time_lasts(
        no_engine: None, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """A first try that found no path (ICE slow on a busy node) is not the verdict."""
    from lkchaos.validate.checks import _livekit_media

    calls = _two_nodes(monkeypatch, {"127.0.0.2", "127.0.0.3"})
    placed = _livekit_media.media_path
    failed_once: set[str] = set()

    async def slow_first(settings: Settings, url: str, timeout: float, room: str,
                         node_id: str = "") -> dict:  # fmt: skip
        found = await placed(settings, url, timeout, room, node_id)
        if node_id == "ND_two" and node_id not in failed_once:
            failed_once.add(node_id)
            return {**found, "path": None, "reason": "no ICE candidate pair was selected"}
        return found

    monkeypatch.setattr(_livekit_media, "media_path", slow_first)
    found = CHECKS[ITEM](Context(_two_node_settings(), timeout_s=12.0))
    assert found.status == "pass", found.evidence
    assert sorted(node for _, node in calls[:2]) == ["ND_one", "ND_two"]
    assert [node for _, node in calls[2:]] == ["ND_two"]


def test_every_nodes_first_room_is_tried_at_the_same_time(
        no_engine: None, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """A node's media does not wait for another's: the check takes one room's time, not two."""
    import asyncio

    from lkchaos.validate.checks import _livekit_media

    _two_nodes(monkeypatch, {"127.0.0.2", "127.0.0.3"})
    placed = _livekit_media.media_path
    active: list[int] = [0, 0]  # now, most at once

    async def slow(settings: Settings, url: str, timeout: float, room: str,
                   node_id: str = "") -> dict:  # fmt: skip
        active[0] += 1
        active[1] = max(active)
        try:
            await asyncio.sleep(0.5)
            return await placed(settings, url, timeout, room, node_id)
        finally:
            active[0] -= 1

    monkeypatch.setattr(_livekit_media, "media_path", slow)
    found = CHECKS[ITEM](Context(_two_node_settings(), timeout_s=12.0))
    assert found.status == "pass", found.evidence
    assert active[1] == 2
