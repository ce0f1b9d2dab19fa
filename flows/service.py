"""The flows service: records in, queries, analysis runs, random-inspection draws, referrals, custody.

How a record is accepted
------------------------
1. It is validated on its own (USCCs with their check character, integer amounts in fen, tax not
   above the amount, sane dates, invoice code and number, the invoice key recomputed).
2. Its parties must be registered enterprises (in the database, or earlier in the same batch).
3. Its natural key must be new: an enterprise's USCC, a snapshot's (USCC, period), a contract's
   (buyer, seller, number), a payment's reference, an invoice's key. Keys are looked up in bulk
   (``IN`` lists of at most 500) before anything is appended, and a batch is checked against
   itself; the unique constraints are the backstop when another process wins a race.
4. The accepted records are appended to the ``flows`` log in one batch (each leaf a salted
   commitment to the record's canonical JSON, see :func:`record_document`), then their rows are
   written in one transaction with driver-level ``executemany`` (per-row ORM work would cost more
   than the database). A failure between the two names the log indexes that were appended but
   not stored.

Analysis (:meth:`FlowBook.analyse`) loads a period's invoices and every contract, payment,
snapshot and enterprise needed to judge them, straight from the driver's cursor into records (a
million rows through SQLAlchemy's result objects would cost more than the analysis), calls the
pure functions of :mod:`.reconcile`, :mod:`.screening` and :mod:`.grading`, and stores the
findings and grades of the run (each appended to the log, in batches of 5,000) plus a summary
record naming the thresholds applied. A re-run of a period is a new run: the previous run's rows
stay, marked not current. A grade's record carries its inspection ratio as a decimal string
(``"0.05"``): exact, and canonical JSON of float-free records takes the fast path.

Log records are JSON objects with a ``type`` ``evidence-ledger/flows/<kind>/v1`` and the fields in
camelCase; amounts are integers in fen, dates ISO 8601.

Draws (:meth:`FlowBook.commit_draw`) commit to a secret seed and to the population (the period's
grades) and inspectors before anything is drawn; the seed stays in the database, is never logged
nor returned until :meth:`FlowBook.reveal_draw` appends it with the selections, after checking
that the commitment is in the log. Anyone can then recompute the draw
(:func:`evidence_ledger.flows.draw.verify_draw`).

Every read by an agency goes through :meth:`FlowBook.record_access`, which appends an
``evidence-ledger/flows-access/v1`` record to the ``custody`` log.
"""

from __future__ import annotations

import gc
import itertools
import json
import re
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import Engine, insert, or_, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from evidence_ledger.ledger.errors import LedgerError
from evidence_ledger.ledger.log import LogStore, PreparedRecord

from . import draw as draws_
from . import tables
from .errors import (
    DrawStateError,
    DuplicateRecordError,
    FlowsError,
    InvalidRecordError,
    NotFoundError,
)
from .grading import GRADING_VERSION, grade_all, grade_inputs_to_json, inputs_from_json
from .identifiers import invoice_key, validate_invoice_code, validate_invoice_number, validate_uscc
from .records import (
    Access,
    AnalysisRun,
    Contract,
    Draw,
    DrawSelection,
    Enterprise,
    Finding,
    Grade,
    HeadcountSnapshot,
    IngestRejection,
    IngestReport,
    Invoice,
    Payment,
    RecordRef,
    Referral,
)
from .reconcile import link, reconcile
from .screening import ScreeningPolicy, screen

__all__ = [
    "ACCESS_TYPE",
    "CUSTODY_LOG",
    "FLOWS_LOG",
    "FlowBook",
    "TYPE_PREFIX",
    "period_bounds",
    "record_document",
]

FLOWS_LOG = "flows"
CUSTODY_LOG = "custody"
TYPE_PREFIX = "evidence-ledger/flows/"
ACCESS_TYPE = "evidence-ledger/flows-access/v1"
CST = timezone(timedelta(hours=8), "CST")  # business days are China Standard Time days

Record = Enterprise | HeadcountSnapshot | Contract | Payment | Invoice

_CHUNK = 500  # IN-list size: well under SQLite's and PostgreSQL's parameter limits
_APPEND_CHUNK = 5000  # analysis output appended to the log this many records at a time
_INT_MAX = 2**53 - 1  # canonical JSON (I-JSON) integers
_INT32_MAX = 2**31 - 1
_MIN_DATE = date(1949, 10, 1)
_FUTURE_DAYS = 366  # a date later than a year from today is a typo, not a business day
_MAX_INVOICE_KEYS = 500  # a payment's record stays well under the log's 64 KiB default
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_MONTH = re.compile(r"^([0-9]{4})-(0[1-9]|1[0-2])$")
_QUARTER = re.compile(r"^([0-9]{4})-Q([1-4])$")
_YEAR = re.compile(r"^([0-9]{4})$")
_KIND_NAMES = "an Enterprise, HeadcountSnapshot, Contract, Payment or Invoice"


def _type(kind: str) -> str:
    return f"{TYPE_PREFIX}{kind}/v1"


T_ENTERPRISE = _type("enterprise")
T_SNAPSHOT = _type("snapshot")
T_CONTRACT = _type("contract")
T_PAYMENT = _type("payment")
T_INVOICE = _type("invoice")
T_FINDING = _type("finding")
T_GRADE = _type("grade")
T_ANALYSIS = _type("analysis")
T_DRAW_COMMITMENT = _type("draw-commitment")
T_DRAW_REVEAL = _type("draw-reveal")
T_DRAW_SELECTION = _type("draw-selection")
T_REFERRAL = _type("referral")


# -- log documents ------------------------------------------------------------------------------

def _iso(d: date | None) -> str | None:
    return None if d is None else d.isoformat()


def record_document(record: Record) -> dict[str, Any]:
    """The JSON object a record is committed to in the ``flows`` log: a ``type`` and the record's
    fields in camelCase (amounts in fen as integers, dates ISO). Its RFC 8785 bytes are what the
    log entry's ``record_digest`` hashes."""
    t = type(record)
    if t is Invoice:
        i: Invoice = record  # type: ignore[assignment]
        return {"type": T_INVOICE, "keyHex": i.key_hex, "sellerUscc": i.seller_uscc,
                "buyerUscc": i.buyer_uscc, "code": i.code, "number": i.number,
                "amountFen": i.amount_fen, "taxFen": i.tax_fen, "issuedOn": i.issued_on.isoformat(),
                "contractNo": i.contract_no, "goods": i.goods}
    if t is Payment:
        p: Payment = record  # type: ignore[assignment]
        return {"type": T_PAYMENT, "paymentRef": p.payment_ref, "payerUscc": p.payer_uscc,
                "payeeUscc": p.payee_uscc, "amountFen": p.amount_fen, "paidOn": p.paid_on.isoformat(),
                "contractNo": p.contract_no, "invoiceKeys": list(p.invoice_keys)}
    if t is Contract:
        c: Contract = record  # type: ignore[assignment]
        return {"type": T_CONTRACT, "contractNo": c.contract_no, "buyerUscc": c.buyer_uscc,
                "sellerUscc": c.seller_uscc, "amountFen": c.amount_fen, "signedOn": c.signed_on.isoformat(),
                "subject": c.subject, "paymentTermDays": c.payment_term_days}
    if t is HeadcountSnapshot:
        s: HeadcountSnapshot = record  # type: ignore[assignment]
        return {"type": T_SNAPSHOT, "uscc": s.uscc, "period": s.period, "employees": s.employees,
                "insured": s.insured}
    if t is Enterprise:
        e: Enterprise = record  # type: ignore[assignment]
        return {"type": T_ENTERPRISE, "uscc": e.uscc, "name": e.name,
                "registeredOn": e.registered_on.isoformat(), "region": e.region, "industry": e.industry}
    raise InvalidRecordError(f"expected {_KIND_NAMES}, got {type(record).__name__}")


def _refs_json(refs: Iterable[RecordRef]) -> list[dict[str, Any]]:
    return [{"kind": r.kind, "key": r.key, "logIndex": r.log_index} for r in refs]


def _pairs_json(pairs: Iterable[tuple[str, Any]]) -> list[list[Any]]:
    return [[k, v] for k, v in pairs]


def _finding_document(f: Finding, run_id: str) -> dict[str, Any]:
    return {"type": T_FINDING, "id": f.id, "runId": run_id, "period": f.period, "rule": f.rule,
            "uscc": f.uscc, "reason": f.reason, "severity": f.severity,
            "records": _refs_json(f.records), "thresholds": _pairs_json(f.thresholds),
            "measured": _pairs_json(f.measured)}


# -- periods ------------------------------------------------------------------------------------

def period_bounds(period: str) -> tuple[date, date]:
    """First and last day (inclusive) of ``"YYYY-MM"``, ``"YYYY-Qn"`` or ``"YYYY"``."""
    if isinstance(period, str):
        if m := _MONTH.match(period):
            y, mo = int(m[1]), int(m[2])
            start = date(y, mo, 1)
            end = date(y + (mo == 12), mo % 12 + 1, 1) - timedelta(days=1)
            return start, end
        if m := _QUARTER.match(period):
            y, q = int(m[1]), int(m[2])
            start = date(y, 3 * q - 2, 1)
            end = (date(y + 1, 1, 1) if q == 4 else date(y, 3 * q + 1, 1)) - timedelta(days=1)
            return start, end
        if m := _YEAR.match(period):
            y = int(m[1])
            if y >= 1:
                return date(y, 1, 1), date(y, 12, 31)
    raise InvalidRecordError(f"expected a period 'YYYY-MM', 'YYYY-Qn' or 'YYYY', got {period!r}", "period")


# -- the service --------------------------------------------------------------------------------

class FlowBook:
    """Enterprises' contract, fund and invoice flows, kept provable in the ``flows`` log.

    Thread-safe: writes serialise on a process lock (so a batch's log indexes are contiguous);
    across processes the unique constraints catch what a concurrent writer recorded first.
    """

    # Analysis loads contracts, payments and snapshots by index look-ups for up to this many
    # parties, and by scanning the tables beyond.
    scan_parties: int = 4 * _CHUNK

    def __init__(self, engine: Engine, store: LogStore, *, clock: Callable[[], datetime] | None = None,
                 default_term_days: int = 90, policy: ScreeningPolicy | None = None,
                 beacon: Callable[[int], tuple[int, str] | None] | None = None) -> None:
        """``beacon(log_index)``: (block number, block hash hex) of the chain block that anchored
        that ``flows`` log entry, or None while it is not anchored. With a beacon, a draw is revealed
        only once its commitment is anchored, and that block's hash is mixed into the draw seed."""
        if not isinstance(default_term_days, int) or isinstance(default_term_days, bool) \
                or not 0 <= default_term_days <= 3650:
            raise InvalidRecordError(f"expected a payment term of 0 to 3650 days, got {default_term_days!r}",
                                     "default_term_days")
        self.engine = engine
        self.store = store
        self.default_term_days = default_term_days
        if policy is not None and not isinstance(policy, ScreeningPolicy):
            raise InvalidRecordError(f"expected a ScreeningPolicy, got {type(policy).__name__}", "policy")
        self.policy = policy or ScreeningPolicy()
        self._clock = clock or (lambda: datetime.now(UTC))
        self.beacon = beacon
        self._sqlite = engine.dialect.name == "sqlite"
        self._ph = "?" if engine.dialect.paramstyle == "qmark" else "%s"
        self._lock = threading.RLock()
        self._known: set[str] = set()  # registered USCCs (never removed, so safe to cache)
        self._valid: dict[str, str] = {}  # raw USCC -> normalised, for codes that validated
        self._sql = {t.name: self._insert_sql(t) for t in (
            tables.enterprises, tables.snapshots, tables.contracts, tables.payments,
            tables.payment_invoices, tables.invoices, tables.findings, tables.grades)}

    # -- time and small helpers ---------------------------------------------------------------

    def _now(self) -> datetime:
        now = self._clock()
        if now.tzinfo is None:
            raise FlowsError(f"the clock must return aware datetimes, got {now!r}")
        return now.astimezone(UTC)

    def _today(self) -> date:
        return self._now().astimezone(CST).date()

    def _insert_sql(self, table: Any) -> str:
        cols = [c.name for c in table.columns]
        return (f"INSERT INTO {table.name} ({', '.join(cols)}) "
                f"VALUES ({', '.join([self._ph] * len(cols))})")

    def _db_date(self, d: date) -> object:
        # What SQLAlchemy's Date binds: ISO text on SQLite (pysqlite's own adapter is deprecated).
        return d.isoformat() if self._sqlite else d

    # -- validation ---------------------------------------------------------------------------

    def _uscc(self, value: Any, field: str) -> str:
        try:
            return self._valid[value]
        except (KeyError, TypeError):
            pass
        code = validate_uscc(value, field)
        if len(self._valid) > 1_000_000:
            self._valid.clear()
        self._valid[value] = code
        return code

    def _date(self, value: Any, field: str, today: date) -> date:
        if type(value) is not date:  # a datetime is a date too, and carries a time zone problem
            raise InvalidRecordError(f"expected a date, got {type(value).__name__} {value!s}", field)
        if not _MIN_DATE <= value <= today + timedelta(days=_FUTURE_DAYS):
            raise InvalidRecordError(
                f"expected a date from {_MIN_DATE} to {today + timedelta(days=_FUTURE_DAYS)}, got {value}", field)
        return value

    @staticmethod
    def _fen(value: Any, field: str) -> int:
        if type(value) is not int or not 0 <= value <= _INT_MAX:
            raise InvalidRecordError(
                f"expected a whole number of fen from 0 to {_INT_MAX}, got {value!r}", field)
        return value

    @staticmethod
    def _count(value: Any, field: str) -> int:
        if type(value) is not int or not 0 <= value <= _INT32_MAX:
            raise InvalidRecordError(f"expected a whole number from 0 to {_INT32_MAX}, got {value!r}", field)
        return value

    @staticmethod
    def _text(value: Any, field: str, max_len: int, *, required: bool = True) -> str:
        if not isinstance(value, str):
            raise InvalidRecordError(f"expected text, got {type(value).__name__}", field)
        if required and not value.strip():
            raise InvalidRecordError("expected non-empty text, got an empty string", field)
        if len(value) > max_len:
            raise InvalidRecordError(f"expected at most {max_len} characters, got {len(value)}", field)
        return value

    def _optional_text(self, value: Any, field: str, max_len: int) -> str | None:
        return None if value is None else self._text(value, field, max_len)

    def _validate(self, rec: Any, today: date) -> Record:
        """The record normalised (USCCs upper case, invoice key computed), or InvalidRecordError."""
        t = type(rec)
        if t is Invoice:
            seller = self._uscc(rec.seller_uscc, "seller_uscc")
            buyer = self._uscc(rec.buyer_uscc, "buyer_uscc")
            if seller == buyer:
                raise InvalidRecordError(f"expected a buyer other than the seller, got {buyer} for both",
                                         "buyer_uscc")
            code = validate_invoice_code(rec.code)
            number = validate_invoice_number(rec.number)
            key = invoice_key(seller, code, number)
            given = rec.key_hex
            if given != "" and given != key:
                if not isinstance(given, str) or given.lower() != key:
                    raise InvalidRecordError(
                        f"expected the invoice key {key} (SHA-256 of seller|code|number) or \"\", got {given!r}",
                        "key_hex")
            amount = self._fen(rec.amount_fen, "amount_fen")
            tax = self._fen(rec.tax_fen, "tax_fen")
            if tax > amount:
                raise InvalidRecordError(f"expected tax at most the amount ({amount} fen), got {tax} fen", "tax_fen")
            contract_no = self._optional_text(rec.contract_no, "contract_no", tables.KEY)
            self._date(rec.issued_on, "issued_on", today)
            self._text(rec.goods, "goods", tables.NAME, required=False)
            return Invoice(key, seller, buyer, code, number, amount, tax, rec.issued_on, contract_no, rec.goods)
        if t is Payment:
            payer = self._uscc(rec.payer_uscc, "payer_uscc")
            payee = self._uscc(rec.payee_uscc, "payee_uscc")
            if payer == payee:
                raise InvalidRecordError(f"expected a payee other than the payer, got {payee} for both",
                                         "payee_uscc")
            ref = self._text(rec.payment_ref, "payment_ref", tables.KEY)
            amount = self._fen(rec.amount_fen, "amount_fen")
            self._date(rec.paid_on, "paid_on", today)
            contract_no = self._optional_text(rec.contract_no, "contract_no", tables.KEY)
            keys = rec.invoice_keys
            if not isinstance(keys, (tuple, list)):
                raise InvalidRecordError(f"expected a tuple of invoice keys, got {type(keys).__name__}",
                                         "invoice_keys")
            if len(keys) > _MAX_INVOICE_KEYS:
                raise InvalidRecordError(f"expected at most {_MAX_INVOICE_KEYS} invoice keys, got {len(keys)}",
                                         "invoice_keys")
            norm: list[str] = []
            for n, k in enumerate(keys):
                k = k.lower() if isinstance(k, str) else k
                if not isinstance(k, str) or not _HEX64.match(k):
                    raise InvalidRecordError(f"expected an invoice key of 64 hex digits, got {keys[n]!r}",
                                             f"invoice_keys[{n}]")
                if k in norm:
                    raise InvalidRecordError(f"expected each invoice once, got {k} twice", f"invoice_keys[{n}]")
                norm.append(k)
            return Payment(ref, payer, payee, amount, rec.paid_on, contract_no, tuple(norm))
        if t is Contract:
            buyer = self._uscc(rec.buyer_uscc, "buyer_uscc")
            seller = self._uscc(rec.seller_uscc, "seller_uscc")
            if seller == buyer:
                raise InvalidRecordError(f"expected a seller other than the buyer, got {seller} for both",
                                         "seller_uscc")
            number = self._text(rec.contract_no, "contract_no", tables.KEY)
            amount = self._fen(rec.amount_fen, "amount_fen")
            self._date(rec.signed_on, "signed_on", today)
            subject = self._text(rec.subject, "subject", tables.NAME)
            term = rec.payment_term_days
            if term is not None and (type(term) is not int or not 0 <= term <= 3650):
                raise InvalidRecordError(f"expected a payment term of 0 to 3650 days or None, got {term!r}",
                                         "payment_term_days")
            return Contract(number, buyer, seller, amount, rec.signed_on, subject, term)
        if t is HeadcountSnapshot:
            uscc = self._uscc(rec.uscc, "uscc")
            if not isinstance(rec.period, str) or not _MONTH.match(rec.period):
                raise InvalidRecordError(f"expected a month 'YYYY-MM', got {rec.period!r}", "period")
            employees = self._count(rec.employees, "employees")
            insured = self._count(rec.insured, "insured")
            return HeadcountSnapshot(uscc, rec.period, employees, insured)
        if t is Enterprise:
            uscc = self._uscc(rec.uscc, "uscc")
            name = self._text(rec.name, "name", tables.NAME)
            self._date(rec.registered_on, "registered_on", today)
            region = self._optional_text(rec.region, "region", 32)
            industry = self._optional_text(rec.industry, "industry", 64)
            return Enterprise(uscc, name, rec.registered_on, region, industry)
        raise InvalidRecordError(f"expected {_KIND_NAMES}, got {t.__name__}")

    # -- writing records ----------------------------------------------------------------------

    def register_enterprise(self, e: Enterprise) -> Enterprise:
        return self._record_one(e, Enterprise)  # type: ignore[return-value]

    def record_snapshot(self, s: HeadcountSnapshot) -> HeadcountSnapshot:
        return self._record_one(s, HeadcountSnapshot)  # type: ignore[return-value]

    def record_contract(self, c: Contract) -> Contract:
        return self._record_one(c, Contract)  # type: ignore[return-value]

    def record_payment(self, p: Payment) -> Payment:
        return self._record_one(p, Payment)  # type: ignore[return-value]

    def record_invoice(self, i: Invoice) -> Invoice:
        return self._record_one(i, Invoice)  # type: ignore[return-value]

    def _record_one(self, rec: Any, expected: type) -> Record:
        if type(rec) is not expected:
            raise InvalidRecordError(f"expected {expected.__name__}, got {type(rec).__name__}")
        with self._lock:
            stored, rejected = self._ingest_chunk([rec], 0)
        if rejected:
            raise rejected[0][1]
        return stored[0][1]

    def ingest(self, records: Iterable[Record], *, batch_size: int = 5000) -> IngestReport:
        """Record many records of any kinds, in order: the valid ones are accepted, the others
        listed by position with the error's class name and message. Each batch of ``batch_size``
        is one log append and one transaction; a later record may rely on an earlier one (an
        invoice on the enterprises registered before it)."""
        if type(batch_size) is not int or not 1 <= batch_size <= 100_000:
            raise InvalidRecordError(f"expected a batch size of 1 to 100000, got {batch_size!r}", "batch_size")
        accepted = 0
        rejected: list[IngestRejection] = []
        first: int | None = None
        last: int | None = None
        it = iter(records)
        base = 0
        with self._lock, _gc_paused():
            while chunk := list(itertools.islice(it, batch_size)):
                stored, bad = self._ingest_chunk(chunk, base, build=False)
                for pos, err in bad:
                    rejected.append(IngestRejection(pos, type(err).__name__, str(err)))
                if stored:
                    accepted += len(stored)
                    first = stored[0][0] if first is None else first
                    last = stored[-1][0]
                base += len(chunk)
        return IngestReport(accepted, tuple(rejected), first, last)

    def _ingest_chunk(self, chunk: Sequence[Any], base: int, *,
                      build: bool = True) -> tuple[list[tuple[int, Any]], list[tuple[int, FlowsError]]]:
        """Validate, check parties and keys, append and store one batch.

        Returns (log index, stored record or None when ``build`` is false) per accepted record,
        in order, and (position, error) per rejected one."""
        today = self._today()
        rejected: list[tuple[int, FlowsError]] = []
        valid: list[tuple[int, Record]] = []
        for n, rec in enumerate(chunk):
            try:
                valid.append((base + n, self._validate(rec, today)))
            except FlowsError as e:  # kept without its traceback: no frame (and batch) stays alive
                rejected.append((base + n, e.with_traceback(None)))
        with self.engine.connect() as conn:
            self._load_known(conn, {u for _, r in valid for u in _parties(r)} - self._known)
            existing = self._existing(conn, [r for _, r in valid])
        accepted: list[tuple[int, Record]] = []
        prepared: list[PreparedRecord] = []
        registered: set[str] = set()
        seen: dict[tuple[str, Any], int] = {}
        prepare = self.store.prepare
        for pos, r in valid:
            try:
                self._check_parties(r, registered)
                key = _key(r)
                if key in existing:
                    raise _duplicate(r, existing[key], None)
                if key in seen:
                    raise _duplicate(r, None, seen[key])
                try:
                    prepared.append(prepare(record_document(r)))
                except LedgerError as e:  # e.g. over the log's record size limit
                    raise InvalidRecordError(f"the record cannot be logged: {e}") from None
            except FlowsError as e:
                rejected.append((pos, e.with_traceback(None)))
                continue
            seen[key] = pos
            if type(r) is Enterprise:
                registered.add(r.uscc)
            accepted.append((pos, r))
        rejected.sort(key=lambda x: x[0])
        if not accepted:
            return [], rejected
        indexes = self._append_and_store(accepted, prepared, rejected)
        out: list[tuple[int, Any]] = []
        for (_, r), li in zip(accepted, indexes, strict=True):
            if li is None:
                continue
            out.append((li, replace(r, log_index=li) if build else None))
            if type(r) is Enterprise:
                self._known.add(r.uscc)  # type: ignore[union-attr]
        return out, rejected

    def _check_parties(self, r: Record, registered: set[str]) -> None:
        t = type(r)
        if t is Enterprise:
            return
        fields = _PARTY_FIELDS[t]
        for f in fields:
            u = getattr(r, f)
            if u not in self._known and u not in registered:
                raise NotFoundError(f"{f}: no enterprise {u} is registered (register it before its "
                                    f"{_KIND[t]})")

    def _load_known(self, conn: Any, usccs: set[str]) -> None:
        self._known.update(u for u, in self._select_in(conn, "SELECT uscc FROM flows_enterprises WHERE uscc",
                                                        usccs))

    def _existing(self, conn: Any, recs: Sequence[Record]) -> dict[tuple[str, Any], int]:
        """(kind, natural key) -> log index of what is already stored, for these records' keys."""
        by_kind: dict[type, set[Any]] = {}
        for r in recs:
            by_kind.setdefault(type(r), set()).add(_key(r)[1])
        found: dict[tuple[str, Any], int] = {}
        for t, keys in by_kind.items():
            kind = _KIND[t]
            if t is Invoice:
                for k, li in self._select_in(conn, "SELECT key_hex, log_index FROM flows_invoices WHERE key_hex",
                                             keys):
                    found[(kind, k)] = int(li)
            elif t is Payment:
                for k, li in self._select_in(
                        conn, "SELECT payment_ref, log_index FROM flows_payments WHERE payment_ref", keys):
                    found[(kind, k)] = int(li)
            elif t is Contract:
                for b, s, no, li in self._select_in(
                        conn, "SELECT buyer_uscc, seller_uscc, contract_no, log_index FROM flows_contracts "
                        "WHERE contract_no", {k[2] for k in keys}):
                    if (b, s, no) in keys:
                        found[(kind, (b, s, no))] = int(li)
            elif t is HeadcountSnapshot:
                for u, p, li in self._select_in(conn, "SELECT uscc, period, log_index FROM flows_snapshots "
                                                "WHERE uscc", {k[0] for k in keys}):
                    if (u, p) in keys:
                        found[(kind, (u, p))] = int(li)
            else:
                for k, li in self._select_in(conn, "SELECT uscc, log_index FROM flows_enterprises WHERE uscc",
                                             keys):
                    found[(kind, k)] = int(li)
        return found

    def _select_in(self, conn: Any, sql: str, values: Collection[Any]) -> Iterator[tuple[Any, ...]]:
        """Rows of ``sql IN (values)``, in chunks; driver-level because compiling expanding IN
        parameters costs more than the look-up itself."""
        ordered = sorted(values)
        for part in _chunks(ordered):
            yield from conn.exec_driver_sql(f"{sql} IN ({', '.join([self._ph] * len(part))})", tuple(part))

    def _append_and_store(self, accepted: list[tuple[int, Record]], prepared: Sequence[PreparedRecord],
                          rejected: list[tuple[int, FlowsError]]) -> list[int | None]:
        """Append the accepted (and prepared) records to the log, then write their rows. Returns
        each one's log index, or None for one a concurrent writer stored first (then moved to
        ``rejected``)."""
        try:
            entries = self.store.append_prepared(FLOWS_LOG, prepared)
        except LedgerError as e:
            raise FlowsError(f"appending {len(prepared)} records to the {FLOWS_LOG!r} log failed, nothing "
                             f"was stored: {e}") from e
        indexes: list[int | None] = [en.index for en in entries]
        lo, hi = entries[0].index, entries[-1].index
        try:
            self._write_rows([(li, r) for (_, r), li in zip(accepted, indexes, strict=True)])
            return indexes
        except IntegrityError as e:
            first_error: SQLAlchemyError = e
        except SQLAlchemyError as e:
            raise FlowsError(f"records were logged at indexes {lo}..{hi} of the {FLOWS_LOG!r} log but could "
                             f"not be stored ({e}); nothing else was changed") from e
        # A concurrent writer stored some of these keys after our look-up: reject those (their
        # leaves stay in the log, unreferenced) and store the rest.
        with self.engine.connect() as conn:
            existing = self._existing(conn, [r for _, r in accepted])
        if not existing:
            raise FlowsError(f"records were logged at indexes {lo}..{hi} of the {FLOWS_LOG!r} log but could "
                             f"not be stored ({first_error}); nothing else was changed") from first_error
        rows: list[tuple[int, Record]] = []
        for n, ((pos, r), li) in enumerate(zip(accepted, list(indexes), strict=True)):
            prior = existing.get(_key(r))
            if prior is not None:
                rejected.append((pos, _duplicate(r, prior, None, f"; this copy was logged at index {li} "
                                                  f"of the {FLOWS_LOG!r} log but not stored")))
                indexes[n] = None
            else:
                rows.append((li, r))  # type: ignore[arg-type]
        rejected.sort(key=lambda x: x[0])
        try:
            self._write_rows(rows)
        except SQLAlchemyError as e:
            raise FlowsError(f"records were logged at indexes {lo}..{hi} of the {FLOWS_LOG!r} log but could "
                             f"not be stored ({e}); nothing else was changed") from e
        return indexes

    def _write_rows(self, rows: Sequence[tuple[int, Record]]) -> None:
        d = self._db_date
        ents, snaps, cons, pays, links, invs = [], [], [], [], [], []
        for li, r in rows:
            t = type(r)
            if t is Invoice:
                invs.append((li, r.key_hex, r.seller_uscc, r.buyer_uscc, r.code, r.number,  # type: ignore[union-attr]
                             r.amount_fen, r.tax_fen, d(r.issued_on), r.contract_no, r.goods))  # type: ignore[union-attr]
            elif t is Payment:
                pays.append((li, r.payment_ref, r.payer_uscc, r.payee_uscc, r.amount_fen,  # type: ignore[union-attr]
                             d(r.paid_on), r.contract_no))  # type: ignore[union-attr]
                links.extend((li, n, k) for n, k in enumerate(r.invoice_keys))  # type: ignore[union-attr]
            elif t is Contract:
                cons.append((li, r.contract_no, r.buyer_uscc, r.seller_uscc, r.amount_fen,  # type: ignore[union-attr]
                             d(r.signed_on), r.subject, r.payment_term_days))  # type: ignore[union-attr]
            elif t is HeadcountSnapshot:
                snaps.append((r.uscc, r.period, r.employees, r.insured, li))  # type: ignore[union-attr]
            else:
                ents.append((r.uscc, r.name, d(r.registered_on), r.region, r.industry, li))  # type: ignore[union-attr]
        with self.engine.begin() as conn:
            # Parents before children (foreign keys).
            for table, batch in ((tables.enterprises, ents), (tables.snapshots, snaps),
                                 (tables.contracts, cons), (tables.payments, pays),
                                 (tables.payment_invoices, links), (tables.invoices, invs)):
                if batch:
                    conn.exec_driver_sql(self._sql[table.name], batch)

    # -- reading records ----------------------------------------------------------------------

    def enterprise(self, uscc: str) -> Enterprise:
        code = validate_uscc(uscc)
        with self.engine.connect() as conn:
            row = conn.execute(select(tables.enterprises).where(tables.enterprises.c.uscc == code)).first()
        if row is None:
            raise NotFoundError(f"no enterprise {code} is registered")
        return _enterprise(row)

    def enterprises(self, *, limit: int = 100, offset: int = 0) -> list[Enterprise]:
        _page(limit, offset)
        E = tables.enterprises.c
        with self.engine.connect() as conn:
            rows = conn.execute(select(tables.enterprises).order_by(E.log_index).limit(limit).offset(offset))
            return [_enterprise(r) for r in rows]

    def snapshots(self, uscc: str) -> list[HeadcountSnapshot]:
        """The enterprise's headcount snapshots by period (NotFoundError for an unknown enterprise)."""
        code = self.enterprise(uscc).uscc
        S = tables.snapshots.c
        with self.engine.connect() as conn:
            rows = conn.execute(select(tables.snapshots).where(S.uscc == code).order_by(S.period))
            return [HeadcountSnapshot(r.uscc, r.period, r.employees, r.insured, int(r.log_index)) for r in rows]

    def invoice(self, key_hex: str) -> Invoice:
        key = key_hex.lower() if isinstance(key_hex, str) else key_hex
        if not isinstance(key, str) or not _HEX64.match(key):
            raise InvalidRecordError(f"expected an invoice key of 64 hex digits, got {key_hex!r}", "key_hex")
        with self.engine.connect() as conn:
            row = conn.execute(select(tables.invoices).where(tables.invoices.c.key_hex == key)).first()
        if row is None:
            raise NotFoundError(f"no invoice with key {key}")
        return _invoice(row)

    def invoices(self, *, uscc: str | None = None, direction: str = "any", since: date | None = None,
                 until: date | None = None, limit: int = 100, offset: int = 0) -> list[Invoice]:
        """Invoices by issue date (then log order); ``direction`` "out": the enterprise sold,
        "in": it bought, "any": either. ``since`` and ``until`` are inclusive."""
        _page(limit, offset)
        if direction not in ("out", "in", "any"):
            raise InvalidRecordError(f"expected 'out', 'in' or 'any', got {direction!r}", "direction")
        for name, value in (("since", since), ("until", until)):
            if value is not None and type(value) is not date:
                raise InvalidRecordError(f"expected a date, got {type(value).__name__} {value!s}", name)
        I = tables.invoices.c
        stmt = select(tables.invoices)
        if uscc is not None:
            code = validate_uscc(uscc)
            stmt = stmt.where({"out": I.seller_uscc == code, "in": I.buyer_uscc == code,
                               "any": or_(I.seller_uscc == code, I.buyer_uscc == code)}[direction])
        if since is not None:
            stmt = stmt.where(I.issued_on >= since)
        if until is not None:
            stmt = stmt.where(I.issued_on <= until)
        stmt = stmt.order_by(I.issued_on, I.log_index).limit(limit).offset(offset)
        with self.engine.connect() as conn:
            return [_invoice(r) for r in conn.execute(stmt)]

    def contracts(self, *, uscc: str | None = None, limit: int = 100, offset: int = 0) -> list[Contract]:
        """Contracts in log order; with ``uscc``, those where it is buyer or seller."""
        _page(limit, offset)
        C = tables.contracts.c
        stmt = select(tables.contracts)
        if uscc is not None:
            code = validate_uscc(uscc)
            stmt = stmt.where(or_(C.buyer_uscc == code, C.seller_uscc == code))
        with self.engine.connect() as conn:
            return [_contract(r) for r in conn.execute(stmt.order_by(C.log_index).limit(limit).offset(offset))]

    def payments(self, *, uscc: str | None = None, limit: int = 100, offset: int = 0) -> list[Payment]:
        """Payments in log order; with ``uscc``, those where it is payer or payee."""
        _page(limit, offset)
        P = tables.payments.c
        stmt = select(tables.payments)
        if uscc is not None:
            code = validate_uscc(uscc)
            stmt = stmt.where(or_(P.payer_uscc == code, P.payee_uscc == code))
        with self.engine.connect() as conn:
            rows = conn.execute(stmt.order_by(P.log_index).limit(limit).offset(offset)).all()
            links = self._links(conn, [int(r.log_index) for r in rows])
        return [_payment(r, links.get(int(r.log_index), ())) for r in rows]

    def _links(self, conn: Any, payment_indexes: Sequence[int]) -> dict[int, tuple[str, ...]]:
        L = tables.payment_invoices.c
        out: dict[int, list[str]] = {}
        for part in _chunks(payment_indexes):
            for li, _, k in conn.execute(select(L.payment_log_index, L.position, L.invoice_key)
                                         .where(L.payment_log_index.in_(part))
                                         .order_by(L.payment_log_index, L.position)):
                out.setdefault(int(li), []).append(k)
        return {k: tuple(v) for k, v in out.items()}

    # -- analysis -----------------------------------------------------------------------------

    def analyse(self, period: str, *, as_of: date | None = None) -> AnalysisRun:
        """Reconcile, screen and grade the invoices issued in ``period``; store and log the run.

        Contracts, payments and snapshots needed to judge those invoices are loaded whatever their
        dates: contracts between the invoices' parties, payments from or to a party or naming one
        of the invoices, the parties' snapshots. Every registered enterprise (registered by the
        period's end) is graded. ``as_of`` (default: today in China) is the day overdue payments
        are judged at. A previous run of the period stays stored, marked superseded."""
        start, end = period_bounds(period)
        if as_of is None:
            as_of = self._today()
        elif type(as_of) is not date:
            raise InvalidRecordError(f"expected a date, got {type(as_of).__name__} {as_of!s}", "as_of")
        with self._lock, _gc_paused():
            data = self._load_period(start, end)
            invoices, contracts, payments, snapshots, enterprises = data
            links = link(invoices, contracts, payments, as_of=as_of)
            found = reconcile(invoices, contracts, payments, as_of=as_of,
                              default_term_days=self.default_term_days, links=links)
            found += screen(enterprises, snapshots, contracts, payments, invoices, policy=self.policy,
                            as_of=as_of, reconciliation=found, links=links,
                            default_term_days=self.default_term_days)
            graded = grade_all([e for e in enterprises if e.registered_on <= end], invoices, found,
                               period=period)
            return self._store_run(period, start, end, as_of, len(invoices), found, graded)

    def _load_period(self, start: date, end: date) -> tuple[list[Invoice], list[Contract], list[Payment],
                                                             list[HeadcountSnapshot], list[Enterprise]]:
        """Stream the rows an analysis needs into records (driver tuples, no result objects)."""
        day = _Days() if self._sqlite else _SameDays()  # day[d]: a C-level look-up per row
        ph = self._ph
        rows = self._raw_rows
        with self.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")  # opens the transaction the raw cursors read in
            bounds = (self._db_date(start), self._db_date(end))
            where = f"issued_on >= {ph} AND issued_on <= {ph}"
            if self._sqlite:
                # Without statistics SQLite always takes the date index, then fetches and sorts
                # row by row: slower than one scan once a period holds a few percent of all.
                (n_period,), = rows(conn, f"SELECT count(*) FROM flows_invoices WHERE {where}", bounds)
                (n_all,), = rows(conn, "SELECT count(*) FROM flows_invoices")
                if n_period * 20 > n_all:
                    where = f"+issued_on >= {ph} AND +issued_on <= {ph}"
            invoices = [Invoice(k, s, b, c, n, a, t, day[d], cn, g, li) for k, s, b, c, n, a, t, d, cn, g, li
                        in rows(conn, "SELECT key_hex, seller_uscc, buyer_uscc, code, number, amount_fen, tax_fen, "
                                f"issued_on, contract_no, goods, log_index FROM flows_invoices WHERE {where} "
                                "ORDER BY log_index", bounds)]
            parties = {u for i in invoices for u in (i.seller_uscc, i.buyer_uscc)}
            pairs = {(i.buyer_uscc, i.seller_uscc) for i in invoices}
            keys = {i.key_hex for i in invoices}
            # Few parties: index look-ups; many (most of the economy): one scan beats thousands.
            scan = len(parties) > self.scan_parties
            usccs = sorted(parties)

            con_sql = ("SELECT contract_no, buyer_uscc, seller_uscc, amount_fen, signed_on, subject, "
                       "payment_term_days, log_index FROM flows_contracts")
            con_rows = rows(conn, con_sql) if scan else self._select_in(conn, con_sql + " WHERE buyer_uscc", usccs)
            contracts = sorted((Contract(no, b, s, a, day[d], subj, term, li)
                                for no, b, s, a, d, subj, term, li in con_rows if (b, s) in pairs),
                               key=_by_log_index)

            # Payments from or to a party, and those naming one of the invoices (two outsiders
            # paying each other for it); with the invoices each names, in the order it names them.
            pay_sql = ("SELECT log_index, payment_ref, payer_uscc, payee_uscc, amount_fen, paid_on, contract_no "
                       "FROM flows_payments")
            link_sql = "SELECT payment_log_index, position, invoice_key FROM flows_payment_invoices"
            links: dict[int, list[str]] = {}
            if scan:
                pay_rows = {r[0]: r for r in rows(conn, pay_sql) if r[2] in parties or r[3] in parties}
                for li, _, k in rows(conn, link_sql + " ORDER BY payment_log_index, position"):
                    links.setdefault(li, []).append(k)
                named = [li for li, ks in links.items() if li not in pay_rows and any(k in keys for k in ks)]
            else:
                pay_rows = {r[0]: r for r in self._select_in(conn, pay_sql + " WHERE payer_uscc", usccs)}
                pay_rows.update((r[0], r) for r in self._select_in(conn, pay_sql + " WHERE payee_uscc", usccs))
                named = [li for li, _, _ in self._select_in(conn, link_sql + " WHERE invoice_key", keys)
                         if li not in pay_rows]
            if named:
                pay_rows.update((r[0], r) for r in self._select_in(conn, pay_sql + " WHERE log_index", set(named)))
            if not scan:
                for li, _, k in sorted(self._select_in(conn, link_sql + " WHERE payment_log_index", pay_rows)):
                    links.setdefault(li, []).append(k)
            none: tuple[str, ...] = ()
            payments = [Payment(ref, payer, payee, a, day[d], cn, tuple(links[li]) if li in links else none, li)
                        for li, ref, payer, payee, a, d, cn in (pay_rows[li] for li in sorted(pay_rows))]

            snap_sql = "SELECT uscc, period, employees, insured, log_index FROM flows_snapshots"
            snap_rows = rows(conn, snap_sql) if scan else self._select_in(conn, snap_sql + " WHERE uscc", usccs)
            snapshots = sorted((HeadcountSnapshot(*r) for r in snap_rows if r[0] in parties), key=_by_log_index)
            enterprises = [Enterprise(u, n, day[d], rg, ind, li) for u, n, d, rg, ind, li in rows(
                conn, "SELECT uscc, name, registered_on, region, industry, log_index FROM flows_enterprises "
                "ORDER BY log_index")]
        return invoices, contracts, payments, snapshots, enterprises

    def _raw_rows(self, conn: Any, sql: str, params: Sequence[Any] = ()) -> Iterator[tuple[Any, ...]]:
        """Rows straight from the driver's cursor: SQLAlchemy's per-row result processing costs
        more than the database on a million rows. PostgreSQL streams through a server-side cursor."""
        dbapi = conn.connection.dbapi_connection
        cur = dbapi.cursor() if self._sqlite else dbapi.cursor(name=f"flows_{uuid.uuid4().hex[:12]}")
        try:
            cur.execute(sql, tuple(params))
            while batch := cur.fetchmany(10_000):
                yield from batch
        finally:
            cur.close()

    def _store_run(self, period: str, start: date, end: date, as_of: date, n_invoices: int,
                   found: list[Finding], graded: list[Any]) -> AnalysisRun:
        """Append the findings, the grades and the run's summary to the log, then store them and
        mark the period's previous run superseded, in one transaction."""
        run_id = uuid.uuid4().hex
        with self.engine.connect() as conn:
            previous = conn.execute(select(tables.runs.c.id).where(
                tables.runs.c.period == period, tables.runs.c.current.is_(True))).scalars().all()
        findings_ = [replace(f, id=uuid.uuid4().hex, period=period) for f in found]
        f_index = self._append_many([_finding_document(f, run_id) for f in findings_])
        g_docs = [{"type": T_GRADE, "runId": run_id, "uscc": g.uscc, "period": g.period, "grade": g.grade,
                   "score": g.score, "inspectionRatio": repr(g.inspection_ratio),
                   "inputs": grade_inputs_to_json(g.inputs)} for g in graded]
        try:
            g_index = self._append_many(g_docs)
        except FlowsError as e:
            if f_index:
                e.add_note(f"the run's findings were logged at indexes {f_index[0]}..{f_index[-1]}, not stored")
            raise
        by_rule = tuple(sorted(Counter(f.rule for f in findings_).items()))
        by_grade = tuple(sorted(Counter(g.grade for g in graded).items()))
        summary = {"type": T_ANALYSIS, "runId": run_id, "period": period, "start": start.isoformat(),
                   "end": end.isoformat(), "asOf": as_of.isoformat(), "invoices": n_invoices,
                   "findingsByRule": _pairs_json(by_rule), "gradesByGrade": _pairs_json(by_grade),
                   "findingLogIndexes": [f_index[0], f_index[-1]] if f_index else None,
                   "gradeLogIndexes": [g_index[0], g_index[-1]] if g_index else None,
                   "defaultTermDays": self.default_term_days, "gradingVersion": GRADING_VERSION,
                   "policy": _policy_json(self.policy), "supersedes": previous}
        entry = self._append(summary)
        first = f_index[0] if f_index else g_index[0] if g_index else entry.index
        try:
            with self.engine.begin() as conn:
                conn.execute(update(tables.runs).where(tables.runs.c.period == period,
                                                       tables.runs.c.current.is_(True))
                             .values(current=False, superseded_by=run_id))
                for t in (tables.findings, tables.grades):
                    conn.execute(update(t).where(t.c.period == period, t.c.current.is_(True)).values(current=False))
                conn.execute(insert(tables.runs).values(
                    id=run_id, period=period, start_on=start, end_on=end, as_of=as_of, invoices=n_invoices,
                    findings_by_rule=json.dumps(_pairs_json(by_rule)),
                    grades_by_grade=json.dumps(_pairs_json(by_grade)), log_index=entry.index,
                    created_at=self._now(), current=True, superseded_by=None))
                if findings_:
                    conn.exec_driver_sql(self._sql[tables.findings.name], [
                        (f.id, run_id, period, f.rule, f.uscc, f.reason, f.severity,
                         json.dumps([[r.kind, r.key, r.log_index] for r in f.records]),
                         json.dumps(_pairs_json(f.thresholds)), json.dumps(_pairs_json(f.measured)), li, True)
                        for f, li in zip(findings_, f_index, strict=True)])
                if graded:
                    conn.exec_driver_sql(self._sql[tables.grades.name], [
                        (run_id, g.uscc, period, g.grade, g.score, g.inspection_ratio,
                         json.dumps(grade_inputs_to_json(g.inputs)), li, True)
                        for g, li in zip(graded, g_index, strict=True)])
        except SQLAlchemyError as e:
            raise FlowsError(f"analysis run {run_id} of {period} was logged at indexes {first}..{entry.index} "
                             f"of the {FLOWS_LOG!r} log but could not be stored ({e}); nothing else was "
                             "changed") from e
        return AnalysisRun(period, start, end, as_of, n_invoices, by_rule, by_grade, entry.index)

    def findings(self, *, period: str | None = None, uscc: str | None = None, rule: str | None = None,
                 uscc_in: Collection[str] | None = None, limit: int = 100, offset: int = 0) -> list[Finding]:
        """The current runs' findings (superseded ones only by id), in log order."""
        _page(limit, offset)
        F = tables.findings.c
        stmt = select(tables.findings).where(F.current.is_(True))
        if period is not None:
            period_bounds(period)
            stmt = stmt.where(F.period == period)
        if uscc is not None:
            stmt = stmt.where(F.uscc == validate_uscc(uscc))
        if rule is not None:
            stmt = stmt.where(F.rule == rule)
        if uscc_in is not None:
            wanted = sorted({validate_uscc(u, "uscc_in") for u in uscc_in})
            if not wanted:
                return []
            stmt = stmt.where(F.uscc.in_(wanted))
        with self.engine.connect() as conn:
            return [_finding(r) for r in conn.execute(stmt.order_by(F.log_index).limit(limit).offset(offset))]

    def finding(self, finding_id: str) -> Finding:
        if not isinstance(finding_id, str):
            raise InvalidRecordError(f"expected a finding id, got {type(finding_id).__name__}", "finding_id")
        with self.engine.connect() as conn:
            row = conn.execute(select(tables.findings).where(tables.findings.c.id == finding_id)).first()
        if row is None:
            raise NotFoundError(f"no finding {finding_id!r}")
        return _finding(row)

    def grades(self, period: str, *, uscc: str | None = None) -> list[Grade]:
        """The period's current grades, by USCC."""
        period_bounds(period)
        G = tables.grades.c
        stmt = select(tables.grades).where(G.period == period, G.current.is_(True))
        if uscc is not None:
            stmt = stmt.where(G.uscc == validate_uscc(uscc))
        with self.engine.connect() as conn:
            return [_grade(r) for r in conn.execute(stmt.order_by(G.uscc))]

    def grade(self, uscc: str, period: str) -> Grade:
        found = self.grades(period, uscc=uscc)
        if not found:
            raise NotFoundError(f"no grade of {validate_uscc(uscc)} for {period} (is the period analysed?)")
        return found[0]

    # -- random inspections -------------------------------------------------------------------

    def commit_draw(self, period: str, inspectors: Sequence[str], *, per_enterprise: int = 2) -> Draw:
        """Commit to a secret seed and to the population (the period's current grades) before
        anything is drawn; the seed stays hidden until :meth:`reveal_draw`."""
        period_bounds(period)
        with self._lock:
            with self.engine.connect() as conn:
                run = conn.execute(select(tables.runs.c.id, tables.runs.c.log_index).where(
                    tables.runs.c.period == period, tables.runs.c.current.is_(True))).first()
                G = tables.grades.c
                rows = conn.execute(select(G.uscc, G.grade, G.inspection_ratio).where(
                    G.period == period, G.current.is_(True)).order_by(G.uscc)).all() if run else []
            if not rows:
                raise NotFoundError(f"no grades for {period} to draw from (analyse the period first)")
            population = [(r.uscc, r.grade) for r in rows]
            ratios: dict[str, float] = {}
            for r in rows:
                ratios.setdefault(r.grade, float(r.inspection_ratio))
            if isinstance(inspectors, str) or not isinstance(inspectors, Sequence):
                raise InvalidRecordError(f"expected a list of inspector ids, got {type(inspectors).__name__}",
                                         "inspectors")
            inspectors = list(inspectors)
            population_hex = draws_.population_digest(population, inspectors, ratios, per_enterprise)
            seed = draws_.new_seed()
            commitment = draws_.seed_commitment(seed)
            draw_id, at = uuid.uuid4().hex, self._now()
            entry = self._append({
                "type": T_DRAW_COMMITMENT, "drawId": draw_id, "period": period, "runId": run.id,
                "runLogIndex": run.log_index, "commitmentHex": commitment, "populationHex": population_hex,
                "populationSize": len(population), "inspectors": inspectors, "ratios": ratios,
                "perEnterprise": per_enterprise, "committedAt": at.isoformat()})
            try:
                with self.engine.begin() as conn:
                    conn.execute(insert(tables.draws).values(
                        id=draw_id, period=period, run_id=run.id, commitment_hex=commitment,
                        population_hex=population_hex, seed_hex=seed.hex(), population=json.dumps(population),
                        inspectors=json.dumps(inspectors), ratios=json.dumps(ratios), per_enterprise=per_enterprise,
                        commit_log_index=entry.index, committed_at=at))
            except SQLAlchemyError as e:
                raise FlowsError(f"the commitment of draw {draw_id} was logged at index {entry.index} of the "
                                 f"{FLOWS_LOG!r} log but could not be stored ({e}); the seed is lost, commit "
                                 "a new draw") from e
        return Draw(draw_id, period, commitment, population_hex, entry.index, at)

    def reveal_draw(self, draw_id: str) -> Draw:
        """Draw with the committed seed, then append the seed and the selections to the log."""
        with self._lock:
            row = self._draw_row(draw_id)
            if row.reveal_log_index is not None:
                raise DrawStateError(f"draw {draw_id} was already revealed, at index {row.reveal_log_index} of the "
                                     f"{FLOWS_LOG!r} log")
            self._check_committed(row)
            seed = bytes.fromhex(row.seed_hex)
            draws_.check_reveal(row.commitment_hex, seed)
            population, inspectors, ratios, per_enterprise = _draw_inputs(row)
            block_number, block_hash = self._draw_beacon(row)
            selections = draws_.draw(seed, population, inspectors, ratios=ratios, per_enterprise=per_enterprise,
                                     beacon_hex=block_hash)
            at = self._now()
            docs = [{"type": T_DRAW_REVEAL, "drawId": draw_id, "commitLogIndex": int(row.commit_log_index),
                     "commitmentHex": row.commitment_hex, "seedHex": row.seed_hex,
                     "populationHex": row.population_hex, "selections": len(selections),
                     "beaconBlockNumber": block_number, "beaconBlockHashHex": block_hash,
                     "revealedAt": at.isoformat()}]
            docs += [{"type": T_DRAW_SELECTION, "drawId": draw_id, "uscc": s.uscc, "grade": s.grade,
                      "ticketHex": s.ticket_hex, "inspectors": list(s.inspectors)} for s in selections]
            indexes = self._append_many(docs)
            D = tables.draws.c
            try:
                with self.engine.begin() as conn:
                    done = conn.execute(update(tables.draws).where(D.id == draw_id, D.reveal_log_index.is_(None))
                                        .values(reveal_log_index=indexes[0], revealed_at=at,
                                                beacon_block_number=block_number,
                                                beacon_block_hash_hex=block_hash)).rowcount
                    if done == 1 and selections:
                        conn.execute(insert(tables.draw_selections), [
                            {"draw_id": draw_id, "position": n, "uscc": s.uscc, "grade": s.grade,
                             "ticket_hex": s.ticket_hex, "inspectors": json.dumps(list(s.inspectors))}
                            for n, s in enumerate(selections)])
            except SQLAlchemyError as e:
                raise FlowsError(f"the reveal of draw {draw_id} was logged at indexes {indexes[0]}..{indexes[-1]} "
                                 f"of the {FLOWS_LOG!r} log but could not be stored: {e}") from e
            if done != 1:
                raise DrawStateError(f"draw {draw_id} was revealed concurrently; this reveal was logged at indexes "
                                     f"{indexes[0]}..{indexes[-1]} of the {FLOWS_LOG!r} log but not stored")
        return self.draw(draw_id)

    def _draw_beacon(self, row: Any) -> tuple[int | None, str | None]:
        if self.beacon is None:
            return None, None
        anchored = self.beacon(int(row.commit_log_index))
        if anchored is None:
            raise DrawStateError(f"the commitment of draw {row.id} (index {row.commit_log_index} of the "
                                 f"{FLOWS_LOG!r} log) is not anchored on the chain yet; the anchoring block's hash "
                                 "goes into the draw, so reveal once it is anchored")
        number, block_hash = anchored
        return int(number), block_hash.lower().removeprefix("0x")

    def _check_committed(self, row: Any) -> None:
        """The commitment must be in the log, and be this draw's, before the seed may go out."""
        index = int(row.commit_log_index)
        try:
            entry = self.store.entry(FLOWS_LOG, index)
        except LedgerError as e:
            raise DrawStateError(f"the commitment of draw {row.id} is not in the {FLOWS_LOG!r} log at index "
                                 f"{index} ({e}); the seed stays secret") from e
        doc = entry.record()
        if not isinstance(doc, dict) or doc.get("type") != T_DRAW_COMMITMENT or doc.get("drawId") != row.id \
                or doc.get("commitmentHex") != row.commitment_hex or doc.get("populationHex") != row.population_hex:
            raise DrawStateError(f"index {index} of the {FLOWS_LOG!r} log is not the commitment of draw {row.id}; "
                                 "the seed stays secret")

    def _draw_row(self, draw_id: str) -> Any:
        if not isinstance(draw_id, str):
            raise InvalidRecordError(f"expected a draw id, got {type(draw_id).__name__}", "draw_id")
        with self.engine.connect() as conn:
            row = conn.execute(select(tables.draws).where(tables.draws.c.id == draw_id)).first()
        if row is None:
            raise NotFoundError(f"no draw {draw_id!r}")
        return row

    def draw(self, draw_id: str) -> Draw:
        """The draw; its seed and selections only once revealed."""
        row = self._draw_row(draw_id)
        with self.engine.connect() as conn:
            return self._draws_of(conn, [row])[0]

    def draws(self, *, period: str | None = None) -> list[Draw]:
        D = tables.draws.c
        stmt = select(tables.draws).order_by(D.commit_log_index)
        if period is not None:
            period_bounds(period)
            stmt = stmt.where(D.period == period)
        with self.engine.connect() as conn:
            return self._draws_of(conn, conn.execute(stmt).all())

    def _draws_of(self, conn: Any, rows: Sequence[Any]) -> list[Draw]:
        S = tables.draw_selections.c
        revealed = [r.id for r in rows if r.reveal_log_index is not None]
        picks: dict[str, list[DrawSelection]] = {}
        for part in _chunks(revealed):
            for s in conn.execute(select(tables.draw_selections).where(S.draw_id.in_(part))
                                  .order_by(S.draw_id, S.position)):
                picks.setdefault(s.draw_id, []).append(
                    DrawSelection(s.uscc, s.grade, s.ticket_hex, tuple(json.loads(s.inspectors))))
        out = []
        for r in rows:
            shown = r.reveal_log_index is not None  # the seed is a secret until then
            out.append(Draw(r.id, r.period, r.commitment_hex, r.population_hex, int(r.commit_log_index),
                            _aware(r.committed_at), r.seed_hex if shown else None,
                            int(r.reveal_log_index) if shown else None,
                            _aware(r.revealed_at) if shown else None, tuple(picks.get(r.id, ())),
                            int(r.beacon_block_number) if shown and r.beacon_block_number is not None else None,
                            r.beacon_block_hash_hex if shown else None))
        return out

    def draw_population(self, draw_id: str) -> tuple[list[tuple[str, str]], list[str], dict[str, float], int]:
        """(population (uscc, grade), inspectors, ratios, per_enterprise) exactly as committed."""
        return _draw_inputs(self._draw_row(draw_id))

    # -- referrals ----------------------------------------------------------------------------

    def refer(self, finding_ids: Sequence[str], *, referred_by: str, note: str) -> Referral:
        """Refer findings about one enterprise to public security; appended to the log."""
        if isinstance(finding_ids, str) or not isinstance(finding_ids, Sequence) or not finding_ids:
            raise InvalidRecordError(f"expected a non-empty list of finding ids, got {finding_ids!r}",
                                     "finding_ids")
        ids = list(dict.fromkeys(finding_ids))
        referred_by = self._text(referred_by, "referred_by", tables.NAME)
        note = self._text(note, "note", 10_000, required=False)
        F = tables.findings.c
        with self.engine.connect() as conn:
            rows = {r.id: r for part in _chunks(ids)
                    for r in conn.execute(select(F.id, F.uscc, F.log_index).where(F.id.in_(part)))}
        missing = [i for i in ids if i not in rows]
        if missing:
            raise NotFoundError(f"no finding {missing[0]!r}" + (f" (and {len(missing) - 1} more unknown)"
                                                                  if len(missing) > 1 else ""))
        usccs = sorted({rows[i].uscc for i in ids})
        if len(usccs) > 1:
            raise InvalidRecordError(f"expected findings about one enterprise, got findings about "
                                     f"{', '.join(usccs)}", "finding_ids")
        referral_id, at = uuid.uuid4().hex, self._now()
        doc = {"type": T_REFERRAL, "id": referral_id, "uscc": usccs[0], "findingIds": ids,
               "findingLogIndexes": [int(rows[i].log_index) for i in ids], "referredBy": referred_by,
               "note": note, "referredAt": at.isoformat()}
        with self._lock:
            entry = self._append(doc)
            try:
                with self.engine.begin() as conn:
                    conn.execute(insert(tables.referrals).values(
                        id=referral_id, uscc=usccs[0], finding_ids=json.dumps(ids), referred_by=referred_by,
                        note=note, referred_at=at, log_index=entry.index))
            except SQLAlchemyError as e:
                raise FlowsError(f"the referral was logged at index {entry.index} of the {FLOWS_LOG!r} log "
                                 f"but could not be stored: {e}") from e
        return Referral(referral_id, usccs[0], tuple(ids), referred_by, note, at, entry.index)

    def referrals(self, *, uscc: str | None = None) -> list[Referral]:
        R = tables.referrals.c
        stmt = select(tables.referrals).order_by(R.log_index)
        if uscc is not None:
            stmt = stmt.where(R.uscc == validate_uscc(uscc))
        with self.engine.connect() as conn:
            return [Referral(r.id, r.uscc, tuple(json.loads(r.finding_ids)), r.referred_by, r.note,
                             _aware(r.referred_at), int(r.log_index)) for r in conn.execute(stmt)]

    def referred_usccs(self) -> set[str]:
        with self.engine.connect() as conn:
            return set(conn.execute(select(tables.referrals.c.uscc).distinct()).scalars())

    # -- custody ------------------------------------------------------------------------------

    def record_access(self, actor: str, action: str, subject: str, *, reason: str | None = None) -> int:
        """Append {who, what, subject, when, why} to the ``custody`` log and keep a row; returns
        the custody log index."""
        actor = self._text(actor, "actor", tables.NAME)
        action = self._text(action, "action", 64)
        subject = self._text(subject, "subject", tables.NAME)
        if reason is not None:
            reason = self._text(reason, "reason", 10_000, required=False)
        access_id, at = uuid.uuid4().hex, self._now()
        doc = {"type": ACCESS_TYPE, "id": access_id, "who": actor, "what": action, "subject": subject,
               "when": at.isoformat(), "why": reason}
        try:
            entry = self.store.append(CUSTODY_LOG, doc)
        except LedgerError as e:
            raise FlowsError(f"appending to the {CUSTODY_LOG!r} log failed: {e}") from e
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(tables.accesses).values(
                    id=access_id, actor=actor, action=action, subject=subject, reason=reason, at=at,
                    log_index=entry.index))
        except SQLAlchemyError as e:
            raise FlowsError(f"the access was logged at index {entry.index} of the {CUSTODY_LOG!r} log but "
                             f"could not be stored: {e}") from e
        return entry.index

    def accesses(self, *, subject: str | None = None, limit: int = 100) -> list[Access]:
        """Recorded reads, most recent first."""
        _page(limit, 0)
        A = tables.accesses.c
        stmt = select(tables.accesses).order_by(A.log_index.desc()).limit(limit)
        if subject is not None:
            stmt = stmt.where(A.subject == subject)
        with self.engine.connect() as conn:
            return [Access(r.id, r.actor, r.action, r.subject, r.reason, _aware(r.at), int(r.log_index))
                    for r in conn.execute(stmt)]

    # -- log helpers --------------------------------------------------------------------------

    def _append(self, doc: dict[str, Any]) -> Any:
        try:
            return self.store.append(FLOWS_LOG, doc)
        except LedgerError as e:
            raise FlowsError(f"appending to the {FLOWS_LOG!r} log failed: {e}") from e

    def _append_many(self, docs: Sequence[dict[str, Any]]) -> list[int]:
        """Append in batches; returns the log indexes in order."""
        out: list[int] = []
        for start in range(0, len(docs), _APPEND_CHUNK):
            try:
                entries = self.store.append_many(FLOWS_LOG, docs[start:start + _APPEND_CHUNK])
            except LedgerError as e:
                done = f" (indexes {out[0]}..{out[-1]} were appended before)" if out else ""
                raise FlowsError(f"appending to the {FLOWS_LOG!r} log failed{done}: {e}") from e
            out.extend(en.index for en in entries)
        return out


# -- module helpers -----------------------------------------------------------------------------

_KIND: dict[type, str] = {Enterprise: "enterprise", HeadcountSnapshot: "snapshot", Contract: "contract",
                          Payment: "payment", Invoice: "invoice"}
_PARTY_FIELDS: dict[type, tuple[str, ...]] = {
    HeadcountSnapshot: ("uscc",), Contract: ("buyer_uscc", "seller_uscc"),
    Payment: ("payer_uscc", "payee_uscc"), Invoice: ("seller_uscc", "buyer_uscc")}


def _parties(r: Record) -> tuple[str, ...]:
    t = type(r)
    if t is Invoice:
        return (r.seller_uscc, r.buyer_uscc)  # type: ignore[union-attr]
    if t is Payment:
        return (r.payer_uscc, r.payee_uscc)  # type: ignore[union-attr]
    if t is Contract:
        return (r.buyer_uscc, r.seller_uscc)  # type: ignore[union-attr]
    if t is HeadcountSnapshot:
        return (r.uscc,)  # type: ignore[union-attr]
    return ()


def _key(r: Record) -> tuple[str, Any]:
    t = type(r)
    if t is Invoice:
        return ("invoice", r.key_hex)  # type: ignore[union-attr]
    if t is Payment:
        return ("payment", r.payment_ref)  # type: ignore[union-attr]
    if t is Contract:
        return ("contract", (r.buyer_uscc, r.seller_uscc, r.contract_no))  # type: ignore[union-attr]
    if t is HeadcountSnapshot:
        return ("snapshot", (r.uscc, r.period))  # type: ignore[union-attr]
    return ("enterprise", r.uscc)  # type: ignore[union-attr]


def _key_text(r: Record) -> tuple[str, str]:
    """(the key as the DuplicateRecordError carries it, a description for its message)."""
    t = type(r)
    if t is Invoice:
        return r.key_hex, f"invoice {r.key_hex} (seller {r.seller_uscc}, code {r.code!r}, number {r.number})"  # type: ignore[union-attr]
    if t is Payment:
        return r.payment_ref, f"payment {r.payment_ref!r}"  # type: ignore[union-attr]
    if t is Contract:
        key = f"{r.buyer_uscc}/{r.seller_uscc}/{r.contract_no}"  # type: ignore[union-attr]
        return key, f"contract {r.contract_no!r} between buyer {r.buyer_uscc} and seller {r.seller_uscc}"  # type: ignore[union-attr]
    if t is HeadcountSnapshot:
        return f"{r.uscc}/{r.period}", f"headcount snapshot of {r.uscc} for {r.period}"  # type: ignore[union-attr]
    return r.uscc, f"enterprise {r.uscc}"  # type: ignore[union-attr]


def _duplicate(r: Record, log_index: int | None, position: int | None,
               more: str = "") -> DuplicateRecordError:
    key, what = _key_text(r)
    if log_index is not None:
        return DuplicateRecordError(f"{what} was already recorded, at index {log_index} of the "
                                    f"{FLOWS_LOG!r} log{more}", key_hex=key, log_index=log_index)
    return DuplicateRecordError(f"{what} is already in this batch, at position {position}",
                                key_hex=key, log_index=None)


class _Days(dict):  # type: ignore[type-arg]
    """ISO date text (as SQLite returns it) -> date, parsed once per distinct day."""

    def __missing__(self, text: str) -> date:
        d = self[text] = date.fromisoformat(text)
        return d


class _SameDays(dict):  # type: ignore[type-arg]
    """The drivers that return dates already (PostgreSQL): each is its own value."""

    def __missing__(self, d: date) -> date:
        self[d] = d
        return d


def _by_log_index(record: Any) -> int:
    return record.log_index  # type: ignore[no-any-return]


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic collector while building many acyclic records: each full collection
    walks every live object, and a million records trigger many of them."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _chunks(items: Sequence[Any], n: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), n):
        yield items[start:start + n]


def _page(limit: Any, offset: Any) -> None:
    if type(limit) is not int or limit < 1:
        raise InvalidRecordError(f"expected a positive limit, got {limit!r}", "limit")
    if type(offset) is not int or offset < 0:
        raise InvalidRecordError(f"expected a non-negative offset, got {offset!r}", "offset")


def _aware(dt: datetime) -> datetime:
    # SQLite returns naive datetimes; every timestamp stored here is UTC.
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def _enterprise(r: Any) -> Enterprise:
    return Enterprise(r.uscc, r.name, r.registered_on, r.region, r.industry, int(r.log_index))


def _contract(r: Any) -> Contract:
    return Contract(r.contract_no, r.buyer_uscc, r.seller_uscc, int(r.amount_fen), r.signed_on, r.subject,
                    r.payment_term_days, int(r.log_index))


def _payment(r: Any, keys: tuple[str, ...]) -> Payment:
    return Payment(r.payment_ref, r.payer_uscc, r.payee_uscc, int(r.amount_fen), r.paid_on, r.contract_no,
                   keys, int(r.log_index))


def _invoice(r: Any) -> Invoice:
    return Invoice(r.key_hex, r.seller_uscc, r.buyer_uscc, r.code, r.number, int(r.amount_fen),
                   int(r.tax_fen), r.issued_on, r.contract_no, r.goods, int(r.log_index))


def _policy_json(policy: ScreeningPolicy) -> dict[str, Any]:
    """The screening thresholds a run applied, logged with its summary."""
    return {f: (list(v) if isinstance(v := getattr(policy, f), tuple) else v)
            for f in policy.__dataclass_fields__}


def _finding(r: Any) -> Finding:
    return Finding(r.rule, r.uscc, r.reason, tuple(RecordRef(k, key, li) for k, key, li in json.loads(r.records)),
                   tuple((k, v) for k, v in json.loads(r.thresholds)),
                   tuple((k, v) for k, v in json.loads(r.measured)), r.severity, r.id, r.period, int(r.log_index))


def _grade(r: Any) -> Grade:
    return Grade(r.uscc, r.period, r.grade, int(r.score), float(r.inspection_ratio),
                 inputs_from_json(json.loads(r.inputs)), int(r.log_index))


def _draw_inputs(row: Any) -> tuple[list[tuple[str, str]], list[str], dict[str, float], int]:
    return ([(u, g) for u, g in json.loads(row.population)], list(json.loads(row.inspectors)),
            {g: float(v) for g, v in json.loads(row.ratios).items()}, int(row.per_enterprise))
