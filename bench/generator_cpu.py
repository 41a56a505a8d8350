"""CPU per simulated participant: lkchaos's held callers beside LiveKit's CLI, ``lk``.

    .venv/bin/python bench/generator_cpu.py [--callers 4] [--duration-s 60] [--engine both]

Runs one after the other, on the same machine and the same LiveKit deployment:

1. ``lkchaos load --steps N --engine python``: N held callers on LiveKit's Python SDK (each
   publishes its questions, subscribes to the agent's reply and has a sample of replies
   transcribed) in the stack's prober; the prober container's CPU over the step, from the
   container engine, divided by N (the transcription included).
2. ``lkchaos load --steps N --engine go``: the same callers on LiveKit's Go SDK
   (``stack/tools/heldcallers``); its process's CPU over the step divided by N, and apart
   from it the lkchaos process's (judging, decoding and transcribing every 5th reply).
3. ``lk load-test --audio-publishers N``: LiveKit's CLI (built from its Go module at
   ``LK_VERSION`` into lkchaos's build cache when missing), publishing audio only, into the
   first LiveKit node's port; its process CPU (user + system, from the kernel's accounting of
   the finished child) over its wall time, divided by N. Its publishers loop an Ogg Opus file
   embedded in the CLI; the Go module proxy's copy of the module holds Git LFS pointers in
   their place (130-byte text files that ``lk`` fails to parse: its publishers then publish a
   track that carries nothing), so the build puts real ones there: speech from espeak-ng,
   Opus at 24 kbit/s in 20 ms packets, one packet per Ogg page as LiveKit's own files are
   read (``lk`` sends a page as one sample).
4. ``lk perf agent-load-test --rooms N``: LiveKit's own agent load tester (a participant per
   room echoing the agent's audio back to it), its process CPU likewise.

Needs the reference stack up, and for the first run Go, a C++ compiler and
``portaudio19-dev`` (it builds ``lk``). Prints the figures and the ratios to ``lk
load-test``'s (the Go callers' with and without their judging); ``--json FILE`` keeps them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from lkchaos.load.gocallers import OPUS_BITRATE, OPUS_OPTIONS, opus_frames  # noqa: E402
from lkchaos.settings import Settings  # noqa: E402
from lkchaos.stack.build import GoBinary, _copy_module, cache_dir  # noqa: E402

LK_MODULE = "github.com/livekit/livekit-cli/v2"
LK_VERSION = "v2.18.2"  # the Go module proxy serves exact versions only (no version list)
#: lk v2.18.2 requires a pseudo-version of livekit/protocol that the proxy refuses; the next
#: release builds in its place.
PROTOCOL = "github.com/livekit/protocol@v1.50.0"


#: What the publishers' audio says (looped by ``lk``), about 12 s of speech.
LK_SPEECH = ("What is the weather like in Paris today? Please book a table for two at eight. "
             "Can you read me the last message again? Thank you, that is all for now.")
LFS_POINTER = b"version https://git-lfs.github.com/spec/"


def opus_ogg(samples: Any, path: Path, bitrate: int = OPUS_BITRATE) -> int:
    """48 kHz mono int16 ``samples`` written to ``path`` as Ogg Opus (libopus and
    libavformat's Ogg muxer, through PyAV), encoded as the Go callers' questions are: 20 ms
    packets, each on its own Ogg page. Returns the number of audio packets."""
    import av

    packets = 0
    # page_duration is in microseconds: a page per 20 ms packet.
    with av.open(str(path), "w", format="ogg", options={"page_duration": "20000"}) as out:
        stream = out.add_stream("libopus", rate=48000, layout="mono")
        stream.bit_rate = bitrate
        stream.codec_context.options = dict(OPUS_OPTIONS)
        for frame in [*opus_frames(samples), None]:  # None: flush the encoder
            for packet in stream.encode(frame):
                out.mux(packet)
                packets += 1
    return packets


def real_audio_resources(work: Path) -> int:
    """Replace the Git LFS pointers among ``lk``'s embedded Ogg files under ``work`` with
    real Ogg Opus speech; returns how many were replaced (0 where the module had real ones)."""
    from lkchaos.voice.audio import speech

    pointers = [p for p in sorted((work / "pkg" / "provider" / "resources").glob("*.ogg"))
                if p.read_bytes().startswith(LFS_POINTER)]  # fmt: skip
    if pointers:
        rendered = work / "speech.ogg"
        opus_ogg(speech(LK_SPEECH), rendered)
        ogg = rendered.read_bytes()
        rendered.unlink()
        for pointer in pointers:
            pointer.write_bytes(ogg)
    return len(pointers)


def lk_binary() -> Path:
    """``lk`` at the pinned version, built once into lkchaos's build cache, with real audio
    in place of the LFS pointers of its embedded Ogg files (:func:`real_audio_resources`). It
    needs CGO: its audio packages link PortAudio (Debian's ``portaudio19-dev``, with the
    ``portaudio_system`` tag) and compile WebRTC's audio processing (C++, a few minutes)."""
    target = cache_dir() / "bin" / f"lk-{LK_VERSION}-opus"
    if target.is_file():
        return target
    print(f"building lk from {LK_MODULE}@{LK_VERSION} (CGO, about 8 min once)", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "src"
        _copy_module(GoBinary("lk", LK_MODULE, LK_VERSION, "./cmd/lk", image=""), work)
        replaced = real_audio_resources(work)
        print(f"lk's embedded audio: {replaced} Git LFS pointers replaced by Ogg Opus speech",
              flush=True)
        env = {**os.environ, "CGO_ENABLED": "1", "GOFLAGS": "-mod=mod"}
        subprocess.run(["go", "mod", "edit", f"-replace=github.com/livekit/protocol={PROTOCOL}"],
                       cwd=work, check=True, timeout=60)
        partial = target.with_suffix(".partial")
        target.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["go", "build", "-tags", "portaudio_system", "-trimpath", "-o",
                        str(partial), "./cmd/lk"], cwd=work, env=env, check=True, timeout=3600)
        partial.replace(target)
    return target


def held_callers(callers: int, duration_s: float, engine: str = "python",
                 transcribe_every: int = 5, judge_cpu: float | None = None
                 ) -> dict[str, Any]:  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ramp.json"
        subprocess.run(
            [str(ROOT / ".venv" / "bin" / "lkchaos"), "load", "--steps", str(callers),
             "--step-s", f"{duration_s:g}", "--warmup-s", "10", "--keep-going", "--json",
             str(out), "--engine", engine, "--no-history", "--transcribe-every",
             str(transcribe_every)]
            + ([] if judge_cpu is None else ["--judge-cpu", f"{judge_cpu:g}"]),
            cwd=ROOT, check=False, timeout=duration_s * 4 + 300,
        )  # fmt: skip
        if not out.is_file():
            raise SystemExit("lkchaos load wrote no figures: is the stack up?")
        ramp = json.loads(out.read_text())
    step = ramp["steps"][0]
    if engine == "go":  # the Go process (the calls) and this machine's judging, apart
        generator = step["generator"]
        return {"callers": callers, "connected": step.get("connected"),
                "turns": step.get("turns"), "answered_pct": step.get("answered_pct"),
                "cpu_cores": generator["cpu_cores"]["media"],
                "cpu_cores_per_participant": generator["cpu_cores_per_caller"]["media"],
                "judging_cpu_cores_per_participant":
                    generator["cpu_cores_per_caller"]["judging"],
                "checked_by": step.get("checked_by"),
                "samples_over_budget": step.get("samples_over_budget")}  # fmt: skip
    containers = (step.get("usage") or {}).get("containers") or {}
    prober = next((v for k, v in containers.items() if "prober" in k), None)
    if prober is None:
        raise SystemExit(f"no prober container in the step's usage: {sorted(containers)}")
    return {"callers": callers, "connected": step.get("connected"),
            "answered_pct": step.get("answered_pct"), "cpu_cores": prober["cpu_cores"],
            "cpu_cores_per_participant": round(prober["cpu_cores"] / callers, 4),
            "memory_mib": prober["memory_mib"]}  # fmt: skip


def livekit_packets_in(window_s: float) -> float | None:
    """Packets a second that LiveKit's nodes received (RTP and RTCP, all participants) over
    the last ``window_s`` seconds, from the stack's Prometheus (``livekit_packet_total``):
    the evidence that a generator's participants sent media at all. None without Prometheus."""
    from lkchaos.prometheus.client import Prometheus

    url = Settings.load().prometheus_url
    if not url:
        return None
    time.sleep(16)  # one scrape (15 s) past the run's end
    window = int(window_s) + 16
    data, _ = Prometheus(url).query(
        f'sum(increase(livekit_packet_total{{direction="incoming"}}[{window}s]))')
    result = data.get("result") or []
    return round(float(result[0]["value"][1]) / window, 1) if result else None


def run_lk(lk: Path, command: list[str], flags: list[str],
           duration_s: float) -> tuple[float, float, Any]:  # fmt: skip
    """``lk COMMAND FLAGS`` against the first LiveKit node with the target's keys: (CPU
    seconds of the process, wall seconds, the finished process). Exits when ``lk`` fails."""
    settings = Settings.load()
    key, secret = settings.require_keys()
    url = settings.livekit_node_urls[0].replace("http://", "ws://")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.monotonic()
    done = subprocess.run(
        [str(lk), *command, "--url", url, "--api-key", key, "--api-secret", secret, *flags],
        capture_output=True, text=True, check=False, timeout=duration_s + 120,
    )  # fmt: skip
    wall = time.monotonic() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"lk {' '.join(command)} failed ({done.returncode}): "
                         f"{done.stderr[-2000:]}")  # fmt: skip
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu_s, wall, done


def lk_publishers(lk: Path, publishers: int, duration_s: float) -> dict[str, Any]:
    cpu_s, wall, done = run_lk(
        lk, ["load-test"], ["--room", f"lkchaos-lk-load-{os.getpid()}", "--audio-publishers",
                            str(publishers), "--subscribers", "0", "--duration",
                            f"{int(duration_s)}s"],
        duration_s,
    )  # fmt: skip
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"publishers": publishers, "wall_s": round(wall, 1),
            "cpu_cores": round(cpu_s / wall, 4),
            "cpu_cores_per_participant": round(cpu_s / wall / publishers, 4),
            "max_rss_mib": round(after.ru_maxrss / 1024, 1),
            "livekit_packets_in_per_s": livekit_packets_in(wall),
            "summary": done.stdout[-1500:]}  # fmt: skip


def lk_agent_load_test(lk: Path, rooms: int, duration_s: float) -> dict[str, Any]:
    """``lk perf agent-load-test``: LiveKit's own agent load tester, one participant per room
    that echoes the agent's audio back to it (nothing asked, nothing checked)."""
    cpu_s, wall, _done = run_lk(
        lk, ["perf", "agent-load-test"], ["--rooms", str(rooms), "--agent-name",
                                          Settings.load().agent_name, "--duration",
                                          f"{int(duration_s)}s"],
        duration_s,
    )  # fmt: skip
    return {"rooms": rooms, "wall_s": round(wall, 1), "cpu_cores": round(cpu_s / wall, 4),
            "cpu_cores_per_participant": round(cpu_s / wall / rooms, 4),
            "livekit_packets_in_per_s": livekit_packets_in(wall)}  # fmt: skip


def one_round(lk: Path, engines: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """lkchaos's callers of each engine, then ``lk load-test``'s publishers, and their ratios."""
    ours = {engine: held_callers(args.callers, args.duration_s, engine, args.transcribe_every,
                                 args.judge_cpu)
            for engine in engines}  # fmt: skip
    theirs = lk_publishers(lk, args.callers, args.duration_s)
    per_lk = theirs["cpu_cores_per_participant"]
    figures: dict[str, Any] = {f"lkchaos_{engine}_callers": f for engine, f in ours.items()}
    figures["lk_load_test"] = theirs
    for engine, f in ours.items():
        figures[f"ratio_{engine}_to_lk"] = (round(f["cpu_cores_per_participant"] / per_lk, 2)
                                            if per_lk else None)  # fmt: skip
        if "judging_cpu_cores_per_participant" in f and per_lk:
            whole = f["cpu_cores_per_participant"] + f["judging_cpu_cores_per_participant"]
            figures[f"ratio_{engine}_with_judging_to_lk"] = round(whole / per_lk, 2)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--callers", type=int, default=4, help="participants in each run")
    parser.add_argument("--duration-s", type=float, default=60.0, help="each run's length")
    parser.add_argument("--engine", choices=["python", "go", "both"], default="both",
                        help="which lkchaos callers to measure beside lk (default both)")
    parser.add_argument("--transcribe-every", type=int, default=5,
                        help="lkchaos's callers transcribe every Nth reply (lkchaos load's "
                             "default 5; 0: every reply judged by the agent's report)")
    parser.add_argument("--judge-cpu", type=float, default=None,
                        help="the Go callers' judge budget, cores per caller (lkchaos load's "
                             "--judge-cpu; default: lkchaos load's default)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure lkchaos's callers then lk this many times, one after "
                             "the other (runs differ by more than the figures compared: "
                             "alternate them and compare round by round)")
    parser.add_argument("--json", dest="json_file", help="write the figures to this file")
    args = parser.parse_args()
    if args.callers < 1 or args.duration_s < 10 or args.rounds < 1:
        parser.error("--callers and --rounds must be >= 1 and --duration-s >= 10")
    lk = lk_binary()
    engines = ["python", "go"] if args.engine == "both" else [args.engine]
    rounds = [one_round(lk, engines, args) for _ in range(args.rounds)]
    figures: dict[str, Any] = dict(rounds[0])
    if args.rounds > 1:
        figures["rounds"] = rounds
        for key in rounds[0]:
            if key.startswith("ratio_"):
                values = sorted(r[key] for r in rounds if r.get(key) is not None)
                figures[f"{key}_median"] = values[len(values) // 2] if values else None
    figures["lk_agent_load_test"] = lk_agent_load_test(lk, args.callers, args.duration_s)
    figures["lk_version"] = LK_VERSION
    print(json.dumps({k: v for k, v in figures.items() if k != "summary"}, indent=2))
    if args.json_file:
        Path(args.json_file).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
