"""The report as one self-contained HTML page (inline style, plots and audio as ``data:`` URIs).

Every string that comes from a journal goes through :func:`html.escape`; the page's
Content-Security-Policy (``lkchaos.report.template``) forbids any request and any script but
the report's own.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

from lkchaos import __version__
from lkchaos.report import template
from lkchaos.report.analyse import short
from lkchaos.report.load import shown_path
from lkchaos.report.model import NOT_MEASURED, VERDICTS, Report, Run, Step, label

#: Audio clips embedded in one report at most (each up to ~850 KB once base64-encoded).
MAX_CLIPS_PER_REPORT = 24


def e(value: Any) -> str:
    """``value`` as text, escaped for HTML (quotes included)."""
    return escape("" if value is None else str(value), quote=True)


def badge(verdict: str) -> str:
    safe = verdict if verdict in VERDICTS else "interrupted"
    return f'<span class="badge v-{safe}">{e(label(verdict))}</span>'


def secs(value: float | None) -> str:
    if value is None:
        return '<span class="na">—</span>'
    return f"{value:.1f} s" if value < 120 else f"{value / 60:.1f} min"


def pct(value: float | None) -> str:
    return '<span class="na">—</span>' if value is None else f"{value * 100:.1f} %"


def score(value: float | None) -> str:
    return '<span class="na">—</span>' if value is None else f"{value:.1f}"


def _with_probe(pair: tuple[float, str] | None, fmt: Any) -> str:
    if pair is None:
        return fmt(None)  # type: ignore[no-any-return]
    return f'<span title="{e(pair[1])}">{fmt(pair[0])}</span>'


def _png_size(png: bytes) -> tuple[int, int]:
    width, height = struct.unpack(">II", png[16:24])
    return int(width), int(height)


def figure(png: bytes, kind: str, alt: str, caption: str = "") -> str:
    width, height = _png_size(png)
    data = base64.b64encode(png).decode("ascii")
    cap = f"<figcaption>{caption}</figcaption>" if caption else ""
    return (f'<figure class="plot" data-plot="{e(kind)}"><img src="data:image/png;base64,'
            f'{data}" width="{width}" height="{height}" alt="{e(alt)}">{cap}</figure>')


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], numeric: Sequence[int] = (),
          tight: Sequence[int] = ()) -> str:  # fmt: skip
    """A table of already-escaped cells; columns in ``numeric`` are right-aligned, those in
    ``tight`` never wrap."""
    def css(i: int) -> str:
        return "num" if i in numeric else "tight" if i in tight else "text"

    head = "".join(f'<th class="{css(i)}">{h}</th>' for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(f'<td class="{css(i)}">{c}</td>' for i, c in enumerate(row))
                   + "</tr>" for row in rows)  # fmt: skip
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _header(report: Report) -> str:
    counts = "".join(f"{badge(v)}<span class='meta'>×{n}</span>"
                     for v, n in report.counts().items())  # fmt: skip
    runs = len(report.runs)
    return (f"<header><h1>{e(report.title)}</h1><div class='meta'>{runs} experiment "
            f"run{'s' if runs != 1 else ''} · generated {e(report.generated_at)}</div>"
            f"<div class='counts'>{counts}</div></header>")


def _gameday(report: Report) -> str:
    day = report.gameday
    if day is None:
        return ""
    from lkchaos.report import plots  # matplotlib, only when a page is drawn

    trend = plots.trend_png(day.trend, (day.started_at, day.score) if day.score is not None
                            else None, day.status)  # fmt: skip
    plot = (figure(trend, "trend", "game day score against earlier runs",
                   "Score of this game day (large dot) against its earlier runs.")
            if trend else "<p class='na'>No earlier runs of this game day to compare with.</p>")
    rows = []
    for number, entry in enumerate(report.entries, 1):
        info, run = entry.info, entry.run
        name = (f"<a href='#{run.anchor}'>{e(info.name)}</a>" if run else e(info.name))
        shown = f"<code>{e(shown_path(info.experiment))}</code>"
        rows.append([str(number), name, shown, str(info.repeat), badge(info.outcome),
                     score(run.score if run else None), e(info.note)])
    entries = table(["#", "Entry", "Experiment", "Repeat", "Outcome", "Score", "Note"], rows,
                    numeric=(0, 3, 5))
    return (f"<section class='card'><h2>Game day {e(day.name)} {badge(day.status)}</h2>"
            f"<div class='meta'>run {e(day.run_id or '—')} · {e(day.started_at)} → "
            f"{e(day.ended_at)} · score <strong>{score(day.score)}</strong></div>"
            f"{plot}<h3>Entries, in order</h3>{entries}</section>")


def _summary(report: Report) -> str:
    rows = [[f"<a href='#{run.anchor}'>{e(run.suite_name)}</a>", badge(run.verdict),
             secs(run.duration_s), _with_probe(run.rto, secs), _with_probe(run.ttd, secs),
             _with_probe(run.availability, pct), score(run.score)] for run in report.runs]
    headers = ["Experiment", "Verdict", "Duration", "RTO (worst)", "TTD (first)",
               "Availability (lowest)", "Score"]
    return (f"<section class='card'><h2>Summary</h2>"
            f"{table(headers, rows, (2, 3, 4, 5, 6), tight=(1,))}"
            "<p class='meta'>RTO, TTD and availability are over the sampled probes (hover a "
            "figure for its probe); scores are as of each run's end.</p></section>")


def _notes(items: Sequence[str], kind: str, heading: str) -> str:
    if not items:
        return ""
    lines = "".join(f"<li>{e(item)}</li>" for item in items)
    return f"<div class='{kind}'><strong>{heading}</strong><ul>{lines}</ul></div>"


def _action(action: Mapping[str, Any]) -> str:
    end = action.get("end_t")
    until = f" → {float(end):.1f} s" if isinstance(end, int | float) else ""
    return (f"<li><code>{e(action['name'])}</code> at {float(action['start_t']):.1f} s{until} "
            f"({e(action.get('status'))})</li>")


def _timeline(run: Run) -> str:
    from lkchaos.report import plots  # matplotlib, only when a page is drawn

    png = plots.timeline_png(run)
    if png is None:
        return ""
    actions = "".join(_action(a) for a in run.actions)
    listed = f"<ol class='actions'>{actions}</ol>" if actions else ""
    fault = run.fault or {}
    window = (f"Fault window {float(fault['start_t']):.1f} s → {float(fault['end_t']):.1f} s "
              f"(end from {e(fault.get('end_from', '?'))})."
              if isinstance(fault.get("start_t"), int | float)
              and isinstance(fault.get("end_t"), int | float) else "")
    return (f"<h3>Timeline</h3>{figure(png, 'timeline', 'timeline of ' + run.title, window)}"
            f"{listed}")


def _probes(run: Run) -> str:
    if not run.probes:
        return ""
    rows = []
    for p in run.probes:
        rto = secs(p.rto)
        rows.append([e(p.name), str(len(p.samples)), pct(p.figure("availability")),
                     pct(p.figure("availability_during_fault")),
                     secs(p.figure("time_to_detect_s")),
                     f"≥ {rto}" if p.recovery == "not_recovered" else rto,
                     secs(p.rto_bound_s), _recovered(p.recovery),
                     secs(p.figure("longest_outage_s")), e(p.stopped_by or "")])
    headers = ["Sampled probe", "Samples", "Availability", "During fault", "TTD", "RTO",
               "RTO bound", "Recovered", "Longest outage", "Stopped by"]
    return f"<h3>Sampled probes</h3>{table(headers, rows, (1, 2, 3, 4, 5, 6, 8))}"


def _recovered(recovery: str) -> str:
    """The Recovered cell of a sampled probe (:func:`~lkchaos.report.model.recovery_of`)."""
    if recovery == "recovered":
        return "<span class='ok'>yes</span>"
    if recovery == "not_recovered":
        return "<span class='bad'>no</span>"
    if recovery == "not_measured":
        return f"<span class='na' title='{e(NOT_MEASURED)}'>not measured</span>"
    return "<span class='na'>—</span>"


def _met(step: Step) -> str:
    if step.tolerance_met is None:
        return "<span class='na'>—</span>"
    if step.tolerance_met:
        return "<span class='ok'>met</span>"
    return "<span class='bad'>missed</span>"


def _status(step: Step) -> str:
    css = "ok" if step.status == "succeeded" else "bad" if step.status == "failed" else "na"
    return f"<span class='{css}'>{e(step.status)}</span>"


def _steps(run: Run) -> str:
    parts = []
    hypothesis = [s for s in run.steps if s.phase in ("before", "after")]
    if hypothesis:
        rows = [[e(s.phase), f"<code>{e(s.name)}</code>", f"<code>{e(short(s.tolerance))}"
                 f"</code>", f"<code>{e(s.value)}</code>" + (f"<br><span class='bad'>"
                 f"{e(s.error)}</span>" if s.error else ""), _met(s)] for s in hypothesis]
        parts.append("<h3>Steady-state hypothesis, before and after</h3>"
                     + table(["When", "Probe", "Tolerance", "Value", "Met"], rows,
                                                     tight=(0, 4)))
    for phase, heading in (("method", "Method"), ("rollbacks", "Rollbacks")):
        steps = [s for s in run.steps if s.phase == phase]
        if not steps:
            if phase == "rollbacks":
                parts.append("<h3>Rollbacks</h3><p class='na'>None ran.</p>")
            continue
        rows = [[f"<code>{e(s.name)}</code>", e(s.kind), _status(s), secs(s.duration_s),
                 _met(s), (f"<span class='bad'>{e(s.error)}</span>" if s.error else
                           f"<code>{e(s.value)}</code>")] for s in steps]
        parts.append(f"<h3>{heading}</h3>" + table(
            ["Activity", "Type", "Status", "Duration", "Tolerance", "Output / error"], rows,
            numeric=(3,), tight=(1, 2, 4)))
    return "".join(parts)


def _safety(run: Run) -> str:
    safety = run.safety
    if not safety:
        return ""

    def listed(key: str) -> str:
        items = safety.get(key)
        if not isinstance(items, list) or not items:
            return "<span class='ok'>none</span>"
        return "<br>".join(f"<span class='bad'>{e(short(item, 300))}</span>" for item in items)

    rows = [
        ("Run id", e(safety.get("run_id") or "—")),
        ("Cleanup time", secs(safety.get("cleanup_s") if isinstance(
            safety.get("cleanup_s"), int | float) else None)),
        ("Faults not recovered", listed("not_recovered")),
        ("Failed actions", listed("failed_actions")),
        ("Missed tolerances", listed("missed_tolerances")),
        ("Refused", f"<span class='bad'>{e(safety['refused'])}</span>"
         if safety.get("refused") else "<span class='ok'>no</span>"),
        ("Rollback strategy", e(safety.get("rollback_strategy", "—"))),
        ("Warnings", listed("warnings")),
    ]
    if safety.get("error"):
        rows.append(("Safety control error", f"<span class='bad'>{e(safety['error'])}</span>"))
    items = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows)
    return f"<h3>Safety</h3><dl class='safety'>{items}</dl>"


def _audio(run: Run, budget: list[int]) -> str:
    if not run.audio:
        return ""
    clips = []
    for clip in run.audio:
        head = f"<strong>{e(clip.where)}</strong> — {e(clip.reason)}"
        if clip.data is not None and budget[0] > 0:
            budget[0] -= 1
            data = base64.b64encode(clip.data).decode("ascii")
            clips.append(f"<div class='clip'>{head}<audio controls preload='none' "
                         f"src='data:audio/wav;base64,{data}'></audio></div>")
        else:
            why = clip.problem or f"not embedded: over {MAX_CLIPS_PER_REPORT} clips per report"
            clips.append(f"<div class='clip'>{head}<br><span class='na'>{e(why)}: "
                         f"<code>{e(clip.path)}</code></span></div>")
    return "<h3>What the caller heard (failed voice turns)</h3>" + "".join(clips)


def _run(run: Run, budget: list[int]) -> str:
    when = f"{e(run.started_at or '?')} → {e(run.ended_at or 'no end')}"
    title = f"{e(run.title)}<br>" if run.title != run.suite_name else ""
    meta = (f"<div class='meta'>{title}<code>{e(run.source)}</code> · {when} · "
            f"{secs(run.duration_s)} · run {e(run.run_id or '—')} · score "
            f"{score(run.score)}</div>")
    return (f"<section class='card' id='{run.anchor}'><h2>{e(run.suite_name)} "
            f"{badge(run.verdict)}</h2>{meta}"
            f"{_notes(run.problems, 'problems', 'What went wrong')}"
            f"{_notes(run.missing, 'notes', 'Missing from this journal')}"
            f"{_timeline(run)}{_probes(run)}{_steps(run)}{_safety(run)}{_audio(run, budget)}"
            f"<p class='meta'>Score: {e(run.score_note or '—')}</p></section>")


def render(report: Report) -> str:
    """The whole page."""
    budget = [MAX_CLIPS_PER_REPORT]
    body = (_header(report) + _gameday(report) + _summary(report)
            + "".join(_run(run, budget) for run in report.runs))
    return template.PAGE.format(
        csp=template.CSP, title=e(report.title), css=template.CSS, body=body,
        version=e(__version__), generated=e(report.generated_at), script=template.SCRIPT,
    )
