"""The run history's tables (SQLAlchemy Core), as the newest migration leaves them.

- ``runs``: one row per experiment run (``run_id`` the safety control's run id, else a uuid4
  hex); the figures of :class:`lkchaos.history.records.RunRecord`.
- ``probe_figures``: per run and sampled probe, the figures the sampling control derived.
- ``samples``: every sample of every sampled probe (``t`` seconds since sampling started,
  ``at`` wall clock UTC, ``ok``, ``latency_ms``, a short ``reason``).
- ``journals``: the whole journal, JSON compressed with zlib.
- ``gameday_runs``: one row per game day run; ``schedule_events``: fired/missed/skipped.
- ``validations``: one row per ``lkchaos validate`` run (or round of ``--watch``, sharing a
  ``watch_id``) with its counts; ``validation_items``: each item's status and evidence.
- ``load_runs``: one row per ``lkchaos load`` ramp (its plan, knee, the largest step that
  held its budget, leftover rooms, and the whole result, JSON compressed with zlib);
  ``load_steps``: each step's callers, answers, turn latency and CPU.

Every timestamp is stored as UTC and read back timezone-aware (:class:`UTCDateTime`: SQLite
has no time zones, PostgreSQL columns are ``timestamptz``). The migrations in
``lkchaos/history/migrations/versions`` create the same tables; they must change together.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.types import TypeDecorator

#: Alembic's version table of the history (not ``alembic_version``: a shared database may
#: hold another application's migrations).
VERSION_TABLE = "lkchaos_history_version"
#: The newest migration's revision (``migrations/versions``): a database already there is
#: opened without importing Alembic. A new migration changes it too (a unit test checks
#: that it is Alembic's head).
HEAD_REVISION = "0003"


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware datetime stored as UTC; naive values are refused."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()} given: pass an aware one")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        when = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
        if when.tzinfo is None:
            return when.replace(tzinfo=dt.UTC)
        return when.astimezone(dt.UTC)


metadata = MetaData()

gameday_runs = Table(
    "gameday_runs", metadata,
    Column("gameday_run_id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("path", Text, nullable=False),
    Column("file_hash", String(128), nullable=False),
    Column("scheduled", Boolean, nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("ended_at", UTCDateTime),
    Column("status", String(32), nullable=False),
    Column("score", Float),
    Index("ix_gameday_runs_name_started", "name", "started_at"),
)  # fmt: skip

runs = Table(
    "runs", metadata,
    Column("run_id", String(64), primary_key=True),
    Column("experiment_title", Text, nullable=False),
    Column("experiment_name", String(200), nullable=False),
    Column("experiment_path", Text),
    Column("experiment_hash", String(64), nullable=False),
    Column("gameday_run_id", String(64)),
    Column("entry", String(200)),
    Column("started_at", UTCDateTime, nullable=False),
    Column("ended_at", UTCDateTime),
    Column("duration_s", Float),
    Column("status", String(32), nullable=False),
    Column("deviated", Boolean, nullable=False),
    Column("faults_injected", Integer, nullable=False),
    Column("faults_undone", Integer),
    Column("cleanup_s", Float),
    Column("availability", Float),
    Column("time_to_detect_s", Float),
    Column("rto_s", Float),
    Column("score", Float),
    Column("score_explanation", Text),
    Column("lkchaos_version", String(64), nullable=False),
    Column("livekit_version", String(64)),
    Column("target", String(200)),
    Column("journal_path", Text),
    Column("recorded_at", UTCDateTime, nullable=False),
    Index("ix_runs_experiment_name", "experiment_name", "started_at"),
    Index("ix_runs_experiment_title", "experiment_title"),
    Index("ix_runs_gameday_run_id", "gameday_run_id"),
    Index("ix_runs_started_at", "started_at"),
)  # fmt: skip

probe_figures = Table(
    "probe_figures", metadata,
    Column("run_id", String(64), ForeignKey("runs.run_id", ondelete="CASCADE"),
           primary_key=True),
    Column("probe", String(200), primary_key=True),
    Column("samples", Integer, nullable=False),
    Column("failures", Integer, nullable=False),
    Column("availability", Float),
    Column("availability_during_fault", Float),
    Column("time_to_detect_s", Float),
    Column("rto_s", Float),
    Column("recovered", Boolean),
    Column("longest_outage_s", Float),
)  # fmt: skip

samples = Table(
    "samples", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(64), ForeignKey("runs.run_id", ondelete="CASCADE"),
           nullable=False),
    Column("probe", String(200), nullable=False),
    Column("t", Float, nullable=False),
    Column("at", UTCDateTime),
    Column("ok", Boolean, nullable=False),
    Column("latency_ms", Float),
    Column("reason", String(200)),
    Index("ix_samples_run_probe", "run_id", "probe", "t"),
)  # fmt: skip

journals = Table(
    "journals", metadata,
    Column("run_id", String(64), ForeignKey("runs.run_id", ondelete="CASCADE"),
           primary_key=True),
    Column("encoding", String(32), nullable=False),
    Column("data", LargeBinary, nullable=False),
)  # fmt: skip

schedule_events = Table(
    "schedule_events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("gameday", String(200), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("reason", Text, nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Index("ix_schedule_events_gameday_at", "gameday", "at"),
    Index("ix_schedule_events_at", "at"),
)  # fmt: skip

validations = Table(
    "validations", metadata,
    Column("validation_id", String(64), primary_key=True),
    Column("watch_id", String(64)),
    Column("started_at", UTCDateTime, nullable=False),
    Column("ended_at", UTCDateTime, nullable=False),
    Column("duration_s", Float, nullable=False),
    Column("target", String(200)),
    Column("selection", Text, nullable=False),
    Column("exit_code", Integer, nullable=False),
    Column("passed", Integer, nullable=False),
    Column("failed", Integer, nullable=False),
    Column("warned", Integer, nullable=False),
    Column("manual", Integer, nullable=False),
    Column("not_applicable", Integer, nullable=False),
    Column("errors", Integer, nullable=False),
    Column("lkchaos_version", String(64), nullable=False),
    Column("recorded_at", UTCDateTime, nullable=False),
    Index("ix_validations_started_at", "started_at"),
    Index("ix_validations_watch_id", "watch_id"),
)  # fmt: skip

validation_items = Table(
    "validation_items", metadata,
    Column("validation_id", String(64),
           ForeignKey("validations.validation_id", ondelete="CASCADE"), primary_key=True),
    Column("item_id", String(200), primary_key=True),
    Column("position", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("evidence", Text, nullable=False),
    Column("duration_s", Float),
    Index("ix_validation_items_item", "item_id", "validation_id"),
)  # fmt: skip

load_runs = Table(
    "load_runs", metadata,
    Column("load_id", String(64), primary_key=True),
    Column("started_at", UTCDateTime, nullable=False),
    Column("ended_at", UTCDateTime, nullable=False),
    Column("duration_s", Float, nullable=False),
    Column("target", String(200)),
    Column("steps", String(400), nullable=False),
    Column("step_s", Float, nullable=False),
    Column("p95_budget_s", Float, nullable=False),
    Column("min_answered_pct", Float, nullable=False),
    Column("knee", Integer),
    Column("held_callers", Integer),
    Column("stopped_early", Boolean, nullable=False),
    Column("leftover_rooms", Integer),
    Column("lkchaos_version", String(64), nullable=False),
    Column("recorded_at", UTCDateTime, nullable=False),
    Column("encoding", String(32), nullable=False),
    Column("result", LargeBinary, nullable=False),
    Index("ix_load_runs_started_at", "started_at"),
)  # fmt: skip

load_steps = Table(
    "load_steps", metadata,
    Column("load_id", String(64), ForeignKey("load_runs.load_id", ondelete="CASCADE"),
           primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("callers", Integer, nullable=False),
    Column("connected", Integer, nullable=False),
    Column("turns", Integer, nullable=False),
    Column("answered_pct", Float, nullable=False),
    Column("latency_p50_s", Float),
    Column("latency_p95_s", Float),
    Column("latency_p99_s", Float),
    Column("join_p50_s", Float),
    Column("dispatch_p50_s", Float),
    Column("cpu_cores", Float),
    Column("breaks", Text, nullable=False),
)  # fmt: skip
