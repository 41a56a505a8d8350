"""lkchaos's own prober as a child process (``lkchaos.voice.local_prober``), against a real
livekit-server (``--dev`` on loopback) with no agent in it.

Where no prober is configured, room work (held participants, held calls, voice round trips)
runs in a prober child, so that a crash of the LiveKit SDK's native runtime (an abort, status
134) ends the child and not the run that has faults injected. Here the child is made to abort
(SIGABRT, as the runtime's abort does) in the middle of that work: the run goes on, says what
happened, and leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from chaoslib.exceptions import ActivityFailed
from livekit import api

from lkchaos.livekit import actions
from lkchaos.settings import Settings
from lkchaos.voice import held, local_prober
from lkchaos.voice.probes import voice_round_trip
from tests.unit.livekit_dev import KEY, SECRET, dev_server

SECRETS = {"livekit": {"api_key": KEY, "api_secret": SECRET}}


@pytest.fixture(scope="module")
def livekit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with dev_server(tmp_path_factory.mktemp("livekit")) as url:
        yield url


@pytest.fixture
def configuration(livekit: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A deployment without a prober (``voice_prober_url`` empty), its state in ``tmp_path``;
    the prober child of this process for it is stopped afterwards."""
    values = {"livekit_url": livekit.replace("http", "ws"), "voice_prober_url": "",
              "agent_name": "nobody", "livekit_node_urls": [livekit]}  # fmt: skip
    yield values
    local_prober.local(Settings.load(values, SECRETS)).close()


def _abort(prober: local_prober.LocalProber) -> None:
    """End the child as the SDK's native abort does, and wait until it is gone."""
    process = prober._process
    assert process is not None and process.poll() is None
    os.kill(process.pid, signal.SIGABRT)
    process.wait(10)


def _participants(url: str, room: str) -> list[str]:
    async def listed() -> list[str]:
        async with api.LiveKitAPI(url, KEY, SECRET) as lk:
            rooms = await lk.room.list_rooms(api.ListRoomsRequest(names=[room]))
            if not rooms.rooms:
                return []
            found = await lk.room.list_participants(api.ListParticipantsRequest(room=room))
            return [p.identity for p in found.participants]

    return asyncio.run(listed())


def test_the_child_listens_on_loopback_and_a_dead_one_is_replaced(
    configuration: dict[str, Any],
) -> None:
    prober = local_prober.local(Settings.load(configuration, SECRETS))
    first = prober.url()
    generation, deaths = prober.generation, len(prober.deaths)
    assert first.startswith("http://127.0.0.1:")
    assert httpx.get(f"{first}/health", timeout=5).json() == {"status": "ok"}
    assert prober.url() == first and prober.generation == generation  # the same child
    _abort(prober)
    assert prober.died() == "was ended by SIGABRT"
    second = prober.url()
    assert prober.generation == generation + 1 and second != first
    assert prober.deaths[deaths:] == ["was ended by SIGABRT"]
    assert prober.died(generation) == "was ended by SIGABRT"
    assert prober.died(generation + 1) is None
    assert httpx.get(f"{second}/health", timeout=5).json() == {"status": "ok"}
    prober.close()  # told to stop: not a death
    prober.url()
    _abort(prober)
    prober.url()
    assert prober.died(generation + 1) == local_prober.STOPPED
    assert prober.died(generation + 2) == "was ended by SIGABRT"
    assert prober.deaths[deaths:] == ["was ended by SIGABRT"] * 2


def test_the_child_ends_with_the_process_that_started_it_however_that_ends(
    configuration: dict[str, Any],
) -> None:
    script = (
        "import sys, time\n"
        "from lkchaos.settings import Settings\n"
        "from lkchaos.voice import local_prober\n"
        f"p = local_prober.local(Settings.load({configuration!r}, {SECRETS!r}))\n"
        "p.url()\n"
        "print(p._process.pid, flush=True)\n"
        "time.sleep(600)\n"
    )  # fmt: skip
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        os.kill(child, 0)  # it runs
        parent.kill()  # SIGKILL: no exit hook of the parent runs
        parent.wait(10)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _alive(child):
            time.sleep(0.1)
        assert not _alive(child), "the prober child outlived the process that started it"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(10)
        if parent.stdout is not None:
            parent.stdout.close()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_held_participants_live_in_the_child_and_a_crash_leaves_nobody_behind(
    livekit: str, configuration: dict[str, Any],
) -> None:
    held_room = "local-prober-hold"
    result = actions.hold_participants(held_room, count=2, duration_s=120,
                                       configuration=configuration, secrets=SECRETS)  # fmt: skip
    assert result["listed"] == ["lkchaos-held-1", "lkchaos-held-2"]
    prober = local_prober.local(Settings.load(configuration, SECRETS))
    _abort(prober)  # the run goes on; the held participants went with the child
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _participants(livekit, held_room):
        time.sleep(0.5)
    released = actions.release_participants(held_room, configuration=configuration,
                                            secrets=SECRETS)  # fmt: skip
    assert released == {"room": held_room, "released": 0, "connected_at_release": 0}
    assert not prober.is_running()  # the rollback started no child to release nothing


def test_a_round_trip_cut_short_by_a_crash_is_made_again_in_a_new_child(
    configuration: dict[str, Any],
) -> None:
    pytest.importorskip("faster_whisper")
    prober = local_prober.local(Settings.load(configuration, SECRETS))
    prober.url()
    generation, deaths = prober.generation, len(prober.deaths)
    results: list[dict[str, Any]] = []

    def ask() -> None:  # no agent comes: the round trip ends at dispatch, after 3 s
        results.append(voice_round_trip(question="What is two plus three?", timeout=20,
                                        stage_timeouts={"dispatch": 3.0},
                                        configuration=configuration, secrets=SECRETS))

    asking = threading.Thread(target=ask)
    asking.start()
    time.sleep(1.5)  # the child is in the room, waiting for the agent
    _abort(prober)
    asking.join(60)
    assert not asking.is_alive()
    assert prober.deaths[deaths:] == ["was ended by SIGABRT"]
    assert prober.generation == generation + 1  # the round trip made again in a new child
    assert len(results) == 1 and results[0]["stage"] != "prober", results


def test_a_held_call_whose_child_crashed_has_ended_and_the_next_sample_starts_another(
    configuration: dict[str, Any],
) -> None:
    pytest.importorskip("faster_whisper")
    try:
        first = held.turn("crash", timeout=20, overdue_s=1.0, every_s=0.5,
                          configuration=configuration, secrets=SECRETS)  # fmt: skip
        assert first["stage"] == "overdue" and first["calls"] == 1, first
        _abort(local_prober.local(Settings.load(configuration, SECRETS)))
        lost = held.turn("crash", timeout=20, overdue_s=1.0, every_s=0.5,
                         configuration=configuration, secrets=SECRETS)  # fmt: skip
        assert lost["ok"] is False and lost["stage"] == "call_ended", lost
        assert "local voice prober was ended by SIGABRT" in lost["reason"], lost
        again = held.turn("crash", timeout=20, overdue_s=1.0, every_s=0.5,
                          configuration=configuration, secrets=SECRETS)  # fmt: skip
        assert again["stage"] == "overdue" and again["calls"] == 2, again
    finally:
        summary = held.end("crash", configuration, SECRETS)
    assert summary["ended"] is True and summary["calls"] == 2


def test_attempt_tells_a_dead_child_from_a_request_that_failed(
    configuration: dict[str, Any],
) -> None:
    prober = local_prober.local(Settings.load(configuration, SECRETS))
    seen: list[str] = []

    def health(url: str) -> dict[str, Any]:
        seen.append(url)
        return dict(httpx.get(f"{url}/health", timeout=5).json())

    assert prober.attempt(health) == {"status": "ok"}
    born = prober.generation

    def refused(url: str) -> None:
        raise ActivityFailed("the prober answered 404: no such call")

    # The child is alive: the request's own failure is raised, not taken for a death.
    with pytest.raises(ActivityFailed, match="no such call"):
        prober.attempt(refused, born)
    assert prober.generation == born

    # The child dies during the request: a Died that says how, never the request's error.
    def dies(url: str) -> None:
        _abort(prober)
        raise ActivityFailed("the prober did not answer")

    died = prober.attempt(dies, born)
    assert isinstance(died, local_prober.Died) and "SIGABRT" in died.how

    # Asked of that child again, after another has started: Died, and nothing is sent.
    calls = len(seen)
    assert prober.attempt(health) == {"status": "ok"}
    assert prober.generation == born + 1 and len(seen) == calls + 1
    again = prober.attempt(health, born)
    assert isinstance(again, local_prober.Died) and "SIGABRT" in again.how
    assert len(seen) == calls + 1
