"""A load ramp in the run history (tables ``load_runs`` and ``load_steps``).

:func:`record` writes one ramp's result (what :meth:`lkchaos.load.ramp.Ramp.run` returns)
with its target; :func:`recent` reads the latest back, newest first, each with its steps;
:func:`result` returns one ramp's whole result. Whether to record follows the checklist's
rule (:func:`lkchaos.history.connect.history_exists`): when a history exists, or when asked.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select

from lkchaos import __version__
from lkchaos.errors import LkChaosError


def _when(epoch: Any) -> dt.datetime:
    return dt.datetime.fromtimestamp(float(epoch), dt.UTC)


def held_callers(result: Mapping[str, Any]) -> int | None:
    """The most callers of a step that held its budget, every smaller step holding too;
    None when the first step broke."""
    held = None
    for step in result.get("steps") or []:
        if step.get("breaks"):
            break
        held = int(step["callers"])
    return held


def step_rows(load_id: str, result: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for position, step in enumerate(result.get("steps") or []):
        latency = step.get("latency_s") or {}
        usage = step.get("usage") or {}
        rows.append({
            "load_id": load_id, "position": position, "callers": int(step["callers"]),
            "connected": int(step.get("connected") or 0), "turns": int(step.get("turns") or 0),
            "answered_pct": float(step.get("answered_pct") or 0.0),
            "latency_p50_s": latency.get("p50"), "latency_p95_s": latency.get("p95"),
            "latency_p99_s": latency.get("p99"),
            "join_p50_s": (step.get("join_s") or {}).get("p50"),
            "dispatch_p50_s": (step.get("dispatch_s") or {}).get("p50"),
            "cpu_cores": usage.get("cpu_cores_total"),
            "breaks": "; ".join(step.get("breaks") or []),
        })  # fmt: skip
    return rows


def record(result: Mapping[str, Any], target: str | None, url: str | None = None) -> str:
    """Write the ramp ``result`` into the history at ``url`` (the default history when None);
    its load id. Raises LkChaosError naming the database when it fails."""
    from lkchaos.history.connect import insert_all
    from lkchaos.history.extract import ENCODING, compress
    from lkchaos.history.schema import load_runs, load_steps

    plan = result.get("plan") or {}
    left = result.get("leftover")
    started, ended = _when(result["started_at"]), _when(result["ended_at"])
    load_id = uuid.uuid4().hex
    row = {
        "load_id": load_id, "started_at": started, "ended_at": ended,
        "duration_s": round((ended - started).total_seconds(), 3),
        "target": (target or None) and target[:200],
        "steps": ",".join(str(s) for s in plan.get("steps") or [])[:400],
        "step_s": float(plan.get("step_s") or 0.0),
        "p95_budget_s": float(plan.get("p95_budget_s") or 0.0),
        "min_answered_pct": float(plan.get("min_answered_pct") or 0.0),
        "knee": result.get("knee"), "held_callers": held_callers(result),
        "stopped_early": bool(result.get("stopped_early")),
        "leftover_rooms": len(left) if isinstance(left, Mapping) else None,
        "lkchaos_version": __version__[:64], "recorded_at": dt.datetime.now(dt.UTC),
        "encoding": ENCODING, "result": compress(dict(result)),
    }  # fmt: skip
    insert_all(url, "the load ramp", [(load_runs, [row]),
                                      (load_steps, step_rows(load_id, result))])
    return load_id


def recent(url: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
    """The latest ramps, newest first (without their whole result), each with ``steps``."""
    from lkchaos.history.connect import connect
    from lkchaos.history.schema import load_runs, load_steps

    columns = [c for c in load_runs.c if c.name not in ("result", "encoding")]
    engine, _ = connect(url, existing=True)
    try:
        with engine.connect() as conn:
            ramps = [dict(r._mapping) for r in conn.execute(
                select(*columns).order_by(load_runs.c.started_at.desc()).limit(limit))]
            for ramp in ramps:
                ramp["steps_measured"] = [
                    {k: v for k, v in r._mapping.items() if k != "load_id"}
                    for r in conn.execute(select(load_steps)
                                          .where(load_steps.c.load_id == ramp["load_id"])
                                          .order_by(load_steps.c.position))]  # fmt: skip
    finally:
        engine.dispose()
    return ramps


def result(load_id: str, url: str | None = None) -> dict[str, Any]:
    """One ramp's whole result, by its id or a unique prefix of it. Raises LkChaosError when
    none or several match."""
    from lkchaos.history.connect import connect
    from lkchaos.history.extract import decompress
    from lkchaos.history.schema import load_runs

    if not re.fullmatch(r"[0-9a-f]{4,64}", load_id):
        raise LkChaosError(f"{load_id!r} is not a load ramp id (4 to 64 hex digits, as "
                           "`lkchaos history loads` lists them)")  # fmt: skip
    engine, _ = connect(url, existing=True)
    try:
        with engine.connect() as conn:
            found = list(conn.execute(select(load_runs.c.load_id, load_runs.c.encoding,
                                             load_runs.c.result)
                                      .where(load_runs.c.load_id.startswith(load_id))
                                      .limit(2)))  # fmt: skip
    finally:
        engine.dispose()
    if len(found) != 1:
        what = "no load ramp" if not found else "several load ramps"
        raise LkChaosError(f"{what} with id {load_id!r} in the run history; "
                           "`lkchaos history loads` lists them")  # fmt: skip
    return decompress(found[0].encoding, found[0].result)
