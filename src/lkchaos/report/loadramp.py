"""A voice load ramp (``lkchaos load``'s result) as one self-contained HTML page: the plan,
the knee and the most callers that held the budget, one row per step, and the plots.

The result comes from ``lkchaos load --json FILE`` or from the run history (a load id,
:func:`lkchaos.load.record.result`). Every string from it is escaped; the page uses the
report's Content-Security-Policy (no request, no script but the report's own).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lkchaos import __version__
from lkchaos.errors import ConfigError
from lkchaos.load.record import held_callers
from lkchaos.report import template
from lkchaos.report.html import e, figure, table
from lkchaos.report.plots import load_png


def read_result(path: Path) -> dict[str, Any]:
    """A ramp's result from ``lkchaos load --json``; ConfigError naming the file otherwise."""
    try:
        loaded = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"cannot read the load ramp {path}: {exc}") from exc
    if not isinstance(loaded, dict) or not isinstance(loaded.get("steps"), list) \
            or not isinstance(loaded.get("plan"), dict):
        raise ConfigError(f"{path} is not a load ramp's result (write one with "
                          "`lkchaos load --json FILE`)")  # fmt: skip
    problem = shape_problem(loaded)
    if problem:
        raise ConfigError(f"{path} is not a load ramp's result: {problem}")
    return loaded


def _number(value: Any) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


def shape_problem(result: Mapping[str, Any]) -> str:
    """What makes ``result`` unfit for the page (empty when nothing): each step needs whole
    ``callers`` and numeric figures, ``breaks`` a list of text; the plan's numbers numbers."""
    plan = result.get("plan") or {}
    for key in ("step_s", "warmup_s", "p95_budget_s", "min_answered_pct"):
        if not _number(plan.get(key)):
            return f"plan.{key} is {plan.get(key)!r}, not a number"
    for index, step in enumerate(result.get("steps") or []):
        where = f"steps[{index}]"
        if not isinstance(step, Mapping):
            return f"{where} is not an object"
        if isinstance(step.get("callers"), bool) or not isinstance(step.get("callers"), int):
            return f"{where}.callers is {step.get('callers')!r}, not a whole number"
        if not isinstance(step.get("breaks", []), list) or not all(
                isinstance(b, str) for b in step.get("breaks", [])):
            return f"{where}.breaks must be a list of text"
        for key in ("connected", "turns", "answered_pct"):
            if not _number(step.get(key)):
                return f"{where}.{key} is {step.get(key)!r}, not a number"
        for group in ("latency_s", "join_s", "dispatch_s", "usage", "livekit"):
            if not isinstance(step.get(group, {}), Mapping):
                return f"{where}.{group} is not an object"
        if not all(_number((step.get("latency_s") or {}).get(p)) for p in ("p50", "p95", "p99")):
            return f"{where}.latency_s holds a value that is not a number"
    return ""


def _n(value: Any, fmt: str = "{:.2f}") -> str:
    return "–" if value is None else e(fmt.format(value))


def _when(epoch: Any) -> str:
    try:
        return dt.datetime.fromtimestamp(float(epoch), dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (TypeError, ValueError):
        return "–"


def _row(step: Mapping[str, Any]) -> list[str]:
    latency = step.get("latency_s") or {}
    livekit = step.get("livekit") or {}
    breaks = step.get("breaks") or []
    verdict = ("<span class='bad'>breaks</span>: " + e("; ".join(breaks)) if breaks
               else "<span class='ok'>holds</span>")  # fmt: skip
    return [
        e(step.get("callers")), e(step.get("connected")), e(step.get("turns")),
        _n(step.get("answered_pct"), "{:g}"), _n(latency.get("p50")), _n(latency.get("p95")),
        _n(latency.get("p99")), _n((step.get("join_s") or {}).get("p50")),
        _n((step.get("dispatch_s") or {}).get("p50")),
        _n((step.get("usage") or {}).get("cpu_cores_total")),
        _n(livekit.get("jitter_p95_ms"), "{:g}"), _n(livekit.get("packet_loss_pct"), "{:g}"),
        verdict,
    ]  # fmt: skip


def render(result: Mapping[str, Any], title: str | None = None, load_id: str | None = None
           ) -> str:  # fmt: skip
    """The whole page for one ramp."""
    plan = result.get("plan") or {}
    steps = list(result.get("steps") or [])
    knee, held = result.get("knee"), held_callers(result)
    left = result.get("leftover")
    leftover = (f"<span class='bad'>rooms left with a participant: {e(left)}</span>"
                if left and isinstance(left, Mapping) else
                f"<span class='bad'>{e(left)}</span>" if left else
                "<span class='ok'>no room left with a participant</span>")  # fmt: skip
    name = title or "Voice load ramp"
    header = (
        f"<header><h1>{e(name)}</h1><div class='meta'>started {e(_when(result.get('started_at')))}"
        f" · steps {e(', '.join(str(s) for s in plan.get('steps') or []))} callers, "
        f"{_n(plan.get('step_s'), '{:g}')} s each after {_n(plan.get('warmup_s'), '{:g}')} s of "
        f"warm-up · budget p95 ≤ {_n(plan.get('p95_budget_s'), '{:g}')} s and ≥ "
        f"{_n(plan.get('min_answered_pct'), '{:g}')} % answered"
        + (f" · load id <code>{e(load_id)}</code>" if load_id else "") + "</div></header>")
    summary = (
        "<section class='card'><h2>Verdict</h2><p>"
        + (f"<span class='bad'>Knee at {e(knee)} callers</span>" if knee else
           "<span class='ok'>No knee: every step held its budget</span>")
        + f" · most callers within budget: <b>{e(held) if held else 'none'}</b>"
        + (" · stopped at the knee" if result.get("stopped_early") else "")
        + f" · {leftover}</p></section>")  # fmt: skip
    png = load_png(steps, plan.get("p95_budget_s"), plan.get("min_answered_pct"))
    plots = figure(png, "load", "turn latency, answers and CPU per step",
                   "A vertical line marks the first step that broke.") if png else ""
    rows = table(["callers", "connected", "turns", "answered %", "p50 s", "p95 s", "p99 s",
                  "join p50 s", "dispatch p50 s", "CPU cores", "jitter p95 ms", "loss %",
                  "verdict"], [_row(s) for s in steps],
                 numeric=tuple(range(12)))  # fmt: skip
    body = header + summary + f"<section class='card'><h2>Steps</h2>{plots}{rows}</section>"
    generated = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return template.PAGE.format(
        csp=template.CSP, title=e(name), css=template.CSS, body=body,
        version=e(__version__), generated=e(generated), script=template.SCRIPT,
    )
