"""Database schema of food traceability (SQLAlchemy Core; its own MetaData and Alembic migrations).

Table names carry the ``trace_`` prefix (one database is shared with the core and the other
domains). The event itself is the record of truth: its canonical JSON is in ``trace_events`` and
a salted commitment to it is a leaf of the ``trace`` log (``log_index`` is the leaf index, and
the event row's primary key). Every other table is an index derived from the accepted events, so
that no query ever replays the event list:

* ``trace_event_lots`` — which lots an event touches (events-by-lot), with quantities;
* ``trace_lineage`` — lot → lot edges of transformations (inputs → outputs) and aggregations
  (children → parent), walked with recursive CTEs for trace back / forward and recalls;
* ``trace_holdings`` — current stock per (operator, lot);
* ``trace_movements`` — the signed quantity changes per (operator, lot, event), for stock at a
  date and the daily in/out ledger;
* ``trace_shipments`` — shipped quantities not yet received, to check receipts;
* ``trace_certificates`` — inspection and quarantine certificates attached to lots.

Nothing is deleted: an EPCIS error declaration marks its event ``erroneous``, sets the derived
rows' ``active`` to false (lineage) or adds compensating rows (movements), and is itself an event.
Lot keys are ``ProductId.key`` strings; ids of operators are 32-character uuid4 hex.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
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

ID = 32  # uuid4 hex
KEY = 200  # a lot key (ProductId.key)
URI = 255  # EPCIS ids (eventID, locations)

ROLES = ("farm", "slaughterhouse", "wholesaler", "retailer", "restaurant")

operators = Table(
    "trace_operators",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("licence", String(64), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    Column("gln", String(13), nullable=True, unique=True),
    Column("location_name", String(255), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    CheckConstraint("role IN ('farm', 'slaughterhouse', 'wholesaler', 'retailer', 'restaurant')",
                    name="role"),
)

lots = Table(
    "trace_lots",
    metadata,
    Column("key", String(KEY), primary_key=True),
    Column("gtin", String(14), nullable=True),
    Column("lot", String(20), nullable=True),
    Column("serial", String(20), nullable=True),
    Column("local_id", String(KEY), nullable=True),
    Column("description", String(255), nullable=True),
    Column("uom", String(8), nullable=True),
    # The operator and event that created the lot (commissioning or a transformation output).
    Column("origin_operator_id", String(ID), ForeignKey("trace_operators.id"), nullable=True),
    Column("origin_log_index", BigInteger, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),  # time of the first event
    Column("best_before", Date, nullable=True),
    Column("expiry", Date, nullable=True),
    Column("status", String(16), nullable=False),  # active | disposed | recalled
    Column("status_reason", Text, nullable=True),
    Column("status_at", DateTime(timezone=True), nullable=True),
    Column("recall_root", String(KEY), nullable=True),
    Column("recall_id", String(ID), nullable=True, index=True),
    CheckConstraint("status IN ('active', 'disposed', 'recalled')", name="status"),
    Index("ix_trace_lots_gtin_lot", "gtin", "lot"),
)

events = Table(
    "trace_events",
    metadata,
    Column("log_index", BigInteger, primary_key=True, autoincrement=False),  # in the "trace" log
    Column("event_id", String(URI), nullable=False),
    # "event", or "error_declaration" (EPCIS: the erroneous event again, same eventID, with an
    # errorDeclaration); a recall by a regulator is an "event" without an operator.
    Column("kind", String(20), nullable=False),
    Column("type", String(32), nullable=False),
    Column("action", String(8), nullable=True),
    Column("biz_step", String(64), nullable=True),
    Column("disposition", String(64), nullable=True),
    Column("event_time", DateTime(timezone=True), nullable=False),
    Column("operator_id", String(ID), ForeignKey("trace_operators.id"), nullable=True),
    Column("actor", String(255), nullable=False),  # operator:<id> | regulator:<name>
    Column("read_point", String(URI), nullable=True),
    Column("biz_location", String(URI), nullable=True),
    Column("source_operator_id", String(ID), nullable=True),
    Column("destination_operator_id", String(ID), nullable=True),
    Column("status", String(12), nullable=False),  # active | erroneous
    Column("declared_by", BigInteger, nullable=True),  # log index of its error declaration
    Column("record_sha256", String(64), nullable=False),  # hex digest the log leaf commits to
    Column("record", Text, nullable=False),  # the event's canonical JSON, exactly as committed
    Column("captured_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("event_id", "kind"),
    CheckConstraint("kind IN ('event', 'error_declaration')", name="kind"),
    CheckConstraint("status IN ('active', 'erroneous')", name="status"),
    Index("ix_trace_events_operator_time", "operator_id", "event_time"),
    Index("ix_trace_events_event_time", "event_time"),
)

event_lots = Table(
    "trace_event_lots",
    metadata,
    Column("log_index", BigInteger, ForeignKey("trace_events.log_index"), primary_key=True),
    Column("position", Integer, primary_key=True, autoincrement=False),
    Column("lot_key", String(KEY), nullable=False),
    Column("role", String(8), nullable=False),  # epc | input | output | parent | child
    Column("quantity", Float, nullable=True),
    Column("uom", String(8), nullable=True),
    Column("event_time", DateTime(timezone=True), nullable=False),
    # Covering (t0002): a lot's steps are read from the index alone, not one table page per step.
    Index("ix_trace_event_lots_lot_cover", "lot_key", "event_time", "log_index", "role", "quantity", "uom"),
)

lineage = Table(
    "trace_lineage",
    metadata,
    Column("parent_key", String(KEY), primary_key=True),
    Column("child_key", String(KEY), primary_key=True),
    Column("log_index", BigInteger, ForeignKey("trace_events.log_index"), primary_key=True,
           autoincrement=False),
    Column("kind", String(16), nullable=False),  # transformation | aggregation
    Column("active", Boolean, nullable=False),
    Index("ix_trace_lineage_child", "child_key"),
)

holdings = Table(
    "trace_holdings",
    metadata,
    Column("operator_id", String(ID), ForeignKey("trace_operators.id"), primary_key=True),
    Column("lot_key", String(KEY), primary_key=True),
    Column("quantity", Float, nullable=False),
    Column("uom", String(8), nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_trace_holdings_lot", "lot_key"),
)

movements = Table(
    "trace_movements",
    metadata,
    Column("log_index", BigInteger, ForeignKey("trace_events.log_index"), primary_key=True),
    Column("position", Integer, primary_key=True, autoincrement=False),
    Column("operator_id", String(ID), nullable=False),
    Column("lot_key", String(KEY), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("day", Date, nullable=False),  # the UTC date of ``at``
    Column("delta", Float, nullable=False),  # + in, - out
    Column("uom", String(8), nullable=True),
    # commission | receive | ship | consume | produce | pack | unpack | dispose | reversal
    Column("reason", String(16), nullable=False),
    Column("counterparty_id", String(ID), nullable=True),
    # A receipt's share of a shipment (so that reversing the receipt reopens that shipment).
    Column("ship_log_index", BigInteger, nullable=True),
    Column("ship_position", Integer, nullable=True),
    Index("ix_trace_movements_operator_day", "operator_id", "day"),
)

shipments = Table(
    "trace_shipments",
    metadata,
    Column("log_index", BigInteger, ForeignKey("trace_events.log_index"), primary_key=True),
    Column("position", Integer, primary_key=True, autoincrement=False),
    Column("lot_key", String(KEY), nullable=False),
    Column("source_operator_id", String(ID), nullable=False),
    Column("destination_operator_id", String(ID), nullable=False),
    Column("quantity", Float, nullable=False),
    Column("received", Float, nullable=False),
    Column("uom", String(8), nullable=True),
    Column("status", String(12), nullable=False),  # open | received | cancelled
    CheckConstraint("status IN ('open', 'received', 'cancelled')", name="status"),
    Index("ix_trace_shipments_destination_lot", "destination_operator_id", "lot_key"),
    Index("ix_trace_shipments_lot_status", "lot_key", "status"),  # a lot's in-transit holders (t0002)
)

certificates = Table(
    "trace_certificates",
    metadata,
    Column("log_index", BigInteger, ForeignKey("trace_events.log_index"), primary_key=True),
    Column("position", Integer, primary_key=True, autoincrement=False),
    Column("lot_key", String(KEY), nullable=False),
    Column("kind", String(32), nullable=False),  # quarantine | meat_inspection | ...
    Column("number", String(255), nullable=True),
    Column("issuer", String(255), nullable=True),
    Column("uri", String(1024), nullable=True),
    Column("issued_at", DateTime(timezone=True), nullable=True),
    Column("result", String(64), nullable=True),
    Column("active", Boolean, nullable=False),
    Index("ix_trace_certificates_lot", "lot_key"),
)

recalls = Table(
    "trace_recalls",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("root_key", String(KEY), nullable=False, index=True),
    Column("reason", Text, nullable=False),
    Column("regulator", String(255), nullable=False),
    Column("recalled_at", DateTime(timezone=True), nullable=False),
    Column("lot_count", Integer, nullable=False),
    Column("first_log_index", BigInteger, nullable=False),
    Column("last_log_index", BigInteger, nullable=False),
)
