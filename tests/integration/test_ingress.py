"""LiveKit Ingress in the reference stack: RTMP and WHIP publish into a room, and Caddy serves
WHIP on whip.<domain>."""

from __future__ import annotations

import shutil
import ssl

import httpx
import pytest

from lkchaos.docker.probes import service_health
from lkchaos.ingress import client, probes, push, whip
from lkchaos.settings import Settings
from lkchaos.stack import layout

RTMP = f"rtmp://127.0.0.1:{layout.host_port('ingress_rtmp')}/x"
WHIP = f"http://127.0.0.1:{layout.host_port('ingress_whip')}/w"


def test_the_ingress_is_running_and_healthy() -> None:
    state = service_health("ingress")
    assert state["ok"], state


def test_livekit_announces_the_stack_urls(settings: Settings) -> None:
    created = client.create(settings, "rtmp", "lkchaos-it-ingress-urls", "lkchaos-it-urls", 5)
    try:
        assert created.url == f"rtmp://rtmp.{settings.domain}:1935/x"
    finally:
        client.delete(settings, created.ingress_id, 5)


def test_rtmp_publish_reaches_the_room() -> None:
    if not any(shutil.which(pusher) for pusher in push.PUSHERS):
        pytest.fail(f"no RTMP pusher on this machine: apt-get install "
                    f"{push.INSTALL['gst-launch-1.0']}")  # fmt: skip
    result = probes.rtmp_publish(room="lkchaos-it-rtmp", duration_s=3, timeout=45, endpoint=RTMP)
    assert result["ok"], result
    assert {t["type"] for t in result["tracks"]} >= {"audio", "video"}
    assert result["state"] == "ENDPOINT_PUBLISHING" and result["deleted"]


def test_whip_publish_reaches_the_room() -> None:
    if whip.aiortc_missing():
        pytest.fail(whip.NEEDED)
    result = probes.whip_publish(room="lkchaos-it-whip", duration_s=3, timeout=45, endpoint=WHIP)
    assert result["ok"], result
    assert {t["type"] for t in result["tracks"]} >= {"audio", "video"}
    assert result["deleted"]


def test_caddy_routes_whip_to_the_ingress(settings: Settings) -> None:
    """whip.<domain> on Caddy's TLS port answers as the ingress does (its CORS preflight),
    not with Caddy's 502 for an absent upstream."""
    context = ssl.create_default_context(cafile=settings.ca_file or None)
    name = f"whip.{settings.domain}"
    with httpx.Client(verify=context, timeout=5) as http:
        response = http.options(f"https://{settings.tls_address}/w", headers={"Host": name},
                                extensions={"sni_hostname": name})  # fmt: skip
    assert response.status_code == 204, response.text
