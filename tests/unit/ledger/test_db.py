"""Migrations match the tables; the sequencer lock elects exactly one process."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from evidence_ledger.ledger import db, tables


def test_migrations_build_exactly_the_declared_schema(engine) -> None:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), tables.metadata)
    assert diff == []


def test_migrate_is_idempotent(engine) -> None:  # type: ignore[no-untyped-def]
    db.migrate(engine)
    db.migrate(engine)


def test_only_one_holder_of_the_sequencer_lock(engine, tmp_path) -> None:  # type: ignore[no-untyped-def]
    lock_path = tmp_path / "sequencer.lock" if db.is_sqlite(engine) else None
    first = db.SequencerLock(engine, lock_path)
    second = db.SequencerLock(engine, lock_path)
    assert first.try_acquire()
    assert first.try_acquire()  # re-entrant for its holder
    assert not second.try_acquire()
    first.release()
    assert second.try_acquire()
    second.release()
