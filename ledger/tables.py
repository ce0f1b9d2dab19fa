"""Database schema of the ledger core (SQLAlchemy Core; Alembic migrations mirror it).

Level-0 tree nodes are the entries' leaf hashes, so ``tree_nodes`` holds only levels >= 1:
one row per record instead of two keeps bulk appends fast.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)

# The one naming convention; the domains' MetaData use it too, so migrations name alike.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING)

logs = Table(
    "logs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("origin", String(255), nullable=False, unique=True),
    Column("tree_size", BigInteger, nullable=False, default=0),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

log_entries = Table(
    "log_entries",
    metadata,
    Column("log_id", Integer, ForeignKey("logs.id"), primary_key=True),
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("leaf_hash", LargeBinary(32), nullable=False),
    Column("record_digest", LargeBinary(32), nullable=False),
    Column("salt", LargeBinary(32), nullable=False),
    # Canonical JSON (RFC 8785) of the record; personal data stays here, never on chain.
    Column("record", Text, nullable=True),
    Column("appended_at", DateTime(timezone=True), nullable=False),
    # Proofs and leaf checks read an entry's leaf data from this index alone: records make the
    # table rows large, and a cold page per entry is what a page of proofs would otherwise wait for.
    Index("ix_log_entries_leaf", "log_id", "idx", "leaf_hash", "record_digest", "salt", "appended_at"),
)

tree_nodes = Table(
    "tree_nodes",
    metadata,
    Column("log_id", Integer, ForeignKey("logs.id"), primary_key=True),
    Column("level", SmallInteger, primary_key=True, autoincrement=False),
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary(32), nullable=False),
)

checkpoints = Table(
    "checkpoints",
    metadata,
    Column("log_id", Integer, ForeignKey("logs.id"), primary_key=True),
    Column("tree_size", BigInteger, primary_key=True, autoincrement=False),
    Column("root_hash", LargeBinary(32), nullable=False),
    Column("note", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

anchors = Table(
    "anchors",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("log_id", Integer, ForeignKey("logs.id"), nullable=False),
    Column("tree_size", BigInteger, nullable=False),
    Column("chain_id", BigInteger, nullable=False),
    Column("contract_address", String(42), nullable=False),
    Column("tx_hash", String(66), nullable=False),
    Column("block_number", BigInteger, nullable=False),
    Column("block_hash", String(66), nullable=False),
    Column("anchored_at", DateTime(timezone=True), nullable=False),
    Column("checkpoint_index", BigInteger, nullable=False),
    Column("gas_used", BigInteger, nullable=False),
    # "confirmed", or "orphaned" when the chain no longer holds it (e.g. a dev chain reset).
    Column("status", String(16), nullable=False, default="confirmed"),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("chain_id", "tx_hash"),
    Index("ix_anchors_log_chain_size", "log_id", "chain_id", "tree_size"),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("token_id", String(32), nullable=False, unique=True),
    # SHA-256 of the secret part; tokens are 256-bit random, so a fast hash suffices.
    Column("secret_sha256", LargeBinary(32), nullable=False),
    Column("name", String(128), nullable=False),
    Column("roles", String(255), nullable=False),
    # Who the token acts for, e.g. "officer:<id>"; domains resolve it (None: a plain role token).
    Column("subject", String(128), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
)
