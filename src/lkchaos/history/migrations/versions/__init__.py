"""Alembic revisions of the run history, oldest first by their ``down_revision`` chain."""
