"""Database schema of the notary (SQLAlchemy Core; its own MetaData and Alembic migrations).

Table names carry the ``notary_`` prefix: every domain shares one database with the core, so a
domain's names must not collide with another's. Ids are 32-character lowercase uuid4 hex.
Timestamps are aware UTC. Nothing is ever deleted: corrections and withdrawals add rows and
change ``status``.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from evidence_ledger.ledger.tables import NAMING

metadata = MetaData(naming_convention=NAMING)

ID = 32  # uuid4 hex

agencies = Table(
    "notary_agencies",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("code", String(64), nullable=False, unique=True),  # e.g. unified social credit code
    Column("name", String(255), nullable=False),
    Column("kind", String(32), nullable=False),  # market_regulation | tax | human_resources | ...
    # Id in the Authority contract: sha256("evidence-ledger/agency/" + code).
    Column("authority_id", LargeBinary(32), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

officers = Table(
    "notary_officers",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("agency_id", String(ID), ForeignKey("notary_agencies.id"), nullable=False, index=True),
    Column("name", String(255), nullable=False),
    Column("role", String(32), nullable=False),  # officer | inspector | auditor | admin
    Column("public_key", LargeBinary(32), nullable=False),  # raw Ed25519
    Column("key_id", LargeBinary(32), nullable=False, unique=True),  # sha256(public_key)
    Column("custody", String(8), nullable=False),  # server | client
    # AES-256-GCM: version byte || nonce (12) || ciphertext+tag; only for custody "server".
    Column("encrypted_private_key", LargeBinary, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Column("revocation_reason", String(32), nullable=True),
    CheckConstraint("custody IN ('server', 'client')", name="custody"),
)

cases = Table(
    "notary_cases",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("reference", String(128), nullable=False, unique=True),
    Column("title", String(512), nullable=False),
    Column("agency_id", String(ID), ForeignKey("notary_agencies.id"), nullable=False, index=True),
    Column("created_by", String(255), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

evidence = Table(
    "notary_evidence",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("case_id", String(ID), ForeignKey("notary_cases.id"), nullable=False, index=True),
    Column("kind", String(8), nullable=False),  # web | file
    Column("log_index", BigInteger, nullable=False, unique=True),  # in the "evidence" log
    Column("sha256", LargeBinary(32), nullable=False, index=True),  # of the main blob
    Column("cid", String(128), nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("media_type", String(255), nullable=False),
    Column("filename", String(255), nullable=True),
    Column("record", Text, nullable=False),  # canonical (RFC 8785) signed record
    Column("officer_id", String(ID), ForeignKey("notary_officers.id"), nullable=False, index=True),
    Column("captured_at", DateTime(timezone=True), nullable=True),
    Column("notarized_at", DateTime(timezone=True), nullable=False),
    Column("supersedes", String(ID), ForeignKey("notary_evidence.id"), nullable=True, unique=True),
    Column("reason", Text, nullable=True),  # why this record corrects the one it supersedes
    Column("status", String(16), nullable=False),  # active | corrected | withdrawn
    # The signed withdrawal record, when withdrawn (it is in the "evidence" log too).
    Column("withdrawal_log_index", BigInteger, nullable=True, unique=True),
    Column("withdrawal_record", Text, nullable=True),
    Column("withdrawn_at", DateTime(timezone=True), nullable=True),
    Column("withdrawn_by", String(ID), ForeignKey("notary_officers.id"), nullable=True),
    Column("withdrawal_reason", Text, nullable=True),
    CheckConstraint("kind IN ('web', 'file')", name="kind"),
    CheckConstraint("status IN ('active', 'corrected', 'withdrawn')", name="status"),
)

# The parts of a web capture (screenshot, HTML, WARC, ...), each its own blob; lets a verifier
# find the evidence from any one part.
evidence_parts = Table(
    "notary_evidence_parts",
    metadata,
    Column("evidence_id", String(ID), ForeignKey("notary_evidence.id"), primary_key=True),
    Column("position", SmallInteger, primary_key=True, autoincrement=False),
    Column("name", String(255), nullable=False),
    Column("media_type", String(255), nullable=False),
    Column("sha256", LargeBinary(32), nullable=False, index=True),
    Column("cid", String(128), nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    UniqueConstraint("evidence_id", "name"),
)

custody_events = Table(
    "notary_custody_events",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("evidence_id", String(ID), ForeignKey("notary_evidence.id"), nullable=False),
    Column("actor", String(255), nullable=False),
    Column("action", String(16), nullable=False),
    Column("reason", Text, nullable=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("log_index", BigInteger, nullable=False, unique=True),  # in the "custody" log
    CheckConstraint(
        "action IN ('view', 'download', 'export', 'correction', 'withdrawal', 'notarize')", name="action"),
    Index("ix_notary_custody_events_evidence_at", "evidence_id", "at"),
)
