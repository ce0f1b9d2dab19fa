"""The flows schema: migrated with the core's helper into its own Alembic version table."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from evidence_ledger.ledger import db as ledger_db

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "alembic_version_flows"


def migrate(engine: Engine) -> None:
    """Bring the flows tables to their latest revision (the core schema is migrated separately)."""
    ledger_db.migrate(engine, MIGRATIONS, VERSION_TABLE)
