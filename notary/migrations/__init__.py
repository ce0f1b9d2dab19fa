"""Alembic migrations of the notary schema (version table alembic_version_notary)."""
