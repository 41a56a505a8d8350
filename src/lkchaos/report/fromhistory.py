"""A game day's report from the run history (``lkchaos.history``): its entries are its recorded
runs in the order they ran, its trend the scores of earlier runs of the same game day."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lkchaos.errors import ConfigError
from lkchaos.history import NotFound, open_history
from lkchaos.report.analyse import verdict_of
from lkchaos.report.model import EntryInfo, GamedayInfo

#: Runs of one game day read at most, and earlier game days shown in the trend at most.
MAX_ENTRIES = 500
MAX_TREND = 30
#: The entry of the game day runner's baseline checks in the history.
BASELINE = "baseline"


def gameday_from_history(name_or_id: str, url: str | None = None) -> tuple[
        GamedayInfo, list[dict[str, Any]]]:  # fmt: skip
    """``(game day, journals)``: the game day run ``name_or_id`` (a game day run id, or a game
    day's name for its latest run) and the journal of each of its runs, in order, read from
    the history at ``url`` (default: ``$LKCHAOS_HISTORY_URL``, else the state folder's).
    Raises ``ConfigError`` when there is no such game day, ``LkChaosError`` when the history
    cannot be read."""
    with open_history(url, existing=True) as history:
        latest = history.gameday_runs(name=name_or_id, limit=1)
        if latest:
            record = latest[0]
        else:
            try:  # a run id, or a unique prefix of one (`lkchaos history gamedays` shows 12)
                record = history.gameday_run(name_or_id)
            except NotFound as exc:
                if str(exc).startswith("several"):
                    raise ConfigError(f"{exc}: give more of the id") from None
                raise ConfigError(
                    f"no game day run with id or game day named {name_or_id!r} in the history "
                    f"at {history.url}: `lkchaos history gamedays` lists what it holds"
                ) from None
        # The baseline checks between entries are recorded too (entry "baseline"): not entries.
        runs = [run for run in history.runs(gameday_run_id=record.gameday_run_id,
                                            limit=MAX_ENTRIES) if run.entry != BASELINE]
        journals = [history.journal(run.run_id) for run in runs]
        earlier = [g for g in history.gameday_runs(name=record.name, limit=MAX_TREND + 1)
                   if g.started_at < record.started_at and g.score is not None]
    entries: list[EntryInfo] = []
    seen: dict[str, int] = {}
    for run, journal in zip(runs, journals, strict=True):
        # The runner records each entry as NAME#REPEAT.
        name, _, repeat = (run.entry or run.experiment_name).partition("#")
        seen[name] = seen.get(name, 0) + 1
        entries.append(EntryInfo(
            name=name, experiment=run.experiment_path or run.experiment_name,
            repeat=int(repeat) if repeat.isdigit() else seen[name],
            journal=Path(run.journal_path or f"history:{run.run_id}"),
            outcome=verdict_of(journal),
        ))  # fmt: skip
    trend = [(g.started_at.isoformat(), float(g.score)) for g in reversed(earlier)
             if g.score is not None]
    day = GamedayInfo(
        name=record.name, run_id=record.gameday_run_id,
        started_at=record.started_at.isoformat(),
        ended_at=record.ended_at.isoformat() if record.ended_at else "",
        status=record.status, entries=entries, score=record.score, trend=trend,
    )  # fmt: skip
    return day, journals
