"""The run history: every experiment run (through the ``lkchaos.controls.history`` control or
:meth:`History.record_run`), its sampled series and journal, game day runs and schedule
events, in SQLite by default or PostgreSQL for a team, migrated with Alembic when opened.

::

    from lkchaos.history import open_history

    with open_history() as history:          # $LKCHAOS_HISTORY_URL or the state folder
        for run in history.runs(experiment="agent-crash", limit=10):
            print(run.started_at, run.verdict, run.rto_s, run.score)

See docs/history.md.
"""

from __future__ import annotations

from lkchaos.history.connect import ENV_URL, mask_url, resolve_url
from lkchaos.history.records import (
    GamedayRecord,
    ProbeFigures,
    RunRecord,
    Sample,
    ScheduleEvent,
    TrendPoint,
)
from lkchaos.history.store import (
    PROBE_METRICS,
    RUN_METRICS,
    SCHEDULE_KINDS,
    History,
    NotFound,
    open_history,
)

__all__ = [
    "ENV_URL",
    "PROBE_METRICS",
    "RUN_METRICS",
    "SCHEDULE_KINDS",
    "GamedayRecord",
    "History",
    "NotFound",
    "ProbeFigures",
    "RunRecord",
    "Sample",
    "ScheduleEvent",
    "TrendPoint",
    "mask_url",
    "open_history",
    "resolve_url",
]
