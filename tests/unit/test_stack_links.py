"""The reference stack's Toxiproxy links against their rendered configuration, on a real
toxiproxy-server (the stack's pinned build): what differs is found and put back."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from lkchaos import cli
from lkchaos.stack import layout, links
from lkchaos.stack.build import GO_BINARIES, cache_dir
from lkchaos.stack.layout import StackPaths
from lkchaos.toxiproxy.client import ToxiproxyClient
from tests.unit import chaos_helpers
from tests.unit.livekit_dev import free_port, stop_process

SERVER = next(b for b in GO_BINARIES if b.name == "toxiproxy-server")
SERVER_BIN = cache_dir() / "bin" / SERVER.cache_name


@pytest.fixture
def toxiproxy(tmp_path: Path) -> Iterator[tuple[ToxiproxyClient, list[dict[str, object]]]]:
    """A toxiproxy-server started from a rendered-like configuration of two links; its client
    and the configuration."""
    if not os.access(SERVER_BIN, os.X_OK):
        pytest.skip(f"no toxiproxy-server at {SERVER_BIN}: `lkchaos stack build` builds it")
    wanted: list[dict[str, object]] = [
        {"name": "agent_livekit", "listen": f"0.0.0.0:{free_port()}",
         "upstream": "caddy:7880", "enabled": True},
        {"name": "agent_whisper", "listen": f"0.0.0.0:{free_port()}",
         "upstream": "whisper:8000", "enabled": True},
    ]  # fmt: skip
    config = tmp_path / "config"
    config.mkdir()
    (config / "toxiproxy.json").write_text(json.dumps(wanted))
    port = free_port()
    with (tmp_path / "toxiproxy.log").open("wb") as log:
        process = subprocess.Popen([str(SERVER_BIN), "-host", "127.0.0.1", "-port", str(port),
                                    "-config", str(config / "toxiproxy.json")],
                                   stdout=log, stderr=log)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while True:
        try:
            if httpx.get(f"{url}/proxies", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            raise RuntimeError((tmp_path / "toxiproxy.log").read_text())
        time.sleep(0.1)
    try:
        with ToxiproxyClient(url) as toxi:
            assert links.rendered(config) == wanted
            yield toxi, wanted
    finally:
        stop_process(process)


def test_links_as_configured_show_no_drift(
    toxiproxy: tuple[ToxiproxyClient, list[dict[str, object]]],
) -> None:
    toxi, wanted = toxiproxy
    assert links.drift(wanted, toxi.proxies()) == []  # "0.0.0.0" shows as "[::]": same port


def test_a_link_changed_by_hand_is_found_and_put_back(
    toxiproxy: tuple[ToxiproxyClient, list[dict[str, object]]],
) -> None:
    toxi, wanted = toxiproxy
    # the agent's link pointed at one LiveKit node, Whisper's disabled with a toxic on it
    httpx.post(f"{toxi.base_url}/proxies/agent_livekit", json={"upstream": "livekit-1:7880"},
               timeout=5).raise_for_status()  # fmt: skip
    toxi.set_enabled("agent_whisper", False)
    toxi.add_toxic("agent_whisper", {"name": "slow", "type": "latency",
                                     "attributes": {"latency": 500}})  # fmt: skip
    assert links.drift(wanted, toxi.proxies()) == [
        "agent_livekit: upstream livekit-1:7880, rendered caddy:7880",
        "agent_whisper: disabled",
        "agent_whisper: toxics slow",
    ]
    links.restore(toxi, wanted)
    assert links.drift(wanted, toxi.proxies()) == []
    assert toxi.proxy("agent_livekit")["upstream"] == "caddy:7880"


def test_a_link_as_configured_keeps_its_connections(
    toxiproxy: tuple[ToxiproxyClient, list[dict[str, object]]],
) -> None:
    import socket
    import threading

    toxi, wanted = toxiproxy
    # an upstream that accepts and holds connections, for link agent_livekit
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    held: list[socket.socket] = []
    threading.Thread(target=lambda: held.append(server.accept()[0]), daemon=True).start()
    for proxy in wanted:
        if proxy["name"] == "agent_livekit":
            proxy["upstream"] = f"127.0.0.1:{port}"
    links.restore(toxi, wanted)
    listen = int(str(toxi.proxy("agent_livekit")["listen"]).rsplit(":", 1)[1])
    conn = socket.create_connection(("127.0.0.1", listen), timeout=5)
    try:
        toxi.add_toxic("agent_whisper", {"name": "slow", "type": "latency",
                                         "attributes": {"latency": 500}})  # fmt: skip
        links.restore(toxi, wanted)  # only Whisper's link differs
        assert links.drift(wanted, toxi.proxies()) == []
        deadline = time.monotonic() + 5
        while not held and time.monotonic() < deadline:
            time.sleep(0.05)
        held[0].sendall(b"still here")
        conn.settimeout(5)
        assert conn.recv(32) == b"still here"  # the untouched link's connection lives on
    finally:
        conn.close()
        server.close()
        for sock in held:
            sock.close()


def test_a_missing_link_is_created(
    toxiproxy: tuple[ToxiproxyClient, list[dict[str, object]]],
) -> None:
    toxi, wanted = toxiproxy
    httpx.delete(f"{toxi.base_url}/proxies/agent_whisper", timeout=5).raise_for_status()
    assert links.drift(wanted, toxi.proxies()) == ["agent_whisper: missing"]
    links.restore(toxi, wanted)
    assert links.drift(wanted, toxi.proxies()) == []


# -- `lkchaos stack up` and a running experiment ------------------------------------------
@pytest.fixture
def drifted(toxiproxy: tuple[ToxiproxyClient, list[dict[str, object]]], tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> tuple[ToxiproxyClient, list[dict[str, object]],
                                                      StackPaths]:  # fmt: skip
    """The fixture's Toxiproxy as the stack's, Whisper's link disabled (a fault, or a
    hand's change); the client, the configuration and the stack's paths."""
    toxi, wanted = toxiproxy
    port = int(toxi.base_url.rsplit(":", 1)[1])
    monkeypatch.setattr(layout, "host_port", lambda name: port)
    toxi.set_enabled("agent_whisper", False)
    return toxi, wanted, StackPaths(tmp_path, tmp_path)  # its config_dir: the fixture's


def test_stack_up_leaves_the_links_of_a_running_experiment_alone(
    drifted: tuple[ToxiproxyClient, list[dict[str, object]], StackPaths],
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    toxi, wanted, paths = drifted  # Whisper's link disabled: the running experiment's fault
    with chaos_helpers.held_elsewhere(paths.state_dir, "whisper outage"):
        cli._put_links_back(paths)
    assert links.drift(wanted, toxi.proxies()) == ["agent_whisper: disabled"]
    assert "left as they are while 'whisper outage' runs" in capsys.readouterr().err


def test_stack_up_holds_the_run_lock_while_it_puts_links_back(
    drifted: tuple[ToxiproxyClient, list[dict[str, object]], StackPaths],
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    toxi, wanted, paths = drifted
    told: list[str] = []
    restore = links.restore

    def restore_while_one_starts(toxi: ToxiproxyClient, wanted: list[dict[str, object]]) -> None:
        told.append(chaos_helpers.acquire_elsewhere(paths.state_dir))  # an experiment starts
        restore(toxi, wanted)

    monkeypatch.setattr(links, "restore", restore_while_one_starts)
    cli._put_links_back(paths)
    assert len(told) == 1 and "'lkchaos stack up (putting the Toxiproxy links back)'" in told[0]
    assert links.drift(wanted, toxi.proxies()) == []
    assert "links put back as configured (agent_whisper: disabled)" in capsys.readouterr().err
    assert chaos_helpers.acquire_elsewhere(paths.state_dir) == "taken"  # released
