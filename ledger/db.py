"""Engines and migrations: SQLite (WAL, embedded default) or PostgreSQL by URL."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import SQLAlchemyError

from .errors import LedgerError


class DatabaseError(LedgerError):
    """The database could not be opened, migrated or locked."""


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def create_db_engine(url: str) -> Engine:
    """Create an engine; SQLite gets WAL, full fsync and BEGIN IMMEDIATE write transactions."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        _configure_sqlite(engine)
        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return create_engine(parsed, pool_pre_ping=True)


def _configure_sqlite(engine: Engine) -> None:
    # pysqlite's own transaction handling defers BEGIN; take it over so writers lock up front
    # (BEGIN IMMEDIATE) and readers never hit "database is locked" on upgrade.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def migrate(engine: Engine, script_location: Path | None = None,
            version_table: str = "alembic_version") -> None:
    """Bring a schema to its latest Alembic revision.

    Each package owns its migrations and its version table (the core: ``ledger/migrations`` and
    ``alembic_version``; a domain: its own folder and ``alembic_version_<domain>``), so the core
    never imports a domain to migrate it. A domain's ``env.py`` reads ``version_table`` from
    ``config.attributes``.
    """
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(script_location or Path(__file__).parent / "migrations"))
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            cfg.attributes["version_table"] = version_table
            command.upgrade(cfg, "head")
    except SQLAlchemyError as e:
        raise DatabaseError(f"migrating the database failed: {e}") from e


class SequencerLock:
    """Elects the single process that anchors: a PostgreSQL advisory lock, or a file lock for SQLite.

    Held for the life of the process; released on close (or by the OS when the process dies).
    """

    _PG_KEY = 0x4C454447  # "LEDG"

    def __init__(self, engine: Engine, lock_path: Path | None) -> None:
        self._engine = engine
        self._lock_path = lock_path
        self._conn: Connection | None = None
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        if self._conn is not None or self._fd is not None:
            return True
        if is_sqlite(self._engine):
            if self._lock_path is None:
                return True
            self._lock_path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            self._fd = fd
            return True
        conn = self._engine.connect()
        got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self._PG_KEY}).scalar()
        conn.commit()
        if got:
            self._conn = conn
            return True
        conn.close()
        return False

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self._PG_KEY})
                self._conn.commit()
            finally:
                self._conn.close()
                self._conn = None
