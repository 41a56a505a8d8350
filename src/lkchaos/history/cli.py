"""``lkchaos history``: the recorded runs, one run's figures, trends, game days, schedules.

``lkchaos history [list] [--experiment X] [--gameday NAME] [--status S] [--since 7d|ISO]
[--limit N] [--json]``, ``history show RUN_ID``, ``history trend EXPERIMENT [--metric M]
[--probe P]``, ``history gamedays``, ``history schedule``; ``--url`` on the group (else
``$LKCHAOS_HISTORY_URL``, else the state folder's SQLite file). Tables use ``rich`` on a
terminal and plain aligned text otherwise. Errors print one line and exit 1 (2 for bad input).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import sys
from collections.abc import Sequence
from typing import Any

import click

from lkchaos.cliutil import handle_errors
from lkchaos.errors import ConfigError
from lkchaos.history.records import RunRecord
from lkchaos.history.store import (
    CUT_SHORT,
    PROBE_METRICS,
    RUN_METRICS,
    History,
    NotFound,
    open_history,
)
from lkchaos.score import decayed

_SPARKS = "▁▂▃▄▅▆▇█"


def parse_since(text: str, now: dt.datetime | None = None) -> dt.datetime:
    """:func:`lkchaos.safety.audit.parse_since`, its error as a usage error (exit 2)."""
    from lkchaos.safety.audit import parse_since as parse

    try:
        return parse(text, now)
    except ConfigError as exc:
        raise click.BadParameter(str(exc)) from exc


def _num(value: float | None, fmt: str = "{:.1f}") -> str:
    return "-" if value is None else fmt.format(value)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _when(value: dt.datetime | None) -> str:
    return "-" if value is None else value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M")


def _score_now(run: RunRecord) -> float | None:
    if run.score is None:
        return None
    return decayed(run.score, run.ended_at or run.started_at)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], title: str = "") -> None:
    """Rows under headers: a rich table on a terminal, aligned plain text otherwise."""
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title or None)
        for header in headers:
            table.add_column(header)
        for row in rows:
            table.add_row(*row)
        Console().print(table)
        return
    if title:
        click.echo(title)
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=False)]
    for line in (headers, *rows):
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=False)).rstrip())


def _json(value: Any) -> None:
    def default(obj: Any) -> Any:
        if isinstance(obj, dt.datetime):
            return obj.isoformat()
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            return dataclasses.asdict(obj)
        return str(obj)

    click.echo(json.dumps(value, indent=2, default=default, ensure_ascii=False))


def sparkline(values: Sequence[float | None]) -> str:
    """One character per value, ``▁`` (lowest) to ``█`` (highest); a space for None."""
    known = [v for v in values if v is not None]
    if not known:
        return " " * len(values)
    low, high = min(known), max(known)
    span = high - low or 1.0
    return "".join(" " if v is None else _SPARKS[round((v - low) / span * (len(_SPARKS) - 1))]
                   for v in values)  # fmt: skip


class _ListByDefault(click.Group):
    """``lkchaos history [--url U] [list options]`` means ``lkchaos history list ...``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        index = 0
        while index < len(args) and args[index].startswith("--url"):
            index += 1 if "=" in args[index] else 2
        rest = args[index:]
        if not rest or (rest[0] not in self.commands and rest[0] not in ("--help", "-h")):
            args = [*args[:index], "list", *rest]
        return super().parse_args(ctx, args)


@click.group("history", cls=_ListByDefault)
@click.option("--url", default=None, metavar="URL",
              help="History database (default: $LKCHAOS_HISTORY_URL, else the state folder's "
                   "history.sqlite).")  # fmt: skip
@click.pass_context
def history(ctx: click.Context, url: str | None) -> None:
    """Recorded experiment runs, game days, schedule events and load ramps."""
    ctx.obj = {"url": url}


def _open(ctx: click.Context) -> History:
    return open_history((ctx.obj or {}).get("url"), existing=True)


@history.command("list")
@click.option("--experiment", help="File stem, title or path of the experiment.")
@click.option("--gameday", help="Runs of the game days of this name.")
@click.option("--status",
              help="completed, failed, aborted, interrupted, refused, deviated or held.")
@click.option("--since", help="Runs started since: 7d, 12h, 30m, or an ISO date/time.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table.")
@click.pass_context
@handle_errors
def list_runs(ctx: click.Context, experiment: str | None, gameday: str | None,
              status: str | None, since: str | None, limit: int,
              as_json: bool) -> None:  # fmt: skip
    """List recorded runs, newest first (score: as of now, staleness applied)."""
    after = parse_since(since) if since is not None else None  # bad input: exit 2 first
    with _open(ctx) as store:
        found = store.runs(experiment=experiment, gameday=gameday, status=status,
                           since=after, limit=limit)  # fmt: skip
    if as_json:
        _json([{**dataclasses.asdict(r), "verdict": r.verdict, "score_now": _score_now(r)}
               for r in found])  # fmt: skip
        return
    if not found:
        filtered = any(v is not None for v in (experiment, gameday, status, since))
        click.echo("no runs recorded" + (" matching these filters" if filtered else ""))
        return
    _table(["when (UTC)", "experiment", "verdict", "RTO s", "TTD s", "availability", "score",
            "run id"],
           [[_when(r.started_at), r.experiment_name[:40], r.verdict,
             ("≥" if r.status in CUT_SHORT and r.rto_s is not None else "") + _num(r.rto_s),
             _num(r.time_to_detect_s), _pct(r.availability), _num(_score_now(r)),
             r.run_id[:12]] for r in found])  # fmt: skip


@history.command("show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of text.")
@click.pass_context
@handle_errors
def show(ctx: click.Context, run_id: str, as_json: bool) -> None:
    """One run (by id or a unique prefix): its verdict, score and figures per probe."""
    with _open(ctx) as store:
        run = store.run(run_id)
        figures = store.figures(run.run_id)
    if as_json:
        _json({"run": run, "verdict": run.verdict, "score_now": _score_now(run),
               "probes": figures})  # fmt: skip
        return
    lines = [
        ("run", run.run_id), ("experiment", f"{run.experiment_title} ({run.experiment_name})"),
        ("file", run.experiment_path or "-"), ("started", run.started_at.isoformat()),
        ("duration", f"{_num(run.duration_s)} s"), ("verdict", run.verdict),
        ("faults", f"{run.faults_injected} injected, "
                   f"{'?' if run.faults_undone is None else run.faults_undone} undone"),
        ("cleanup", f"{_num(run.cleanup_s, '{:.3f}')} s"),
        ("score", f"{_num(run.score)} when recorded, {_num(_score_now(run))} now"),
        ("why", run.score_explanation or "-"),
        ("game day", f"{run.gameday_run_id or '-'} entry {run.entry or '-'}"),
        ("target", run.target or "-"), ("journal", _journal_note(run.journal_path, run.run_id)),
        ("versions", f"lkchaos {run.lkchaos_version}, LiveKit {run.livekit_version or '?'}"),
    ]  # fmt: skip
    for key, value in lines:
        click.echo(f"{key + ':':<12}{value}")
    if not figures:
        click.echo("no sampled probes")
        return
    _table(["probe", "samples", "failures", "availability", "during fault", "TTD s", "RTO s",
            "recovered", "longest outage s"],
           [[f.probe, str(f.samples), str(f.failures), _pct(f.availability),
             _pct(f.availability_during_fault), _num(f.time_to_detect_s), _num(f.rto_s),
             {True: "yes", False: "NO", None: "-"}[f.recovered], _num(f.longest_outage_s)]
            for f in figures], title="per probe")  # fmt: skip


@history.command("trend")
@click.argument("experiment")
@click.option("--metric", default="rto_s", show_default=True,
              help=f"Run: {', '.join(RUN_METRICS)}; probe: {', '.join(PROBE_METRICS)}.")
@click.option("--probe", help="A sampled probe's figure instead of the run's worst.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1))
@click.pass_context
@handle_errors
def trend(ctx: click.Context, experiment: str, metric: str, probe: str | None,
          limit: int) -> None:  # fmt: skip
    """A metric of an experiment across its runs (oldest first), with a sparkline. Refused
    runs are left out. An RTO that is only a lower bound (the run was interrupted, or the
    probe had not recovered) reads ``≥`` with a hatched bar, and is a gap in the sparkline,
    which draws measured values only."""
    with _open(ctx) as store:
        points = store.trend(experiment, metric=metric, probe=probe, limit=limit)
        if not points:
            raise NotFound(store.why_no_trend(experiment, probe))
    known = [p.value for p in points if p.value is not None]
    top = max(known) if known else 0.0
    of = f"{metric}{f' of {probe}' if probe else ''}"
    bounds = sum(1 for p in points if p.lower_bound)
    note = f" ({bounds} lower bound(s), ≥: not a measured recovery)" if bounds else ""
    measured = [None if p.lower_bound else p.value for p in points]
    click.echo(f"{of} of {experiment}, {len(points)} run(s): {sparkline(measured)}{note}")
    for p in points:
        verdict = "deviated" if p.deviated and p.status == "completed" else p.status
        mark = "░" if p.lower_bound else "█"
        bar = "" if p.value is None or top <= 0 else mark * max(1, round(p.value / top * 30))
        value = ("≥" if p.lower_bound else "") + _num(p.value, "{:.3f}")
        click.echo(f"{_when(p.started_at)}  {(p.gameday or '-')[:20]:<20}  {verdict:<11}"
                   f"  {value:>10}  {bar}")  # fmt: skip


@history.command("gamedays")
@click.option("--name", help="Runs of this game day only.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table.")
@click.pass_context
@handle_errors
def gamedays(ctx: click.Context, name: str | None, limit: int, as_json: bool) -> None:
    """Game day runs, newest first."""
    with _open(ctx) as store:
        found = store.gameday_runs(name=name, limit=limit)
    if as_json:
        _json(found)
        return
    if not found:
        click.echo("no game day runs recorded")
        return
    _table(["started (UTC)", "game day", "status", "score", "scheduled", "ended", "id"],
           [[_when(g.started_at), g.name, g.status, _num(g.score),
             "yes" if g.scheduled else "no", _when(g.ended_at), g.gameday_run_id[:12]]
            for g in found])  # fmt: skip


@history.command("schedule")
@click.option("--gameday", help="Events of this game day only.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table.")
@click.pass_context
@handle_errors
def schedule(ctx: click.Context, gameday: str | None, limit: int, as_json: bool) -> None:
    """Schedule events (fired, missed, skipped), newest first."""
    with _open(ctx) as store:
        events = store.schedule_events(gameday=gameday, limit=limit)
    if as_json:
        _json(events)
        return
    if not events:
        click.echo("no schedule events recorded")
        return
    _table(["at (UTC)", "game day", "event", "reason"],
           [[e.at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S"), e.gameday, e.kind,
             e.reason] for e in events])  # fmt: skip


@history.command("loads")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table.")
@click.option("--show", "load_id", metavar="ID", help="One ramp's whole result, as JSON.")
@click.pass_context
@handle_errors
def loads(ctx: click.Context, limit: int, as_json: bool, load_id: str | None) -> None:
    """Voice load ramps (`lkchaos load`), newest first: the knee, the most callers that held
    the budget, and each step's turn latency p95 and answers."""
    from lkchaos.load import record

    url = (ctx.obj or {}).get("url")
    _open(ctx).close()  # created and migrated like every history command's
    if load_id is not None:
        _json(record.result(load_id, url))
        return
    found = record.recent(url, limit)
    if as_json:
        _json(found)
        return
    if not found:
        click.echo("no load ramps recorded")
        return
    _table(["started (UTC)", "steps", "knee", "held", "p95 per step (s)", "answered per step",
            "left", "id"],
           [[_when(r["started_at"]), r["steps"], str(r["knee"] or "-"),
             str(r["held_callers"] or "-"),
             " ".join(_num(s["latency_p95_s"], "{:.2f}") for s in r["steps_measured"]),
             " ".join(_pct(s["answered_pct"] / 100) for s in r["steps_measured"]),
             "?" if r["leftover_rooms"] is None else str(r["leftover_rooms"]),
             r["load_id"][:12]] for r in found])  # fmt: skip


def _journal_note(path: str | None, run_id: str) -> str:
    """The journal's path, and whether it still holds this run: `chaos run` writes
    ./journal.json unless told otherwise, and the next run there overwrites it. The history
    keeps each run's own journal (`lkchaos report RUN_ID`)."""
    if not path:
        return f"- (the history keeps it: `lkchaos report {run_id[:12]}`)"
    try:
        with open(path, encoding="utf-8") as handle:
            held = json.load(handle)
    except FileNotFoundError:
        return f"{path} (gone; the history keeps it: `lkchaos report {run_id[:12]}`)"
    except (OSError, ValueError):
        return path
    safety = held.get("lkchaos_safety") if isinstance(held, dict) else None
    other = safety.get("run_id") if isinstance(safety, dict) else None
    if other and other != run_id:
        return (f"{path} (now run {str(other)[:12]}'s; the history keeps this one's: "
                f"`lkchaos report {run_id[:12]}`)")
    return path
