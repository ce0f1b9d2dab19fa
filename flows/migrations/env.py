"""Alembic environment of transaction flows: run online against the connection handed in by
``evidence_ledger.ledger.db.migrate``, recording its revision in its own version table."""

from alembic import context

from evidence_ledger.flows.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only used by db.migrate
    raise RuntimeError("run migrations through evidence_ledger.flows.db.migrate()")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True,
                  version_table=context.config.attributes["version_table"],
                  # The core's and other domains' tables share the database: compare only ours.
                  include_name=lambda name, type_, parent: type_ != "table" or name in metadata.tables)
with context.begin_transaction():
    context.run_migrations()
