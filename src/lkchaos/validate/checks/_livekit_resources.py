"""The LiveKit checks' configuration reading and resource sampling: LiveKit's own config
(limits), and each node's CPU and memory over a window, from Prometheus's history or the
container engine (:mod:`lkchaos.validate.checks.livekit` uses them)."""

from __future__ import annotations

import time
from typing import Any

from lkchaos.settings import Settings
from lkchaos.validate.model import Context, Finding

# --- LiveKit's configuration --------------------------------------------------------------


def livekit_config(ctx: Context) -> tuple[dict[str, Any], str]:
    """LiveKit's configuration and where it was read: the first node container's
    ``LIVEKIT_CONFIG`` or ``--config`` file (through the container engine), else the
    reference stack's rendered ``livekit.yaml`` in the state folder."""
    result: tuple[dict[str, Any], str] = ctx.fact("livekit.config",
                                                  lambda: _read_config(ctx.settings))
    return result


def _read_config(settings: Settings) -> tuple[dict[str, Any], str]:
    import io
    import tarfile
    from pathlib import Path

    import yaml

    from lkchaos.docker.client import docker_session, runtime_containers

    problem = ""
    names = settings.roles.get("livekit_node") or ()
    try:
        with docker_session() as client:
            containers = runtime_containers(client, settings)
            for name in names:
                container = containers.get(name)
                if container is None:
                    continue
                config = container.attrs.get("Config") or {}
                for entry in config.get("Env") or []:
                    key, _, value = str(entry).partition("=")
                    if key == "LIVEKIT_CONFIG" and value.strip():
                        return dict(yaml.safe_load(value) or {}), f"{name}'s LIVEKIT_CONFIG"
                args = [str(a) for a in
                        (config.get("Cmd") or []) + (container.attrs.get("Args") or [])]
                for index, arg in enumerate(args):
                    path = arg.split("=", 1)[1] if arg.startswith("--config=") else (
                        args[index + 1] if arg == "--config" and index + 1 < len(args) else "")
                    if path:
                        stream, _ = container.get_archive(path)
                        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
                            member = tar.next()
                            handle = tar.extractfile(member) if member else None
                            text = handle.read().decode() if handle else ""
                        return dict(yaml.safe_load(text) or {}), f"{name}:{path}"
                problem = f"{name} has neither LIVEKIT_CONFIG nor --config"
    except Exception as exc:  # fall back to the reference stack's file below
        problem = f"{type(exc).__name__}: {exc}"[:200]
    rendered = Path(settings.state_dir) / "config" / "livekit.yaml"
    if rendered.is_file():
        return dict(yaml.safe_load(rendered.read_text()) or {}), str(rendered)
    why = problem or "no LiveKit node container"
    raise FileNotFoundError(f"LiveKit's configuration could not be read ({why}) and there is "
                            f"no {rendered}")


# --- resources: CPU and memory per node ---------------------------------------------------

#: Seconds between the two container-engine samples.
WINDOW_S = 3.0
CPU_LIMIT = 0.50
#: Memory growth that fails "stable" (between two engine samples, or between the last two
#: floors), and the rise of the floor over three slices that is a leak.
GROWTH_LIMIT = 0.10
FLOOR_GROWTH = 0.25
LEAK_GROWTH = 0.20
#: Prometheus: memory floors over three slices of this many seconds (stability compares the
#: last two, a leak needs all three rising).
SLICE_S = 300
SLICE = f"{SLICE_S}s"
STABLE_MIN_S = 2 * SLICE_S
LEAK_MIN_S = 3 * SLICE_S
#: A LiveKit process's first seconds, left out of the history judged: its memory warms up
#: after a start (a fresh reference-stack node's floor rose 49 -> 66 MiB over its first
#: 10 min), which is no leak.
WARMUP_S = 300


def history_s(span_s: float, uptime_s: float) -> float:
    """Seconds of a node's memory history that can be judged: what Prometheus holds
    (``span_s``), from the end of the process's first :data:`WARMUP_S` seconds on."""
    return max(0.0, min(span_s, uptime_s - WARMUP_S))


def samples(ctx: Context) -> dict[str, Any]:
    """Per node: CPU share and memory, from Prometheus (with its history) when the target
    has one, else from the container engine over :data:`WINDOW_S` seconds."""

    def compute() -> dict[str, Any]:
        if ctx.settings.prometheus_url:
            try:
                return _from_prometheus(ctx)
            except Exception as exc:  # fall back to the engine, saying why
                fallback = f"Prometheus: {type(exc).__name__}: {exc}"[:200]
        else:
            fallback = "the target has no Prometheus"
        found = _from_engine(ctx)
        found["why_engine"] = fallback
        return found

    result: dict[str, Any] = ctx.fact("livekit.resources", compute)
    return result


def _from_engine(ctx: Context) -> dict[str, Any]:
    import os
    from concurrent.futures import ThreadPoolExecutor

    from lkchaos.docker.client import docker_session, runtime_containers

    names = list(ctx.settings.roles.get("livekit_node") or ())
    with docker_session() as client:
        containers = runtime_containers(client, ctx.settings)
        chosen = {n: containers[n] for n in names if n in containers}
        if not chosen:
            raise LookupError(f"no LiveKit node container among {sorted(containers)} "
                              f"(roles livekit_node: {names})")  # fmt: skip

        def read(container: Any) -> dict[str, Any]:
            # one_shot: the current figures, without the engine's own second sample.
            return dict(container.stats(stream=False, one_shot=True))

        with ThreadPoolExecutor(len(chosen)) as pool:
            first = dict(zip(chosen, pool.map(read, chosen.values()), strict=True))
            time.sleep(WINDOW_S)
            second = dict(zip(chosen, pool.map(read, chosen.values()), strict=True))
    out: dict[str, Any] = {"source": "container engine", "window_s": WINDOW_S, "nodes": {}}
    for name in chosen:
        a, b = first[name], second[name]
        ca, cb = a["cpu_stats"], b["cpu_stats"]
        cpu = cb["cpu_usage"]["total_usage"] - ca["cpu_usage"]["total_usage"]
        system = cb.get("system_cpu_usage", 0) - ca.get("system_cpu_usage", 0)
        out["nodes"][name] = {"cpu": cpu / system if system > 0 else 0.0,
                              "memory_start": _memory(a), "memory_end": _memory(b),
                              "cores": b["cpu_stats"].get("online_cpus") or os.cpu_count()}
    return out


def _memory(stats: dict[str, Any]) -> int:
    from lkchaos.load.usage import memory_bytes

    return memory_bytes(stats)


def _from_prometheus(ctx: Context) -> dict[str, Any]:
    import os

    from lkchaos.prometheus.client import Prometheus

    prom = Prometheus(ctx.settings.prometheus_url)
    selector = '{job=~".*livekit.*"}'
    memory = f"process_resident_memory_bytes{selector}"
    timeout = min(ctx.timeout_s, 5.0)

    def by_instance(expr: str) -> dict[str, float]:
        data, _ = prom.query(expr, timeout)
        return {str(r["metric"].get("instance", "?")): float(r["value"][1])
                for r in data.get("result") or []}  # fmt: skip

    now = by_instance(memory)
    if not now:
        raise LookupError("no process_resident_memory_bytes series of a job named like "
                          "'livekit': does Prometheus scrape LiveKit's prometheus port?")
    cores = by_instance("count by (instance) (count by (instance, cpu) "
                        "(node_cpu_seconds_total))")  # fmt: skip
    host_cores = max(cores.values()) if cores else float(os.cpu_count() or 1)
    cpu = by_instance(f"rate(process_cpu_seconds_total{selector}[1m])")
    # The floor (lowest value, after garbage collection) of each of the last three slices,
    # oldest first: a leak raises the floor slice after slice, load and GC only the peaks.
    floors = [by_instance(f"min_over_time({memory}[{SLICE}]"
                          + (f" offset {SLICE_S * back}s)" if back else ")"))
              for back in (2, 1, 0)]  # fmt: skip
    uptime = by_instance(f"time() - process_start_time_seconds{selector}")
    span = by_instance(f"time() - min_over_time(timestamp({memory})[{3 * SLICE_S}s:15s])")
    out: dict[str, Any] = {"source": "Prometheus", "nodes": {}, "warmup_s": WARMUP_S}
    for instance, current in now.items():
        history = history_s(span.get(instance, 0.0), uptime.get(instance, float("inf")))
        out["nodes"][instance] = {"cpu": cpu.get(instance, 0.0) / host_cores,
                                  "memory_end": int(current), "cores": host_cores,
                                  "floors": [f.get(instance) for f in floors],
                                  "history_s": round(history, 1)}  # fmt: skip
    out["window_s"] = min(n["history_s"] for n in out["nodes"].values())
    return out


def judge_cpu(seen: dict[str, Any]) -> Finding:
    """Each node's CPU share under :data:`CPU_LIMIT`."""
    text = ", ".join(f"{n} {v['cpu']:.1%}" for n, v in seen["nodes"].items())
    high = [n for n, v in seen["nodes"].items() if v["cpu"] >= CPU_LIMIT]
    where = ("over the last minute from Prometheus" if seen["source"] == "Prometheus"
             else f"over {seen['window_s']:.0f} s from {seen['source']}")
    return Finding("fail" if high else "pass", f"CPU (share of the host's cores) {where}: "
                   f"{text} (limit {CPU_LIMIT:.0%})", seen)  # fmt: skip


def judge_memory(seen: dict[str, Any], leak: bool) -> Finding:
    """Memory stable (``leak=False``) or not leaking (``leak=True``); a warning when the
    window is too short to judge.

    From the container engine: the growth between two samples :data:`WINDOW_S` apart (over
    :data:`GROWTH_LIMIT` fails; a leak cannot be judged in seconds). From Prometheus: the
    memory floor of each of the last three :data:`SLICE_S` slices; unstable when the last
    floor is :data:`FLOOR_GROWTH` over the one before, leaking when the floor rose slice after
    slice by :data:`LEAK_GROWTH` in all. A node with less history than that after its first
    :data:`WARMUP_S` seconds (memory warms up after a start) is a warning, not a fail."""
    parts, bad = [], []
    engine = seen["source"] != "Prometheus"
    needed = (LEAK_MIN_S if leak else STABLE_MIN_S) if not engine else 10.0
    for name, v in seen["nodes"].items():
        end = max(v["memory_end"], 1)
        if engine:
            change = (v["memory_end"] - v["memory_start"]) / max(v["memory_start"], 1)
            parts.append(f"{name} {end / 2**20:.0f} MiB ({change:+.1%})")
            over = change > GROWTH_LIMIT and not leak
        else:
            floors = v["floors"]
            known = [f for f in floors if f]
            shown = " -> ".join(f"{f / 2**20:.0f}" for f in known)
            parts.append(f"{name} {end / 2**20:.0f} MiB (floors {shown or 'none'} MiB)")
            if v["history_s"] < needed or len(known) < (3 if leak else 2):
                over = False
            elif leak:
                over = floors[0] < floors[1] < floors[2] and floors[2] > floors[0] * (
                    1 + LEAK_GROWTH)
            else:
                over = floors[2] > floors[1] * (1 + FLOOR_GROWTH)
        if over:
            bad.append(name)
    text = f"over {seen['window_s']:.0f} s from {seen['source']}: {', '.join(parts)}"
    if bad:
        return Finding("fail", f"memory grows on {', '.join(bad)} {text}", seen)
    if (leak and engine) or seen["window_s"] < needed:
        after = (f", after a node's first {seen['warmup_s'] / 60:.0f} min"
                 if seen.get("warmup_s") else "")
        return Finding("warn", f"window too short to judge (needs {needed / 60:.0f} min of "
                       f"history{after}) {text}", seen)  # fmt: skip
    return Finding("pass", f"no growth {text}", seen)
