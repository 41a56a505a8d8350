"""The RTC UDP port item against a real livekit-server (``--dev`` on loopback): STUN alone
gets no answer outside an ICE session, so a participant's published audio must be seen
flowing over UDP to the node."""

from __future__ import annotations

from pathlib import Path

import pytest

from lkchaos.settings import Settings
from lkchaos.validate.checks import network  # noqa: F401  (registers the item's check)
from lkchaos.validate.model import CHECKS, Context
from tests.unit.livekit_dev import KEY, SECRET, dev_server

ITEM = "infra.firewall-rules-configured.ports-50000"


def _settings(node_url: str) -> Settings:
    return Settings(livekit_url=node_url.replace("http", "ws", 1), livekit_node_urls=(node_url,),
                    livekit_api_key=KEY, livekit_api_secret=SECRET, tls_names=(),
                    dns_server="")  # fmt: skip


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

    async def no_pair(settings: Settings, url: str, timeout: float, room: str) -> dict:
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
