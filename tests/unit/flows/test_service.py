"""The flows schema and the FlowBook's reads and custody trail."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select
from sqlalchemy.exc import OperationalError

from evidence_ledger.flows import db, service, tables
from evidence_ledger.flows.errors import FlowsError, InvalidRecordError, NotFoundError
from evidence_ledger.flows.records import Access
from evidence_ledger.flows.service import CUSTODY_LOG, FLOWS_LOG, FlowBook
from evidence_ledger.ledger import tables as ledger_tables
from evidence_ledger.ledger.log import LogStore

from .conftest import contract, enterprise, invoice, payment, snapshot, uscc


def test_migrations_build_exactly_the_declared_schema(engine) -> None:  # type: ignore[no-untyped-def]
    db.migrate(engine)
    db.migrate(engine)  # idempotent
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={
            "include_name": lambda name, type_, parent: type_ != "table" or name in tables.metadata.tables})
        assert compare_metadata(ctx, tables.metadata) == []
        assert compare_metadata(MigrationContext.configure(conn, opts={
            "include_name": lambda name, type_, parent: type_ != "table" or name in ledger_tables.metadata.tables}),
            ledger_tables.metadata) == []
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version_flows").scalar() == "f0001"
    names = set(inspect(engine).get_table_names())
    assert set(tables.metadata.tables) <= names
    assert all(name.startswith("flows_") for name in tables.metadata.tables)


def test_every_query_has_an_index() -> None:
    def indexed(table, *cols: str) -> bool:  # type: ignore[no-untyped-def]
        keys = [tuple(c.name for c in ix.columns) for ix in table.indexes]
        keys += [tuple(c.name for c in con.columns) for con in table.constraints if hasattr(con, "columns")]
        return any(k[:len(cols)] == cols for k in keys)

    assert indexed(tables.invoices, "seller_uscc", "issued_on") and indexed(tables.invoices, "buyer_uscc", "issued_on")
    assert indexed(tables.invoices, "issued_on") and indexed(tables.invoices, "contract_no")
    assert indexed(tables.invoices, "key_hex")
    assert indexed(tables.contracts, "buyer_uscc") and indexed(tables.contracts, "seller_uscc")
    assert indexed(tables.contracts, "contract_no")
    assert indexed(tables.payments, "payer_uscc") and indexed(tables.payments, "payee_uscc")
    assert indexed(tables.payments, "payment_ref") and indexed(tables.payments, "contract_no")
    assert indexed(tables.payment_invoices, "invoice_key")
    assert indexed(tables.findings, "period", "current", "uscc") and indexed(tables.findings, "uscc", "current")
    assert indexed(tables.findings, "rule", "current") and indexed(tables.grades, "period", "current", "uscc")
    assert indexed(tables.referrals, "uscc") and indexed(tables.accesses, "subject", "log_index")


def test_the_constructor_checks_its_arguments(engine, store: LogStore) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidRecordError) as e:
        FlowBook(engine, store, default_term_days=-1)
    assert str(e.value) == "default_term_days: expected a payment term of 0 to 3650 days, got -1"
    with pytest.raises(InvalidRecordError) as e2:
        FlowBook(engine, store, policy={"contagion_share": 0.5})  # type: ignore[arg-type]
    assert str(e2.value) == "policy: expected a ScreeningPolicy, got dict"
    naive = FlowBook(engine, store, clock=lambda: datetime(2026, 7, 1, 10, 0))
    with pytest.raises(FlowsError) as e3:
        naive.register_enterprise(enterprise(1))
    assert str(e3.value) == "the clock must return aware datetimes, got datetime.datetime(2026, 7, 1, 10, 0)"


# -- reads --------------------------------------------------------------------------------------

@pytest.fixture
def trade(book: FlowBook, parties) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """1 sells to 2 (two invoices in February, one in March), 3 sells to 1, 2 pays 1."""
    out: dict[str, object] = {}
    out["c12"] = book.record_contract(contract("C-12", buyer=2, seller=1))
    out["c31"] = book.record_contract(contract("C-31", buyer=1, seller=3))
    out["feb1"] = book.record_invoice(invoice(1, 1, 2, issued_on=date(2026, 2, 1), contract_no="C-12"))
    out["feb2"] = book.record_invoice(invoice(2, 1, 2, issued_on=date(2026, 2, 20)))
    out["mar"] = book.record_invoice(invoice(3, 1, 2, issued_on=date(2026, 3, 5)))
    out["in"] = book.record_invoice(invoice(4, 3, 1, issued_on=date(2026, 2, 15)))
    out["p"] = book.record_payment(payment("P-1", 2, 1, contract_no="C-12",
                                           invoice_keys=(out["feb2"].key_hex, out["feb1"].key_hex)))  # type: ignore[attr-defined]
    out["q"] = book.record_payment(payment("Q-1", 4, 5))
    return out


def test_invoices_by_party_direction_and_date(book: FlowBook, trade) -> None:  # type: ignore[no-untyped-def]
    feb1, feb2, mar, inv_in = trade["feb1"], trade["feb2"], trade["mar"], trade["in"]
    one = uscc(1)
    assert book.invoices() == [feb1, inv_in, feb2, mar]  # by issue date
    assert book.invoices(uscc=one, direction="out") == [feb1, feb2, mar]
    assert book.invoices(uscc=one, direction="in") == [inv_in]
    assert book.invoices(uscc=one) == [feb1, inv_in, feb2, mar]
    assert book.invoices(uscc=uscc(2), direction="out") == []
    assert book.invoices(uscc=one, since=date(2026, 2, 15), until=date(2026, 2, 28)) == [inv_in, feb2]
    assert book.invoices(since=date(2026, 3, 5)) == [mar]
    assert book.invoices(limit=2, offset=1) == [inv_in, feb2]
    assert book.invoices(uscc=one.lower()) == book.invoices(uscc=one)
    with pytest.raises(InvalidRecordError) as e:
        book.invoices(uscc=one, direction="both")
    assert str(e.value) == "direction: expected 'out', 'in' or 'any', got 'both'"
    with pytest.raises(InvalidRecordError) as e2:
        book.invoices(since="2026-02-01")  # type: ignore[arg-type]
    assert str(e2.value) == "since: expected a date, got str 2026-02-01"
    with pytest.raises(InvalidRecordError) as e3:
        book.invoices(offset=-1)
    assert str(e3.value) == "offset: expected a non-negative offset, got -1"


def test_single_invoice_lookups(book: FlowBook, trade) -> None:  # type: ignore[no-untyped-def]
    feb1 = trade["feb1"]
    assert book.invoice(feb1.key_hex.upper()) == feb1
    with pytest.raises(NotFoundError) as e:
        book.invoice("0" * 64)
    assert str(e.value) == f"no invoice with key {'0' * 64}"
    with pytest.raises(InvalidRecordError) as e2:
        book.invoice("xyz")
    assert str(e2.value) == "key_hex: expected an invoice key of 64 hex digits, got 'xyz'"


def test_contracts_and_payments_by_party(book: FlowBook, trade) -> None:  # type: ignore[no-untyped-def]
    c12, c31, p, q = trade["c12"], trade["c31"], trade["p"], trade["q"]
    assert book.contracts() == [c12, c31]
    assert book.contracts(uscc=uscc(1)) == [c12, c31]
    assert book.contracts(uscc=uscc(3)) == [c31]
    assert book.contracts(uscc=uscc(4)) == []
    assert book.contracts(limit=1, offset=1) == [c31]
    assert book.payments() == [p, q]
    assert book.payments(uscc=uscc(1)) == [p] and book.payments(uscc=uscc(5)) == [q]
    # The invoices a payment settles come back in the order given.
    assert p.invoice_keys == (trade["feb2"].key_hex, trade["feb1"].key_hex)
    assert book.payments(uscc=uscc(2))[0].invoice_keys == p.invoice_keys
    with book.engine.connect() as conn:
        links = conn.execute(select(tables.payment_invoices).order_by(tables.payment_invoices.c.position)).all()
    assert [(r.payment_log_index, r.invoice_key) for r in links] == [(p.log_index, k) for k in p.invoice_keys]


def test_enterprises_and_snapshots(book: FlowBook, parties) -> None:  # type: ignore[no-untyped-def]
    assert book.enterprises() == parties
    assert book.enterprises(limit=2, offset=3) == parties[3:5]
    jan = book.record_snapshot(snapshot(2, "2026-01"))
    feb = book.record_snapshot(snapshot(2, "2026-02", employees=41, insured=0))
    assert book.snapshots(uscc(2)) == [jan, feb]
    assert book.snapshots(uscc(3)) == []
    with pytest.raises(NotFoundError) as e:
        book.snapshots(uscc(99))
    assert str(e.value) == f"no enterprise {uscc(99)} is registered"
    with pytest.raises(NotFoundError) as e2:
        book.enterprise(uscc(99))
    assert str(e2.value) == f"no enterprise {uscc(99)} is registered"
    with pytest.raises(InvalidRecordError) as e3:
        book.enterprise("91310000000000001X")
    assert str(e3.value).startswith("uscc: check character of '91310000000000001X' should be")


# -- custody ------------------------------------------------------------------------------------

def test_record_access_appends_to_the_custody_log(book: FlowBook, store: LogStore, clock) -> None:  # type: ignore[no-untyped-def]
    flows_size = store.tree_size(FLOWS_LOG)
    first = book.record_access("tax:li.wei", "view", f"invoice:{'a' * 64}", reason="audit 2026-17")
    clock.advance(minutes=5)
    second = book.record_access("police:zhang", "list", f"findings:{uscc(1)}")
    assert (first, second) == (0, 1)
    assert store.tree_size(CUSTODY_LOG) == 2 and store.tree_size(FLOWS_LOG) == flows_size
    doc = store.entry(CUSTODY_LOG, first).record()
    assert doc == {"type": "evidence-ledger/flows-access/v1", "id": doc["id"], "who": "tax:li.wei", "what": "view",
                   "subject": f"invoice:{'a' * 64}", "when": "2026-07-01T02:00:00+00:00", "why": "audit 2026-17"}
    accesses = book.accesses()
    assert accesses == [
        Access(accesses[0].id, "police:zhang", "list", f"findings:{uscc(1)}", None,
               datetime(2026, 7, 1, 2, 5, tzinfo=UTC), 1),
        Access(doc["id"], "tax:li.wei", "view", f"invoice:{'a' * 64}", "audit 2026-17",
               datetime(2026, 7, 1, 2, 0, tzinfo=UTC), 0),
    ]
    assert book.accesses(subject=f"invoice:{'a' * 64}") == accesses[1:]
    assert book.accesses(limit=1) == accesses[:1]
    assert book.accesses(subject="nothing") == []


def test_record_access_checks_its_arguments(book: FlowBook, store: LogStore, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    for kwargs, message in [
        ({"actor": "", "action": "view", "subject": "x"}, "actor: expected non-empty text, got an empty string"),
        ({"actor": "a", "action": "v" * 65, "subject": "x"}, "action: expected at most 64 characters, got 65"),
        ({"actor": "a", "action": "view", "subject": None}, "subject: expected text, got NoneType"),
    ]:
        with pytest.raises(InvalidRecordError) as e:
            book.record_access(**kwargs)  # type: ignore[arg-type]
        assert str(e.value) == message
    assert store.tree_size(CUSTODY_LOG) == 0

    def broken(*a, **kw):  # type: ignore[no-untyped-def]
        raise OperationalError("INSERT", {}, Exception("database is locked"))

    monkeypatch.setattr(service, "insert", broken)  # the row, not the log append
    with pytest.raises(FlowsError) as e2:
        book.record_access("tax:li.wei", "view", "enterprise:x")
    assert str(e2.value).startswith("the access was logged at index 0 of the 'custody' log but could not be stored: ")
    assert store.tree_size(CUSTODY_LOG) == 1
