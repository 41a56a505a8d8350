"""Join tokens from an issuer whose clock is off, judged by a real livekit-server.

The server is the pinned livekit-server binary (``lkchaos stack build`` puts it in the cache
folder), started in ``--dev`` mode on loopback ports by a fixture; without it the tests that
need it are skipped, saying where the binary is looked for.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import jwt
import pytest
from chaoslib.exceptions import ActivityFailed

from lkchaos.livekit import probes, tokens
from lkchaos.preflight.rules import RULES, Context
from lkchaos.settings import Settings
from tests.unit.livekit_dev import KEY, SECRET, dev_server, free_port


def settings_for(url: str) -> Settings:
    return Settings(livekit_node_urls=(url,), livekit_api_key=KEY, livekit_api_secret=SECRET)


@pytest.fixture(scope="module")
def livekit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A livekit-server in --dev mode on loopback, with one known key; its HTTP URL."""
    with dev_server(tmp_path_factory.mktemp("livekit")) as url:
        yield url


@pytest.fixture
def on_node(livekit: str, monkeypatch: pytest.MonkeyPatch) -> str:
    fixed = settings_for(livekit)
    monkeypatch.setattr(Settings, "load", classmethod(lambda cls, c=None, s=None: fixed))
    return livekit


# --- the token itself -----------------------------------------------------------------------


@pytest.mark.parametrize("skew", [0, 90, -700])
def test_the_token_is_moved_by_the_skew(skew: int) -> None:
    before = int(time.time())
    token = tokens.skewed_token(settings_for("http://x"), skew, "who", "room-a", 600)
    after = int(time.time())
    claims = jwt.decode(token, SECRET, algorithms=["HS256"],
                        options={"verify_exp": False, "verify_nbf": False,
                                 "verify_iat": False})  # fmt: skip
    assert before + skew <= claims["nbf"] <= after + skew
    assert claims["iat"] == claims["nbf"]
    assert claims["exp"] - claims["nbf"] == 600
    assert claims["iss"] == KEY and claims["sub"] == "who"
    assert claims["video"]["roomJoin"] is True and claims["video"]["room"] == "room-a"


def test_the_reason_never_quotes_the_token() -> None:
    body = "invalid token: abc.def.ghi, error: token has invalid claims: token is expired\n"
    assert tokens._reason(body, "abc.def.ghi") == "token has invalid claims: token is expired"


# --- LiveKit's verdict --------------------------------------------------------------------


def test_no_skew_is_accepted(on_node: str) -> None:
    result = probes.join_token_skew(skew_s=0)
    assert result == {"skew_s": 0, "accepted": True, "accepted_by": 1, "status": 200,
                      "reason": "success", "leeway_s": 60, "nodes": {on_node: {
                          "accepted": True, "status": 200, "reason": "success"}}}  # fmt: skip


def test_every_node_is_asked_and_one_refusal_is_enough(on_node: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The same node listed twice, the second time spelt otherwise: both are asked; a node
    that refuses makes ``accepted`` false, and ``node`` asks one alone."""
    other = on_node + "/"
    both = Settings(livekit_node_urls=(on_node, other), livekit_api_key=KEY,
                    livekit_api_secret=SECRET)  # fmt: skip
    monkeypatch.setattr(Settings, "load", classmethod(lambda cls, c=None, s=None: both))
    assert probes.join_token_skew(skew_s=-30)["accepted_by"] == 2
    ahead = probes.join_token_skew(skew_s=3600)
    assert ahead["accepted"] is False and ahead["accepted_by"] == 0
    assert set(ahead["nodes"]) == {on_node, other}
    assert list(probes.join_token_skew(node=1)["nodes"]) == [other]


def test_an_issuer_an_hour_ahead_is_refused(on_node: str) -> None:
    result = probes.join_token_skew(skew_s=3600)
    assert result["accepted"] is False and result["status"] == 401
    assert result["accepted_by"] == 0 and "not valid yet" in result["reason"]


@pytest.mark.parametrize(("skew", "accepted", "why"), [
    (55, True, ""),  # ahead, inside the minute of leeway on nbf
    (65, False, "not valid yet"),  # ahead, past it
    (-655, True, ""),  # behind: exp (600 s after nbf) plus the leeway not yet past
    (-665, False, "expired"),  # behind: exp plus the leeway past
])  # fmt: skip
def test_the_edges_are_the_minute_of_leeway(on_node: str, skew: int, accepted: bool,
                                            why: str) -> None:  # fmt: skip
    result = probes.join_token_skew(skew_s=skew, ttl_s=600)
    assert result["accepted"] is accepted, result
    assert why in result["reason"]


def test_a_node_that_does_not_answer_fails_the_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    fixed = settings_for(f"http://127.0.0.1:{free_port()}")
    monkeypatch.setattr(Settings, "load", classmethod(lambda cls, c=None, s=None: fixed))
    with pytest.raises(ActivityFailed, match="did not answer /rtc/validate"):
        probes.join_token_skew(skew_s=0, timeout=1)


def test_a_node_index_outside_the_nodes_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    fixed = settings_for("http://127.0.0.1:1")
    monkeypatch.setattr(Settings, "load", classmethod(lambda cls, c=None, s=None: fixed))
    with pytest.raises(ActivityFailed, match="node must be from 0 to 0"):
        probes.join_token_skew(node=1)


# --- preflight ----------------------------------------------------------------------------


@pytest.mark.parametrize(("arguments", "message"), [
    ({"skew_s": "60"}, "skew_s must be a number"),
    ({"skew_s": 10**9}, "skew_s must be"),
    ({"ttl_s": 0}, "ttl_s must be"),
    ({"ttl_s": 1.5}, "ttl_s must be a whole number"),
    ({"node": 3}, "node must be from 0 to 1"),
    ({"timeout": 0}, "timeout must be"),
])  # fmt: skip
def test_the_preflight_refuses_what_the_probe_refuses(arguments: dict[str, object],
                                                      message: str) -> None:  # fmt: skip
    context = Context(settings=Settings(livekit_node_urls=("http://a", "http://b")))
    errors = []
    for rule in RULES["lkchaos.livekit.probes.join_token_skew"]:
        try:
            rule.check(arguments, context)
        except ActivityFailed as exc:
            errors.append(str(exc))
    assert any(message in e for e in errors), errors


def test_the_preflight_accepts_the_defaults() -> None:
    context = Context(settings=Settings(livekit_node_urls=("http://a",)))
    for rule in RULES["lkchaos.livekit.probes.join_token_skew"]:
        rule.check({"skew_s": -90}, context)



def test_an_answer_that_is_neither_acceptance_nor_refusal_is_no_verdict(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import http.server
    import threading

    class BadGateway(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self.send_response(502)
            self.end_headers()
            self.wfile.write(b"upstream down")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), BadGateway)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        fixed = settings_for(f"http://127.0.0.1:{server.server_address[1]}")
        monkeypatch.setattr(Settings, "load", classmethod(lambda cls, c=None, s=None: fixed))
        with pytest.raises(ActivityFailed, match="answered 502.*neither an acceptance"):
            probes.join_token_skew(skew_s=3600, timeout=2)
    finally:
        server.shutdown()
        server.server_close()
