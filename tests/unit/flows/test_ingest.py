"""Records in: validation, known parties, duplicates (across calls, inside a batch, lost races),
the log commitment of each record, and failures between the log append and the row write."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from evidence_ledger.flows import tables
from evidence_ledger.flows.errors import DuplicateRecordError, FlowsError, InvalidRecordError, NotFoundError
from evidence_ledger.flows.identifiers import invoice_key
from evidence_ledger.flows.records import Enterprise, HeadcountSnapshot, Invoice
from evidence_ledger.flows.service import FLOWS_LOG, FlowBook, record_document
from evidence_ledger.ledger import canonical, merkle
from evidence_ledger.ledger.log import LogStore

from .conftest import contract, enterprise, invoice, payment, snapshot, uscc


def _rows(book: FlowBook, table) -> int:  # type: ignore[no-untyped-def]
    with book.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


# -- accepted records ---------------------------------------------------------------------------

def test_each_kind_is_logged_then_stored_with_its_log_index(book: FlowBook, store: LogStore) -> None:
    e1 = book.register_enterprise(enterprise(1))
    e2 = book.register_enterprise(enterprise(2))
    assert (e1.log_index, e2.log_index) == (0, 1)
    s = book.record_snapshot(snapshot(1))
    c = book.record_contract(contract("HT-2026-001", buyer=2, seller=1))
    i = book.record_invoice(invoice(1, seller=1, buyer=2, contract_no="HT-2026-001"))
    p = book.record_payment(payment("BANK-0001", payer=2, payee=1, contract_no="HT-2026-001",
                                    invoice_keys=(i.key_hex,)))
    assert [s.log_index, c.log_index, i.log_index, p.log_index] == [2, 3, 4, 5]
    assert i.key_hex == invoice_key(uscc(1), "", f"{1:020d}")
    assert store.tree_size(FLOWS_LOG) == 6
    assert book.enterprise(uscc(1)) == e1
    assert book.snapshots(uscc(1)) == [s]
    assert book.contracts() == [c]
    assert book.invoice(i.key_hex) == i
    assert book.payments() == [p] and p.invoice_keys == (i.key_hex,)
    doc = store.entry(FLOWS_LOG, i.log_index).record()
    assert doc == {"type": "evidence-ledger/flows/invoice/v1", "keyHex": i.key_hex, "sellerUscc": uscc(1),
                   "buyerUscc": uscc(2), "code": "", "number": f"{1:020d}", "amountFen": 1_000_000,
                   "taxFen": 130_000, "issuedOn": "2026-02-10", "contractNo": "HT-2026-001",
                   "goods": "steel coils"}
    assert store.entry(FLOWS_LOG, p.log_index).record()["invoiceKeys"] == [i.key_hex]
    assert store.entry(FLOWS_LOG, e1.log_index).record()["type"] == "evidence-ledger/flows/enterprise/v1"


def test_a_stored_records_log_entry_recomputes_and_hides_the_amount(book: FlowBook, store: LogStore,
                                                                    parties) -> None:  # type: ignore[no-untyped-def]
    inv = book.record_invoice(invoice(7, seller=1, buyer=2, amount_fen=88_000, tax_fen=11_440))
    entry = store.entry(FLOWS_LOG, inv.log_index)
    body = canonical.canonicalize(record_document(inv))
    assert entry.record_canonical == body
    assert entry.record_digest == hashlib.sha256(body).digest()
    assert entry.leaf_hash == merkle.leaf_hash(canonical.leaf_entry(entry.salt, entry.record_digest))

    # Everything about the invoice but its amount is known to a guesser: without the salt, no
    # amount (the true one included) reproduces the leaf; with it, exactly the true one does.
    def leaf(amount: int, salt: bytes) -> bytes:
        digest = canonical.record_digest(canonical.canonicalize(record_document(replace(inv, amount_fen=amount))))
        return merkle.leaf_hash(canonical.leaf_entry(salt, digest))

    guesses = range(80_000, 90_001)
    assert not any(leaf(a, bytes(32)) == entry.leaf_hash for a in guesses)
    assert [a for a in guesses if leaf(a, entry.salt) == entry.leaf_hash] == [88_000]
    assert b"88000" not in entry.leaf_hash + entry.record_digest


def test_usccs_are_normalised_and_the_key_recomputed(book: FlowBook) -> None:
    e = book.register_enterprise(replace(enterprise(1), uscc=uscc(1).lower()[:9] + " " + uscc(1)[9:]))
    assert e.uscc == uscc(1)
    book.register_enterprise(enterprise(2))
    given = invoice_key(uscc(1), "", f"{5:020d}")
    i = book.record_invoice(invoice(5, seller=1, buyer=2, key_hex=given.upper()))
    assert i.key_hex == given


def test_ingest_accepts_the_valid_and_lists_the_rest_by_position(book: FlowBook, store: LogStore) -> None:
    records = [
        enterprise(1), enterprise(2),
        contract("C-1", buyer=2, seller=1),
        invoice(1, seller=1, buyer=2, contract_no="C-1"),
        invoice(2, seller=1, buyer=3),  # 3 is not registered (yet)
        enterprise(3),
        invoice(3, seller=1, buyer=3),  # registered earlier in the batch: fine
        invoice(1, seller=1, buyer=2),  # same key as position 3
        replace(invoice(4, seller=1, buyer=2), amount_fen=-5),
        payment("P-1", payer=2, payee=1, invoice_keys=(invoice_key(uscc(1), "", f"{1:020d}"),)),
        snapshot(1), snapshot(1),
    ]
    report = book.ingest(records, batch_size=4)
    assert report.accepted == 8
    assert [(r.position, r.error) for r in report.rejected] == [
        (4, "NotFoundError"), (7, "DuplicateRecordError"), (8, "InvalidRecordError"), (11, "DuplicateRecordError")]
    assert report.rejected[0].message == (f"buyer_uscc: no enterprise {uscc(3)} is registered (register it "
                                          "before its invoice)")
    key1 = invoice_key(uscc(1), "", f"{1:020d}")
    # Position 7 sits in a later batch (of 4) than position 3: found in the database.
    assert report.rejected[1].message == (f"invoice {key1} (seller {uscc(1)}, code '', number {1:020d}) "
                                          "was already recorded, at index 3 of the 'flows' log")
    assert report.rejected[2].message == "amount_fen: expected a whole number of fen from 0 to 9007199254740991, got -5"
    assert report.rejected[3].message == (f"headcount snapshot of {uscc(1)} for 2026-02 is already in this batch, "
                                          "at position 10")
    assert (report.first_log_index, report.last_log_index) == (0, 7)
    assert store.tree_size(FLOWS_LOG) == 8
    assert _rows(book, tables.invoices) == 2 and _rows(book, tables.payment_invoices) == 1


def test_ingest_takes_an_iterator_and_rejects_a_bad_batch_size(book: FlowBook) -> None:
    report = book.ingest(enterprise(n) for n in range(1, 8))
    assert (report.accepted, report.first_log_index, report.last_log_index) == (7, 0, 6)
    with pytest.raises(InvalidRecordError) as e:
        book.ingest([], batch_size=0)
    assert str(e.value) == "batch_size: expected a batch size of 1 to 100000, got 0"
    assert book.ingest([]) == type(report)(0, (), None, None)


def test_ingest_rejects_what_is_not_a_record(book: FlowBook) -> None:
    report = book.ingest([{"uscc": uscc(1)}, enterprise(1)])
    assert report.accepted == 1
    assert report.rejected[0].error == "InvalidRecordError"
    assert report.rejected[0].message == ("$: expected an Enterprise, HeadcountSnapshot, Contract, Payment or "
                                          "Invoice, got dict")
    with pytest.raises(InvalidRecordError) as e:
        book.record_invoice(contract("C-1", 1, 2))  # type: ignore[arg-type]
    assert str(e.value) == "$: expected Invoice, got Contract"


# -- duplicates ---------------------------------------------------------------------------------

def test_duplicate_invoice_in_a_later_call(book: FlowBook, parties) -> None:  # type: ignore[no-untyped-def]
    first = book.record_invoice(invoice(9, seller=1, buyer=2))
    # Same seller, code and number: the same invoice, whatever else differs.
    with pytest.raises(DuplicateRecordError) as e:
        book.record_invoice(invoice(9, seller=1, buyer=3, amount_fen=5_000_000))
    assert str(e.value) == (f"invoice {first.key_hex} (seller {uscc(1)}, code '', number {9:020d}) was already "
                            f"recorded, at index {first.log_index} of the 'flows' log")
    assert (e.value.key_hex, e.value.log_index) == (first.key_hex, first.log_index)
    assert _rows(book, tables.invoices) == 1


def test_duplicate_invoice_inside_one_batch(book: FlowBook, store: LogStore, parties) -> None:  # type: ignore[no-untyped-def]
    size = store.tree_size(FLOWS_LOG)
    report = book.ingest([invoice(1, 1, 2), invoice(2, 1, 2), invoice(1, 1, 2, amount_fen=7_000_000)])
    assert report.accepted == 2
    key = invoice_key(uscc(1), "", f"{1:020d}")
    assert [(r.position, r.error, r.message) for r in report.rejected] == [
        (2, "DuplicateRecordError",
         f"invoice {key} (seller {uscc(1)}, code '', number {1:020d}) is already in this batch, at position 0")]
    assert store.tree_size(FLOWS_LOG) == size + 2  # the duplicate was never appended


def test_duplicates_of_every_other_kind(book: FlowBook, parties) -> None:  # type: ignore[no-untyped-def]
    c = book.record_contract(contract("C-1", buyer=2, seller=1))
    book.record_contract(contract("C-1", buyer=3, seller=1))  # same number, other parties: another contract
    p = book.record_payment(payment("P-1", 2, 1))
    s = book.record_snapshot(snapshot(1))
    cases = [
        (lambda: book.register_enterprise(enterprise(1)),
         f"enterprise {uscc(1)} was already recorded, at index 0 of the 'flows' log", uscc(1), 0),
        (lambda: book.record_contract(contract("C-1", buyer=2, seller=1, amount_fen=1)),
         f"contract 'C-1' between buyer {uscc(2)} and seller {uscc(1)} was already recorded, at index "
         f"{c.log_index} of the 'flows' log", f"{uscc(2)}/{uscc(1)}/C-1", c.log_index),
        (lambda: book.record_payment(payment("P-1", 3, 4)),
         f"payment 'P-1' was already recorded, at index {p.log_index} of the 'flows' log", "P-1", p.log_index),
        (lambda: book.record_snapshot(snapshot(1, employees=99)),
         f"headcount snapshot of {uscc(1)} for 2026-02 was already recorded, at index {s.log_index} of the "
         "'flows' log", f"{uscc(1)}/2026-02", s.log_index),
    ]
    for call, message, key, index in cases:
        with pytest.raises(DuplicateRecordError) as e:
            call()
        assert str(e.value) == message
        assert (e.value.key_hex, e.value.log_index) == (key, index)


def test_a_duplicate_stored_by_a_concurrent_writer_is_caught_by_the_constraint(
        engine, store: LogStore, clock, parties) -> None:  # type: ignore[no-untyped-def]
    slow = FlowBook(engine, store, clock=clock)
    fast = FlowBook(engine, store, clock=clock)
    # ``fast`` stores the invoice after ``slow`` looked its keys up, before ``slow`` appends.
    real = slow._append_and_store

    def late_append(accepted, prepared, rejected):  # type: ignore[no-untyped-def]
        fast.record_invoice(invoice(1, 1, 2))
        return real(accepted, prepared, rejected)

    slow._append_and_store = late_append  # type: ignore[method-assign]
    report = slow.ingest([invoice(1, 1, 2), invoice(2, 1, 2)])
    first = fast.invoice(invoice_key(uscc(1), "", f"{1:020d}"))
    lost_at = first.log_index + 1  # slow appended both after fast's invoice
    assert report.accepted == 1 and (report.first_log_index, report.last_log_index) == (lost_at + 1, lost_at + 1)
    assert [(r.position, r.error, r.message) for r in report.rejected] == [
        (0, "DuplicateRecordError",
         f"invoice {first.key_hex} (seller {uscc(1)}, code '', number {1:020d}) was already recorded, at index "
         f"{first.log_index} of the 'flows' log; this copy was logged at index {lost_at} of the 'flows' log but "
         "not stored")]
    assert _rows(slow, tables.invoices) == 2


# -- validation ---------------------------------------------------------------------------------

@pytest.mark.parametrize("change, message", [
    ({"seller_uscc": "91310000000000001X"},
     "seller_uscc: check character of '91310000000000001X' should be"),
    ({"buyer_uscc": "9131000000000000"},
     "buyer_uscc: expected an 18-character unified social credit code, got 16 characters ('9131000000000000')"),
    ({"buyer_uscc": "91310000000000000O"},
     "buyer_uscc: a unified social credit code uses 0-9 and A-Z without I, O, S, V, Z; '91310000000000000O' has 'O'"),
    ({"amount_fen": -1}, "amount_fen: expected a whole number of fen from 0 to 9007199254740991, got -1"),
    ({"amount_fen": 10.5}, "amount_fen: expected a whole number of fen from 0 to 9007199254740991, got 10.5"),
    ({"tax_fen": True}, "tax_fen: expected a whole number of fen from 0 to 9007199254740991, got True"),
    ({"tax_fen": 1_000_001}, "tax_fen: expected tax at most the amount (1000000 fen), got 1000001 fen"),
    ({"key_hex": "ab" * 32}, "key_hex: expected the invoice key "),
    ({"issued_on": datetime(2026, 2, 1, tzinfo=UTC)},
     "issued_on: expected a date, got datetime 2026-02-01 00:00:00+00:00"),
    ({"issued_on": date(1900, 1, 1)}, "issued_on: expected a date from 1949-10-01 to 2027-07-02, got 1900-01-01"),
    ({"issued_on": date(2031, 1, 1)}, "issued_on: expected a date from 1949-10-01 to 2027-07-02, got 2031-01-01"),
    ({"number": "12"}, "number: expected an invoice number of 8 to 20 digits, got '12'"),
    ({"code": "12345"}, "code: expected an invoice code of 10 or 12 digits (or empty), got '12345'"),
    ({"contract_no": ""}, "contract_no: expected non-empty text, got an empty string"),
    ({"goods": "x" * 256}, "goods: expected at most 255 characters, got 256"),
])
def test_invalid_invoices(book: FlowBook, parties, change, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidRecordError) as e:
        book.record_invoice(replace(invoice(1, 1, 2), **change))
    assert str(e.value).startswith(message)
    assert _rows(book, tables.invoices) == 0


def test_a_wrong_key_hex_names_the_right_one(book: FlowBook, parties) -> None:  # type: ignore[no-untyped-def]
    right = invoice_key(uscc(1), "", f"{1:020d}")
    wrong = invoice_key(uscc(1), "", f"{2:020d}")
    with pytest.raises(InvalidRecordError) as e:
        book.record_invoice(invoice(1, 1, 2, key_hex=wrong))
    assert str(e.value) == f"key_hex: expected the invoice key {right} (SHA-256 of seller|code|number) or \"\", got {wrong!r}"
    assert e.value.field == "key_hex"


def test_unknown_parties_are_named(book: FlowBook, parties) -> None:  # type: ignore[no-untyped-def]
    stranger = uscc(99)
    for call, message in [
        (lambda: book.record_invoice(invoice(1, seller=99, buyer=1)),
         f"seller_uscc: no enterprise {stranger} is registered (register it before its invoice)"),
        (lambda: book.record_contract(contract("C-1", buyer=1, seller=99)),
         f"seller_uscc: no enterprise {stranger} is registered (register it before its contract)"),
        (lambda: book.record_payment(payment("P-1", payer=99, payee=1)),
         f"payer_uscc: no enterprise {stranger} is registered (register it before its payment)"),
        (lambda: book.record_snapshot(snapshot(99)),
         f"uscc: no enterprise {stranger} is registered (register it before its snapshot)"),
    ]:
        with pytest.raises(NotFoundError) as e:
            call()
        assert str(e.value) == message


@pytest.mark.parametrize("record, message", [
    (replace(invoice(1, 1, 2), buyer_uscc=uscc(1)),
     f"buyer_uscc: expected a buyer other than the seller, got {uscc(1)} for both"),
    (payment("P-1", 1, 1), f"payee_uscc: expected a payee other than the payer, got {uscc(1)} for both"),
    (payment("P-1", 1, 2, invoice_keys=("xyz",)), "invoice_keys[0]: expected an invoice key of 64 hex digits, got 'xyz'"),
    (payment("P-1", 1, 2, invoice_keys=("a" * 64, "A" * 64)),
     f"invoice_keys[1]: expected each invoice once, got {'a' * 64} twice"),
    (payment("P-1", 1, 2, amount_fen=-3), "amount_fen: expected a whole number of fen from 0 to 9007199254740991, got -3"),
    (payment(" ", 1, 2), "payment_ref: expected non-empty text, got an empty string"),
    (contract("C-1", 1, 2, term=-1), "payment_term_days: expected a payment term of 0 to 3650 days or None, got -1"),
    (contract("C-1", 2, 2), f"seller_uscc: expected a seller other than the buyer, got {uscc(2)} for both"),
    (replace(contract("C-1", 1, 2), subject=""), "subject: expected non-empty text, got an empty string"),
    (snapshot(1, period="2026-13"), "period: expected a month 'YYYY-MM', got '2026-13'"),
    (snapshot(1, insured=-2), "insured: expected a whole number from 0 to 2147483647, got -2"),
    (Enterprise(uscc(9), "", date(2020, 1, 1)), "name: expected non-empty text, got an empty string"),
    (Enterprise(uscc(9), "X", date(2020, 1, 1), region="1" * 33), "region: expected at most 32 characters, got 33"),
    (HeadcountSnapshot("91310000000000001X", "2026-01", 1, 1), "uscc: check character of '91310000000000001X'"),
])
def test_invalid_records_of_other_kinds(book: FlowBook, parties, record, message) -> None:  # type: ignore[no-untyped-def]
    report = book.ingest([record])
    assert report.accepted == 0 and len(report.rejected) == 1
    assert report.rejected[0].error == "InvalidRecordError"
    assert report.rejected[0].message.startswith(message)


# -- failures between the log and the database ---------------------------------------------------

def test_a_failure_after_the_append_names_the_log_indexes(book: FlowBook, store: LogStore, parties,
                                                         monkeypatch) -> None:  # type: ignore[no-untyped-def]
    size = store.tree_size(FLOWS_LOG)

    def broken(rows):  # type: ignore[no-untyped-def]
        raise OperationalError("INSERT", {}, Exception("disk I/O error"))

    monkeypatch.setattr(book, "_write_rows", broken)
    with pytest.raises(FlowsError) as e:
        book.ingest([invoice(1, 1, 2), invoice(2, 1, 2)])
    assert str(e.value).startswith(f"records were logged at indexes {size}..{size + 1} of the 'flows' log but "
                                   "could not be stored (")
    assert str(e.value).endswith("); nothing else was changed")
    assert store.tree_size(FLOWS_LOG) == size + 2
    assert _rows(book, tables.invoices) == 0


def test_a_failing_log_append_stores_nothing(book: FlowBook, store: LogStore, parties,
                                             monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from evidence_ledger.ledger.errors import LogNotFoundError

    def no_log(name, prepared, **kw):  # type: ignore[no-untyped-def]
        raise LogNotFoundError(f"no log named {name!r}")

    monkeypatch.setattr(store, "append_prepared", no_log)
    with pytest.raises(FlowsError) as e:
        book.record_invoice(invoice(1, 1, 2))
    assert str(e.value) == "appending 1 records to the 'flows' log failed, nothing was stored: no log named 'flows'"
    assert _rows(book, tables.invoices) == 0


def test_invoice_rows_keep_every_field(book: FlowBook, parties) -> None:  # type: ignore[no-untyped-def]
    inv = Invoice("", uscc(1), uscc(2), "3100261130", "04521873", 2_000_000_000_000, 260_000_000_000,
                  date(2026, 6, 30), None, "")
    stored = book.record_invoice(inv)
    assert book.invoice(stored.key_hex) == replace(inv, key_hex=invoice_key(uscc(1), "3100261130", "04521873"),
                                                    log_index=stored.log_index)


def test_a_record_over_the_logs_size_limit_is_rejected_alone(engine, store: LogStore, clock,
                                                             parties) -> None:  # type: ignore[no-untyped-def]
    small = FlowBook(engine, LogStore(engine, max_record_bytes=400), clock=clock)
    big = replace(invoice(1, 1, 2), goods="g" * 200)
    size = len(canonical.canonicalize(record_document(replace(big, key_hex=invoice_key(uscc(1), "", f"{1:020d}")))))
    report = small.ingest([big, invoice(2, 1, 2)])
    assert report.accepted == 1
    assert [(r.position, r.error, r.message) for r in report.rejected] == [
        (0, "InvalidRecordError", f"$: the record cannot be logged: record is {size} bytes; the limit is 400 bytes")]
