"""Toxiproxy actions and probes against an in-memory Toxiproxy (httpx.MockTransport)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from chaoslib.exceptions import ActivityFailed

from lkchaos.errors import StackError
from lkchaos.safety import ledger
from lkchaos.toxiproxy import actions, probes
from lkchaos.toxiproxy import client as toxiproxy_client
from lkchaos.toxiproxy.client import ToxiproxyClient, ToxiproxyRefused
from lkchaos.verify import NotInEffect


class FakeToxiproxy:
    """Just enough of Toxiproxy 2's API, plus the proxies' listeners answering ``OK``."""

    def __init__(self) -> None:
        self.proxies: dict[str, dict[str, Any]] = {
            name: {"name": name, "listen": f"[::]:{port}", "upstream": upstream,
                   "enabled": True, "toxics": []}
            for name, port, upstream in (
                ("agent_livekit", 17880, "livekit-1:7880"),
                ("agent_mcp", 18100, "mcp:8100"),
                ("agent_whisper", 18000, "whisper:8000"),
            )
        }  # fmt: skip
        self.requests: list[tuple[str, str]] = []
        self.api_down = False
        self.race_delete = False  # the toxic vanishes between listing and DELETE
        self.loses_toxics = False  # accepts a new toxic, then never lists it
        self.listener: Callable[[httpx.Request], httpx.Response] = (
            lambda request: httpx.Response(200, text="OK")
        )

    def mutations(self) -> list[tuple[str, str]]:
        return [r for r in self.requests if r[0] != "GET"]

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.host != "toxiproxy.test":
            return self.listener(request)
        if self.api_down:
            raise httpx.ConnectError("connection refused", request=request)
        self.requests.append((request.method, request.url.path))
        parts = request.url.path.strip("/").split("/")
        body = json.loads(request.content) if request.content else None
        if parts == ["proxies"]:
            return httpx.Response(200, json=self.proxies)
        if parts == ["reset"]:
            for proxy in self.proxies.values():
                proxy["enabled"], proxy["toxics"] = True, []
            return httpx.Response(204)
        proxy = self.proxies.get(parts[1]) if len(parts) > 1 else None
        if proxy is None:
            return httpx.Response(404, json={"error": "proxy not found", "status": 404})
        toxics: list[dict[str, Any]] = proxy["toxics"]
        if len(parts) == 2 and request.method == "POST":
            proxy.update(body)
            return httpx.Response(200, json=proxy)
        if len(parts) == 3 and request.method == "POST":
            if any(t["name"] == body["name"] for t in toxics):
                return httpx.Response(409, json={"error": "toxic already exists"})
            if not self.loses_toxics:
                toxics.append(body)
            return httpx.Response(200, json=body)
        found = next((t for t in toxics if t["name"] == parts[3]), None)
        if found is not None and self.race_delete and request.method == "DELETE":
            toxics.remove(found)  # someone else removed it just before this request
            found = None
        if found is None:
            return httpx.Response(404, json={"error": "toxic not found", "status": 404})
        if request.method == "DELETE":
            toxics.remove(found)
            return httpx.Response(204)
        found["attributes"].update(body["attributes"])
        found["toxicity"] = body["toxicity"]
        return httpx.Response(200, json=found)


@pytest.fixture
def state(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A state folder of the test's own, so the fault ledger is not the stack's."""
    folder = tmp_path / "state"
    monkeypatch.setenv("LKCHAOS_STATE_DIR", str(folder))
    monkeypatch.setenv("LKCHAOS_ROOT", str(tmp_path / "nowhere"))
    monkeypatch.chdir(tmp_path)
    return folder


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, state: Path) -> FakeToxiproxy:
    server = FakeToxiproxy()
    transport = httpx.MockTransport(server.handle)
    monkeypatch.setattr(
        toxiproxy_client, "connect",
        lambda settings: ToxiproxyClient("http://toxiproxy.test", transport=transport),
    )  # fmt: skip
    return server


def test_add_latency_names_the_toxic_and_returns_it(fake: FakeToxiproxy) -> None:
    result = actions.add_latency("agent_livekit", 200, jitter_ms=10)
    assert result == {
        "proxy": "agent_livekit", "name": "lkchaos_latency_downstream", "type": "latency",
        "stream": "downstream", "toxicity": 1.0,
        "attributes": {"latency": 200, "jitter": 10}, "replaced": False,
    }  # fmt: skip
    assert fake.proxies["agent_livekit"]["toxics"] == [
        {k: v for k, v in result.items() if k not in ("proxy", "replaced")}
    ]
    assert fake.mutations() == [("POST", "/proxies/agent_livekit/toxics")]


def test_adding_the_same_toxic_again_replaces_its_attributes(fake: FakeToxiproxy) -> None:
    actions.add_latency("agent_livekit", 200)
    again = actions.add_latency("agent_livekit", 500, toxicity=0.5)
    assert again["replaced"] is True
    toxics = fake.proxies["agent_livekit"]["toxics"]
    assert len(toxics) == 1
    assert toxics[0]["attributes"]["latency"] == 500 and toxics[0]["toxicity"] == 0.5
    upstream = actions.add_latency("agent_livekit", 100, stream="upstream")
    assert upstream["name"] == "lkchaos_latency_upstream" and upstream["replaced"] is False


@pytest.mark.parametrize(
    ("func", "args", "kwargs", "name", "attributes"),
    [
        (actions.add_bandwidth, (64,), {}, "lkchaos_bandwidth_downstream", {"rate": 64}),
        (actions.add_timeout, (0,), {"stream": "upstream"}, "lkchaos_timeout_upstream",
         {"timeout": 0}),
        (actions.add_reset_peer, (), {}, "lkchaos_reset_peer_downstream", {"timeout": 0}),
        (actions.add_slow_close, (300,), {}, "lkchaos_slow_close_downstream", {"delay": 300}),
        (actions.add_limit_data, (1024,), {}, "lkchaos_limit_data_downstream", {"bytes": 1024}),
    ],
)  # fmt: skip
def test_each_toxic_action_sends_its_attributes(
    fake: FakeToxiproxy, func: Callable[..., dict[str, Any]], args: tuple[int, ...],
    kwargs: dict[str, Any], name: str, attributes: dict[str, int],
) -> None:  # fmt: skip
    result = func("agent_whisper", *args, **kwargs)
    assert result["name"] == name and result["attributes"] == attributes
    assert fake.proxies["agent_whisper"]["toxics"][0]["attributes"] == attributes


def test_generic_add_toxic_takes_a_slicer(fake: FakeToxiproxy) -> None:
    result = actions.add_toxic(
        "agent_mcp", "slicer", {"average_size": 64, "size_variation": 16, "delay": 10.0}
    )
    assert result["name"] == "lkchaos_slicer_downstream"
    assert result["attributes"] == {"average_size": 64, "size_variation": 16, "delay": 10}


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: actions.add_latency("agent_livekit", -1), "latency_ms must not be negative"),
        (lambda: actions.add_latency("agent_livekit", 10, jitter_ms=-5),
         "jitter_ms must not be negative"),
        (lambda: actions.add_latency("agent_livekit", 1.5), "latency_ms must be a whole number"),
        (lambda: actions.add_latency("agent_livekit", True), "latency_ms must be a whole number"),
        (lambda: actions.add_latency("agent_livekit", "200"), "latency_ms must be a whole"),
        (lambda: actions.add_latency("agent_livekit", 10, toxicity=1.5), "toxicity must be"),
        (lambda: actions.add_latency("agent_livekit", 10, toxicity=-0.1), "toxicity must be"),
        (lambda: actions.add_latency("agent_livekit", 10, stream="both"), "stream must be"),
        (lambda: actions.add_bandwidth("agent_livekit", -1), "rate_kbytes_s must be at least 1"),
        (lambda: actions.add_bandwidth("agent_livekit", 0), "rate_kbytes_s must be at least 1"),
        (lambda: actions.add_timeout("agent_livekit", -1), "timeout_ms must not be negative"),
        (lambda: actions.add_reset_peer("agent_livekit", -1), "timeout_ms must not be negative"),
        (lambda: actions.add_slow_close("agent_livekit", -1), "delay_ms must not be negative"),
        (lambda: actions.add_limit_data("agent_livekit", -1), "bytes must not be negative"),
        (lambda: actions.add_toxic("agent_livekit", "loss", {}), "unknown toxic type 'loss'"),
        (lambda: actions.add_toxic("agent_livekit", "latency", {"latency": 5, "delay": 1}),
         "has no attribute 'delay'"),
        (lambda: actions.add_toxic("agent_livekit", "latency", {}), "needs attributes.latency"),
        (lambda: actions.add_toxic("agent_livekit", "slicer",
                                   {"average_size": 8, "size_variation": 8}),
         "attributes.size_variation must be less than attributes.average_size"),
        (lambda: actions.add_latency("", 10), "proxy must be the name"),
        (lambda: actions.remove_toxic("agent_livekit", ""), "name must be the name of a toxic"),
    ],
)  # fmt: skip
def test_bad_arguments_fail_before_anything_is_sent(
    fake: FakeToxiproxy, call: Callable[[], object], message: str
) -> None:
    with pytest.raises(ActivityFailed, match=message.replace(".", r"\.")):
        call()
    assert fake.requests == []


def test_unknown_proxy_lists_the_proxies_and_changes_nothing(fake: FakeToxiproxy) -> None:
    for call in (
        lambda: actions.add_latency("agent_livekti", 200),
        lambda: actions.remove_toxic("agent_livekti", "lkchaos_latency_downstream"),
        lambda: actions.remove_all_toxics("agent_livekti"),
        lambda: actions.disable_proxy("agent_livekti"),
        lambda: probes.link_latency("agent_livekti"),
    ):
        with pytest.raises(ActivityFailed) as info:
            call()
        assert "no proxy named 'agent_livekti'" in str(info.value)
        assert "agent_livekit, agent_mcp, agent_whisper" in str(info.value)
    assert fake.mutations() == []


def test_removing_a_toxic_already_gone_is_not_an_error(fake: FakeToxiproxy) -> None:
    actions.add_latency("agent_livekit", 200)
    first = actions.remove_toxic("agent_livekit", "lkchaos_latency_downstream")
    second = actions.remove_toxic("agent_livekit", "lkchaos_latency_downstream")
    assert first["removed"] is True and second["removed"] is False
    assert fake.mutations().count(("DELETE", "/proxies/agent_livekit/toxics/"
                                             "lkchaos_latency_downstream")) == 1  # fmt: skip


def test_a_toxic_removed_meanwhile_by_someone_else_is_not_an_error(fake: FakeToxiproxy) -> None:
    actions.add_latency("agent_livekit", 200)
    fake.race_delete = True
    assert actions.remove_toxic("agent_livekit", "lkchaos_latency_downstream")["removed"] is False
    assert actions.remove_all_toxics()["count"] == 0


def test_remove_all_toxics_everywhere_on_one_proxy_or_only_lkchaos(fake: FakeToxiproxy) -> None:
    actions.add_latency("agent_livekit", 200)
    actions.add_bandwidth("agent_whisper", 8)
    foreign = {"name": "someone_elses", "type": "latency", "stream": "upstream",
               "toxicity": 1.0, "attributes": {"latency": 1}}  # fmt: skip
    fake.proxies["agent_mcp"]["toxics"].append(foreign)

    only_ours = actions.remove_all_toxics(only_lkchaos=True)
    assert only_ours["count"] == 2
    assert {(r["proxy"], r["name"]) for r in only_ours["removed"]} == {
        ("agent_livekit", "lkchaos_latency_downstream"),
        ("agent_whisper", "lkchaos_bandwidth_downstream"),
    }
    assert fake.proxies["agent_mcp"]["toxics"] == [foreign]

    actions.add_latency("agent_livekit", 200)
    on_mcp = actions.remove_all_toxics("agent_mcp")
    assert [r["name"] for r in on_mcp["removed"]] == ["someone_elses"]
    assert len(fake.proxies["agent_livekit"]["toxics"]) == 1
    assert actions.remove_all_toxics()["count"] == 1
    assert actions.remove_all_toxics() == {"removed": [], "count": 0}


def test_disable_and_enable_are_idempotent(fake: FakeToxiproxy) -> None:
    assert actions.disable_proxy("agent_mcp") == {
        "proxy": "agent_mcp", "enabled": False, "changed": True}  # fmt: skip
    assert fake.proxies["agent_mcp"]["enabled"] is False
    assert actions.disable_proxy("agent_mcp")["changed"] is False
    assert actions.enable_proxy("agent_mcp") == {
        "proxy": "agent_mcp", "enabled": True, "changed": True}  # fmt: skip
    assert actions.enable_proxy("agent_mcp")["changed"] is False
    assert fake.mutations() == [("POST", "/proxies/agent_mcp")] * 2


def test_reset_returns_what_it_undid(fake: FakeToxiproxy) -> None:
    actions.add_latency("agent_livekit", 200)
    actions.disable_proxy("agent_whisper")
    result = actions.reset()
    assert result["reenabled"] == ["agent_whisper"]
    assert [(r["proxy"], r["name"]) for r in result["removed"]] == [
        ("agent_livekit", "lkchaos_latency_downstream")
    ]
    assert probes.proxies_state()["clean"] is True


def test_proxies_state_reports_faults(fake: FakeToxiproxy) -> None:
    clean = probes.proxies_state()
    assert clean["clean"] is True and clean["toxics"] == 0 and clean["disabled"] == []
    assert clean["proxies"]["agent_livekit"]["listen"] == "[::]:17880"
    actions.add_latency("agent_livekit", 200)
    actions.disable_proxy("agent_mcp")
    dirty = probes.proxies_state()
    assert dirty["clean"] is False
    assert dirty["disabled"] == ["agent_mcp"]
    assert dirty["toxics"] == dirty["lkchaos_toxics"] == 1
    assert dirty["proxies"]["agent_livekit"]["toxics"][0]["name"] == "lkchaos_latency_downstream"


def test_link_latency_goes_through_the_listener_on_localhost(fake: FakeToxiproxy) -> None:
    seen: list[str] = []

    def listener(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, text="OK")

    fake.listener = listener
    result = probes.link_latency("agent_livekit", samples=3)
    assert seen == ["http://127.0.0.1:17880/"] * 3
    assert result["ok"] is True and result["answered"] == 3 and result["failed"] == 0
    assert result["min_ms"] <= result["median_ms"] <= result["max_ms"]
    assert result["statuses"] == {"200": 3} and len(result["samples_ms"]) == 3

    probes.link_latency("agent_whisper", samples=1, path="/health", address="10.0.0.5:9000")
    assert seen[-1] == "http://10.0.0.5:9000/health"


def test_link_latency_reports_a_refusing_link_without_raising(fake: FakeToxiproxy) -> None:
    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    fake.listener = refused
    result = probes.link_latency("agent_livekit", samples=2)
    assert result["ok"] is False and result["failed"] == 2 and result["median_ms"] is None
    assert result["errors"] == ["ConnectError: connection refused"]


def test_link_latency_checks_the_median_against_max_median_ms(fake: FakeToxiproxy) -> None:
    assert probes.link_latency("agent_livekit", samples=1, max_median_ms=10_000)["ok"] is True
    assert probes.link_latency("agent_livekit", samples=1, max_median_ms=1e-9)["ok"] is False


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"samples": 0}, "samples must be from 1"),
        ({"samples": 2.5}, "samples must be a whole number"),
        ({"path": "health"}, "path must start with '/'"),
        ({"address": "localhost"}, "address must be host:port"),
        ({"timeout": 0}, "timeout must be a positive number"),
        ({"max_median_ms": -1}, "max_median_ms must be a positive number"),
    ],
)
def test_link_latency_checks_its_arguments(
    fake: FakeToxiproxy, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ActivityFailed, match=message):
        probes.link_latency("agent_livekit", **kwargs)
    assert fake.requests == []


def test_toxiproxy_down_says_what_to_check(fake: FakeToxiproxy) -> None:
    fake.api_down = True
    with pytest.raises(ActivityFailed, match="toxiproxy_url") as info:
        actions.add_latency("agent_livekit", 200)
    assert "adding toxic lkchaos_latency_downstream to proxy agent_livekit failed" in str(
        info.value
    )
    assert isinstance(info.value.__cause__, StackError)
    with pytest.raises(ActivityFailed, match="toxiproxy_url"):
        probes.proxies_state()


def test_client_reports_refusals_with_their_status() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.raw_path == b"/proxies/a%2Fb/toxics/x%20y"
        return httpx.Response(400, text="bad request body")

    with ToxiproxyClient("http://toxiproxy.test", transport=httpx.MockTransport(handler)) as c:
        with pytest.raises(ToxiproxyRefused) as info:
            c.remove_toxic("a/b", "x y")
    assert info.value.status == 400 and "bad request body" in str(info.value)


def test_faults_are_in_the_ledger_until_rolled_back(fake: FakeToxiproxy, state: Path) -> None:
    actions.add_latency("agent_livekit", 200)
    actions.add_latency("agent_livekit", 300)  # replaced: still one entry
    actions.disable_proxy("agent_mcp")
    pending = {(f.kind, f.target, f.undo_func) for f in ledger.pending(state)}
    assert pending == {
        ("toxic", "agent_livekit/lkchaos_latency_downstream", "remove_toxic"),
        ("proxy_disabled", "agent_mcp", "enable_proxy"),
    }
    results = ledger.undo_all(state)
    assert [r["outcome"] for r in results] == ["undone", "undone"]
    assert probes.proxies_state()["clean"] is True
    assert ledger.pending(state) == []


def test_rollbacks_clear_the_ledger(fake: FakeToxiproxy, state: Path) -> None:
    actions.add_latency("agent_livekit", 200)
    actions.disable_proxy("agent_mcp")
    actions.remove_toxic("agent_livekit", "lkchaos_latency_downstream")
    actions.enable_proxy("agent_mcp")
    assert ledger.pending(state) == []
    actions.add_bandwidth("agent_whisper", 8)
    actions.remove_all_toxics(only_lkchaos=True)
    actions.add_bandwidth("agent_whisper", 8)
    actions.disable_proxy("agent_mcp")
    actions.reset()
    assert ledger.pending(state) == []


def test_a_toxic_toxiproxy_accepts_but_never_lists_fails_the_action(
    fake: FakeToxiproxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LKCHAOS_VERIFY_S", "0.2")
    fake.loses_toxics = True
    with pytest.raises(NotInEffect, match="toxic lkchaos_latency_downstream on proxy "
                                          "agent_livekit: not in effect.*not listed"):
        actions.add_latency("agent_livekit", 200)
