"""Toxiproxy faults on the live stack: a latency toxic shows end to end, a disabled link
refuses, and everything is restored (always, in ``finally``)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from chaoslib.exceptions import ActivityFailed

from lkchaos.safety import ledger
from lkchaos.settings import Settings
from lkchaos.toxiproxy import actions, probes
from lkchaos.toxiproxy.client import connect

LATENCY_LINK = "agent_livekit"
#: The link to cut: the agent's speech-to-text calls are one HTTP request each, so a second
#: without them disturbs the stack the least.
PARTITION_LINK = "agent_whisper"
PATHS = {"agent_livekit": "/", "agent_whisper": "/health", "agent_mcp": "/health"}


@pytest.fixture
def conf(settings: Settings) -> dict[str, Any]:
    return {"toxiproxy_url": settings.toxiproxy_url}


def assert_nothing_of_ours_left(
    settings: Settings, conf: dict[str, Any], proxy: str, toxics: list[str]
) -> None:
    state = probes.proxies_state(configuration=conf)["proxies"][proxy]
    assert state["enabled"] is True
    assert not {t["name"] for t in state["toxics"]} & set(toxics)
    targets = {f"{proxy}/{name}" for name in toxics} | {proxy}
    assert not [f for f in ledger.pending(settings.state_dir) if f.target in targets]


def test_a_200_ms_latency_toxic_shows_end_to_end(settings: Settings, conf: dict[str, Any]) -> None:
    path = PATHS[LATENCY_LINK]
    probes.link_latency(LATENCY_LINK, samples=3, path=path, configuration=conf)  # warm-up
    before = probes.link_latency(LATENCY_LINK, samples=10, path=path, configuration=conf)
    assert before["ok"], before
    name = "lkchaos_latency_downstream"
    try:
        added = actions.add_latency(LATENCY_LINK, 200, configuration=conf)
        assert added["name"] == name and added["attributes"] == {"latency": 200, "jitter": 0}
        assert ledger.pending(settings.state_dir)  # recoverable if this process dies here
        slowed = probes.link_latency(LATENCY_LINK, samples=10, path=path, configuration=conf)
        assert slowed["ok"], slowed
        # Toxiproxy holds every chunk at least 200 ms. The fastest samples, the least touched
        # by a busy machine's noise, differ by the toxic and little more.
        assert slowed["min_ms"] >= 199, slowed
        assert slowed["min_ms"] - before["min_ms"] <= 240, (before, slowed)
        assert probes.proxies_state(configuration=conf)["lkchaos_toxics"] >= 1
    finally:
        removed = actions.remove_toxic(LATENCY_LINK, name, configuration=conf)
    assert removed["removed"] is True
    assert actions.remove_toxic(LATENCY_LINK, name, configuration=conf)["removed"] is False
    after = probes.link_latency(LATENCY_LINK, samples=5, path=path, configuration=conf)
    assert after["ok"] and after["min_ms"] < 100, (before, after)
    assert_nothing_of_ours_left(settings, conf, LATENCY_LINK, [name])


def test_adding_again_replaces_and_a_rollback_finds_it(
    settings: Settings, conf: dict[str, Any]
) -> None:
    names = ["lkchaos_latency_upstream", "lkchaos_bandwidth_downstream"]
    try:
        actions.add_latency(LATENCY_LINK, 50, stream="upstream", configuration=conf)
        again = actions.add_latency(LATENCY_LINK, 20, stream="upstream", configuration=conf)
        actions.add_bandwidth(LATENCY_LINK, 10_000, configuration=conf)
        assert again["replaced"] is True
        toxics = probes.proxies_state(configuration=conf)["proxies"][LATENCY_LINK]["toxics"]
        ours = {t["name"]: t for t in toxics if t["name"] in names}
        assert set(ours) == set(names)
        assert ours["lkchaos_latency_upstream"]["attributes"]["latency"] == 20
    finally:
        result = actions.remove_all_toxics(LATENCY_LINK, only_lkchaos=True, configuration=conf)
    assert {r["name"] for r in result["removed"]} >= set(names)
    assert_nothing_of_ours_left(settings, conf, LATENCY_LINK, names)


def test_a_disabled_proxy_refuses_and_comes_back(settings: Settings, conf: dict[str, Any]) -> None:
    path = PATHS[PARTITION_LINK]
    try:
        cut = actions.disable_proxy(PARTITION_LINK, configuration=conf)
        assert cut == {"proxy": PARTITION_LINK, "enabled": False, "changed": True}
        assert PARTITION_LINK in probes.proxies_state(configuration=conf)["disabled"]
        refused = probes.link_latency(
            PARTITION_LINK, samples=3, path=path, timeout=2.0, configuration=conf
        )
        assert refused["ok"] is False and refused["answered"] == 0, refused
        assert refused["errors"], refused
    finally:
        healed = actions.enable_proxy(PARTITION_LINK, configuration=conf)
    assert healed["changed"] is True
    assert actions.enable_proxy(PARTITION_LINK, configuration=conf)["changed"] is False
    deadline = time.monotonic() + 10  # the listener is back at once; allow the upstream a blip
    while not (back := probes.link_latency(PARTITION_LINK, samples=3, path=path,
                                           configuration=conf))["ok"]:  # fmt: skip
        assert time.monotonic() < deadline, back
        time.sleep(0.5)
    assert_nothing_of_ours_left(settings, conf, PARTITION_LINK, [])


def test_errors_of_the_real_server(settings: Settings, conf: dict[str, Any]) -> None:
    with pytest.raises(ActivityFailed, match="agent_livekit, agent_mcp, agent_whisper"):
        actions.add_latency("no_such_link", 200, configuration=conf)
    with connect(settings) as toxi:  # Toxiproxy's own 404 for a toxic that is not there
        assert toxi.remove_toxic_if_present(LATENCY_LINK, "lkchaos_never_added") is False
