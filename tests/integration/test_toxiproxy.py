"""Toxiproxy lists the stack's links, and traffic through each reaches its upstream."""

from __future__ import annotations

import httpx
import pytest

from lkchaos.settings import Settings
from lkchaos.stack import layout
from lkchaos.toxiproxy.client import ToxiproxyClient

#: What each link's upstream answers on a plain GET, to prove the bytes went all the way.
EXPECTED = {
    "agent_livekit": ("/", "OK"),
    "agent_whisper": ("/health", '"status"'),
    "agent_mcp": ("/health", '"status"'),
    "livekit_hooks": ("/health", '"status"'),
}


def test_every_link_is_listed_and_enabled(settings: Settings) -> None:
    with ToxiproxyClient(settings.toxiproxy_url) as toxi:
        proxies = toxi.proxies()
        assert toxi.version()
    assert set(proxies) == set(layout.TOXIPROXY_LINKS)
    for name, (port, upstream) in layout.TOXIPROXY_LINKS.items():
        assert proxies[name]["enabled"] is True
        assert proxies[name]["upstream"] == upstream
        assert proxies[name]["listen"].endswith(f":{port}")
        assert proxies[name]["toxics"] == []


@pytest.mark.parametrize("link", sorted(layout.TOXIPROXY_LINKS))
def test_traffic_through_the_link_reaches_its_upstream(link: str) -> None:
    port = layout.TOXIPROXY_LINKS[link][0]
    path, marker = EXPECTED[link]
    response = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5)
    assert response.status_code == 200
    assert marker in response.text
