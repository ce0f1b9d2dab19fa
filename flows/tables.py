"""Database schema of transaction flows (SQLAlchemy Core; its own MetaData and Alembic migrations).

Table names carry the ``flows_`` prefix (one database is shared with the core and the other
domains). Every accepted record is first appended to the ``flows`` log (a salted commitment to
its canonical JSON, which the core keeps in ``log_entries``); its row here carries that leaf's
``log_index``, so a row is always provable and the log holds the exact bytes committed to.

Volume tables (contracts, payments, invoices) are keyed by ``log_index``: on SQLite an INTEGER
primary key is the rowid, so appending in log order costs no extra B-tree. Their natural keys are
unique constraints (the race backstop of the service's duplicate look-ups), and each query the
service answers has an index: invoices by seller / buyer and date, by date, by contract; contracts
by buyer (the unique key's prefix), seller and number; payments by payer, payee and contract;
payment -> invoice links by invoice.

Analysis output is append-only too: each :meth:`FlowBook.analyse` is a run; a re-run marks the
previous run's findings and grades ``current = false`` instead of deleting them. Draw seeds sit in
``flows_draws.seed_hex`` from commitment on, and are only returned once revealed.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from evidence_ledger.ledger.tables import NAMING

metadata = MetaData(naming_convention=NAMING)

USCC = 18
ID = 32  # uuid4 hex
KEY = 64  # invoice key hex; contract numbers and payment references are bounded alike
NAME = 255
PERIOD = 7  # "YYYY-MM", "YYYY-Qn" or "YYYY"

# A leaf index of the flows log. INTEGER on SQLite makes a primary key the rowid.
LOG_INDEX = BigInteger().with_variant(Integer(), "sqlite")

enterprises = Table(
    "flows_enterprises",
    metadata,
    Column("uscc", String(USCC), primary_key=True),
    Column("name", String(NAME), nullable=False),
    Column("registered_on", Date, nullable=False),
    Column("region", String(32), nullable=True),
    Column("industry", String(64), nullable=True),
    Column("log_index", BigInteger, nullable=False, unique=True),
)

snapshots = Table(
    "flows_snapshots",
    metadata,
    Column("uscc", String(USCC), ForeignKey("flows_enterprises.uscc"), primary_key=True),
    Column("period", String(PERIOD), primary_key=True),  # "YYYY-MM"
    Column("employees", Integer, nullable=False),
    Column("insured", Integer, nullable=False),
    Column("log_index", BigInteger, nullable=False, unique=True),
)

contracts = Table(
    "flows_contracts",
    metadata,
    Column("log_index", LOG_INDEX, primary_key=True, autoincrement=False),
    Column("contract_no", String(KEY), nullable=False),
    Column("buyer_uscc", String(USCC), ForeignKey("flows_enterprises.uscc"), nullable=False),
    Column("seller_uscc", String(USCC), ForeignKey("flows_enterprises.uscc"), nullable=False),
    Column("amount_fen", BigInteger, nullable=False),
    Column("signed_on", Date, nullable=False),
    Column("subject", String(NAME), nullable=False),
    Column("payment_term_days", Integer, nullable=True),
    UniqueConstraint("buyer_uscc", "seller_uscc", "contract_no"),
    Index("ix_flows_contracts_seller_uscc", "seller_uscc"),
    Index("ix_flows_contracts_contract_no", "contract_no"),
)

payments = Table(
    "flows_payments",
    metadata,
    Column("log_index", LOG_INDEX, primary_key=True, autoincrement=False),
    Column("payment_ref", String(KEY), nullable=False, unique=True),
    Column("payer_uscc", String(USCC), ForeignKey("flows_enterprises.uscc"), nullable=False),
    Column("payee_uscc", String(USCC), ForeignKey("flows_enterprises.uscc"), nullable=False),
    Column("amount_fen", BigInteger, nullable=False),
    Column("paid_on", Date, nullable=False),
    Column("contract_no", String(KEY), nullable=True),
    Index("ix_flows_payments_payer_uscc", "payer_uscc"),
    Index("ix_flows_payments_payee_uscc", "payee_uscc"),
    Index("ix_flows_payments_contract_no", "contract_no"),
)

# Which invoices a payment says it settles. No foreign key to invoices: a payment may be
# recorded before the invoice it settles (prepayment), and a wrong key is itself evidence.
payment_invoices = Table(
    "flows_payment_invoices",
    metadata,
    Column("payment_log_index", LOG_INDEX, ForeignKey("flows_payments.log_index"), primary_key=True,
           autoincrement=False),
    Column("position", Integer, primary_key=True, autoincrement=False),
    Column("invoice_key", String(KEY), nullable=False),
    Index("ix_flows_payment_invoices_invoice_key", "invoice_key"),
)

invoices = Table(
    "flows_invoices",
    metadata,
    Column("log_index", LOG_INDEX, primary_key=True, autoincrement=False),
    Column("key_hex", String(KEY), nullable=False, unique=True),
    Column("seller_uscc", String(USCC), ForeignKey("flows_enterprises.uscc"), nullable=False),
    Column("buyer_uscc", String(USCC), ForeignKey("flows_enterprises.uscc"), nullable=False),
    Column("code", String(12), nullable=False),
    Column("number", String(20), nullable=False),
    Column("amount_fen", BigInteger, nullable=False),
    Column("tax_fen", BigInteger, nullable=False),
    Column("issued_on", Date, nullable=False),
    Column("contract_no", String(KEY), nullable=True),
    Column("goods", String(NAME), nullable=False),
    Index("ix_flows_invoices_seller_issued", "seller_uscc", "issued_on"),
    Index("ix_flows_invoices_buyer_issued", "buyer_uscc", "issued_on"),
    Index("ix_flows_invoices_issued_on", "issued_on"),
    Index("ix_flows_invoices_contract_no", "contract_no"),
)

runs = Table(
    "flows_runs",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("period", String(PERIOD), nullable=False),
    Column("start_on", Date, nullable=False),
    Column("end_on", Date, nullable=False),
    Column("as_of", Date, nullable=False),
    Column("invoices", Integer, nullable=False),
    Column("findings_by_rule", Text, nullable=False),  # JSON [[rule, count], ...]
    Column("grades_by_grade", Text, nullable=False),  # JSON [[grade, count], ...]
    Column("log_index", BigInteger, nullable=True, unique=True),  # the summary record
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("current", Boolean, nullable=False),
    Column("superseded_by", String(ID), nullable=True),
    Index("ix_flows_runs_period_current", "period", "current"),
)

findings = Table(
    "flows_findings",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("run_id", String(ID), ForeignKey("flows_runs.id"), nullable=False),
    Column("period", String(PERIOD), nullable=False),
    Column("rule", String(64), nullable=False),
    Column("uscc", String(USCC), nullable=False),
    Column("reason", Text, nullable=False),
    Column("severity", String(16), nullable=False),
    Column("records", Text, nullable=False),  # JSON [[kind, key, log_index], ...]
    Column("thresholds", Text, nullable=False),  # JSON [[name, value], ...]
    Column("measured", Text, nullable=False),
    Column("log_index", BigInteger, nullable=False, unique=True),
    Column("current", Boolean, nullable=False),
    Index("ix_flows_findings_period_current_uscc", "period", "current", "uscc"),
    Index("ix_flows_findings_uscc_current", "uscc", "current"),
    Index("ix_flows_findings_rule_current", "rule", "current"),
    Index("ix_flows_findings_run_id", "run_id"),
)

grades = Table(
    "flows_grades",
    metadata,
    Column("run_id", String(ID), ForeignKey("flows_runs.id"), primary_key=True),
    Column("uscc", String(USCC), primary_key=True),
    Column("period", String(PERIOD), nullable=False),
    Column("grade", String(1), nullable=False),
    Column("score", Integer, nullable=False),
    Column("inspection_ratio", Float, nullable=False),
    Column("inputs", Text, nullable=False),  # JSON of GradeInputs, as logged
    Column("log_index", BigInteger, nullable=False, unique=True),
    Column("current", Boolean, nullable=False),
    Index("ix_flows_grades_period_current_uscc", "period", "current", "uscc"),
)

draws = Table(
    "flows_draws",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("period", String(PERIOD), nullable=False),
    Column("run_id", String(ID), ForeignKey("flows_runs.id"), nullable=False),
    Column("commitment_hex", String(64), nullable=False),
    Column("population_hex", String(64), nullable=False),
    Column("seed_hex", String(64), nullable=False),  # secret until reveal_log_index is set
    Column("population", Text, nullable=False),  # JSON [[uscc, grade], ...] exactly as committed
    Column("inspectors", Text, nullable=False),  # JSON [name, ...]
    Column("ratios", Text, nullable=False),  # JSON {grade: ratio}
    Column("per_enterprise", Integer, nullable=False),
    Column("commit_log_index", BigInteger, nullable=False, unique=True),
    Column("committed_at", DateTime(timezone=True), nullable=False),
    Column("reveal_log_index", BigInteger, nullable=True, unique=True),
    Column("revealed_at", DateTime(timezone=True), nullable=True),
    # The chain block that anchored the commitment; its hash is mixed into the draw seed.
    Column("beacon_block_number", BigInteger, nullable=True),
    Column("beacon_block_hash_hex", String(64), nullable=True),
    Index("ix_flows_draws_period", "period"),
)

draw_selections = Table(
    "flows_draw_selections",
    metadata,
    Column("draw_id", String(ID), ForeignKey("flows_draws.id"), primary_key=True),
    Column("position", Integer, primary_key=True, autoincrement=False),
    Column("uscc", String(USCC), nullable=False),
    Column("grade", String(1), nullable=False),
    Column("ticket_hex", String(64), nullable=False),
    Column("inspectors", Text, nullable=False),  # JSON [name, ...]
)

referrals = Table(
    "flows_referrals",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("uscc", String(USCC), nullable=False),
    Column("finding_ids", Text, nullable=False),  # JSON [id, ...]
    Column("referred_by", String(NAME), nullable=False),
    Column("note", Text, nullable=False),
    Column("referred_at", DateTime(timezone=True), nullable=False),
    Column("log_index", BigInteger, nullable=False, unique=True),
    Index("ix_flows_referrals_uscc", "uscc"),
)

# Reads by agencies; log_index is in the "custody" log, not the flows log.
accesses = Table(
    "flows_accesses",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("actor", String(NAME), nullable=False),
    Column("action", String(64), nullable=False),
    Column("subject", String(NAME), nullable=False),
    Column("reason", Text, nullable=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("log_index", BigInteger, nullable=False, unique=True),
    Index("ix_flows_accesses_subject_log_index", "subject", "log_index"),
)
