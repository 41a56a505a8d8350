"""RTMP and WHIP publishing through a real LiveKit Ingress, on loopback.

A fixture starts a redis-server, the pinned livekit-server (``--dev``) and the ingress binary
that ``lkchaos stack build`` builds (both from the cache folder), on free loopback ports, and
the probes publish through them. A test whose binary, pusher or aiortc is missing is skipped,
saying what to install.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from lkchaos.ingress import client, probes, push, whip
from lkchaos.settings import Settings
from lkchaos.stack.build import GO_BINARIES, cache_dir
from lkchaos.stack.render import INGRESS_CPU_COST
from tests.unit import livekit_dev
from tests.unit.livekit_dev import KEY, LIVEKIT_BIN, SECRET, free_port, stop_process

INGRESS = next(b for b in GO_BINARIES if b.name == "ingress")
INGRESS_BIN = cache_dir() / "bin" / INGRESS.cache_name
#: Ingress admits a session only while its host has idle CPU: these tests run after the other
#: unit tests, on their own (scripts/test.sh), so that the workers beside them never starve it.
pytestmark = pytest.mark.idle_cpu


@dataclass
class Stack:
    url: str
    folder: Path
    rtmp_port: int
    whip_port: int
    health_port: int

    def settings(self) -> Settings:
        # Push where this ingress's CreateIngress says (its own loopback ports).
        return Settings(livekit_node_urls=(self.url,), livekit_api_key=KEY,
                        livekit_api_secret=SECRET, ingress_rtmp_url="",
                        ingress_whip_url="")  # fmt: skip

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                         for p in sorted(self.folder.glob("*.log")))  # fmt: skip


def _wait(what: str, ready: object, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while not ready():  # type: ignore[operator]
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.2)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _start(argv: list[str], folder: Path, name: str, env: dict[str, str] | None = None,
           ) -> subprocess.Popen[bytes]:
    with (folder / f"{name}.log").open("wb") as log:
        return subprocess.Popen(argv, cwd=folder, stdout=log, stderr=log,
                                env={**os.environ, **(env or {})})  # fmt: skip


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    for binary, how in ((LIVEKIT_BIN, "`lkchaos stack build` builds it"),
                        (INGRESS_BIN, "`lkchaos stack build` builds it (CGO, GStreamer dev "
                                      "packages)")):  # fmt: skip
        if not os.access(binary, os.X_OK):
            pytest.skip(f"no binary at {binary}: {how}")
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        pytest.skip("no redis-server on PATH: apt-get install redis-server")
    folder = tmp_path_factory.mktemp("ingress")
    # The service starts each session as `ingress` from PATH.
    (folder / "bin").mkdir()
    (folder / "bin" / "ingress").symlink_to(INGRESS_BIN)
    path = f"{folder / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"

    def launch(started: list[subprocess.Popen[bytes]]) -> Stack:
        redis_port, lk_port = free_port(), free_port()
        rtmp_port, whip_port = free_port(), free_port()
        lk_config = {
            "port": lk_port, "bind_addresses": ["127.0.0.1"],
            "rtc": {"tcp_port": free_port(), "udp_port": free_port(socket.SOCK_DGRAM),
                    "use_external_ip": False, "node_ip": "127.0.0.1",
                    "enable_loopback_candidate": True},
            "redis": {"address": f"127.0.0.1:{redis_port}"},
            "keys": {KEY: SECRET},
            "ingress": {"rtmp_base_url": f"rtmp://127.0.0.1:{rtmp_port}/x",
                        "whip_base_url": f"http://127.0.0.1:{whip_port}/w"},
        }  # fmt: skip
        health_port = free_port()
        ingress_config = {
            "api_key": KEY, "api_secret": SECRET, "ws_url": f"ws://127.0.0.1:{lk_port}",
            "redis": {"address": f"127.0.0.1:{redis_port}"},
            "rtmp_port": rtmp_port, "whip_port": whip_port, "http_relay_port": free_port(),
            "health_port": health_port, "logging": {"level": "info"},
            "rtc_config": {"udp_port": free_port(socket.SOCK_DGRAM), "use_external_ip": False,
                           "node_ip": "127.0.0.1", "enable_loopback_candidate": True},
            # These tests publish; they do not test admission. Ingress admits a session while
            # its host's idle CPU exceeds the session's cost plus min_idle_ratio of every core:
            # the lowest costs it takes (0.05, its floor for WHIP without transcoding), so that
            # a machine busy with the other tests running beside these does not refuse it.
            "cpu_cost": dict.fromkeys(INGRESS_CPU_COST, 0.05) | {"min_idle_ratio": 0.01},
        }  # fmt: skip
        (folder / "livekit.yaml").write_text(yaml.safe_dump(lk_config))
        (folder / "ingress.yaml").write_text(yaml.safe_dump(ingress_config))
        started.append(_start([redis_server, "--port", str(redis_port), "--bind", "127.0.0.1",
                               "--save", "", "--appendonly", "no"], folder, "redis"))
        started.append(_start([str(LIVEKIT_BIN), "--dev", "--config", "livekit.yaml"],
                              folder, "livekit"))
        url = f"http://127.0.0.1:{lk_port}"
        _wait("livekit-server", lambda: _answers(url + "/"), started[-1],
              folder / "livekit.log")
        started.append(_start(["ingress", "--config", "ingress.yaml"], folder, "ingress",
                              {"PATH": path, "HOME": str(folder)}))
        # Liveness; the probes themselves ride out a moment of "server capacity exceeded".
        _wait("ingress", lambda: _answers(f"http://127.0.0.1:{health_port}/"),
              started[-1], folder / "ingress.log")
        return Stack(url, folder, rtmp_port, whip_port, health_port)

    served, started = livekit_dev.start_on_free_ports(launch)
    try:
        yield served
    finally:
        for process in reversed(started):
            stop_process(process)


@pytest.fixture
def on_stack(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Stack:
    # Ingress refuses a session ("server capacity exceeded") while its idle CPUs are below the
    # session's cost, as just after a transcoding session on a small machine: the probes
    # publish again within their timeout, as an encoder reconnects.
    fixed = stack.settings()
    monkeypatch.setattr(Settings, "load", classmethod(lambda cls, c=None, s=None: fixed))
    return stack


def _assert_published(result: dict[str, Any], stack: Stack, kind: str) -> None:
    assert result["ok"] is True, f"{result}\n{stack.logs()}"
    assert result["kind"] == kind and result["stage"] is None
    assert result["state"] == "ENDPOINT_PUBLISHING"
    assert isinstance(result["time_to_participant_s"], float)
    assert isinstance(result["time_to_tracks_s"], float)
    assert result["time_to_participant_s"] <= result["time_to_tracks_s"]
    assert {t["type"] for t in result["tracks"]} >= {"audio", "video"}
    assert result["deleted"] is True
    # Cleaned up: the ingress is gone and its participant left the room.
    settings = stack.settings()
    assert client.state(settings, str(result["ingress_id"]), 5)["status"] == "missing"


def test_rtmp_publish_reaches_the_room(on_stack: Stack) -> None:
    if shutil.which("gst-launch-1.0") is None and shutil.which("ffmpeg") is None:
        pytest.skip(f"no RTMP pusher: apt-get install {push.INSTALL['gst-launch-1.0']}")
    result = probes.rtmp_publish(room="live-rtmp", duration_s=2, timeout=40)
    _assert_published(result, on_stack, "rtmp")
    assert result["endpoint"] == f"rtmp://127.0.0.1:{on_stack.rtmp_port}/x"


def test_whip_publish_reaches_the_room(on_stack: Stack) -> None:
    if whip.aiortc_missing():
        pytest.skip(whip.NEEDED)
    result = probes.whip_publish(room="live-whip", duration_s=2, timeout=30)
    _assert_published(result, on_stack, "whip")
    assert result["endpoint"] == f"http://127.0.0.1:{on_stack.whip_port}/w"


def test_a_push_to_a_closed_port_fails_at_the_push_and_still_cleans_up(on_stack: Stack) -> None:
    if shutil.which("gst-launch-1.0") is None and shutil.which("ffmpeg") is None:
        pytest.skip(f"no RTMP pusher: apt-get install {push.INSTALL['gst-launch-1.0']}")
    closed = f"rtmp://127.0.0.1:{free_port()}/x"
    result = probes.rtmp_publish(room="live-refused", duration_s=1, timeout=20, endpoint=closed)
    assert result["ok"] is False and result["stage"] == "push", result
    assert result["deleted"] is True
    assert client.state(on_stack.settings(), str(result["ingress_id"]), 5)["status"] == "missing"


def test_a_whip_offer_to_a_closed_port_fails_at_the_push_and_still_cleans_up(
    on_stack: Stack,
) -> None:
    if whip.aiortc_missing():
        pytest.skip(whip.NEEDED)
    closed = f"http://127.0.0.1:{free_port()}/w"
    result = probes.whip_publish(room="live-whip-refused", duration_s=1, timeout=10,
                                 endpoint=closed)  # fmt: skip
    assert result["ok"] is False and result["stage"] == "push", result
    assert result["reason"].startswith(f"POST {closed}/<key>: ConnectError")
    assert result["deleted"] is True
    assert client.state(on_stack.settings(), str(result["ingress_id"]), 5)["status"] == "missing"
