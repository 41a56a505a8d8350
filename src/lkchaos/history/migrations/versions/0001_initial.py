"""The first history schema: runs, probe figures, samples, journals, game days, schedule events.

Revision ID: 0001
Revises:
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "gameday_runs",
        sa.Column("gameday_run_id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("file_hash", sa.String(128), nullable=False),
        sa.Column("scheduled", sa.Boolean, nullable=False),
        sa.Column("started_at", _TS, nullable=False),
        sa.Column("ended_at", _TS),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("score", sa.Float),
    )
    op.create_index("ix_gameday_runs_name_started", "gameday_runs", ["name", "started_at"])
    op.create_table(
        "runs",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("experiment_title", sa.Text, nullable=False),
        sa.Column("experiment_name", sa.String(200), nullable=False),
        sa.Column("experiment_path", sa.Text),
        sa.Column("experiment_hash", sa.String(64), nullable=False),
        sa.Column("gameday_run_id", sa.String(64)),
        sa.Column("entry", sa.String(200)),
        sa.Column("started_at", _TS, nullable=False),
        sa.Column("ended_at", _TS),
        sa.Column("duration_s", sa.Float),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("deviated", sa.Boolean, nullable=False),
        sa.Column("faults_injected", sa.Integer, nullable=False),
        sa.Column("faults_undone", sa.Integer),
        sa.Column("cleanup_s", sa.Float),
        sa.Column("availability", sa.Float),
        sa.Column("time_to_detect_s", sa.Float),
        sa.Column("rto_s", sa.Float),
        sa.Column("score", sa.Float),
        sa.Column("score_explanation", sa.Text),
        sa.Column("lkchaos_version", sa.String(64), nullable=False),
        sa.Column("livekit_version", sa.String(64)),
        sa.Column("target", sa.String(200)),
        sa.Column("journal_path", sa.Text),
        sa.Column("recorded_at", _TS, nullable=False),
    )
    op.create_index("ix_runs_experiment_name", "runs", ["experiment_name", "started_at"])
    op.create_index("ix_runs_experiment_title", "runs", ["experiment_title"])
    op.create_index("ix_runs_gameday_run_id", "runs", ["gameday_run_id"])
    op.create_index("ix_runs_started_at", "runs", ["started_at"])
    op.create_table(
        "probe_figures",
        sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.run_id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("probe", sa.String(200), primary_key=True),
        sa.Column("samples", sa.Integer, nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("availability", sa.Float),
        sa.Column("availability_during_fault", sa.Float),
        sa.Column("time_to_detect_s", sa.Float),
        sa.Column("rto_s", sa.Float),
        sa.Column("recovered", sa.Boolean),
        sa.Column("longest_outage_s", sa.Float),
    )
    op.create_table(
        "samples",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.run_id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("probe", sa.String(200), nullable=False),
        sa.Column("t", sa.Float, nullable=False),
        sa.Column("at", _TS),
        sa.Column("ok", sa.Boolean, nullable=False),
        sa.Column("latency_ms", sa.Float),
        sa.Column("reason", sa.String(200)),
    )
    op.create_index("ix_samples_run_probe", "samples", ["run_id", "probe", "t"])
    op.create_table(
        "journals",
        sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.run_id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("encoding", sa.String(32), nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "schedule_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("gameday", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("at", _TS, nullable=False),
    )
    op.create_index("ix_schedule_events_gameday_at", "schedule_events", ["gameday", "at"])
    op.create_index("ix_schedule_events_at", "schedule_events", ["at"])


def downgrade() -> None:
    for table in ("schedule_events", "journals", "samples", "probe_figures", "runs",
                  "gameday_runs"):  # fmt: skip
        op.drop_table(table)
