"""A voice load ramp: held callers in steps, each step measured, until one breaks.

Each step starts ``n`` held calls (:mod:`lkchaos.voice.held`: each a caller that joins once
and keeps asking), their starts ``stagger_s`` apart, lets them settle for ``warmup_s``, and
measures every turn that ends in the next ``step_s`` seconds: turns answered, turn latency
p50/p95/p99 (end of the caller's speech as played out to the first reply audio), join and
dispatch times, each container's CPU and memory over the step (the container engine), and
LiveKit's own packet loss and jitter (its Prometheus histograms, where a Prometheus URL is
set). Then the step's calls end and the next step starts. The **knee** is the first step
whose p95 passes ``p95_budget_s`` or whose answered share falls under
``min_answered_pct``; the ramp stops there (``stop_at_knee``).

Bounded: at most ``max_callers`` callers and ``MAX_STEP_S`` per step; traffic only to the
target's LiveKit; every call is ended after its step, and the rooms left with a participant
are listed afterwards (``leftover``; none is the goal).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from lkchaos.errors import ConfigError
from lkchaos.load.budget import DEFAULT_CORES_PER_CALLER, check_cores
from lkchaos.settings import Settings
from lkchaos.voice import held
from lkchaos.voice.calls import MAX_CALLS
from lkchaos.voice.session import HELD_AGENT_TIMINGS, Options

#: The design notes' steps (concurrent callers).
DEFAULT_STEPS = (10, 25, 50, 100, 200)
MAX_STEP_S = 3600.0
#: How often the step's calls are read (seconds).
POLL_S = 1.0
#: Longest a step's end waits for verdicts still held back (a batch of sampled replies being
#: transcribed: a few seconds) before its figures are made.
SETTLE_S = 30.0
Say = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class Plan:
    """A ramp: ``steps`` (callers per step, rising), ``step_s`` measured per step after
    ``warmup_s``, the budget that finds the knee, and how callers behave."""

    steps: tuple[int, ...] = DEFAULT_STEPS
    step_s: float = 60.0
    warmup_s: float = 15.0
    p95_budget_s: float = 1.2
    min_answered_pct: float = 99.0
    transcribe_every: int = 5
    #: Cores per caller the Go callers' judge may spend transcribing sampled replies (0: no
    #: limit): :class:`lkchaos.load.budget.JudgeBudget`.
    judge_cpu: float = DEFAULT_CORES_PER_CALLER
    stagger_s: float = 0.5
    max_callers: int = 200
    stop_at_knee: bool = True

    def __post_init__(self) -> None:
        if not self.steps or any(isinstance(n, bool) or not isinstance(n, int) or n < 1
                                 for n in self.steps):  # fmt: skip
            raise ConfigError(f"steps must be whole numbers of callers >= 1, not {self.steps}")
        if list(self.steps) != sorted(set(self.steps)):
            raise ConfigError(f"steps must rise, each once: {', '.join(map(str, self.steps))}")
        if not 1 <= self.max_callers <= MAX_CALLS:
            raise ConfigError(f"max callers must be from 1 to {MAX_CALLS}")
        if max(self.steps) > self.max_callers:
            if max(self.steps) <= MAX_CALLS:
                raise ConfigError(
                    f"step {max(self.steps)} is over --max-callers ({self.max_callers}): lower "
                    f"the steps or raise --max-callers (up to {MAX_CALLS})")
            raise ConfigError(f"step {max(self.steps)} is over the {MAX_CALLS} callers a ramp "
                              f"can hold (--max-callers at most): lower the steps")  # fmt: skip
        for name, low, high in (("step_s", 5.0, MAX_STEP_S), ("warmup_s", 0.0, 600.0),
                                ("p95_budget_s", 0.05, 60.0), ("stagger_s", 0.0, 10.0),
                                ("min_answered_pct", 0.0, 100.0)):  # fmt: skip
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or not low <= value <= high:
                option = "--" + name.replace("_", "-")
                raise ConfigError(f"{name} ({option}) must be from {low:g} to {high:g}, not "
                                  f"{value!r}")
        if not 0 <= self.transcribe_every <= 1000:
            raise ConfigError("transcribe_every (--transcribe-every) must be from 0 (never) to "
                              "1000")
        try:
            check_cores(self.judge_cpu, "judge_cpu (--judge-cpu)")
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc

    def longest_s(self) -> float:
        """The ramp's longest possible duration (every step run)."""
        return sum(self.warmup_s + self.step_s + n * self.stagger_s + 30 for n in self.steps)


def parse_steps(text: str) -> tuple[int, ...]:
    """``"1,2,5"`` -> (1, 2, 5); a ConfigError that says what is wrong otherwise."""
    try:
        steps = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise ConfigError(f"--steps must be whole numbers separated by commas, not {text!r}") \
            from exc
    if not steps:
        raise ConfigError("--steps names no step")
    return steps


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile of ``values``, or None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))
    return round(ordered[int(rank) - 1], 3)


def judge(step: dict[str, Any], plan: Plan) -> list[str]:
    """Why a measured step breaks the budget (empty: it holds)."""
    why = []
    if not step["turns"]:
        why.append("no turn finished")
    elif step["answered_pct"] < plan.min_answered_pct:
        why.append(f"{step['answered_pct']:.1f} % answered, under {plan.min_answered_pct:g} %")
    p95 = step["latency_s"]["p95"]
    if p95 is not None and p95 > plan.p95_budget_s:
        why.append(f"p95 {p95:.2f} s over the budget of {plan.p95_budget_s:g} s")
    return why


def step_figures(turns: Sequence[dict[str, Any]], summaries: Sequence[dict[str, Any]],
                 callers: int, delays: Sequence[float]) -> dict[str, Any]:  # fmt: skip
    """A step's figures from its measured ``turns`` and its calls' ``summaries``."""
    answered = [t for t in turns if t.get("ok")]
    latencies = [float(t["latency_s"]) for t in answered if t.get("latency_s") is not None]
    joins, dispatches = [], []
    for summary, delay in zip(summaries, delays, strict=False):
        events = {e["event"]: e["t"] for e in reversed(summary.get("events") or [])}
        if "joined" in events:
            joins.append(max(0.0, events["joined"] - delay))
            if "agent_joined" in events:
                dispatches.append(max(0.0, events["agent_joined"] - events["joined"]))
    agent: dict[str, Any] = {}
    for key in HELD_AGENT_TIMINGS:
        values = [float(v) for t in answered
                  if isinstance(v := (t.get("agent_ms") or {}).get(key), int | float)]
        agent[key] = {"p50": percentile(values, 50), "p95": percentile(values, 95)}
    stages: dict[str, int] = {}
    checked: dict[str, int] = {}  # how the replies were checked: "audio", "agent"
    over_budget = sum(1 for turn in turns if turn.get("sample") == "over budget")
    for turn in turns:
        stages[str(turn.get("stage"))] = stages.get(str(turn.get("stage")), 0) + 1
        if turn.get("checked_by"):
            checked[str(turn["checked_by"])] = checked.get(str(turn["checked_by"]), 0) + 1
    return {
        "callers": callers,
        "connected": len(joins),
        "turns": len(turns),
        "answered": len(answered),
        "answered_pct": round(100.0 * len(answered) / len(turns), 2) if turns else 0.0,
        "latency_s": {"p50": percentile(latencies, 50), "p95": percentile(latencies, 95),
                      "p99": percentile(latencies, 99)},
        "join_s": {"p50": percentile(joins, 50), "p95": percentile(joins, 95)},
        "dispatch_s": {"p50": percentile(dispatches, 50), "p95": percentile(dispatches, 95)},
        "agent_ms": agent,
        "stages": stages,
        "checked_by": checked,
        # Sampled replies left to the agent's report: the judge's CPU budget was spent.
        "samples_over_budget": over_budget,
        "reconnects": sum(int(s.get("reconnects") or 0) for s in summaries),
    }  # fmt: skip


class Ramp:
    """Runs a :class:`Plan` against the target; :meth:`run` returns the ramp's figures."""

    def __init__(self, settings: Settings, plan: Plan, say: Say,
                 backend: held.Backend | None = None) -> None:  # fmt: skip
        self.settings, self.plan, self.say = settings, plan, say
        self.backend = backend or held.backend(settings)
        self.rooms: list[str] = []

    def run(self) -> dict[str, Any]:
        steps: list[dict[str, Any]] = []
        knee = None
        started = time.time()
        for callers in self.plan.steps:
            step = self.step(callers)
            if not step["connected"]:  # nothing was measured: the target is not there
                raise ConfigError(
                    f"no caller of the {callers}-caller step joined LiveKit "
                    f"({'; '.join(step['end_reasons']) or 'no reason given'}): is the target "
                    "up and its URL and keys right? (`lkchaos stack status` for the reference "
                    "stack)")
            steps.append(step)
            self.say(line(step))
            if step["breaks"] and knee is None:
                knee = callers
                if self.plan.stop_at_knee:
                    break
        ended = time.time()
        try:
            left: dict[str, int] | str = leftover(self.settings, self.rooms)
        except Exception as exc:  # the check is reported as not done, never as clean
            left = f"could not check: {type(exc).__name__}: {exc}"
        return {
            "started_at": started, "ended_at": ended, "plan": dataclasses.asdict(self.plan),
            "steps": steps, "knee": knee, "stopped_early": len(steps) < len(self.plan.steps),
            "rooms": len(self.rooms), "leftover": left,
        }  # fmt: skip

    def step(self, callers: int) -> dict[str, Any]:
        plan = self.plan
        before = self._usage()
        cpu = getattr(self.backend, "cpu_seconds", None)
        cpu_before, began_mono = (cpu() if cpu else {}), time.monotonic()
        delays = [i * plan.stagger_s for i in range(callers)]
        options = Options(duration_s=min(3600.0, plan.warmup_s + plan.step_s + delays[-1] + 30),
                          max_turns=2000, transcribe_every=plan.transcribe_every)  # fmt: skip
        ids: list[str] = []
        began = time.time()
        try:
            for delay in delays:
                call_id, room = self.backend.start(dataclasses.replace(options,
                                                                       start_delay_s=delay))
                ids.append(call_id)
                self.rooms.append(room)
            turns = self._collect(ids, began + delays[-1] + plan.warmup_s, callers)
        finally:
            summaries = [self._end(call_id) for call_id in ids]
        # The generator's own CPU up to its calls' end: not the statistics read next, which
        # are the deployment's.
        cpu_after, ended_mono = (cpu() if cpu else {}), time.monotonic()
        after = self._usage()
        step = step_figures(turns, summaries, callers, delays)
        step["end_reasons"] = sorted({str(s.get("end_reason") or s.get("error") or "")
                                      for s in summaries} - {""})[:5]  # fmt: skip
        step["usage"] = _usage_between(before, after)
        if cpu is not None:  # callers in this machine's processes: their own CPU
            step["generator"] = generator_cpu(cpu_before, cpu_after, ended_mono - began_mono,
                                              callers)  # fmt: skip
        step["livekit"] = self._livekit(plan.step_s)
        step["breaks"] = judge(step, plan)
        return step

    def _collect(self, ids: list[str], measure_from: float, callers: int) -> list[dict[str, Any]]:
        seen = dict.fromkeys(ids, 0)
        measured: list[dict[str, Any]] = []
        until = measure_from + self.plan.step_s

        def read(last: float) -> None:
            """The calls' new turns, measured when they ended from measure_from to ``last``."""
            for call_id in ids:
                for turn in self.backend.turns(call_id, seen[call_id], 0.0).get("turns") or []:
                    seen[call_id] = max(seen[call_id], int(turn.get("turn") or 0))
                    if measure_from <= float(turn.get("ended_at") or 0) <= last:
                        measured.append(turn)

        shown = time.monotonic()
        while time.time() < until:
            read(math.inf)
            if time.monotonic() - shown >= 10:
                shown = time.monotonic()
                phase = "warming up" if time.time() < measure_from else "measuring"
                ok = sum(1 for t in measured if t.get("ok"))
                self.say(f"  {callers} callers, {phase}: {len(measured)} turns measured, "
                         f"{ok} answered")  # fmt: skip
            time.sleep(POLL_S)
        settle = getattr(self.backend, "settle", None)
        if callable(settle):  # turns whose verdict waits for a batch (the Go callers')
            settle(SETTLE_S)
            read(until)
        return measured

    def _end(self, call_id: str) -> dict[str, Any]:
        try:
            return self.backend.end(call_id)
        except Exception as exc:  # an end that failed is reported; the prober ends it later
            return {"error": f"could not end held call {call_id}: {exc}"}

    def _usage(self) -> dict[str, Any] | str:
        from lkchaos.load import usage

        try:
            return usage.snapshot(self.settings)
        except Exception as exc:  # the figures go without it, saying why
            return f"no container statistics: {type(exc).__name__}: {exc}"

    def _livekit(self, window_s: float) -> dict[str, Any]:
        """LiveKit's own audio jitter p95 (ms) and mean packet loss (%) over the window."""
        if not self.settings.prometheus_url:
            return {"note": "no Prometheus URL: LiveKit's packet loss and jitter unknown"}
        from lkchaos.prometheus.client import Prometheus

        window = f"{max(int(window_s), 30)}s"
        exprs = {
            "jitter_p95_ms": "histogram_quantile(0.95, sum by (le) (increase("
                             f"livekit_jitter_us_bucket{{type=\"AUDIO\"}}[{window}]))) / 1000",
            "packet_loss_pct": f"sum(increase(livekit_packet_loss_percent_sum[{window}])) / "
                               f"sum(increase(livekit_packet_loss_percent_count[{window}]))",
        }  # fmt: skip
        out: dict[str, Any] = {}
        prom = Prometheus(self.settings.prometheus_url)
        for name, expr in exprs.items():
            try:
                data, _ = prom.query(expr)
                result = data.get("result") or []
                value = float(result[0]["value"][1]) if result else None
                out[name] = round(value, 3) if value is not None and value == value else None
            except Exception as exc:  # one figure missing does not stop the ramp
                out[name] = None
                out.setdefault("errors", []).append(f"{name}: {exc}")
        return out


def generator_cpu(before: dict[str, float], after: dict[str, float], wall_s: float,
                  callers: int) -> dict[str, Any]:  # fmt: skip
    """Cores the load generator's own processes used over ``wall_s`` seconds, per part
    (``cpu_seconds()`` readings before and after) and per caller: ``{"cpu_cores": {part:
    cores}, "cpu_cores_per_caller": {part: cores}}``."""
    cores = {part: round(max(0.0, after[part] - before.get(part, 0.0)) / max(wall_s, 1e-6), 4)
             for part in after}  # fmt: skip
    return {"cpu_cores": cores,
            "cpu_cores_per_caller": {part: round(v / callers, 4) for part, v in cores.items()}}


def _usage_between(before: Any, after: Any) -> dict[str, Any]:
    from lkchaos.load import usage

    if isinstance(before, str) or isinstance(after, str):
        return {"note": before if isinstance(before, str) else after}
    per = usage.usage(before, after)
    return {"containers": per,
            "cpu_cores_total": round(sum(v["cpu_cores"] for v in per.values()), 3)}


def line(step: dict[str, Any]) -> str:
    """One line per step, for a person watching."""
    lat = step["latency_s"]
    cpu = step.get("usage", {}).get("cpu_cores_total")
    verdict = "BREAKS: " + "; ".join(step["breaks"]) if step["breaks"] else "holds"
    return (f"{step['callers']:>4} callers: {step['connected']} connected, {step['turns']} turns, "
            f"{step['answered_pct']:.1f} % answered, latency p50 {_f(lat['p50'])} s "
            f"p95 {_f(lat['p95'])} s p99 {_f(lat['p99'])} s"
            + _agent_part(step.get("agent_ms") or {})
            + (f", {cpu:.2f} cores in use" if cpu is not None else "")
            + (", per caller " + " + ".join(f"{v:.3f} ({k})" for k, v in
                                             gen["cpu_cores_per_caller"].items()) + " cores"
               if (gen := step.get("generator")) else "")
            + f": {verdict}")


def _agent_part(agent: dict[str, Any]) -> str:
    """Where the agent says the time went (p50 ms), when it reported it."""
    transcript = (agent.get("transcription_delay_ms") or {}).get("p50")
    whisper = (agent.get("stt_ms") or {}).get("p50")
    if transcript is None and whisper is None:
        return ""
    return (f" (agent p50: transcript {_g(transcript)} ms after the end of speech, "
            f"Whisper {_g(whisper)} ms)")


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _g(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def table(result: dict[str, Any]) -> str:
    """The ramp as a Markdown table, with the knee."""
    rows = ["| callers | connected | turns | answered % | p50 s | p95 s | p99 s | join p50 s "
            "| dispatch p50 s | CPU cores | LiveKit jitter p95 ms | loss % | verdict |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for s in result["steps"]:
        lk = s.get("livekit") or {}
        cpu = (s.get("usage") or {}).get("cpu_cores_total")
        rows.append(
            f"| {s['callers']} | {s['connected']} | {s['turns']} | {s['answered_pct']:g} "
            f"| {_g(s['latency_s']['p50'])} | {_g(s['latency_s']['p95'])} "
            f"| {_g(s['latency_s']['p99'])} | {_g(s['join_s']['p50'])} "
            f"| {_g(s['dispatch_s']['p50'])} | {_g(cpu)} "
            f"| {_g(lk.get('jitter_p95_ms'))} | {_g(lk.get('packet_loss_pct'))} "
            f"| {'breaks: ' + '; '.join(s['breaks']) if s['breaks'] else 'holds'} |")
    knee = result.get("knee")
    rows.append("")
    rows.append(f"Knee: {knee} callers." if knee else "No knee: every step held its budget.")
    return "\n".join(rows)


def leftover(settings: Settings, rooms: Sequence[str], wait_s: float = 30.0) -> dict[str, int]:
    """Rooms of ``rooms`` that still hold participants after up to ``wait_s`` seconds (the
    callers leave at once; an agent when LiveKit ends its job): room -> participants."""
    from livekit import api

    from lkchaos.livekit import client as lk

    url = settings.livekit_node_urls[0] if settings.livekit_node_urls else settings.livekit_url
    wanted = set(rooms)

    async def occupied(lkapi: api.LiveKitAPI) -> dict[str, int]:
        found = await lkapi.room.list_rooms(api.ListRoomsRequest(names=sorted(wanted)))
        return {r.name: r.num_participants for r in found.rooms if r.num_participants}

    deadline = time.monotonic() + wait_s
    while True:
        left = lk.call(url, settings, occupied) if wanted else {}
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(2.0)
