"""Voice load ramps (``lkchaos load``) and their steps.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "load_runs",
        sa.Column("load_id", sa.String(64), primary_key=True),
        sa.Column("started_at", _TS, nullable=False),
        sa.Column("ended_at", _TS, nullable=False),
        sa.Column("duration_s", sa.Float, nullable=False),
        sa.Column("target", sa.String(200)),
        sa.Column("steps", sa.String(400), nullable=False),
        sa.Column("step_s", sa.Float, nullable=False),
        sa.Column("p95_budget_s", sa.Float, nullable=False),
        sa.Column("min_answered_pct", sa.Float, nullable=False),
        sa.Column("knee", sa.Integer),
        sa.Column("held_callers", sa.Integer),
        sa.Column("stopped_early", sa.Boolean, nullable=False),
        sa.Column("leftover_rooms", sa.Integer),
        sa.Column("lkchaos_version", sa.String(64), nullable=False),
        sa.Column("recorded_at", _TS, nullable=False),
        sa.Column("encoding", sa.String(32), nullable=False),
        sa.Column("result", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_load_runs_started_at", "load_runs", ["started_at"])
    op.create_table(
        "load_steps",
        sa.Column("load_id", sa.String(64),
                  sa.ForeignKey("load_runs.load_id", ondelete="CASCADE"), primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("callers", sa.Integer, nullable=False),
        sa.Column("connected", sa.Integer, nullable=False),
        sa.Column("turns", sa.Integer, nullable=False),
        sa.Column("answered_pct", sa.Float, nullable=False),
        sa.Column("latency_p50_s", sa.Float),
        sa.Column("latency_p95_s", sa.Float),
        sa.Column("latency_p99_s", sa.Float),
        sa.Column("join_p50_s", sa.Float),
        sa.Column("dispatch_p50_s", sa.Float),
        sa.Column("cpu_cores", sa.Float),
        sa.Column("breaks", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("load_steps")
    op.drop_index("ix_load_runs_started_at", table_name="load_runs")
    op.drop_table("load_runs")
