"""The CPU floor of one audio track published through LiveKit's Python rtc SDK.

    .venv/bin/python bench/publisher_floor.py [--publishers 4] [--duration-s 20]
                                               [--feed silence|none|muted] [--dtx on|off]

N participants, each in its own room, each publishing one microphone track through the rtc
SDK (the same SDK as lkchaos's callers), into the first LiveKit node's port; nobody
subscribes and no agent is dispatched. ``--feed``: ``silence`` captures 50 ms blocks of
zeros in real time (what a caller does between its questions), ``none`` captures nothing
(the SDK fills in silence itself), ``muted`` mutes the track. Measured over
``--duration-s`` after a 5 s settle: this process's CPU (user + system) and, per thread
name, the kernel's accounting of its threads (``/proc/self/task``): WebRTC's Opus encoder
runs on ``AudioEncoderQue``, the SDK's silence on ``AudioSourceCapt``.

Answers how much of a held caller's CPU (``bench/generator_cpu.py``) is the SDK's
publishing path, which lkchaos cannot change, and how much is lkchaos's own. Needs the
reference stack (or ``LKCHAOS_*`` settings of a deployment) and the ``voice`` extra.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import numpy as np  # noqa: E402
from livekit import api, rtc  # noqa: E402

from lkchaos.settings import Settings  # noqa: E402

RATE = 48000
BLOCK = RATE // 20  # 50 ms, as lkchaos's Speaker
TICKS = os.sysconf("SC_CLK_TCK")


def thread_ticks() -> Counter[str]:
    """CPU ticks (user + system) of this process's threads, summed per thread name."""
    found: Counter[str] = Counter()
    for task in Path("/proc/self/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended
        found[name] += int(fields[11]) + int(fields[12])
    return found


async def publish(index: int, url: str, key: str, secret: str, feed: str, dtx: bool | None,
                  until: float) -> None:  # fmt: skip
    token = (api.AccessToken(key, secret).with_identity(f"floor-{index}")
             .with_grants(api.VideoGrants(room_join=True, room=f"lkchaos-floor-{index}"))
             .to_jwt())  # fmt: skip
    room = rtc.Room()
    await room.connect(url, token)
    source = rtc.AudioSource(RATE, 1, queue_size_ms=200)
    track = rtc.LocalAudioTrack.create_audio_track("floor-mic", source)
    options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
    if dtx is not None:
        options.dtx = dtx
    await room.local_participant.publish_track(track, options)
    if feed == "muted":
        track.mute()
    silence = np.zeros(BLOCK, dtype=np.int16).tobytes()
    next_at = time.monotonic()
    try:
        while time.monotonic() < until:
            if feed == "silence":
                await source.capture_frame(rtc.AudioFrame(silence, RATE, 1, BLOCK))
            next_at += BLOCK / RATE
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    finally:
        await source.aclose()
        await room.disconnect()


async def measure(args: argparse.Namespace) -> dict[str, object]:
    settings = Settings.load()
    key, secret = settings.require_keys()
    url = settings.livekit_node_urls[0].replace("http", "ws", 1)
    dtx = None if args.dtx == "default" else args.dtx == "on"
    settle_s = 5.0
    until = time.monotonic() + settle_s + args.duration_s + 1.0
    tasks = [asyncio.create_task(publish(i, url, key, secret, args.feed, dtx, until))
             for i in range(args.publishers)]  # fmt: skip
    await asyncio.sleep(settle_s)
    before, threads_before, started = (
        resource.getrusage(resource.RUSAGE_SELF),
        thread_ticks(),
        time.monotonic(),
    )
    await asyncio.sleep(args.duration_s)
    after, threads_after = resource.getrusage(resource.RUSAGE_SELF), thread_ticks()
    wall = time.monotonic() - started
    await asyncio.gather(*tasks)
    cores = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / wall
    per_thread = {name: round((threads_after[name] - threads_before[name]) / TICKS / wall, 4)
                  for name in threads_after}  # fmt: skip
    return {
        "publishers": args.publishers,
        "feed": args.feed,
        "dtx": args.dtx,
        "duration_s": round(wall, 1),
        "cpu_cores": round(cores, 4),
        "cpu_cores_per_publisher": round(cores / args.publishers, 4),
        "per_thread_cores": dict(
            sorted(((k, v) for k, v in per_thread.items() if v > 0), key=lambda kv: -kv[1])
        ),  # fmt: skip
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--publishers", type=int, default=4)
    parser.add_argument("--duration-s", type=float, default=20.0)
    parser.add_argument("--feed", choices=("silence", "none", "muted"), default="silence")
    parser.add_argument("--dtx", choices=("default", "on", "off"), default="default")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()
    if args.publishers < 1 or args.duration_s <= 0:
        parser.error("--publishers must be at least 1 and --duration-s positive")
    result = asyncio.run(measure(args))
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
