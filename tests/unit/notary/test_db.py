"""The notary's migrations build exactly its declared tables, next to the core's."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from evidence_ledger.ledger import tables as ledger_tables
from evidence_ledger.notary import db, tables


def test_migrations_build_exactly_the_declared_schema(engine) -> None:  # type: ignore[no-untyped-def]
    db.migrate(engine)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={
            "include_name": lambda name, type_, parent: type_ != "table" or name in tables.metadata.tables})
        assert compare_metadata(ctx, tables.metadata) == []
        # The core is untouched by the notary's migration.
        assert compare_metadata(MigrationContext.configure(conn, opts={
            "include_name": lambda name, type_, parent: type_ != "table" or name in ledger_tables.metadata.tables}),
            ledger_tables.metadata) == []
    names = set(inspect(engine).get_table_names())
    assert {"alembic_version", "alembic_version_notary"} <= names
    assert set(tables.metadata.tables) <= names


def test_migrate_is_idempotent(engine) -> None:  # type: ignore[no-untyped-def]
    db.migrate(engine)
    db.migrate(engine)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version_notary").scalar() == "n0001"
