"""Alembic environment of the run history: online only, on the connection that
:mod:`lkchaos.history.migrate` passes in ``config.attributes["connection"]`` (inside its
transaction, which holds the PostgreSQL advisory lock)."""

from __future__ import annotations

from alembic import context

from lkchaos.history.schema import VERSION_TABLE, metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reachable from the alembic command line
    raise RuntimeError(
        "the lkchaos history migrations run through lkchaos.history.open_history(), "
        "not the alembic command line"
    )
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
