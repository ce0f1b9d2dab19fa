"""Alembic environment: always run online against the connection handed in by ``db.migrate``."""

from alembic import context

from evidence_ledger.ledger.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only used by db.migrate
    raise RuntimeError("run migrations through evidence_ledger.ledger.db.migrate()")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True,
                  version_table=context.config.attributes.get("version_table", "alembic_version"))
with context.begin_transaction():
    context.run_migrations()
