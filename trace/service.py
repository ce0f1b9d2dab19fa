"""The traceability service: operators, event capture with rules, inventory, provenance, recall.

How an event is captured
------------------------
1. It is validated against the GS1 EPCIS 2.0 JSON Schema and normalised (:mod:`.epcis`).
2. The capturing operator must be the actor: the source party of a shipment, the destination
   party of a receipt, the owner of the event's location (``bizLocation``/``readPoint``) otherwise.
3. The rules are checked against the derived state (never by replaying events): nothing is
   shipped beyond what the operator holds (``over_shipped``); nothing is received that was not
   shipped to the receiver (``not_shipped``, ``over_received``); transformation outputs weigh at
   most the inputs times ``1 + yield_tolerance`` (``mass_balance``); a disposed or recalled lot
   takes no further events (``lot_disposed``, ``lot_recalled``; a recalled lot may still be
   destroyed); see :class:`RuleViolationError` for every rule name.
4. The event is appended to the ``trace`` log (a salted commitment to its canonical JSON); the
   leaf index is the event's key (``log_index``).
5. The event row and its index rows (lots, lineage, holdings, movements, shipments,
   certificates) are written in one transaction. Everything is checked before the append, so a
   failure afterwards is a database failure and names the log indexes.

Captures serialise (a process lock, plus a PostgreSQL advisory lock across processes), because
the rules read the state that the previous capture wrote.

Corrections follow EPCIS 2.0 error declarations: the declared event keeps its row (status
``erroneous``), its quantity effects are reversed by compensating movements dated at the
declaration, its lineage edges and certificates stop counting; nothing is deleted.

Events from another EPCIS repository (a partner's system, another platform's records loaded by a
regulator) are recorded with :meth:`Tracer.import_events`: validated, logged and indexed (lots,
lineage, certificates) like captured events, with ``actor`` ``importer:<name>`` and no operator,
but without the actor check and the stock and shipment rules — they do not move this ledger's
own holdings. Duplicate eventIDs and events on recalled or disposed lots are still refused.

Aggregation (packing) moves the children's quantity into the parent (an SSCC or a packed lot):
the packer's stock of the children falls and the parent is held instead; unpacking reverses it.
Trace and recall follow the child → parent edge.
"""

from __future__ import annotations

import functools
import json
import threading
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Engine, bindparam, insert, select, text, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from evidence_ledger.ledger import canonical
from evidence_ledger.ledger.errors import LedgerError
from evidence_ledger.ledger.log import LogStore

from . import epcis, tables
from .epcis import Quantity, TraceEvent
from .errors import (
    InvalidEventError,
    InvalidIdentifierError,
    NotFoundError,
    PermissionDeniedError,
    RuleViolationError,
    TraceError,
)
from .identifiers import ProductId, location_uri, party_uri, validate_gln

__all__ = [
    "TRACE_LOG",
    "ROLES",
    "CapturedEvent",
    "Certificate",
    "Edge",
    "EventLot",
    "ExpiryWarning",
    "Holder",
    "LedgerLine",
    "Lot",
    "Operator",
    "PartyStep",
    "Provenance",
    "RecallInfo",
    "RecallResult",
    "Step",
    "StockLine",
    "TraceResult",
    "Tracer",
]

TRACE_LOG = "trace"
ROLES = tables.ROLES
OPERATOR_URN = "urn:evidence-ledger:operator:"
IMPORTER_ACTOR = "importer:"  # the ``actor`` of an imported event: importer:<name>
MASS_UNITS = {"KGM": 1.0, "GRM": 0.001, "MGM": 1e-6, "TNE": 1000.0, "LBR": 0.45359237, "ONZ": 0.028349523125}
EPS = 1e-9
_CHUNK = 500
_PG_LOCK_KEY = 0x54524143  # "TRAC"

SELL_STEPS = {"retail_selling", "consuming", "dispensing", "selling"}
DISPOSE_STEPS = {"destroying", "disposing", "decommissioning"}
DISPOSE_DISPOSITIONS = {"destroyed", "disposed"}


# -- records ------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Operator:
    id: str
    name: str
    licence: str
    role: str  # farm | slaughterhouse | wholesaler | retailer | restaurant
    gln: str | None
    location_name: str | None
    created_at: datetime

    @property
    def location_uri(self) -> str:
        """The URI to use as readPoint / bizLocation / source or destination ``location``."""
        return location_uri(self.gln) if self.gln else f"{OPERATOR_URN}{self.id}"

    @property
    def party_uri(self) -> str:
        """The URI to use as source or destination ``owning_party``."""
        return party_uri(self.gln) if self.gln else f"{OPERATOR_URN}{self.id}"


@dataclass(frozen=True, slots=True)
class EventLot:
    lot_key: str
    role: str  # epc | input | output | parent | child
    quantity: float | None
    uom: str | None
    description: str | None = None


@dataclass(frozen=True, slots=True)
class CapturedEvent:
    log_index: int  # in the "trace" log
    event_id: str
    kind: str  # event | error_declaration
    type: str
    action: str | None
    biz_step: str | None
    disposition: str | None
    event_time: datetime
    operator_id: str | None
    operator_name: str | None
    operator_role: str | None
    location_name: str | None
    actor: str
    read_point: str | None
    biz_location: str | None
    source_operator_id: str | None
    source_name: str | None
    destination_operator_id: str | None
    destination_name: str | None
    status: str  # active | erroneous
    declared_by: int | None
    record: str  # canonical JSON, exactly as committed to the log
    lots: tuple[EventLot, ...] = ()

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.record)

    @property
    def imported_by(self) -> str | None:
        """Who imported the event from another EPCIS repository (:meth:`Tracer.import_events`);
        None for events captured here (by an operator, or a regulator's recall)."""
        return self.actor[len(IMPORTER_ACTOR):] if self.actor.startswith(IMPORTER_ACTOR) else None


@dataclass(frozen=True, slots=True)
class Holder:
    operator_id: str
    operator_name: str
    role: str
    lot_key: str
    quantity: float
    uom: str | None
    in_transit: bool = False  # shipped to this operator, not yet received


@dataclass(frozen=True, slots=True)
class Lot:
    key: str
    product: ProductId | None
    description: str | None
    uom: str | None
    status: str  # active | disposed | recalled
    status_reason: str | None
    status_at: datetime | None
    recall_root: str | None
    origin_operator_id: str | None
    origin_log_index: int | None
    created_at: datetime
    best_before: date | None
    expiry: date | None
    on_hand: float
    in_transit: float
    holders: tuple[Holder, ...] = ()


@dataclass(frozen=True, slots=True)
class Certificate:
    lot_key: str
    kind: str
    number: str | None
    issuer: str | None
    uri: str | None
    issued_at: datetime | None
    result: str | None
    event_id: str
    log_index: int


@dataclass(frozen=True, slots=True)
class Step:
    event_id: str
    log_index: int
    event_time: datetime
    type: str
    biz_step: str | None
    disposition: str | None
    operator_id: str | None
    operator_name: str | None
    operator_role: str | None
    location_name: str | None
    lot_key: str
    quantity: float | None
    uom: str | None
    status: str
    source_name: str | None = None
    destination_name: str | None = None
    # The event's canonical JSON as committed to the log: the page checks it against the leaf.
    record: str | None = None


@dataclass(frozen=True, slots=True)
class PartyStep:
    """Who did a key step (the farm of origin, the slaughterhouse), when, and where it is logged."""

    operator: Operator
    lot_key: str
    at: datetime
    event_id: str
    log_index: int


@dataclass(frozen=True, slots=True)
class RecallInfo:
    recall_id: str | None
    root_key: str
    reason: str | None
    regulator: str | None
    recalled_at: datetime | None


@dataclass(frozen=True, slots=True)
class Provenance:
    product: ProductId
    lot: Lot
    origin: PartyStep | None
    slaughterhouse: PartyStep | None
    certificates: tuple[Certificate, ...]
    steps: tuple[Step, ...]
    recall: RecallInfo | None
    ancestors: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Edge:
    parent_key: str
    child_key: str
    log_index: int
    kind: str  # transformation | aggregation


@dataclass(frozen=True, slots=True)
class TraceResult:
    root: str
    direction: str  # back | forward
    lots: tuple[Lot, ...]
    edges: tuple[Edge, ...]
    events: tuple[CapturedEvent, ...]
    holders: tuple[Holder, ...]

    @property
    def lot_keys(self) -> tuple[str, ...]:
        return tuple(l.key for l in self.lots)


@dataclass(frozen=True, slots=True)
class StockLine:
    operator_id: str
    lot_key: str
    product: ProductId | None
    description: str | None
    quantity: float
    uom: str | None
    status: str
    best_before: date | None
    expiry: date | None


@dataclass(frozen=True, slots=True)
class LedgerLine:
    """One lot in an operator's daily ledger (Xiamen): opening + in - out = closing."""

    day: date
    lot_key: str
    description: str | None
    opening: float
    incoming: float
    outgoing: float
    closing: float
    uom: str | None
    suppliers: tuple[str, ...] = ()
    customers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ExpiryWarning:
    lot_key: str
    description: str | None
    quantity: float
    uom: str | None
    date: date
    kind: str  # expiry | best_before
    days_left: int

    @property
    def expired(self) -> bool:
        return self.days_left < 0


@dataclass(frozen=True, slots=True)
class RecallResult:
    recall_id: str
    root: str
    reason: str
    regulator: str
    recalled_at: datetime
    lots: tuple[str, ...]  # the root and every descendant, flagged now
    already_recalled: tuple[str, ...]  # descendants recalled before (they keep their root)
    holders: tuple[Holder, ...]
    events: tuple[CapturedEvent, ...]


# -- helpers ------------------------------------------------------------------------------------

def _now() -> datetime:
    return datetime.now(UTC)


def _new_id() -> str:
    return uuid.uuid4().hex


def _aware(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    return dt.astimezone(UTC) if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def _utc(dt: datetime) -> datetime:
    return dt.astimezone(UTC)


def _date(value: Any) -> date | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        return None


def _fmt(q: float) -> str:
    return f"{q:.3f}".rstrip("0").rstrip(".") if q == q else str(q)


def _qty(q: float, uom: str | None) -> str:
    return f"{_fmt(q)} {uom}" if uom else _fmt(q)


def _chunks(items: Sequence[Any], n: int = _CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


def _product_of(key: str) -> ProductId | None:
    try:
        return ProductId.from_key(key)
    except InvalidIdentifierError:
        return None


def _gln_from_uri(uri: str) -> str | None:
    """The GLN inside a GS1 location/party URI (Digital Link /414/ or /417/, SGLN or PGLN URN)."""
    for ai in ("/414/", "/417/"):
        if ai in uri:
            digits = uri.split(ai, 1)[1][:13]
            return digits if len(digits) == 13 and digits.isdigit() else None
    for prefix in ("urn:epc:id:sgln:", "urn:epc:id:pgln:"):
        if uri.startswith(prefix):
            parts = uri[len(prefix):].split(".")
            if len(parts) >= 2 and (parts[0] + parts[1]).isdigit() and len(parts[0] + parts[1]) == 12:
                from .identifiers import gs1_check_digit
                body = parts[0] + parts[1]
                return body + str(gs1_check_digit(body))
    return None


def _ilmd(raw: Mapping[str, Any], *names: str) -> Any:
    data = raw.get("ilmd")
    if not isinstance(data, dict):
        return None
    for key, value in data.items():
        if key.rsplit(":", 1)[-1] in names:
            return value
    return None


def _mass(q: float, uom: str | None) -> float | None:
    factor = MASS_UNITS.get(uom or "")
    return None if factor is None else q * factor


# -- planning state ----------------------------------------------------------------------------

@dataclass
class _Plan:
    """What one accepted event will write, with ``ref`` standing for its future log index."""

    ref: int
    ev: TraceEvent
    record: dict[str, Any]
    kind: str
    operator: Operator | None  # None: an imported event
    event_row: dict[str, Any]
    event_lots: list[dict[str, Any]] = field(default_factory=list)
    lineage: list[dict[str, Any]] = field(default_factory=list)
    movements: list[dict[str, Any]] = field(default_factory=list)
    shipments: list[dict[str, Any]] = field(default_factory=list)
    certificates: list[dict[str, Any]] = field(default_factory=list)
    declares: int | None = None  # the (resolved or pending) log index of the erroneous event


class _State:
    """The derived state a batch is checked against: loaded once, updated in memory per event."""

    def __init__(self) -> None:
        self.lots: dict[str, dict[str, Any]] = {}
        self.new_lots: set[str] = set()
        self.dirty_lots: set[str] = set()
        self.holdings: dict[tuple[str, str], float] = {}
        self.holding_in_db: set[tuple[str, str]] = set()
        self.dirty_holdings: set[tuple[str, str]] = set()
        self.ships: dict[tuple[int, int], dict[str, Any]] = {}  # (log index or ref, position)
        self.ships_in_db: set[tuple[int, int]] = set()
        self.dirty_ships: set[tuple[int, int]] = set()
        self.open_by_dest: dict[tuple[str, str], list[tuple[int, int]]] = defaultdict(list)
        self.events: dict[str, dict[str, Any]] = {}  # event_id -> {log_index, status, operator_id, kind}
        self.declared: set[str] = set()
        self.declarations: dict[str, int] = {}  # event_id -> log index (or ref) of its declaration
        self.plans_by_ref: dict[int, _Plan] = {}
        self.erroneous_db: list[tuple[int, int]] = []  # (original log index, declaration ref)

    def held(self, op: str, key: str) -> float:
        return self.holdings.get((op, key), 0.0)

    def total(self, key: str) -> float:
        held = sum(q for (o, k), q in self.holdings.items() if k == key and q > EPS)
        transit = sum(s["quantity"] - s["received"] for s in self.ships.values()
                      if s["lot_key"] == key and s["status"] == "open")
        return held + transit


# -- the service --------------------------------------------------------------------------------

class Tracer:
    """Food traceability over one database and log store (the ``trace`` log must exist).

    ``on_recall(lot_keys, reason, root)`` is called after a recall is recorded, with the
    ``(gtin, lot)`` pairs of every flagged lot (``(local_id, lot)`` for lots without a GTIN), e.g.
    to set their on-chain ``LotStatus``."""

    def __init__(self, engine: Engine, store: LogStore, *, yield_tolerance: float = 0.0,
                 expiry_warning_days: int = 3,
                 on_recall: Callable[[list[tuple[str, str]], str, str], Any] | None = None,
                 clock: Callable[[], datetime] = _now) -> None:
        if not 0.0 <= yield_tolerance < 10.0:
            raise ValueError(f"yield_tolerance must be in [0, 10), got {yield_tolerance}")
        self.engine = engine
        self.store = store
        self.yield_tolerance = float(yield_tolerance)
        self.expiry_warning_days = int(expiry_warning_days)
        self.on_recall = on_recall
        self._clock = clock
        self._lock = threading.RLock()
        self._ops: dict[str, Operator] | None = None
        self._uris: dict[str, str] = {}
        self._glns: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"Tracer(engine={self.engine.url!r})"

    # -- operators ----------------------------------------------------------------------------

    def register_operator(self, name: str, licence: str, role: str, gln: str | None = None,
                          location_name: str | None = None) -> Operator:
        if not isinstance(name, str) or not name.strip():
            raise InvalidEventError("an operator needs a name", path="$.name")
        if not isinstance(licence, str) or not licence.strip() or len(licence) > 64:
            raise InvalidEventError(f"licence must be 1-64 characters, got {licence!r}", path="$.licence")
        if role not in ROLES:
            raise InvalidEventError(f"role must be one of {', '.join(ROLES)}, got {role!r}", path="$.role")
        gln = validate_gln(gln) if gln is not None else None
        op = Operator(_new_id(), name.strip(), licence.strip(), role, gln,
                      location_name.strip() if location_name else None, self._clock())
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(tables.operators).values(
                    id=op.id, name=op.name, licence=op.licence, role=op.role, gln=op.gln,
                    location_name=op.location_name, created_at=_utc(op.created_at)))
        except IntegrityError as e:
            raise RuleViolationError(
                "operator_exists",
                f"an operator with licence {op.licence!r}" + (f" or GLN {gln}" if gln else "")
                + " is already registered") from e
        self._ops = None
        return op

    def operator(self, operator_id: str) -> Operator:
        ops = self._operators()
        if operator_id not in ops:
            self._ops = None
            ops = self._operators()
        if operator_id not in ops:
            raise NotFoundError(f"no operator {operator_id!r}")
        return ops[operator_id]

    def operators(self) -> list[Operator]:
        return sorted(self._operators().values(), key=lambda o: (o.role, o.name, o.id))

    def operator_by_licence(self, licence: str) -> Operator:
        for op in self._operators().values():
            if op.licence == licence:
                return op
        raise NotFoundError(f"no operator with licence {licence!r}")

    def _operators(self, conn=None) -> dict[str, Operator]:  # type: ignore[no-untyped-def]
        """The operators (cached). Pass the connection you hold: a second one would wait for it
        (SQLite takes the write lock at BEGIN)."""
        ops = self._ops
        if ops is None:
            if conn is not None:
                rows = conn.execute(select(tables.operators)).all()
            else:
                with self.engine.connect() as own:
                    rows = own.execute(select(tables.operators)).all()
            ops = {r.id: Operator(r.id, r.name, r.licence, r.role, r.gln, r.location_name,
                                  _aware(r.created_at)) for r in rows}  # type: ignore[arg-type]
            uris: dict[str, str] = {}
            glns: dict[str, str] = {}
            for op in ops.values():
                uris[op.location_uri] = op.id
                uris[op.party_uri] = op.id
                uris[f"{OPERATOR_URN}{op.id}"] = op.id
                if op.gln:
                    glns[op.gln] = op.id
            self._uris, self._glns, self._ops = uris, glns, ops
        return ops

    def _resolve(self, uri: str | None) -> str | None:
        """The operator a location or party URI belongs to."""
        if not uri:
            return None
        self._operators()
        found = self._uris.get(uri)
        if found is None:
            gln = _gln_from_uri(uri)
            found = self._glns.get(gln) if gln else None
        if found is None and self._ops is not None:
            self._ops = None  # maybe registered by another process
            self._operators()
            found = self._uris.get(uri) or (self._glns.get(_gln_from_uri(uri) or ""))
        return found

    def _name(self, operator_id: str | None) -> str | None:
        if operator_id is None:
            return None
        op = self._operators().get(operator_id)
        return op.name if op else None

    # -- capture ------------------------------------------------------------------------------

    def capture(self, event: dict[str, Any], *, operator_id: str) -> CapturedEvent:
        """Validate, check the rules, log and store one event recorded by ``operator_id``."""
        return self.capture_many([(event, operator_id)])[0]

    def capture_many(self, events: Sequence[tuple[dict[str, Any], str]]) -> list[CapturedEvent]:
        """Capture events in order, all or none: one log append and one database transaction.

        Later events may depend on earlier ones of the same batch (a shipment and its receipt)."""
        items = list(events)
        if not items:
            return []
        parsed: list[tuple[TraceEvent, Operator]] = []
        for i, item in enumerate(items):
            try:
                raw, operator_id = item
            except (TypeError, ValueError):
                raise InvalidEventError(f"expected (event, operator_id) pairs, got {type(item).__name__}",
                                        path=f"$[{i}]") from None
            try:
                ev = epcis.parse_event(raw)
            except InvalidEventError as e:
                if len(items) > 1:
                    e.add_note(f"in event {i} of the batch")
                raise
            parsed.append((ev, self.operator(operator_id)))
        with self._lock, self._serialised():
            with self.engine.connect() as conn:
                state = self._load_state(conn, [ev for ev, _ in parsed])
            plans: list[_Plan] = []
            for i, (ev, op) in enumerate(parsed):
                try:
                    plan = self._plan(-(i + 1), ev, op, state)
                except TraceError as e:
                    if len(items) > 1:
                        e.add_note(f"in event {i} of the batch ({ev.event_id})")
                    raise
                state.plans_by_ref[plan.ref] = plan
                plans.append(plan)
            index, records = self._commit(plans, state)
        return [self._captured_plan(p, state, index, records[p.ref]) for p in plans]

    def _commit(self, plans: Sequence[_Plan], state: _State) -> tuple[dict[int, int], dict[int, bytes]]:
        """Append the planned records to the ``trace`` log, then write their rows (one transaction)."""
        try:
            entries = self.store.append_many(TRACE_LOG, [p.record for p in plans])
        except LedgerError as e:
            raise TraceError(f"appending to the {TRACE_LOG!r} log failed: {e}") from e
        index = {p.ref: entries[i].index for i, p in enumerate(plans)}
        records = {p.ref: entries[i].record_canonical or canonical.canonicalize(p.record)
                   for i, p in enumerate(plans)}
        digests = {p.ref: entries[i].record_digest.hex() for i, p in enumerate(plans)}
        try:
            self._write(plans, state, index, records, digests)
        except SQLAlchemyError as e:
            raise TraceError(
                f"events were logged at indexes {entries[0].index}..{entries[-1].index} of the "
                f"{TRACE_LOG!r} log but could not be stored ({e}); nothing else was changed") from e
        return index, records

    def _captured_plan(self, p: _Plan, st: _State, index: Mapping[int, int], record: bytes) -> CapturedEvent:
        r = p.event_row
        op = p.operator
        lots = tuple(EventLot(l["lot_key"], l["role"], l["quantity"], l["uom"],
                              (st.lots.get(l["lot_key"]) or {}).get("description")) for l in p.event_lots)
        declared = r["declared_by"]
        return CapturedEvent(
            index[p.ref], r["event_id"], r["kind"], r["type"], r["action"], r["biz_step"], r["disposition"],
            r["event_time"], op.id if op else None, op.name if op else None, op.role if op else None,
            (op.location_name or op.name) if op else None, r["actor"], r["read_point"],
            r["biz_location"], r["source_operator_id"], self._name(r["source_operator_id"]),
            r["destination_operator_id"], self._name(r["destination_operator_id"]), r["status"],
            index.get(declared, declared) if declared is not None else None, record.decode(), lots)

    def _serialised(self):  # type: ignore[no-untyped-def]
        engine = self.engine

        class _Guard:
            conn = None

            def __enter__(self) -> None:
                if engine.dialect.name == "postgresql":
                    self.conn = engine.connect()
                    self.conn.exec_driver_sql(f"SELECT pg_advisory_lock({_PG_LOCK_KEY})")
                    self.conn.commit()

            def __exit__(self, *exc: object) -> None:
                if self.conn is not None:
                    try:
                        self.conn.exec_driver_sql(f"SELECT pg_advisory_unlock({_PG_LOCK_KEY})")
                        self.conn.commit()
                    finally:
                        self.conn.close()

        return _Guard()

    # -- loading the state a batch needs -------------------------------------------------------

    def _load_state(self, conn, evs: Sequence[TraceEvent]) -> _State:  # type: ignore[no-untyped-def]
        st = _State()
        keys: set[str] = set()
        ids: set[str] = set()
        for ev in evs:
            ids.add(ev.event_id)
            for q in ev.objects:
                keys.add(self._key(q, ev))
            if ev.parent:
                keys.add(self._parent_key(ev.parent))
        key_list = sorted(keys)
        L, H, S, E = tables.lots, tables.holdings, tables.shipments, tables.events
        for chunk in _chunks(key_list):
            for r in conn.execute(select(L).where(L.c.key.in_(chunk))):
                st.lots[r.key] = dict(r._mapping)
            for r in conn.execute(select(H.c.operator_id, H.c.lot_key, H.c.quantity).where(H.c.lot_key.in_(chunk))):
                st.holdings[(r.operator_id, r.lot_key)] = float(r.quantity)
                st.holding_in_db.add((r.operator_id, r.lot_key))
            for r in conn.execute(select(S).where(S.c.lot_key.in_(chunk), S.c.status == "open")
                                  .order_by(S.c.log_index, S.c.position)):
                ref = (int(r.log_index), int(r.position))
                st.ships[ref] = dict(r._mapping)
                st.ships_in_db.add(ref)
                st.open_by_dest[(r.destination_operator_id, r.lot_key)].append(ref)
        for chunk in _chunks(sorted(ids)):
            for r in conn.execute(select(E.c.event_id, E.c.kind, E.c.log_index, E.c.status, E.c.operator_id,
                                         E.c.type, E.c.actor).where(E.c.event_id.in_(chunk))):
                if r.kind == "event":
                    st.events[r.event_id] = {"log_index": int(r.log_index), "status": r.status,
                                             "operator_id": r.operator_id, "type": r.type, "actor": r.actor}
                else:
                    st.declared.add(r.event_id)
                    st.declarations[r.event_id] = int(r.log_index)
        return st

    def _key(self, q: Quantity, ev: TraceEvent | None = None) -> str:
        if q.product is not None:
            return _lot_key(q.product)
        # A GTIN-only class next to a serialised instance of the same GTIN: the builders list a
        # serial-only item that way; its quantity belongs to the instance.
        if q.epc_class and ev is not None:
            for other in ev.objects:
                if other.epc and other.product is not None and other.product.gtin \
                        and q.epc_class.rstrip("/").endswith(f"/01/{other.product.gtin}"):
                    return other.product.lot_key
        return (q.epc or q.epc_class or "").strip()

    def _parent_key(self, parent: str) -> str:
        try:
            return ProductId.from_epc(parent).lot_key
        except InvalidIdentifierError:
            return parent

    def _amounts(self, qs: Sequence[Quantity], ev: TraceEvent, role: str,
                 st: _State | None = None) -> list[tuple[str, float | None, str | None, Quantity]]:
        """Per lot (in order): the quantity (None: not given), its unit, a representative object.

        Quantities of the same lot are summed; bare EPCs count 1 each unless the lot also has a
        quantity (the builders list serialised items both ways), or the lot is measured (a
        container or an item in kg): then the EPC stands for all of it (quantity None)."""
        order: list[str] = []
        amount: dict[str, float] = {}
        uoms: dict[str, str | None] = {}
        count: dict[str, int] = defaultdict(int)
        rep: dict[str, Quantity] = {}
        for i, q in enumerate(qs):
            key = self._key(q, ev)
            if not key:
                raise InvalidEventError("an object without an identifier", path=f"$.{role}[{i}]")
            if key not in rep:
                order.append(key)
                rep[key] = q
            if q.product is not None and rep[key].product is None:
                rep[key] = q
            if q.quantity is not None:
                if q.quantity < 0 or q.quantity != q.quantity:
                    raise InvalidEventError(f"quantity must be a non-negative number, got {q.quantity}",
                                            path=f"$.{role}[{i}].quantity")
                if key in uoms and uoms[key] != q.uom:
                    conv = _mass(q.quantity, q.uom)
                    base = MASS_UNITS.get(uoms[key] or "")
                    if conv is None or base is None:
                        raise RuleViolationError(
                            "unit_mismatch", f"lot {key} is given in {uoms[key] or 'units'} and in "
                            f"{q.uom or 'units'} in the same event")
                    amount[key] += conv / base
                else:
                    uoms.setdefault(key, q.uom)
                    amount[key] = amount.get(key, 0.0) + q.quantity
            elif q.epc is not None:
                count[key] += 1
        out = []
        for key in order:
            if key in amount:
                out.append((key, amount[key], uoms[key], rep[key]))
            elif count[key]:
                lot = st.lots.get(key) if st is not None else None
                if lot is not None and lot["uom"] not in (None, "EA"):
                    out.append((key, None, None, rep[key]))
                else:
                    out.append((key, float(count[key]), "EA", rep[key]))
            else:
                out.append((key, None, None, rep[key]))
        return out

    # -- rules ----------------------------------------------------------------------------------

    def _plan(self, ref: int, ev: TraceEvent, op: Operator, st: _State) -> _Plan:
        now = self._clock()
        record = ev.raw  # parse_event's own copy, with eventID set
        if ev.error_declaration is not None:
            return self._plan_declaration(ref, ev, op, st, record, now)
        if ev.event_id in st.events:
            raise RuleViolationError(
                "duplicate_event", f"event {ev.event_id} was already captured (log index "
                f"{st.events[ev.event_id]['log_index']}); an event is recorded once")
        step = ev.biz_step or ""
        if ev.disposition == "recalled":
            raise PermissionDeniedError("recalls are issued by a regulator (Tracer.recall), not captured "
                                        "by an operator")
        src_party = ev.party("owning_party") or ev.party("possessing_party") or ev.party("location")
        dst_party = (ev.party("owning_party", destination=True) or ev.party("possessing_party", destination=True)
                     or ev.party("location", destination=True))
        src_op = self._resolve(src_party)
        dst_op = self._resolve(dst_party)
        loc_op = self._resolve(ev.biz_location) or self._resolve(ev.read_point)

        if ev.type == "TransformationEvent":
            kind = "transform"
        elif ev.type in ("AggregationEvent", "AssociationEvent"):
            kind = {"ADD": "pack", "DELETE": "unpack"}.get(ev.action or "", "observe")
        elif step == "shipping" or (step == "departing" and ev.destination):
            kind = "ship"
        elif step in ("receiving", "arriving", "accepting") and ev.source:
            kind = "receive"
        elif ev.action == "ADD":
            kind = "commission"
        elif ev.action == "DELETE" or step in DISPOSE_STEPS or ev.disposition in DISPOSE_DISPOSITIONS:
            kind = "dispose"
        elif step in SELL_STEPS:
            kind = "sell"
        else:
            kind = "observe"

        # The capturing operator must be the actor.
        if kind == "ship":
            actor = src_op or loc_op
            if actor != op.id:
                raise PermissionDeniedError(
                    f"a shipment is recorded by its source: the event's source is {src_party or ev.read_point!r}, "
                    f"not operator {op.name} ({op.party_uri})")
            if dst_op is None:
                raise RuleViolationError(
                    "unknown_destination",
                    f"the shipment's destination {dst_party!r} is not a registered operator"
                    if dst_party else "a shipment needs a destination (destinationList owning_party)")
            if dst_op == op.id:
                raise RuleViolationError("unknown_destination", "an operator cannot ship to itself")
        elif kind == "receive":
            actor = dst_op or loc_op
            if actor != op.id:
                raise PermissionDeniedError(
                    f"a receipt is recorded by its destination: the event's destination is "
                    f"{dst_party or ev.biz_location!r}, not operator {op.name} ({op.party_uri})")
        else:
            if loc_op != op.id:
                where = ev.biz_location or ev.read_point
                raise PermissionDeniedError(
                    f"the event's location {where!r} is not operator {op.name}'s ({op.location_uri})"
                    if where else "the event needs a readPoint or bizLocation of the recording operator")

        t = _utc(ev.event_time)
        row = self._event_row(ref, ev, op, "event", record, now, t,
                              src_op if kind in ("ship", "receive") else None,
                              dst_op if kind in ("ship", "receive") else None)
        plan = _Plan(ref, ev, record, "event", op, row)
        pos = 0

        def lot_row(key: str, q: Quantity, role: str, amount: float | None, uom: str | None) -> None:
            nonlocal pos
            plan.event_lots.append({"log_index": ref, "position": pos, "lot_key": key, "role": role,
                                    "quantity": amount, "uom": uom, "event_time": t})
            pos += 1

        mv = _Movements(self, plan, st, t)

        if kind == "commission":
            for key, amount, uom, q in self._amounts(ev.outputs, ev, "quantityList", st):
                amount = 1.0 if amount is None else amount
                amount = self._create(st, key, q, ev, op, ref, t, uom, amount)
                mv.add(op.id, key, amount, self._uom(st, key), "commission")
                lot_row(key, q, "epc", amount, self._uom(st, key))
        elif kind == "transform":
            ins = self._amounts(ev.inputs, ev, "inputQuantityList", st)
            outs = self._amounts(ev.outputs, ev, "outputQuantityList", st)
            if not ins or not outs:
                raise InvalidEventError("a transformation needs inputs and outputs", path="$")
            in_keys = {k for k, *_ in ins}
            taken = []
            for key, amount, uom, q in ins:
                self._check_lot(st, key, "transform")
                amount = self._take_amount(st, op, key, amount, uom)
                mv.take(op.id, key, amount, "consume", "insufficient_stock", "transform")
                taken.append((key, amount))
                lot_row(key, q, "input", amount, self._uom(st, key))
            made = []
            for key, amount, uom, q in outs:
                if key in in_keys:
                    raise InvalidEventError(f"lot {key} is both an input and an output", path="$.outputQuantityList")
                amount = 1.0 if amount is None else amount
                amount = self._create(st, key, q, ev, op, ref, t, uom, amount)
                made.append((key, amount))
                mv.add(op.id, key, amount, self._uom(st, key), "produce")
                lot_row(key, q, "output", amount, self._uom(st, key))
            self._mass_balance(st, taken, made)
            for pk, _ in taken:
                for ck, _ in made:
                    plan.lineage.append({"parent_key": pk, "child_key": ck, "log_index": ref,
                                         "kind": "transformation", "active": True})
        elif kind == "pack":
            if not ev.parent:
                raise InvalidEventError("packing needs a parentID", path="$.parentID")
            parent = self._parent_key(ev.parent)
            kids = self._amounts(ev.children, ev, "childQuantityList", st)
            if not kids:
                raise InvalidEventError("packing needs children", path="$.childQuantityList")
            total, unit, mass = 0.0, None, True
            for key, amount, uom, q in kids:
                self._check_lot(st, key, "pack")
                amount = self._take_amount(st, op, key, amount, uom)
                mv.take(op.id, key, amount, "pack", "insufficient_stock", "pack")
                lot_row(key, q, "child", amount, self._uom(st, key))
                kg = _mass(amount, self._uom(st, key))
                if kg is None:
                    mass = False
                total += kg if kg is not None else amount
                plan.lineage.append({"parent_key": key, "child_key": parent, "log_index": ref,
                                     "kind": "aggregation", "active": True})
            unit = "KGM" if mass else "EA"
            if not mass:
                total = float(len(kids))
            pq = Quantity(None, ev.parent, _product_of_uri(ev.parent), total, unit)
            total = self._create(st, parent, pq, ev, op, ref, t, unit, total, container=True)
            mv.add(op.id, parent, total, self._uom(st, parent), "pack")
            lot_row(parent, pq, "parent", total, self._uom(st, parent))
        elif kind == "unpack":
            if not ev.parent:
                raise InvalidEventError("unpacking needs a parentID", path="$.parentID")
            parent = self._parent_key(ev.parent)
            if parent not in st.lots:
                raise RuleViolationError("unknown_lot", f"container {ev.parent} was never packed")
            self._check_lot(st, parent, "unpack")
            held = st.held(op.id, parent)
            if held <= EPS:
                raise RuleViolationError("insufficient_stock",
                                         f"operator {op.name} does not hold container {ev.parent}")
            kids = self._amounts(ev.children, ev, "childQuantityList", st)
            if not kids:
                raise InvalidEventError("an unpacking must list the children it releases",
                                        path="$.childQuantityList")
            mv.take(op.id, parent, held, "unpack", "insufficient_stock", "unpack")
            lot_row(parent, Quantity(None, ev.parent, None, held, None), "parent", held, self._uom(st, parent))
            for key, amount, uom, q in kids:
                if key not in st.lots:
                    raise RuleViolationError("unknown_lot", f"lot {key} is not known here")
                self._check_lot(st, key, "unpack")
                amount = self._convert(st, key, 1.0 if amount is None else amount, uom)
                mv.add(op.id, key, amount, self._uom(st, key), "unpack")
                lot_row(key, q, "child", amount, self._uom(st, key))
        elif kind == "ship":
            objs = self._amounts(ev.outputs or ev.inputs, ev, "quantityList", st)
            if not objs:
                raise InvalidEventError("a shipment needs objects", path="$.quantityList")
            for key, amount, uom, q in objs:
                self._check_lot(st, key, "ship")
                held = st.held(op.id, key)
                amount = held if amount is None else self._convert(st, key, amount, uom)
                if amount > held + EPS:
                    raise RuleViolationError(
                        "over_shipped",
                        f"operator {op.name} holds {_qty(held, self._uom(st, key))} of lot {key}; "
                        f"the shipment is {_qty(amount, self._uom(st, key))}")
                if amount <= EPS:
                    raise RuleViolationError("over_shipped", f"operator {op.name} holds none of lot {key}")
                mv.add(op.id, key, -amount, self._uom(st, key), "ship", counterparty=dst_op)
                sref = (ref, pos)
                st.ships[sref] = {"log_index": ref, "position": pos, "lot_key": key,
                                  "source_operator_id": op.id, "destination_operator_id": dst_op,
                                  "quantity": amount, "received": 0.0, "uom": self._uom(st, key),
                                  "status": "open"}
                st.open_by_dest[(dst_op, key)].append(sref)  # type: ignore[index]
                plan.shipments.append(st.ships[sref])
                lot_row(key, q, "epc", amount, self._uom(st, key))
        elif kind == "receive":
            objs = self._amounts(ev.outputs or ev.inputs, ev, "quantityList", st)
            if not objs:
                raise InvalidEventError("a receipt needs objects", path="$.quantityList")
            for key, amount, uom, q in objs:
                refs = [r for r in st.open_by_dest.get((op.id, key), [])
                        if st.ships[r]["status"] == "open"
                        and (src_op is None or st.ships[r]["source_operator_id"] == src_op)]
                outstanding = sum(st.ships[r]["quantity"] - st.ships[r]["received"] for r in refs)
                if key not in st.lots or outstanding <= EPS:
                    frm = f" from {self._name(src_op) or src_party}" if src_party else ""
                    raise RuleViolationError(
                        "not_shipped",
                        f"lot {key} was not shipped{frm} to operator {op.name} (expected an open "
                        f"shipment to {op.party_uri}; found none" + (" with quantity left to receive)"
                                                                    if key in st.lots else ")"))
                self._check_lot(st, key, "receive")
                amount = outstanding if amount is None else self._convert(st, key, amount, uom)
                if amount > outstanding + EPS:
                    raise RuleViolationError(
                        "over_received",
                        f"operator {op.name} receives {_qty(amount, self._uom(st, key))} of lot {key}, "
                        f"but only {_qty(outstanding, self._uom(st, key))} was shipped to it and not yet received")
                left = amount
                for r in refs:
                    s = st.ships[r]
                    part = min(left, s["quantity"] - s["received"])
                    if part <= EPS:
                        continue
                    s["received"] += part
                    if s["quantity"] - s["received"] <= EPS:
                        s["status"] = "received"
                    if r in st.ships_in_db:
                        st.dirty_ships.add(r)
                    mv.add(op.id, key, part, self._uom(st, key), "receive",
                           counterparty=s["source_operator_id"], ship=r)
                    left -= part
                    if left <= EPS:
                        break
                lot_row(key, q, "epc", amount, self._uom(st, key))
        elif kind in ("dispose", "sell"):
            objs = self._amounts(ev.inputs or ev.outputs, ev, "quantityList", st)
            if not objs:
                raise InvalidEventError("the event needs objects", path="$.quantityList")
            for key, amount, uom, q in objs:
                self._check_lot(st, key, kind)
                amount = self._take_amount(st, op, key, amount, uom)
                mv.take(op.id, key, amount, kind, "insufficient_stock", "dispose of" if kind == "dispose" else "sell")
                lot_row(key, q, "epc", amount, self._uom(st, key))
                if kind == "dispose" and st.total(key) <= EPS and st.lots[key]["status"] == "active":
                    self._set_lot(st, key, status="disposed", status_at=t,
                                  status_reason=str(ev.raw.get("evl:reason") or ev.disposition or "disposed"))
        else:  # observe / inspect: no quantity effect
            objs = self._amounts(ev.objects, ev, "quantityList", st)
            for key, amount, uom, q in objs:
                if key not in st.lots:
                    raise RuleViolationError("unknown_lot", f"lot {key} is not known here (never commissioned "
                                             "or produced)")
                self._check_lot(st, key, "observe")
                lot_row(key, q, "epc", amount, uom)
            if ev.parent:
                pk = self._parent_key(ev.parent)
                lot_row(pk, Quantity(None, ev.parent, None, None, None), "parent", None, None)
            for i, cert in enumerate(ev.certificates):
                for key, *_ in objs:
                    plan.certificates.append({
                        "log_index": ref, "position": len(plan.certificates), "lot_key": key,
                        "kind": str(cert.get("type") or "certificate")[:32], "number": cert.get("number"),
                        "issuer": cert.get("issuer"), "uri": cert.get("uri"),
                        "issued_at": _parse_dt(cert.get("issued_at")), "result": cert.get("result"),
                        "active": True})
        plan.movements = mv.rows
        st.events[ev.event_id] = {"log_index": ref, "status": "active", "operator_id": op.id, "type": ev.type}
        return plan

    def _event_row(self, ref: int, ev: TraceEvent, op: Operator | None, kind: str, record: dict[str, Any],
                   now: datetime, t: datetime, src: str | None, dst: str | None,
                   actor: str | None = None) -> dict[str, Any]:
        return {"log_index": ref, "event_id": ev.event_id, "kind": kind, "type": ev.type,
                "action": ev.action, "biz_step": (ev.biz_step or None) and ev.biz_step[:64],
                "disposition": (ev.disposition or None) and ev.disposition[:64], "event_time": t,
                "operator_id": op.id if op else None, "actor": actor or f"operator:{op.id}",  # type: ignore[union-attr]
                "read_point": ev.read_point, "biz_location": ev.biz_location,
                "source_operator_id": src, "destination_operator_id": dst, "status": "active",
                "declared_by": None, "record_sha256": None, "record": None, "captured_at": _utc(now)}

    def _check_lot(self, st: _State, key: str, what: str) -> None:
        lot = st.lots.get(key)
        if lot is None:
            if what in ("ship", "transform", "pack", "dispose", "sell"):
                raise RuleViolationError("unknown_lot", f"lot {key} is not known here (never commissioned "
                                         "or produced)")
            return
        if lot["status"] == "disposed":
            raise RuleViolationError(
                "lot_disposed", f"lot {key} was disposed ({lot['status_reason']}) at "
                f"{_aware(lot['status_at'])}; no further events are accepted for it")
        if lot["status"] == "recalled" and what != "dispose":
            raise RuleViolationError(
                "lot_recalled", f"lot {key} is recalled ({lot['status_reason']}; recall root "
                f"{lot['recall_root']}); only its destruction may be recorded")

    def _uom(self, st: _State, key: str) -> str | None:
        lot = st.lots.get(key)
        return lot["uom"] if lot else None

    def _convert(self, st: _State, key: str, amount: float, uom: str | None) -> float:
        """``amount`` in the lot's unit of measure."""
        lot_uom = self._uom(st, key)
        if key not in st.lots or uom == lot_uom:
            return amount
        a, b = MASS_UNITS.get(uom or ""), MASS_UNITS.get(lot_uom or "")
        if a is None or b is None:
            raise RuleViolationError("unit_mismatch", f"lot {key} is counted in {lot_uom or 'units'}; the "
                                     f"event gives {_qty(amount, uom or 'units')}")
        return amount * a / b

    def _take_amount(self, st: _State, op: Operator, key: str, amount: float | None, uom: str | None) -> float:
        if amount is None:
            return st.held(op.id, key)
        return self._convert(st, key, amount, uom)

    def _create(self, st: _State, key: str, q: Quantity, ev: TraceEvent, op: Operator, ref: int, t: datetime,
                uom: str | None, amount: float, *, container: bool = False) -> float:
        """Create the lot if new (or check it may grow); return ``amount`` in the lot's unit."""
        lot = st.lots.get(key)
        if lot is not None:
            self._check_lot(st, key, "create")
            if lot["origin_operator_id"] not in (None, op.id):
                raise RuleViolationError(
                    "lot_exists", f"lot {key} was created by {self._name(lot['origin_operator_id'])}; "
                    f"operator {op.name} cannot create it again")
            amount = self._convert(st, key, amount, uom)
            updates = {}
            bb, ex = _date(_ilmd(ev.raw, "bestBeforeDate")), _date(_ilmd(ev.raw, "itemExpirationDate", "expiryDate"))
            if bb and not lot["best_before"]:
                updates["best_before"] = bb
            if ex and not lot["expiry"]:
                updates["expiry"] = ex
            if updates:
                self._set_lot(st, key, **updates)
            return amount
        product = q.product if q.product is not None and q.product.lot_key == key else _product_of(key)
        desc = _ilmd(ev.raw, "descriptionShort", "productDescription", "itemDescription", "description",
                     "tradeItemDescription", "productName")
        if desc is None and container:
            desc = "logistic unit" if "/00/" in key or key.startswith("urn:epc:id:sscc:") else None
        st.lots[key] = {
            "key": key, "gtin": product.gtin if product else None, "lot": (product.lot or None) if product else None,
            "serial": product.serial if product else None, "local_id": product.local_id if product else None,
            "description": str(desc)[:255] if desc is not None else None, "uom": uom,
            "origin_operator_id": op.id, "origin_log_index": ref, "created_at": t,
            "best_before": _date(_ilmd(ev.raw, "bestBeforeDate")),
            "expiry": _date(_ilmd(ev.raw, "itemExpirationDate", "expiryDate")),
            "status": "active", "status_reason": None, "status_at": None, "recall_root": None, "recall_id": None,
        }
        st.new_lots.add(key)
        return amount

    def _set_lot(self, st: _State, key: str, **values: Any) -> None:
        st.lots[key].update(values)
        if key not in st.new_lots:
            st.dirty_lots.add(key)

    def _mass_balance(self, st: _State, taken: list[tuple[str, float]], made: list[tuple[str, float]]) -> None:
        ins = [_mass(a, self._uom(st, k)) for k, a in taken]
        outs = [_mass(a, self._uom(st, k)) for k, a in made]
        if any(x is None for x in ins + outs):
            return  # counted units: nothing to weigh
        total_in, total_out = sum(ins), sum(outs)  # type: ignore[arg-type]
        limit = total_in * (1.0 + self.yield_tolerance)
        if total_out > limit + 1e-6:
            tol = f" (yield tolerance {self.yield_tolerance:.1%})" if self.yield_tolerance else ""
            raise RuleViolationError(
                "mass_balance",
                f"the outputs weigh {_fmt(total_out)} kg but the inputs only {_fmt(total_in)} kg: expected "
                f"at most {_fmt(limit)} kg{tol}")

    # -- error declarations ---------------------------------------------------------------------

    def _plan_declaration(self, ref: int, ev: TraceEvent, op: Operator, st: _State, record: dict[str, Any],
                          now: datetime) -> _Plan:
        orig = st.events.get(ev.event_id)
        if orig is None:
            raise NotFoundError(f"error declaration for event {ev.event_id}, which was never captured")
        if orig["status"] != "active" or ev.event_id in st.declared:
            raise RuleViolationError("already_declared", f"event {ev.event_id} was already declared erroneous")
        if orig["operator_id"] != op.id:
            raise PermissionDeniedError(
                f"event {ev.event_id} was recorded by {self._name(orig['operator_id']) or 'a regulator'}; only "
                f"that operator may declare it erroneous, not {op.name}")
        decl_time = _parse_dt(ev.error_declaration.get("declarationTime")) if ev.error_declaration else None
        t = _utc(decl_time or ev.event_time)
        row = self._event_row(ref, ev, op, "error_declaration", record, now, t, None, None)
        plan = _Plan(ref, ev, record, "error_declaration", op, row)
        oref = orig["log_index"]
        if oref < 0:  # declared in the same batch
            op_plan = st.plans_by_ref[oref]
            movements = [dict(m) for m in op_plan.movements]
            ships = [(m["log_index"], m["position"]) for m in op_plan.shipments]
            lots_of = [dict(r) for r in op_plan.event_lots]
            for e in op_plan.lineage:
                e["active"] = False
            for c in op_plan.certificates:
                c["active"] = False
            op_plan.event_row["status"] = "erroneous"
            op_plan.event_row["declared_by"] = ref
        else:
            with self.engine.connect() as conn:
                M, S, EL = tables.movements, tables.shipments, tables.event_lots
                movements = [dict(r._mapping) for r in conn.execute(
                    select(M).where(M.c.log_index == oref).order_by(M.c.position))]
                ship_rows = [dict(r._mapping) for r in conn.execute(select(S).where(S.c.log_index == oref))]
                lots_of = [dict(r._mapping) for r in conn.execute(
                    select(EL).where(EL.c.log_index == oref).order_by(EL.c.position))]
                ships = []
                for s in ship_rows:
                    sref = (int(s["log_index"]), int(s["position"]))
                    if sref not in st.ships:
                        st.ships[sref] = s
                        st.ships_in_db.add(sref)
                    ships.append(sref)
                needed = {m["ship_log_index"] for m in movements if m.get("ship_log_index") is not None}
                for li in needed:
                    for s in conn.execute(select(S).where(S.c.log_index == li)):
                        sref = (int(s.log_index), int(s.position))
                        if sref not in st.ships:
                            st.ships[sref] = dict(s._mapping)
                            st.ships_in_db.add(sref)
                missing = {(m["operator_id"], m["lot_key"]) for m in movements} - set(st.holdings)
                H = tables.holdings
                for o, k in missing:
                    q = conn.execute(select(H.c.quantity).where(H.c.operator_id == o, H.c.lot_key == k)).scalar()
                    if q is not None:
                        st.holdings[(o, k)] = float(q)
                        st.holding_in_db.add((o, k))
                for k in {m["lot_key"] for m in movements} - set(st.lots):
                    r = conn.execute(select(tables.lots).where(tables.lots.c.key == k)).first()
                    if r is not None:
                        st.lots[k] = dict(r._mapping)
            st.erroneous_db.append((oref, ref))
        # Shipments it created must not have been received.
        for sref in ships:
            s = st.ships[sref]
            if s["received"] > EPS:
                raise RuleViolationError(
                    "correction_blocked",
                    f"the shipment of lot {s['lot_key']} in event {ev.event_id} was already received "
                    f"({_qty(s['received'], s['uom'])}); declare the receipt erroneous first")
        mv = _Movements(self, plan, st, t)
        for m in movements:
            delta = -float(m["delta"])
            if delta < 0:
                held = st.held(m["operator_id"], m["lot_key"])
                if held + delta < -EPS:
                    raise RuleViolationError(
                        "correction_blocked",
                        f"reversing event {ev.event_id} removes {_qty(-delta, m['uom'])} of lot {m['lot_key']} "
                        f"from {self._name(m['operator_id'])}, which holds only {_qty(held, m['uom'])} now: "
                        "declare the later events that moved it erroneous first")
            mv.add(m["operator_id"], m["lot_key"], delta, m["uom"], "reversal",
                   counterparty=m.get("counterparty_id"))
            sl = m.get("ship_log_index")
            if sl is not None:  # a receipt: the shipment is open again
                sref = (int(sl), int(m["ship_position"]))
                s = st.ships[sref]
                s["received"] = max(0.0, s["received"] - float(m["delta"]))
                s["status"] = "open"
                if sref in st.ships_in_db:
                    st.dirty_ships.add(sref)
                st.open_by_dest[(s["destination_operator_id"], s["lot_key"])].append(sref)
            lot = st.lots.get(m["lot_key"])
            if lot is not None and delta > 0 and lot["status"] == "disposed":
                self._set_lot(st, m["lot_key"], status="active", status_reason=None, status_at=None)
        for sref in ships:
            st.ships[sref]["status"] = "cancelled"
            if sref in st.ships_in_db:
                st.dirty_ships.add(sref)
        plan.movements = mv.rows
        plan.event_lots = [{"log_index": ref, "position": i, "lot_key": r["lot_key"], "role": r["role"],
                            "quantity": r["quantity"], "uom": r["uom"], "event_time": t}
                           for i, r in enumerate(lots_of)]
        plan.declares = oref
        orig["status"] = "erroneous"
        st.declared.add(ev.event_id)
        return plan

    # -- import from another EPCIS repository ---------------------------------------------------

    def import_events(self, events: Sequence[dict[str, Any]], *, importer: str) -> list[CapturedEvent]:
        """Record events that come from another EPCIS repository (a partner's system, or a
        regulator loading another platform's records), in order, all or none.

        Each event is validated against the EPCIS 2.0 JSON Schema and parsed as :meth:`capture`
        does (the same :class:`InvalidEventError` on bad input; in a batch, a note names the
        event), appended to the ``trace`` log as its canonical JSON (so it is provable by its
        ``log_index``) and stored with ``actor`` ``importer:<importer>`` and no operator
        (:attr:`CapturedEvent.imported_by`). Its lots are created on first sight (no creating
        operator; ``origin_log_index`` is the event only if it makes the lot: a commissioning's
        objects, a transformation's outputs, an aggregation's parent), its lineage edges
        (transformation inputs → outputs; aggregation/association children → parent, for ADD and
        OBSERVE) and certificates are recorded, so trace back/forward, provenance and the exports
        include it.

        **Imported events do not move this ledger's own holdings**: there is no actor check (the
        event's locations and parties need not be registered operators) and none of the stock or
        shipment rules (``not_shipped``, ``over_shipped``, ``insufficient_stock``,
        ``mass_balance``, ...); no movements, holdings or shipments are written, and a lot's status
        is never changed by an import. What still holds:

        * ``duplicate_event``: an eventID is recorded once (captured or imported; for an
          errorDeclaration: once per declared eventID);
        * ``lot_recalled`` / ``lot_disposed``: a recall or disposal is this ledger's decision, so
          events on such lots are refused (a recalled lot's destruction excepted, as in capture);
        * error declarations: one for an event not in this ledger is recorded as an imported
          declaration and reverses nothing; one for an imported event marks that event
          ``erroneous`` (its lineage edges and certificates stop counting; no other effect); one
          for an event captured here is refused (:class:`PermissionDeniedError`: its recording
          operator corrects it with :meth:`capture`). An event imported after its declaration is
          stored ``erroneous``.

        ``events``: event dicts, e.g. ``epcis.events_of(document)``."""
        if not isinstance(importer, str) or not importer.strip():
            raise PermissionDeniedError("an import is made by a named importer (the partner system or regulator)")
        actor = f"{IMPORTER_ACTOR}{importer.strip()}"
        if len(actor) > 255:
            raise InvalidEventError(f"importer must be at most {255 - len(IMPORTER_ACTOR)} characters",
                                    path="$.importer")
        if isinstance(events, (dict, str, bytes)):
            raise InvalidEventError("expected a sequence of events (epcis.events_of(document) gives them)",
                                    path="$")
        items = list(events)
        if not items:
            return []
        parsed: list[TraceEvent] = []
        for i, raw in enumerate(items):
            try:
                ev = epcis.parse_event(raw)
                _check_import_sizes(ev)
            except InvalidEventError as e:
                if len(items) > 1:
                    e.add_note(f"in event {i} of the batch")
                raise
            parsed.append(ev)
        with self._lock, self._serialised():
            with self.engine.connect() as conn:
                state = self._load_state(conn, parsed)
            plans: list[_Plan] = []
            for i, ev in enumerate(parsed):
                try:
                    plan = self._plan_import(-(i + 1), ev, actor, state)
                except TraceError as e:
                    if len(items) > 1:
                        e.add_note(f"in event {i} of the batch ({ev.event_id})")
                    raise
                state.plans_by_ref[plan.ref] = plan
                plans.append(plan)
            index, records = self._commit(plans, state)
        return [self._captured_plan(p, state, index, records[p.ref]) for p in plans]

    def _import_objects(self, ev: TraceEvent,
                        st: _State) -> list[tuple[str, str, float | None, str | None, Quantity]]:
        """(lot key, role, quantity, uom, representative object) of every lot the event names."""
        if ev.type == "TransformationEvent":
            groups = [(ev.inputs, "input", "inputQuantityList"), (ev.outputs, "output", "outputQuantityList")]
        elif ev.type in ("AggregationEvent", "AssociationEvent"):
            groups = [(ev.children, "child", "childQuantityList")]
        else:
            groups = [(ev.inputs or ev.outputs, "epc", "quantityList")]
        out: list[tuple[str, str, float | None, str | None, Quantity]] = []
        for qs, role, where in groups:
            for key, amount, uom, q in self._amounts(qs, ev, where, st):
                if len(key) > tables.KEY:
                    raise InvalidEventError(f"identifier {key[:60]}... is longer than {tables.KEY} characters",
                                            path=f"$.{where}")
                out.append((key, role, amount, uom, q))
        if ev.parent:
            pk = self._parent_key(ev.parent)
            if len(pk) > tables.KEY:
                raise InvalidEventError(f"parentID is longer than {tables.KEY} characters", path="$.parentID")
            out.append((pk, "parent", None, None, Quantity(None, ev.parent, _product_of_uri(ev.parent), None, None)))
        return out

    def _plan_import(self, ref: int, ev: TraceEvent, actor: str, st: _State) -> _Plan:
        now = self._clock()
        record = ev.raw  # parse_event's own copy, with eventID set
        if ev.error_declaration is not None:
            return self._plan_imported_declaration(ref, ev, actor, st, record, now)
        if ev.event_id in st.events:
            raise RuleViolationError(
                "duplicate_event", f"event {ev.event_id} is already recorded (log index "
                f"{st.events[ev.event_id]['log_index']}); an event is recorded once")
        step = ev.biz_step or ""
        objectish = ev.type in ("ObjectEvent", "TransactionEvent")
        disposal = objectish and (ev.action == "DELETE" or step in DISPOSE_STEPS
                                  or ev.disposition in DISPOSE_DISPOSITIONS)
        if ev.type == "TransformationEvent":
            makes = {"output"}  # the roles of the lots this event brings into existence
        elif objectish:
            makes = {"epc"} if ev.action == "ADD" else set()
        else:
            makes = {"parent"} if ev.action == "ADD" else set()
        src_op = self._resolve(ev.party("owning_party") or ev.party("possessing_party") or ev.party("location"))
        dst_op = self._resolve(ev.party("owning_party", destination=True)
                               or ev.party("possessing_party", destination=True)
                               or ev.party("location", destination=True))
        t = _utc(ev.event_time)
        row = self._event_row(ref, ev, None, "event", record, now, t, src_op, dst_op, actor=actor)
        plan = _Plan(ref, ev, record, "event", None, row)
        objs = self._import_objects(ev, st)
        for pos, (key, role, amount, uom, q) in enumerate(objs):
            if key in st.lots:
                self._check_lot(st, key, "dispose" if disposal else "import")
            else:
                self._import_lot(st, key, q, ev, ref if role in makes else None, t,
                                 uom if amount is not None else None, role in makes, role == "parent")
            plan.event_lots.append({"log_index": ref, "position": pos, "lot_key": key, "role": role,
                                    "quantity": amount, "uom": uom, "event_time": t})
        declared = st.declarations.get(ev.event_id)  # its declaration came first
        active = declared is None
        if ev.type == "TransformationEvent":
            for pk in dict.fromkeys(k for k, role, *_ in objs if role == "input"):
                for ck in dict.fromkeys(k for k, role, *_ in objs if role == "output"):
                    if pk != ck:
                        plan.lineage.append({"parent_key": pk, "child_key": ck, "log_index": ref,
                                             "kind": "transformation", "active": active})
        elif ev.parent and ev.action in ("ADD", "OBSERVE"):
            pk = self._parent_key(ev.parent)
            for ck in dict.fromkeys(k for k, role, *_ in objs if role == "child"):
                if ck != pk:
                    plan.lineage.append({"parent_key": ck, "child_key": pk, "log_index": ref,
                                         "kind": "aggregation", "active": active})
        lot_keys = list(dict.fromkeys(k for k, role, *_ in objs if role != "parent"))
        for i, cert in enumerate(ev.certificates):
            fields = _import_certificate(cert, i)
            for key in lot_keys:
                plan.certificates.append({"log_index": ref, "position": len(plan.certificates), "lot_key": key,
                                          **fields, "active": active})
        if declared is not None:
            row["status"] = "erroneous"
            row["declared_by"] = declared
        st.events[ev.event_id] = {"log_index": ref, "status": row["status"], "operator_id": None,
                                  "type": ev.type, "actor": actor}
        return plan

    def _import_lot(self, st: _State, key: str, q: Quantity, ev: TraceEvent, origin: int | None, t: datetime,
                    uom: str | None, made: bool, container: bool) -> None:
        """A lot first seen in an imported event (no creating operator; its lot master data only
        when the event makes it)."""
        product = q.product if q.product is not None and q.product.lot_key == key else _product_of(key)
        desc = None
        if made:
            desc = _ilmd(ev.raw, "descriptionShort", "productDescription", "itemDescription", "description",
                         "tradeItemDescription", "productName")
        if desc is None and container:
            desc = "logistic unit" if "/00/" in key or key.startswith("urn:epc:id:sscc:") else None
        st.lots[key] = {
            "key": key, "gtin": product.gtin if product else None, "lot": (product.lot or None) if product else None,
            "serial": product.serial if product else None, "local_id": product.local_id if product else None,
            "description": str(desc)[:255] if desc is not None else None, "uom": uom,
            "origin_operator_id": None, "origin_log_index": origin, "created_at": t,
            "best_before": _date(_ilmd(ev.raw, "bestBeforeDate")) if made else None,
            "expiry": _date(_ilmd(ev.raw, "itemExpirationDate", "expiryDate")) if made else None,
            "status": "active", "status_reason": None, "status_at": None, "recall_root": None, "recall_id": None,
        }
        st.new_lots.add(key)

    def _plan_imported_declaration(self, ref: int, ev: TraceEvent, actor: str, st: _State,
                                   record: dict[str, Any], now: datetime) -> _Plan:
        if ev.event_id in st.declared:
            raise RuleViolationError(
                "duplicate_event", f"an error declaration for event {ev.event_id} is already recorded (log index "
                f"{st.declarations.get(ev.event_id)}); a declaration is recorded once")
        orig = st.events.get(ev.event_id)
        decl_time = _parse_dt(ev.error_declaration.get("declarationTime")) if ev.error_declaration else None
        t = _utc(decl_time or ev.event_time)
        row = self._event_row(ref, ev, None, "error_declaration", record, now, t, None, None, actor=actor)
        plan = _Plan(ref, ev, record, "error_declaration", None, row)
        if orig is not None:
            if not str(orig.get("actor") or "").startswith(IMPORTER_ACTOR):
                raise PermissionDeniedError(
                    f"event {ev.event_id} was recorded in this ledger by "
                    f"{self._name(orig['operator_id']) or orig.get('actor') or 'a regulator'}; an imported error "
                    "declaration cannot correct it (its recorder declares it erroneous with capture)")
            if orig["status"] != "active":
                raise RuleViolationError("already_declared", f"event {ev.event_id} was already declared erroneous")
            oref = orig["log_index"]
            if oref < 0:  # imported earlier in the same batch
                op_plan = st.plans_by_ref[oref]
                for e in op_plan.lineage:
                    e["active"] = False
                for c in op_plan.certificates:
                    c["active"] = False
                op_plan.event_row["status"] = "erroneous"
                op_plan.event_row["declared_by"] = ref
            else:
                st.erroneous_db.append((oref, ref))
            orig["status"] = "erroneous"
            plan.declares = oref
        # The declaration repeats the declared event: index it under the same lots (creating none).
        for pos, (key, role, amount, uom, _q) in enumerate(self._import_objects(ev, st)):
            plan.event_lots.append({"log_index": ref, "position": pos, "lot_key": key, "role": role,
                                    "quantity": amount, "uom": uom, "event_time": t})
        st.declared.add(ev.event_id)
        st.declarations[ev.event_id] = ref
        return plan

    # -- writing --------------------------------------------------------------------------------

    def _write(self, plans: Sequence[_Plan], st: _State, index: Mapping[int, int],
               records: Mapping[int, bytes], digests: Mapping[int, str]) -> None:
        def res(v: Any) -> Any:
            return index[v] if isinstance(v, int) and v < 0 else v

        event_rows, lots_rows, lineage, movements, ships, certs = [], [], [], [], [], []
        for p in plans:
            row = dict(p.event_row)
            row["log_index"] = index[p.ref]
            row["declared_by"] = res(row["declared_by"])
            row["record"] = records[p.ref].decode()
            row["record_sha256"] = digests[p.ref]
            event_rows.append(row)
            lots_rows += [{**r, "log_index": index[p.ref]} for r in p.event_lots]
            lineage += [{**r, "log_index": index[p.ref]} for r in p.lineage]
            certs += [{**r, "log_index": index[p.ref]} for r in p.certificates]
            for m in p.movements:
                movements.append({**m, "log_index": index[p.ref], "ship_log_index": res(m["ship_log_index"])})
        for sref, s in st.ships.items():
            if sref not in st.ships_in_db:
                ships.append({**s, "log_index": res(s["log_index"])})
        new_lots = [{**st.lots[k], "origin_log_index": res(st.lots[k]["origin_log_index"])}
                    for k in sorted(st.new_lots)]
        with self.engine.begin() as conn:
            conn.execute(insert(tables.events), event_rows)
            if new_lots:
                conn.execute(insert(tables.lots), new_lots)
            if lots_rows:
                conn.execute(insert(tables.event_lots), lots_rows)
            if lineage:
                conn.execute(insert(tables.lineage), lineage)
            if certs:
                conn.execute(insert(tables.certificates), certs)
            if movements:
                conn.execute(insert(tables.movements), movements)
            if ships:
                conn.execute(insert(tables.shipments), ships)
            if st.dirty_ships:
                S = tables.shipments
                conn.execute(update(S).where(S.c.log_index == bindparam("b_li"), S.c.position == bindparam("b_pos"))
                             .values(received=bindparam("b_rec"), status=bindparam("b_status")),
                             [{"b_li": r[0], "b_pos": r[1], "b_rec": st.ships[r]["received"],
                               "b_status": st.ships[r]["status"]} for r in sorted(st.dirty_ships)])
            if st.dirty_lots:
                L = tables.lots
                cols = ("status", "status_reason", "status_at", "best_before", "expiry")
                conn.execute(update(L).where(L.c.key == bindparam("b_key"))
                             .values({c: bindparam(f"b_{c}") for c in cols}),
                             [{"b_key": k, **{f"b_{c}": st.lots[k][c] for c in cols}} for k in sorted(st.dirty_lots)])
            if st.dirty_holdings:
                H = tables.holdings
                now = _utc(self._clock())
                upd = [k for k in st.dirty_holdings if k in st.holding_in_db]
                new = [k for k in st.dirty_holdings if k not in st.holding_in_db]
                if upd:
                    conn.execute(update(H).where(H.c.operator_id == bindparam("b_op"), H.c.lot_key == bindparam("b_key"))
                                 .values(quantity=bindparam("b_q"), updated_at=now),
                                 [{"b_op": o, "b_key": k, "b_q": _clean(st.holdings[(o, k)])} for o, k in sorted(upd)])
                if new:
                    conn.execute(insert(tables.holdings), [
                        {"operator_id": o, "lot_key": k, "quantity": _clean(st.holdings[(o, k)]),
                         "uom": self._uom(st, k), "updated_at": now} for o, k in sorted(new)])
            for oref, dref in st.erroneous_db:
                E = tables.events
                conn.execute(update(E).where(E.c.log_index == oref).values(status="erroneous", declared_by=index[dref]))
                conn.execute(update(tables.lineage).where(tables.lineage.c.log_index == oref).values(active=False))
                conn.execute(update(tables.certificates).where(tables.certificates.c.log_index == oref)
                             .values(active=False))

    # -- reading events -------------------------------------------------------------------------

    def _events_by_index(self, indexes: Sequence[int]) -> list[CapturedEvent]:
        E = tables.events
        rows = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(list(indexes)):
                for r in conn.execute(select(E).where(E.c.log_index.in_(chunk))):
                    rows[int(r.log_index)] = r
            lots = self._event_lots(conn, list(rows))
        return [self._captured(rows[i], lots.get(i, ())) for i in indexes if i in rows]

    def _event_lots(self, conn, indexes: Sequence[int]) -> dict[int, tuple[EventLot, ...]]:  # type: ignore[no-untyped-def]
        EL, L = tables.event_lots, tables.lots
        out: dict[int, list[EventLot]] = defaultdict(list)
        for chunk in _chunks(sorted(indexes)):
            stmt = (select(EL.c.log_index, EL.c.lot_key, EL.c.role, EL.c.quantity, EL.c.uom, L.c.description)
                    .select_from(EL.outerjoin(L, L.c.key == EL.c.lot_key))
                    .where(EL.c.log_index.in_(chunk)).order_by(EL.c.log_index, EL.c.position))
            for r in conn.execute(stmt):
                out[int(r.log_index)].append(EventLot(r.lot_key, r.role, r.quantity, r.uom, r.description))
        return {k: tuple(v) for k, v in out.items()}

    def _captured(self, r, lots: tuple[EventLot, ...]) -> CapturedEvent:  # type: ignore[no-untyped-def]
        op = self._operators().get(r.operator_id) if r.operator_id else None
        return CapturedEvent(
            int(r.log_index), r.event_id, r.kind, r.type, r.action, r.biz_step, r.disposition,
            _aware(r.event_time), r.operator_id, op.name if op else None, op.role if op else None,  # type: ignore[arg-type]
            (op.location_name or op.name) if op else None, r.actor, r.read_point, r.biz_location,
            r.source_operator_id, self._name(r.source_operator_id), r.destination_operator_id,
            self._name(r.destination_operator_id), r.status,
            None if r.declared_by is None else int(r.declared_by), r.record, lots)

    def event(self, log_index: int) -> CapturedEvent:
        found = self._events_by_index([log_index])
        if not found:
            raise NotFoundError(f"no trace event at log index {log_index}")
        return found[0]

    def query_events(self, *, product: ProductId | None = None, operator_id: str | None = None,
                     since: datetime | None = None, until: datetime | None = None,
                     limit: int | None = None) -> list[CapturedEvent]:
        """Events by lot, recording operator and time range ``[since, until)``, in time order."""
        E, EL = tables.events, tables.event_lots
        stmt = select(E.c.log_index)
        if product is not None:
            sub = select(EL.c.log_index).where(EL.c.lot_key == product.lot_key)
            if since is not None:
                sub = sub.where(EL.c.event_time >= _utc(_check_aware(since, "since")))
            if until is not None:
                sub = sub.where(EL.c.event_time < _utc(_check_aware(until, "until")))
            stmt = stmt.where(E.c.log_index.in_(sub))
        if operator_id is not None:
            self.operator(operator_id)
            stmt = stmt.where(E.c.operator_id == operator_id)
        if since is not None:
            stmt = stmt.where(E.c.event_time >= _utc(_check_aware(since, "since")))
        if until is not None:
            stmt = stmt.where(E.c.event_time < _utc(_check_aware(until, "until")))
        stmt = stmt.order_by(E.c.event_time, E.c.log_index)
        if limit is not None:
            stmt = stmt.limit(limit)
        with self.engine.connect() as conn:
            indexes = [int(i) for i in conn.execute(stmt).scalars()]
        return self._events_by_index(indexes)

    # -- lots ------------------------------------------------------------------------------------

    def lot(self, product: ProductId | str) -> Lot:
        key = product if isinstance(product, str) else product.lot_key
        with self.engine.connect() as conn:
            found = self._lots(conn, [key])
        if key not in found:
            raise NotFoundError(f"no lot {key}")
        return found[key]

    def _lots(self, conn, keys: Sequence[str]) -> dict[str, Lot]:  # type: ignore[no-untyped-def]
        L = tables.lots
        rows = {}
        for chunk in _chunks(list(keys)):
            for r in conn.execute(select(L).where(L.c.key.in_(chunk))):
                rows[r.key] = r
        holders = self._holders(conn, list(rows))
        by_lot: dict[str, list[Holder]] = defaultdict(list)
        for h in holders:
            by_lot[h.lot_key].append(h)
        out = {}
        for k, r in rows.items():
            hs = by_lot.get(k, [])
            out[k] = Lot(k, _product_of(k), r.description, r.uom, r.status, r.status_reason, _aware(r.status_at),
                         r.recall_root, r.origin_operator_id,
                         None if r.origin_log_index is None else int(r.origin_log_index),
                         _aware(r.created_at), _date(r.best_before), _date(r.expiry),  # type: ignore[arg-type]
                         _clean(sum(h.quantity for h in hs if not h.in_transit)),
                         _clean(sum(h.quantity for h in hs if h.in_transit)), tuple(hs))
        return out

    def _holders(self, conn, keys: Sequence[str]) -> list[Holder]:  # type: ignore[no-untyped-def]
        H, S = tables.holdings, tables.shipments
        ops = self._operators(conn)
        out: list[Holder] = []
        for chunk in _chunks(sorted(set(keys))):
            for r in conn.execute(select(H.c.operator_id, H.c.lot_key, H.c.quantity, H.c.uom)
                                  .where(H.c.lot_key.in_(chunk), H.c.quantity > EPS)):
                op = ops.get(r.operator_id)
                out.append(Holder(r.operator_id, op.name if op else "?", op.role if op else "?", r.lot_key,
                                  float(r.quantity), r.uom))
            for r in conn.execute(select(S.c.destination_operator_id, S.c.lot_key, S.c.quantity, S.c.received,
                                         S.c.uom).where(S.c.lot_key.in_(chunk), S.c.status == "open")):
                op = ops.get(r.destination_operator_id)
                out.append(Holder(r.destination_operator_id, op.name if op else "?", op.role if op else "?",
                                  r.lot_key, _clean(float(r.quantity) - float(r.received)), r.uom, True))
        out.sort(key=lambda h: (h.lot_key, h.in_transit, h.operator_name))
        return out

    # -- lineage ---------------------------------------------------------------------------------

    def _closure(self, conn, roots: Sequence[str], forward: bool) -> list[str]:  # type: ignore[no-untyped-def]
        """Every lot reachable from ``roots`` (included) along active lineage edges: a recursive CTE."""
        here, there = ("parent_key", "child_key") if forward else ("child_key", "parent_key")
        seeds = " UNION ".join(f"SELECT CAST(:r{i} AS VARCHAR({tables.KEY}))" for i in range(len(roots)))
        sql = text(f"WITH RECURSIVE walk(k) AS ({seeds} UNION SELECT l.{there} FROM trace_lineage l "
                   f"JOIN walk w ON l.{here} = w.k WHERE l.active = :yes) SELECT k FROM walk")
        params: dict[str, Any] = {f"r{i}": r for i, r in enumerate(roots)}
        params["yes"] = True
        return [r[0] for r in conn.execute(sql, params)]

    def _edges(self, conn, keys: Sequence[str], forward: bool) -> list[Edge]:  # type: ignore[no-untyped-def]
        G = tables.lineage
        col = G.c.parent_key if forward else G.c.child_key
        out = []
        for chunk in _chunks(sorted(keys)):
            for r in conn.execute(select(G).where(col.in_(chunk), G.c.active.is_(True))):
                out.append(Edge(r.parent_key, r.child_key, int(r.log_index), r.kind))
        out.sort(key=lambda e: (e.log_index, e.parent_key, e.child_key))
        return out

    def _lot_event_indexes(self, conn, keys: Sequence[str], since: datetime | None = None,  # type: ignore[no-untyped-def]
                           until: datetime | None = None) -> list[int]:
        EL = tables.event_lots
        found: dict[int, datetime] = {}
        for chunk in _chunks(sorted(keys)):
            stmt = select(EL.c.log_index, EL.c.event_time).where(EL.c.lot_key.in_(chunk))
            if since is not None:
                stmt = stmt.where(EL.c.event_time >= _utc(since))
            if until is not None:
                stmt = stmt.where(EL.c.event_time < _utc(until))
            for r in conn.execute(stmt):
                found[int(r.log_index)] = _aware(r.event_time)  # type: ignore[assignment]
        return sorted(found, key=lambda i: (found[i], i))

    def _trace(self, product: ProductId | str, forward: bool, since: datetime | None,
               until: datetime | None) -> TraceResult:
        key = product if isinstance(product, str) else product.lot_key
        with self.engine.connect() as conn:
            if conn.execute(select(tables.lots.c.key).where(tables.lots.c.key == key)).first() is None:
                raise NotFoundError(f"no lot {key}")
            keys = self._closure(conn, [key], forward)
            edges = self._edges(conn, keys, forward)
            lots = self._lots(conn, keys)
            indexes = self._lot_event_indexes(conn, keys, since, until)
        events = self._events_by_index(indexes)
        order = {k: i for i, k in enumerate(keys)}
        lot_list = sorted(lots.values(), key=lambda l: (l.created_at, order.get(l.key, 0)))
        holders = tuple(h for l in lot_list for h in l.holders)
        return TraceResult(key, "forward" if forward else "back", tuple(lot_list), tuple(edges),
                           tuple(events), holders)

    def trace_back(self, product: ProductId | str, *, since: datetime | None = None,
                   until: datetime | None = None) -> TraceResult:
        """The lot and every lot it came from (through transformations and packing) to the origin."""
        return self._trace(product, False, since, until)

    def trace_forward(self, product: ProductId | str, *, since: datetime | None = None,
                      until: datetime | None = None) -> TraceResult:
        """The lot, every lot made from it or packed with it, and who holds them now."""
        return self._trace(product, True, since, until)

    # -- provenance (the consumer page) ----------------------------------------------------------

    def provenance(self, product: ProductId | str) -> Provenance:
        key = product if isinstance(product, str) else product.lot_key
        E, EL, C, L = tables.events, tables.event_lots, tables.certificates, tables.lots
        ops = self._operators()
        with self.engine.connect() as conn:
            lots = self._lots(conn, [key])
            if key not in lots:
                raise NotFoundError(f"no lot {key}")
            lot = lots[key]
            ancestors = self._closure(conn, [key], False)
            origin_rows = {r.key: r for chunk in _chunks(ancestors) for r in conn.execute(
                select(L.c.key, L.c.origin_operator_id, L.c.origin_log_index, L.c.created_at).where(L.c.key.in_(chunk)))}
            step_rows = []
            for chunk in _chunks(ancestors):
                step_rows += conn.execute(
                    select(E.c.log_index, E.c.event_id, E.c.event_time, E.c.type, E.c.biz_step, E.c.disposition,
                           E.c.operator_id, E.c.status, E.c.kind, E.c.source_operator_id,
                           E.c.destination_operator_id, E.c.record, EL.c.lot_key, EL.c.quantity, EL.c.uom,
                           EL.c.role)
                    .select_from(EL.join(E, E.c.log_index == EL.c.log_index))
                    .where(EL.c.lot_key.in_(chunk))).all()
            certs = []
            for chunk in _chunks(ancestors):
                certs += conn.execute(
                    select(C, E.c.event_id).select_from(C.join(E, E.c.log_index == C.c.log_index))
                    .where(C.c.lot_key.in_(chunk), C.c.active.is_(True))).all()
            recall = None
            if lot.status == "recalled":
                R = tables.recalls
                r = conn.execute(select(R).where(R.c.id == conn.execute(
                    select(L.c.recall_id).where(L.c.key == key)).scalar())).first()
                recall = RecallInfo(r.id if r else None, lot.recall_root or key, r.reason if r else lot.status_reason,
                                    r.regulator if r else None, _aware(r.recalled_at) if r else lot.status_at)
        depth = {k: i for i, k in enumerate(ancestors)}
        steps: dict[int, Step] = {}
        for r in sorted(step_rows, key=lambda r: (_aware(r.event_time), int(r.log_index), depth.get(r.lot_key, 0))):
            li = int(r.log_index)
            if li in steps:
                continue
            op = ops.get(r.operator_id) if r.operator_id else None
            steps[li] = Step(r.event_id, li, _aware(r.event_time), r.type, r.biz_step,  # type: ignore[arg-type]
                             r.disposition, r.operator_id, op.name if op else None, op.role if op else None,
                             (op.location_name or op.name) if op else None, r.lot_key, r.quantity, r.uom,
                             r.status if r.kind == "event" else "declaration",
                             self._name(r.source_operator_id), self._name(r.destination_operator_id), r.record)
        ordered = tuple(sorted(steps.values(), key=lambda s: (s.event_time, s.log_index)))
        # The farm of origin: the earliest lot created by a farm; else the earliest root lot's creator.
        origin = None
        cands = sorted((r for r in origin_rows.values() if r.origin_operator_id in ops),
                       key=lambda r: (ops[r.origin_operator_id].role != "farm", -depth.get(r.key, 0),
                                      _aware(r.created_at)))
        if cands:
            r = cands[0]
            ev_id = next((s.event_id for s in ordered if s.log_index == r.origin_log_index), "")
            origin = PartyStep(ops[r.origin_operator_id], r.key, _aware(r.created_at), ev_id,  # type: ignore[arg-type]
                               int(r.origin_log_index))
        slaughter = None
        for s in ordered:
            if s.type == "TransformationEvent" and s.operator_role == "slaughterhouse" and s.status == "active":
                slaughter = PartyStep(ops[s.operator_id], s.lot_key, s.event_time, s.event_id, s.log_index)  # type: ignore[index]
                break
        if slaughter is None:
            for s in ordered:
                if s.operator_role == "slaughterhouse" and s.status == "active":
                    slaughter = PartyStep(ops[s.operator_id], s.lot_key, s.event_time, s.event_id, s.log_index)  # type: ignore[index]
                    break
        certificates = tuple(sorted(
            (Certificate(c.lot_key, c.kind, c.number, c.issuer, c.uri, _aware(c.issued_at), c.result, c.event_id,
                         int(c.log_index)) for c in certs),
            key=lambda c: (c.issued_at or datetime.min.replace(tzinfo=UTC), c.log_index)))
        return Provenance(lot.product or _product_of(key) or ProductId(None, "", None, "unknown:lot"), lot,  # type: ignore[arg-type]
                          origin, slaughter, certificates, ordered, recall, tuple(ancestors))

    # -- inventory -------------------------------------------------------------------------------

    def inventory(self, operator_id: str, at: date | None = None) -> list[StockLine]:
        """The operator's stock per lot: now, or at the end of day ``at`` (UTC)."""
        self.operator(operator_id)
        H, M, L = tables.holdings, tables.movements, tables.lots
        with self.engine.connect() as conn:
            if at is None:
                rows = [(r.lot_key, float(r.quantity)) for r in conn.execute(
                    select(H.c.lot_key, H.c.quantity).where(H.c.operator_id == operator_id, H.c.quantity > EPS))]
            else:
                from sqlalchemy import func
                rows = [(r[0], float(r[1])) for r in conn.execute(
                    select(M.c.lot_key, func.sum(M.c.delta)).where(M.c.operator_id == operator_id, M.c.day <= at)
                    .group_by(M.c.lot_key))]
                rows = [(k, q) for k, q in rows if q > 1e-6]
            lots = {}
            for chunk in _chunks([k for k, _ in rows]):
                for r in conn.execute(select(L).where(L.c.key.in_(chunk))):
                    lots[r.key] = r
        out = []
        for k, q in sorted(rows):
            r = lots.get(k)
            out.append(StockLine(operator_id, k, _product_of(k), r.description if r else None, _clean(q),
                                 r.uom if r else None, r.status if r else "active",
                                 _date(r.best_before) if r else None, _date(r.expiry) if r else None))
        return out

    def daily_ledger(self, operator_id: str, day: date) -> list[LedgerLine]:
        """Per lot: opening stock, received/produced, shipped/sold/used/disposed, closing (UTC day)."""
        from sqlalchemy import func

        self.operator(operator_id)
        M, L = tables.movements, tables.lots
        with self.engine.connect() as conn:
            opening = {r[0]: float(r[1]) for r in conn.execute(
                select(M.c.lot_key, func.sum(M.c.delta)).where(M.c.operator_id == operator_id, M.c.day < day)
                .group_by(M.c.lot_key))}
            moves = conn.execute(select(M.c.lot_key, M.c.delta, M.c.counterparty_id, M.c.reason).where(
                M.c.operator_id == operator_id, M.c.day == day).order_by(M.c.at, M.c.log_index, M.c.position)).all()
            keys = sorted({k for k, q in opening.items() if abs(q) > 1e-6} | {m.lot_key for m in moves})
            lots = {}
            for chunk in _chunks(keys):
                for r in conn.execute(select(L.c.key, L.c.description, L.c.uom).where(L.c.key.in_(chunk))):
                    lots[r.key] = r
        inc: dict[str, float] = defaultdict(float)
        out_: dict[str, float] = defaultdict(float)
        sup: dict[str, list[str]] = defaultdict(list)
        cus: dict[str, list[str]] = defaultdict(list)
        for m in moves:
            d = float(m.delta)
            if m.reason == "reversal":  # a correction nets against the column it undoes
                if d > 0:
                    out_[m.lot_key] -= d
                else:
                    inc[m.lot_key] += d
                continue
            name = self._name(m.counterparty_id)
            if d > 0:
                inc[m.lot_key] += d
                if name and name not in sup[m.lot_key]:
                    sup[m.lot_key].append(name)
            else:
                out_[m.lot_key] -= d
                if name and name not in cus[m.lot_key]:
                    cus[m.lot_key].append(name)
        lines = []
        for k in keys:
            o = opening.get(k, 0.0)
            r = lots.get(k)
            lines.append(LedgerLine(day, k, r.description if r else None, _clean(o), _clean(inc[k]),
                                    _clean(out_[k]), _clean(o + inc[k] - out_[k]), r.uom if r else None,
                                    tuple(sup[k]), tuple(cus[k])))
        return lines

    def expiry_warnings(self, operator_id: str, today: date) -> list[ExpiryWarning]:
        """Lots in stock whose expiry (or best-before) date is within ``expiry_warning_days`` or past."""
        limit = today + timedelta(days=self.expiry_warning_days)
        out = []
        for line in self.inventory(operator_id):
            if line.expiry is not None:
                d, kind = line.expiry, "expiry"
            elif line.best_before is not None:
                d, kind = line.best_before, "best_before"
            else:
                continue
            if d <= limit:
                out.append(ExpiryWarning(line.lot_key, line.description, line.quantity, line.uom, d, kind,
                                         (d - today).days))
        out.sort(key=lambda w: (w.date, w.lot_key))
        return out

    # -- recall ----------------------------------------------------------------------------------

    def recall(self, product: ProductId | str, reason: str, *, regulator: str) -> RecallResult:
        """Recall a lot and everything made from it: flag every descendant lot (status
        ``recalled``, with this root), append a recall event per lot to the ``trace`` log, list the
        current holders and call ``on_recall``."""
        key = product if isinstance(product, str) else product.lot_key
        if not isinstance(reason, str) or not reason.strip():
            raise InvalidEventError("a recall needs a reason", path="$.reason")
        if not isinstance(regulator, str) or not regulator.strip():
            raise PermissionDeniedError("a recall is issued by a named regulator")
        L = tables.lots
        now = self._clock()
        with self._lock, self._serialised():
            with self.engine.connect() as conn:
                root = conn.execute(select(L).where(L.c.key == key)).first()
                if root is None:
                    raise NotFoundError(f"no lot {key}")
                if root.status == "recalled":
                    raise RuleViolationError("already_recalled", f"lot {key} is already recalled "
                                             f"(recall root {root.recall_root})")
                keys = self._closure(conn, [key], True)
                rows = {r.key: r for chunk in _chunks(keys) for r in conn.execute(select(L).where(L.c.key.in_(chunk)))}
            flag = [k for k in keys if k in rows and rows[k].status != "recalled"]
            before = tuple(k for k in keys if k in rows and rows[k].status == "recalled")
            recall_id = _new_id()
            records, evs = [], []
            for k in flag:
                pid = _product_of(k)
                if pid is not None:
                    rec = epcis.recall(pid, reason, now)
                else:  # a container: an OBSERVE of the container
                    rec = {"@context": list(epcis.EVENT_CONTEXT), "type": "ObjectEvent",
                           "eventTime": epcis.format_time(_utc(now)), "eventTimeZoneOffset": "+00:00",
                           "epcList": [k], "action": "OBSERVE", "bizStep": "holding", "disposition": "recalled",
                           "evl:reason": reason}
                    rec["eventID"] = epcis.canonical_event_hash(rec)
                rec["evl:recallRoot"] = key
                rec["evl:regulator"] = regulator
                rec["eventID"] = epcis.canonical_event_hash(rec)
                records.append(rec)
                evs.append(epcis.parse_event(rec))
            try:
                entries = self.store.append_many(TRACE_LOG, records)
            except LedgerError as e:
                raise TraceError(f"appending the recall to the {TRACE_LOG!r} log failed: {e}") from e
            t = _utc(now)
            try:
                with self.engine.begin() as conn:
                    if entries:
                        conn.execute(insert(tables.events), [
                            {**self._event_row(e.index, ev, None, "event", rec, now, t, None, None,
                                               actor=f"regulator:{regulator}"),
                             "log_index": e.index, "record_sha256": e.record_digest.hex(),
                             "record": (e.record_canonical or canonical.canonicalize(rec)).decode()}
                            for e, ev, rec in zip(entries, evs, records)])
                        conn.execute(insert(tables.event_lots), [
                            {"log_index": e.index, "position": 0, "lot_key": k, "role": "epc", "quantity": None,
                             "uom": None, "event_time": t} for e, k in zip(entries, flag)])
                        conn.execute(insert(tables.recalls).values(
                            id=recall_id, root_key=key, reason=reason, regulator=regulator, recalled_at=t,
                            lot_count=len(flag), first_log_index=entries[0].index, last_log_index=entries[-1].index))
                        for chunk in _chunks(flag):
                            conn.execute(update(L).where(L.c.key.in_(chunk)).values(
                                status="recalled", status_reason=reason, status_at=t, recall_root=key,
                                recall_id=recall_id))
            except SQLAlchemyError as e:
                raise TraceError(f"the recall of {key} was logged at indexes {entries[0].index}.."
                                 f"{entries[-1].index} of the {TRACE_LOG!r} log but could not be stored ({e})") from e
        with self.engine.connect() as conn:
            holders = tuple(self._holders(conn, keys))
        events = tuple(self._events_by_index([e.index for e in entries]))
        if self.on_recall is not None and flag:
            pairs = []
            for k in flag:
                pid = _product_of(k)
                if pid is not None and pid.lot:
                    pairs.append((pid.gtin or pid.local_id or "", pid.lot))
            try:
                self.on_recall(pairs, reason, key)
            except Exception as e:  # the recall stands; the caller must retry the on-chain update
                raise TraceError(f"the recall of {key} is recorded (recall {recall_id}), but the on-chain "
                                 f"status update failed: {e}") from e
        return RecallResult(recall_id, key, reason, regulator, t, tuple(flag), before, holders, events)

    # -- exports ---------------------------------------------------------------------------------

    def export_epcis(self, events: Iterable[CapturedEvent]) -> dict[str, Any]:
        from .export import export_epcis

        return export_epcis(events, creation_date=self._clock())

    def export_fsma_csv(self, events: Iterable[CapturedEvent] | TraceResult) -> str:
        from .export import export_fsma_csv

        return export_fsma_csv(events)


class _Movements:
    """Collects one event's movements and keeps the batch's holdings current."""

    def __init__(self, tracer: Tracer, plan: _Plan, st: _State, t: datetime) -> None:
        self.tracer, self.plan, self.st, self.t = tracer, plan, st, t
        self.rows: list[dict[str, Any]] = []

    def add(self, op: str, key: str, delta: float, uom: str | None, reason: str, *,
            counterparty: str | None = None, ship: tuple[int, int] | None = None) -> None:
        st = self.st
        st.holdings[(op, key)] = st.holdings.get((op, key), 0.0) + delta
        st.dirty_holdings.add((op, key))
        self.rows.append({"log_index": self.plan.ref, "position": len(self.rows), "operator_id": op,
                          "lot_key": key, "at": self.t, "day": self.t.date(), "delta": delta, "uom": uom,
                          "reason": reason, "counterparty_id": counterparty,
                          "ship_log_index": ship[0] if ship else None,
                          "ship_position": ship[1] if ship else None})

    def take(self, op: str, key: str, amount: float, reason: str, rule: str, verb: str) -> None:
        held = self.st.held(op, key)
        uom = self.tracer._uom(self.st, key)
        if amount <= EPS or amount > held + EPS:
            name = self.tracer._name(op)
            raise RuleViolationError(
                rule, f"operator {name} holds {_qty(held, uom)} of lot {key}; cannot {verb} "
                f"{_qty(amount, uom)}" if amount > EPS else f"operator {name} holds none of lot {key}")
        self.add(op, key, -amount, uom, reason)


@functools.lru_cache(maxsize=65536)
def _lot_key(pid: ProductId) -> str:
    return pid.lot_key


def _product_of_uri(uri: str) -> ProductId | None:
    try:
        return ProductId.from_epc(uri)
    except InvalidIdentifierError:
        return None


def _parse_dt(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return _utc(value) if value.tzinfo else value.replace(tzinfo=UTC)
    try:
        text_ = str(value).replace("Z", "+00:00")
        dt = datetime.fromisoformat(text_) if "T" in text_ else datetime.combine(date.fromisoformat(text_), time(),
                                                                                  UTC)
    except ValueError:
        return None
    return _utc(dt) if dt.tzinfo else dt.replace(tzinfo=UTC)


def _check_aware(dt: datetime, name: str) -> datetime:
    if not isinstance(dt, datetime) or dt.tzinfo is None:
        raise InvalidEventError(f"{name} must be a timezone-aware datetime, got {dt!r}", path=f"$.{name}")
    return dt


def _clean(q: float) -> float:
    r = round(q, 9)
    return 0.0 if abs(r) < 1e-9 else r


def _check_import_sizes(ev: TraceEvent) -> None:
    """Refuse, before anything is logged, values an imported event may carry that the columns
    cannot hold."""
    if len(ev.event_id) > tables.URI:
        raise InvalidEventError(f"eventID is longer than {tables.URI} characters", path="$.eventID")
    for name, value in (("readPoint", ev.read_point), ("bizLocation", ev.biz_location)):
        if value is not None and len(value) > tables.URI:
            raise InvalidEventError(f"{name} id is longer than {tables.URI} characters", path=f"$.{name}.id")


_CERT_LIMITS = {"number": 255, "issuer": 255, "uri": 1024, "result": 64}


def _import_certificate(cert: Mapping[str, Any], i: int) -> dict[str, Any]:
    """A certificate row of an imported event (its values checked, as they may come from anywhere)."""
    out: dict[str, Any] = {"kind": str(cert.get("type") or "certificate")[:32]}
    for name, limit in _CERT_LIMITS.items():
        value = cert.get(name)
        if value is not None and (not isinstance(value, str) or len(value) > limit):
            raise InvalidEventError(f"certificate {name} must be a string of at most {limit} characters, "
                                    f"got {str(value)[:60]!r}", path=f"$.evl:certificate[{i}]")
        out[name] = value
    out["issued_at"] = _parse_dt(cert.get("issued_at"))
    return out
