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
