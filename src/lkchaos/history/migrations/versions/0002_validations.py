"""Validation runs of the deployment checklist (``lkchaos validate``) and their items.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "validations",
        sa.Column("validation_id", sa.String(64), primary_key=True),
        sa.Column("watch_id", sa.String(64)),
        sa.Column("started_at", _TS, nullable=False),
        sa.Column("ended_at", _TS, nullable=False),
        sa.Column("duration_s", sa.Float, nullable=False),
        sa.Column("target", sa.String(200)),
        sa.Column("selection", sa.Text, nullable=False),
        sa.Column("exit_code", sa.Integer, nullable=False),
        sa.Column("passed", sa.Integer, nullable=False),
        sa.Column("failed", sa.Integer, nullable=False),
        sa.Column("warned", sa.Integer, nullable=False),
        sa.Column("manual", sa.Integer, nullable=False),
        sa.Column("not_applicable", sa.Integer, nullable=False),
        sa.Column("errors", sa.Integer, nullable=False),
        sa.Column("lkchaos_version", sa.String(64), nullable=False),
        sa.Column("recorded_at", _TS, nullable=False),
    )
    op.create_index("ix_validations_started_at", "validations", ["started_at"])
    op.create_index("ix_validations_watch_id", "validations", ["watch_id"])
    op.create_table(
        "validation_items",
        sa.Column("validation_id", sa.String(64),
                  sa.ForeignKey("validations.validation_id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("item_id", sa.String(200), primary_key=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("evidence", sa.Text, nullable=False),
        sa.Column("duration_s", sa.Float),
    )
    op.create_index("ix_validation_items_item", "validation_items", ["item_id", "validation_id"])


def downgrade() -> None:
    op.drop_index("ix_validation_items_item", table_name="validation_items")
    op.drop_table("validation_items")
    op.drop_index("ix_validations_watch_id", table_name="validations")
    op.drop_index("ix_validations_started_at", table_name="validations")
    op.drop_table("validations")
