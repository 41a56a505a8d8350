"""The report's plots, drawn with matplotlib's Agg canvas (never a display) as PNG bytes.

PNG rather than SVG: its size does not grow with the number of samples (a probe sampled every
250 ms for an hour is 14,400 points), so a 20-experiment game day stays a few MB. Each
figure is drawn on its own ``Figure`` with an explicit ``FigureCanvasAgg``: no pyplot, no
global backend state, nothing shown.
"""

from __future__ import annotations

import datetime as dt
import io
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from lkchaos.report.model import Run, SampledProbe

DPI = 100
WIDTH_IN = 11.0
ROW_IN = 1.9

COLOURS = {
    "held": "#15803d", "deviated": "#b45309", "failed": "#b91c1c",
    "not_recovered": "#7e22ce", "interrupted": "#4b5563", "refused": "#374151",
    "skipped": "#6b7280",
}  # fmt: skip
OK = "#2563eb"
BAD = "#dc2626"
STRIP_OK = "#16a34a"
FAULT = "#f97316"
DETECTED = "#dc2626"
RECOVERED = "#15803d"
ACTION = "#9a3412"
_RC: Any = {"font.size": 9, "axes.titlesize": 9.5, "axes.edgecolor": "#9ca3af",
       "axes.linewidth": 0.8, "xtick.color": "#374151", "ytick.color": "#374151",
       "font.family": "DejaVu Sans"}  # fmt: skip


def _png(figure: Figure) -> bytes:
    FigureCanvasAgg(figure)  # the Agg canvas, explicitly: no backend lookup, no display
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # A few minutes of dates: matplotlib falls back to a fine interval, and says so on
        # stderr (of `lkchaos report`, of the game day) every time.
        warnings.filterwarnings("ignore", message="AutoDateLocator was unable")
        figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def action_groups(actions: Sequence[Mapping[str, Any]], span: float) -> list[tuple[float, str]]:
    """Action start times with their 1-based numbers, grouped so that labels closer than 2.5 %
    of ``span`` share one label (``"1–2"``): ``[(t, label), ...]``."""
    groups: list[tuple[float, list[int]]] = []
    for number, action in enumerate(actions, 1):
        t = float(action["start_t"])
        if groups and t - groups[-1][0] < 0.025 * span:
            groups[-1][1].append(number)
        else:
            groups.append((t, [number]))
    return [(t, str(n[0]) if len(n) == 1 else f"{n[0]}–{n[-1]}") for t, n in groups]


def _strip(ax: Axes, samples: Sequence[Mapping[str, Any]], end_t: float) -> None:
    """Success as a strip along the bottom of the axes: green while ok, red while failing."""
    ok: list[tuple[float, float]] = []
    bad: list[tuple[float, float]] = []
    for i, sample in enumerate(samples):
        start = float(sample["t"])
        stop = float(samples[i + 1]["t"]) if i + 1 < len(samples) else max(end_t, start)
        (ok if sample.get("ok") else bad).append((start, max(stop - start, 0.0)))
    transform = ax.get_xaxis_transform()
    ax.broken_barh(ok, (0.0, 0.09), facecolors=STRIP_OK, transform=transform, linewidth=0)
    ax.broken_barh(bad, (0.0, 0.09), facecolors=BAD, transform=transform, linewidth=0)


def _row(ax: Axes, probe: SampledProbe, run: Run, end_t: float) -> None:
    fault = run.fault or {}
    start, stop = _num(fault.get("start_t")), _num(fault.get("end_t"))
    if start is not None:
        ax.axvspan(start, stop if stop is not None else end_t, color=FAULT, alpha=0.13,
                   linewidth=0)
    for action in run.actions:
        ax.axvline(float(action["start_t"]), color=ACTION, linewidth=0.8, linestyle=":")
    samples = probe.samples
    points = [(float(s["t"]), float(s["latency_ms"]), bool(s.get("ok"))) for s in samples
              if _num(s.get("latency_ms")) is not None]
    top = max((p[1] for p in points), default=1.0) or 1.0
    good = [(t, v) for t, v, ok in points if ok]
    failed = [(t, v) for t, v, ok in points if not ok]
    if good:
        # The line joins consecutive ok samples only: it breaks at every failure.
        line = [v if ok else math.nan for _, v, ok in points]
        ax.plot([p[0] for p in points], line, color=OK, linewidth=0.7, alpha=0.45)
        ax.plot([p[0] for p in good], [p[1] for p in good], "o", color=OK, markersize=2.6)
    if failed:
        ax.plot([p[0] for p in failed], [p[1] for p in failed], "x", color=BAD, markersize=5,
                markeredgewidth=1.3)
    _strip(ax, samples, end_t)
    ttd = probe.figure("time_to_detect_s")
    if ttd is not None and start is not None:
        ax.axvline(start + ttd, color=DETECTED, linewidth=1.3, linestyle="--")
    recovered_at = probe.figure("recovered_at_t")
    if recovered_at is not None and probe.figures.get("recovered"):
        ax.axvline(recovered_at, color=RECOVERED, linewidth=1.3, linestyle="--")
    ax.set_ylim(-0.16 * top * 1.25, top * 1.25)
    ax.set_yticks([t for t in ax.get_yticks() if 0 <= t <= top * 1.25])
    ax.set_ylabel("latency (ms)", color="#4b5563")
    ax.grid(axis="y", color="#e5e7eb", linewidth=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.set_title(_row_title(probe), loc="left", color="#111827")


def _row_title(probe: SampledProbe) -> str:
    parts = [probe.name]
    availability = probe.figure("availability")
    if availability is not None:
        parts.append(f"availability {availability * 100:.1f} %")
    ttd = probe.figure("time_to_detect_s")
    parts.append(f"TTD {ttd:.1f} s" if ttd is not None else "no failure detected")
    rto, recovery = probe.rto, probe.recovery
    if rto is not None:
        bound = f" (bound {probe.rto_bound_s:g} s)" if probe.rto_bound_s is not None else ""
        at_least = "≥ " if recovery == "not_recovered" else ""
        parts.append(f"RTO {at_least}{rto:.1f} s{bound}")
    if recovery == "not_recovered":
        parts.append("NOT RECOVERED")
    elif recovery == "not_measured":
        parts.append("recovery not measured (run ended first)")
    return "  ·  ".join(parts)


def timeline_png(run: Run) -> bytes | None:
    """The run's timeline, one row per sampled probe, sharing the time axis (s since sampling
    started): fault window shaded, action starts dotted and numbered, success strip, latency
    points, detection and recovery dashed. None when nothing was sampled."""
    probes = [p for p in run.probes if p.samples]
    if not probes:
        return None
    end_t = max(float(s["t"]) + (_num(s.get("latency_ms")) or 0.0) / 1000.0
                for p in probes for s in p.samples)  # fmt: skip
    begin_t = min(float(p.samples[0]["t"]) for p in probes)
    span = max(end_t - begin_t, 1.0)
    figure = Figure(figsize=(WIDTH_IN, 0.9 + ROW_IN * len(probes)), dpi=DPI,
                    layout="constrained")
    with _style():
        axes = figure.subplots(len(probes), 1, sharex=True, squeeze=False)[:, 0]
        for ax, probe in zip(axes, probes, strict=True):
            _row(ax, probe, run, end_t)
        axes[0].set_xlim(begin_t - 0.01 * span, end_t + 0.01 * span)
        axes[-1].set_xlabel("seconds since sampling started")
        for t, text in action_groups(run.actions, span):
            axes[0].annotate(text, (t, 1.0), xycoords=("data", "axes fraction"),
                             xytext=(0, -2), textcoords="offset points", ha="center",
                             va="top", fontsize=8, color="white", fontweight="bold",
                             bbox={"boxstyle": "round,pad=0.2", "fc": ACTION, "ec": "none"})
        figure.legend(handles=_legend(), loc="outside upper right", ncols=7, frameon=False,
                      fontsize=8.5)
        return _png(figure)


def _legend() -> list[Any]:
    return [
        Patch(color=FAULT, alpha=0.3, label="fault window"),
        Line2D([], [], color=ACTION, linestyle=":", label="action start (numbered)"),
        Line2D([], [], color=DETECTED, linestyle="--", label="detected"),
        Line2D([], [], color=RECOVERED, linestyle="--", label="recovered"),
        Line2D([], [], color=OK, marker="o", linestyle="", markersize=4, label="ok sample"),
        Line2D([], [], color=BAD, marker="x", linestyle="", markersize=5, label="failed sample"),
        Patch(color=STRIP_OK, label="strip: ok / failing"),
    ]


def trend_png(trend: Sequence[tuple[str, float]], current: tuple[str, float] | None,
              status: str) -> bytes | None:  # fmt: skip
    """Game day scores over time (0-100): earlier runs as a line, this one as a large dot in
    its verdict's colour. None when there is nothing to draw."""
    points = sorted((when, float(score)) for raw, score in trend
                    if (when := _parse(raw)) is not None)  # fmt: skip
    now = (_parse(current[0]), float(current[1])) if current else None
    if not points and (now is None or now[0] is None):
        return None
    figure = Figure(figsize=(WIDTH_IN, 2.4), dpi=DPI, layout="constrained")
    with _style():
        ax = figure.subplots()
        if points:
            ax.plot([_days(p[0]) for p in points], [p[1] for p in points], "-o",
                    color="#6b7280", markersize=4, linewidth=1.2, label="earlier runs")
        if now is not None and now[0] is not None:
            if points:
                ax.plot([_days(points[-1][0]), _days(now[0])], [points[-1][1], now[1]], ":",
                        color="#6b7280", linewidth=1.2)
            ax.plot([_days(now[0])], [now[1]], "o", markersize=10, label="this run",
                    color=COLOURS.get(status, "#111827"))
        ax.set_ylim(0, 105)
        xs = [_days(p[0]) for p in points] + ([_days(now[0])] if now and now[0] else [])
        if (window := trend_window(xs)) is not None:
            ax.set_xlim(*window)
        ax.set_ylabel("score")
        ax.grid(color="#e5e7eb", linewidth=0.6)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        locator = AutoDateLocator(maxticks=8)  # type: ignore[no-untyped-call]
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
        ax.legend(loc="lower left", frameon=False, fontsize=8.5)
        return _png(figure)


def trend_window(days: Sequence[float]) -> tuple[float, float] | None:
    """The x range of a trend (date numbers, in days) when matplotlib's own would not do: one
    run, or runs within a day, would otherwise be drawn on an axis of years. A day either
    side then; None to let matplotlib choose."""
    if not days or max(days) - min(days) >= 1.0:
        return None
    return min(days) - 1.0, max(days) + 1.0


def _days(when: dt.datetime) -> float:
    """Matplotlib's date number (days since its default epoch, 1970-01-01 UTC)."""
    return when.timestamp() / 86400.0


def _parse(raw: str) -> dt.datetime | None:
    try:
        when = dt.datetime.fromisoformat(raw)
    except (TypeError, ValueError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _style() -> Any:
    return rc_context(_RC)


def load_png(steps: Sequence[Mapping[str, Any]], p95_budget_s: float | None,
             min_answered_pct: float | None) -> bytes | None:  # fmt: skip
    """A load ramp against its callers: turn latency p50/p95/p99 with the p95 budget, turns
    answered % with its floor, and the deployment's CPU cores. None without steps."""
    if not steps:
        return None
    callers = [int(s["callers"]) for s in steps]
    figure = Figure(figsize=(WIDTH_IN, 2.9), dpi=DPI, layout="constrained")
    with _style():
        latency, answered, cpu = figure.subplots(1, 3)
        for pct, style in (("p50", "-o"), ("p95", "-s"), ("p99", ":^")):
            values = [_num((s.get("latency_s") or {}).get(pct)) for s in steps]
            latency.plot(callers, [math.nan if v is None else v for v in values], style,
                         markersize=4, linewidth=1.3, label=pct)
        if p95_budget_s:
            latency.axhline(p95_budget_s, color=BAD, linestyle="--", linewidth=1,
                            label="p95 budget")
        latency.set_title("turn latency (s)")
        answered.plot(callers, [float(s.get("answered_pct") or 0.0) for s in steps], "-o",
                      color=STRIP_OK, markersize=4, linewidth=1.3, label="answered")
        if min_answered_pct is not None:
            answered.axhline(min_answered_pct, color=BAD, linestyle="--", linewidth=1,
                             label="floor")
        answered.set_ylim(0, 105)
        answered.set_title("turns answered (%)")
        cores = [_num((s.get("usage") or {}).get("cpu_cores_total")) for s in steps]
        cpu.plot(callers, [math.nan if v is None else v for v in cores], "-o", color=ACTION,
                 markersize=4, linewidth=1.3, label="all containers")
        cpu.set_ylim(bottom=0)
        cpu.set_title("CPU (cores)")
        for ax in (latency, answered, cpu):
            ax.set_xlabel("concurrent callers")
            ax.set_xticks(callers)
            ax.grid(color="#e5e7eb", linewidth=0.6)
            for side in ("top", "right"):
                ax.spines[side].set_visible(False)
            ax.legend(loc="best", frameon=False, fontsize=8)
        broken = [c for c, s in zip(callers, steps, strict=True) if s.get("breaks")]
        if broken:
            for ax in (latency, answered, cpu):
                ax.axvline(broken[0], color=FAULT, linewidth=1, alpha=0.6)
        return _png(figure)
