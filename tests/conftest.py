"""Shared fixtures: databases (SQLite and PostgreSQL) and the CI rule that nothing may skip.

``LEDGER_TEST_REQUIRE_ALL=1`` (set by .ci/run) turns a missing component into a failure, so CI
always runs everything while a user's machine without PostgreSQL still gets a visible skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

REQUIRE_ALL = os.environ.get("LEDGER_TEST_REQUIRE_ALL") == "1"
PG_HOST = os.environ.get("LEDGER_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("LEDGER_TEST_PG_PORT", "5432"))


def missing(reason: str) -> None:
    """Skip with a visible reason, or fail when CI demands every component."""
    if REQUIRE_ALL:
        pytest.fail(f"{reason} (LEDGER_TEST_REQUIRE_ALL=1 forbids skipping)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    try:
        import psycopg
    except ImportError:
        missing("psycopg is not installed")
    name = f"ledger_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(host=PG_HOST, port=PG_PORT, dbname="test", user=os.environ.get("PGUSER", "postgres"),
                                autocommit=True, connect_timeout=3)
    except psycopg.Error as e:
        try:
            admin = psycopg.connect(host=PG_HOST, port=PG_PORT, dbname="test", autocommit=True, connect_timeout=3)
        except psycopg.Error:
            missing(f"PostgreSQL is not reachable on {PG_HOST}:{PG_PORT}: {e}")
    user = admin.info.user
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://{user}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def _reset_pg(url: str) -> None:
    from sqlalchemy import create_engine, text

    eng = create_engine(url)
    with eng.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    eng.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path) -> str:  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    url = request.getfixturevalue("pg_server_url")
    _reset_pg(url)
    return url


@pytest.fixture
def engine(db_url: str):  # type: ignore[no-untyped-def]
    from evidence_ledger.ledger import db

    eng = db.create_db_engine(db_url)
    db.migrate(eng)
    yield eng
    eng.dispose()
