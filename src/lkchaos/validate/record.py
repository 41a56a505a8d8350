"""A validation run in the run history (tables ``validations`` and ``validation_items``).

:func:`record` writes one run (a ``--watch`` round carries the watch's id) where
:func:`lkchaos.history.connect.history_exists` finds a history; :func:`recent` reads them
back, newest first.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

from sqlalchemy import select

from lkchaos import __version__
from lkchaos.validate.runner import Report


def record(report: Report, selection: dict[str, Any], url: str | None = None,
           watch_id: str | None = None) -> str:  # fmt: skip
    """Write ``report`` into the history at ``url`` (the default history when None); its
    validation id."""
    from lkchaos.history.connect import insert_all
    from lkchaos.history.schema import validation_items, validations

    validation_id = uuid.uuid4().hex
    counts = report.counts()
    row = {
        "validation_id": validation_id, "watch_id": watch_id,
        "started_at": report.started_at, "ended_at": report.ended_at,
        "duration_s": report.duration_s, "target": (report.target or None) and
        report.target[:200], "selection": json.dumps(selection, sort_keys=True),
        "exit_code": report.exit_code(), "passed": counts["pass"], "failed": counts["fail"],
        "warned": counts["warn"], "manual": counts["manual"],
        "not_applicable": counts["n/a"], "errors": counts["error"],
        "lkchaos_version": __version__[:64], "recorded_at": dt.datetime.now(dt.UTC),
    }  # fmt: skip
    rows = [{"validation_id": validation_id, "item_id": r.item.id, "position": index,
             "status": r.status, "evidence": r.evidence, "duration_s": r.duration_s}
            for index, r in enumerate(report.results)]  # fmt: skip
    insert_all(url, "the validation", [(validations, [row]), (validation_items, rows)])
    return validation_id


def recent(url: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
    """The latest validations, newest first, each with its ``items`` (id -> status)."""
    from lkchaos.history.connect import connect
    from lkchaos.history.schema import validation_items, validations

    engine, _ = connect(url, existing=True)
    try:
        with engine.connect() as conn:
            runs = [dict(r._mapping) for r in conn.execute(
                select(validations).order_by(validations.c.started_at.desc()).limit(limit))]
            for run in runs:
                found = conn.execute(
                    select(validation_items.c.item_id, validation_items.c.status)
                    .where(validation_items.c.validation_id == run["validation_id"])
                    .order_by(validation_items.c.position))
                run["items"] = {item: status for item, status in found}
    finally:
        engine.dispose()
    return runs

