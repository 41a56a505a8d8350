"""A process that keeps LiveKit rooms connected in a background loop exits cleanly: the loop
leaves its rooms before the SDK disposes its native runtime (a room still connected then can
abort the process after all its work passed, status 134)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.unit.livekit_dev import KEY, SECRET, dev_server

SCRIPT = """
import json, sys
from livekit import api
from livekit.rtc._ffi_client import FfiClient
from lkchaos.livekit.background import BackgroundLoop, new_room

url, key, secret, out = sys.argv[1:5]
seen = {}

async def join():
    global room
    room = new_room()  # a room belongs to the loop it is created on
    token = (api.AccessToken(key, secret).with_identity("kept")
             .with_grants(api.VideoGrants(room_join=True, room="exit-guard")).to_jwt())
    await room.connect(url.replace("http", "ws", 1), token)

async def leave():
    seen["runtime_disposed"] = FfiClient._ffi_disposed
    seen["connected"] = room.isconnected()
    await room.disconnect()
    with open(out, "w") as f:
        json.dump(seen, f)

loop = BackgroundLoop("lkchaos-test", leave)
loop.run(join(), 30)
print("connected; exiting without leaving", flush=True)
"""


def test_rooms_kept_in_a_background_loop_are_left_before_the_runtime_goes(tmp_path: Path) -> None:
    out = tmp_path / "seen.json"
    with dev_server(tmp_path) as url:
        done = subprocess.run([sys.executable, "-c", SCRIPT, url, KEY, SECRET, str(out)],
                              capture_output=True, text=True, timeout=90)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "connected; exiting" in done.stdout
    assert "panic" not in done.stderr.lower(), done.stderr[-2000:]
    assert json.loads(out.read_text()) == {"runtime_disposed": False, "connected": True}


def test_a_stopped_loop_refuses_work_at_once() -> None:
    import pytest

    from lkchaos.livekit.background import BackgroundLoop, LoopClosed

    async def nothing() -> None:
        return None

    loop = BackgroundLoop("lkchaos-test-stopped", nothing)
    assert loop.run(nothing(), 5) is None
    loop.close()
    with pytest.raises(LoopClosed, match="exiting"):
        loop.run(nothing(), 5)


RTC_LOOP_SCRIPT = """
import asyncio, json, sys, threading
from livekit import api
from lkchaos.livekit.background import LoopClosed, new_room, run_rtc

url, key, secret, out = sys.argv[1:5]
seen = {"loops": [], "threads": [], "joined": [], "inside": 0, "all_in": False, "left": 0}
everyone = None

def token(room):
    return (api.AccessToken(key, secret).with_identity("visitor-" + room)
            .with_grants(api.VideoGrants(room_join=True, room=room)).to_jwt())

async def visit(room, hold, together=0):
    global everyone
    everyone = everyone or asyncio.Event()
    joined = new_room()
    await joined.connect(url.replace("http", "ws", 1), token(room))
    seen["loops"].append(id(asyncio.get_running_loop()))
    seen["threads"].append(threading.current_thread().name)
    seen["joined"].append(room)
    seen["inside"] += 1
    try:
        if together:  # only rooms held at once on one loop can all be in together
            if seen["inside"] >= together:
                everyone.set()
            await asyncio.wait_for(everyone.wait(), 30)
            seen["all_in"] = True
        await asyncio.sleep(hold)
        return room
    finally:
        await joined.disconnect()
        seen["inside"] -= 1
        seen["left"] += 1
        with open(out, "w") as f:
            json.dump(seen, f)

results = []
threads = [threading.Thread(target=lambda n=n: results.append(run_rtc(visit(f"rtc-{n}", 0, 3), 60)))
           for n in range(3)]
for t in threads:
    t.start()
for t in threads:
    t.join()
assert sorted(results) == ["rtc-0", "rtc-1", "rtc-2"], results
try:
    run_rtc(visit("rtc-slow", 3600), 5)
except TimeoutError as exc:
    seen["timeout"] = str(exc)
def wait_for(condition):
    for _ in range(400):
        if condition():
            return
        threading.Event().wait(0.05)
    raise SystemExit(f"gave up waiting: {seen}")
wait_for(lambda: seen["left"] == 4)  # cancelled, it left its room
async def own_timeout():
    raise TimeoutError("its own")
try:
    run_rtc(own_timeout(), 5)
except TimeoutError as exc:
    seen["own"] = str(exc)
def keep():
    try:
        run_rtc(visit("rtc-kept", 3600), 3600)
    except LoopClosed as exc:
        print("kept:", exc, flush=True)
kept = threading.Thread(target=keep, daemon=True)
kept.start()
wait_for(lambda: "rtc-kept" in seen["joined"])
print("in rooms; exiting without leaving", flush=True)
"""


def test_room_work_from_many_threads_runs_on_one_loop_and_is_left(tmp_path: Path) -> None:
    """Rooms joined from several threads at once share this process's one rtc loop; work
    past its bound is cancelled and leaves its room, and a room still held at exit is left
    before the runtime goes (the exit status is 0, no panic)."""
    out = tmp_path / "seen.json"
    with dev_server(tmp_path) as url:
        done = subprocess.run([sys.executable, "-c", RTC_LOOP_SCRIPT, url, KEY, SECRET, str(out)],
                              capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "in rooms; exiting" in done.stdout, done.stderr[-2000:]
    assert "kept: lkchaos-rtc: the process is exiting; the work was ended" in done.stdout
    assert "panic" not in done.stderr.lower(), done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    seen = json.loads(out.read_text())
    assert len(set(seen["loops"])) == 1 and set(seen["threads"]) == {"lkchaos-rtc"}, seen
    assert seen["all_in"], seen  # the three were in their rooms at once
    assert seen["timeout"] == "LiveKit room work did not finish in 5 s", seen
    assert seen["own"] == "its own", seen  # a coroutine's own TimeoutError is its own
    assert seen["left"] == 5 and seen["inside"] == 0, seen  # three, the slow one, the kept one


RESAMPLE_SCRIPT = """
import atexit, json, sys
import numpy as np
from livekit.rtc._ffi_client import FfiClient
from lkchaos.livekit import background
from lkchaos.voice import audio

out = sys.argv[1]
tone = (np.sin(np.arange(4800) / 10) * 3000).astype(np.int16).tobytes()
resampled = audio._resample(tone, 48000, 16000)

def seen():  # registered last, so it runs first: what the exit hooks will find
    with open(out, "w") as f:
        json.dump({"samples": len(resampled), "guarded": background._hooked,
                   "runtime_disposed": FfiClient._ffi_disposed}, f)

atexit.register(seen)
"""


def test_a_process_that_only_resamples_guards_its_exit(tmp_path: Path) -> None:
    """A transcription (a load ramp's judge) starts the SDK's native runtime through its
    resampler, with no room: the exit guard is registered then too (a ramp once ended by an
    abort in the runtime's exit after recording every step)."""
    out = tmp_path / "seen.json"
    done = subprocess.run([sys.executable, "-c", RESAMPLE_SCRIPT, str(out)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(out.read_text()) == {"samples": 1600, "guarded": True,
                                           "runtime_disposed": False}  # fmt: skip
