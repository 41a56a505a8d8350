"""Alembic migrations of the run history (applied by :func:`lkchaos.history.open_history`)."""
