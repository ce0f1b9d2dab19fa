"""Analysis runs over a small synthetic economy: what is stored and logged is exactly what the pure
functions say, re-runs supersede without deleting, and findings can be referred to the police."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from evidence_ledger.flows import service, tables
from evidence_ledger.flows.errors import FlowsError, InvalidRecordError, NotFoundError
from evidence_ledger.flows.grading import grade, grade_all, inputs_from_json
from evidence_ledger.flows.reconcile import link, reconcile
from evidence_ledger.flows.records import Finding, Grade
from evidence_ledger.flows.screening import ScreeningPolicy, screen
from evidence_ledger.flows.service import FLOWS_LOG, FlowBook, period_bounds
from evidence_ledger.flows.synthetic import Economy, generate_economy
from evidence_ledger.ledger import canonical
from evidence_ledger.ledger.log import LogStore

from .conftest import contract, enterprise, invoice, payment, uscc

PERIOD = "2026-Q3"


@pytest.fixture(scope="module")
def economy() -> Economy:
    return generate_economy(enterprises=80, invoices=600)


def _logged(book: FlowBook, economy: Economy) -> Economy:
    """Ingest the economy; return it with every record's log index (submission order)."""
    groups = [economy.enterprises, economy.snapshots, economy.contracts, economy.invoices, economy.payments]
    report = book.ingest([r for g in groups for r in g])
    assert report.rejected == () and report.accepted == sum(map(len, groups))
    assert report.first_log_index is not None
    at = report.first_log_index
    out = []
    for g in groups:
        out.append([replace(r, log_index=at + n) for n, r in enumerate(g)])
        at += len(g)
    return replace(economy, enterprises=out[0], snapshots=out[1], contracts=out[2], invoices=out[3],
                   payments=out[4])


def _bare(f: Finding) -> Finding:
    return replace(f, id=None, period=None, log_index=None)


def test_period_bounds() -> None:
    assert period_bounds("2026-02") == (date(2026, 2, 1), date(2026, 2, 28))
    assert period_bounds("2024-02") == (date(2024, 2, 1), date(2024, 2, 29))
    assert period_bounds("2026-12") == (date(2026, 12, 1), date(2026, 12, 31))
    assert period_bounds("2026-Q3") == (date(2026, 7, 1), date(2026, 9, 30))
    assert period_bounds("2026-Q4") == (date(2026, 10, 1), date(2026, 12, 31))
    assert period_bounds("2026") == (date(2026, 1, 1), date(2026, 12, 31))
    for bad in ("2026-13", "2026-Q5", "26", "2026-1", None):
        with pytest.raises(InvalidRecordError) as e:
            period_bounds(bad)  # type: ignore[arg-type]
        assert str(e.value) == f"period: expected a period 'YYYY-MM', 'YYYY-Qn' or 'YYYY', got {bad!r}"


@pytest.mark.parametrize("scan_parties", [0, FlowBook.scan_parties], ids=["table-scans", "index-look-ups"])
def test_analyse_stores_exactly_what_the_pure_functions_give(book: FlowBook, store: LogStore, economy: Economy,
                                                             scan_parties: int) -> None:
    book.scan_parties = scan_parties
    eco = _logged(book, economy)
    as_of = eco.end + timedelta(days=30)
    run = book.analyse(PERIOD, as_of=as_of)

    links = link(eco.invoices, eco.contracts, eco.payments, as_of=as_of)
    expected = reconcile(eco.invoices, eco.contracts, eco.payments, as_of=as_of, links=links)
    expected += screen(eco.enterprises, eco.snapshots, eco.contracts, eco.payments, eco.invoices,
                       policy=ScreeningPolicy(), as_of=as_of, reconciliation=expected, links=links)
    expected_grades = grade_all(eco.enterprises, eco.invoices, expected, period=PERIOD)

    stored = book.findings(period=PERIOD, limit=10_000)
    assert [_bare(f) for f in stored] == expected
    assert {f.period for f in stored} == {PERIOD} and len({f.id for f in stored}) == len(stored)
    assert [replace(g, log_index=None) for g in book.grades(PERIOD)] == expected_grades

    assert (run.period, run.start, run.end, run.as_of, run.invoices) == (
        PERIOD, date(2026, 7, 1), date(2026, 9, 30), as_of, len(eco.invoices))
    by_rule: dict[str, int] = {}
    for f in expected:
        by_rule[f.rule] = by_rule.get(f.rule, 0) + 1
    assert run.findings_by_rule == tuple(sorted(by_rule.items()))
    assert sum(n for _, n in run.grades_by_grade) == len(eco.enterprises)

    # Every planted case is found and stored; no clean enterprise is flagged.
    for rule, usccs in eco.planted.items():
        assert usccs <= {f.uscc for f in book.findings(period=PERIOD, rule=rule, limit=10_000)}, rule
    assert not {f.uscc for f in stored} & eco.clean

    # Findings cite records by log index: each cited entry is that record's commitment.
    for f in stored[:40]:
        for ref in f.records:
            doc = store.entry(FLOWS_LOG, ref.log_index).record()
            assert doc["type"] == f"evidence-ledger/flows/{ref.kind}/v1"
            key = {"invoice": "keyHex", "contract": "contractNo", "payment": "paymentRef",
                   "enterprise": "uscc"}.get(ref.kind)
            if key:
                assert doc[key] == ref.key


def test_findings_grades_and_the_summary_are_logged_reproducibly(book: FlowBook, store: LogStore,
                                                                 economy: Economy) -> None:
    _logged(book, economy)
    run = book.analyse(PERIOD, as_of=economy.end + timedelta(days=30))
    f = book.findings(period=PERIOD, rule="circular_invoicing", limit=1)[0]
    doc = store.entry(FLOWS_LOG, f.log_index).record()
    assert doc["type"] == "evidence-ledger/flows/finding/v1"
    assert (doc["id"], doc["rule"], doc["uscc"], doc["reason"], doc["period"]) == (f.id, f.rule, f.uscc, f.reason,
                                                                                  PERIOD)
    assert doc["records"] == [{"kind": r.kind, "key": r.key, "logIndex": r.log_index} for r in f.records]
    assert [tuple(p) for p in doc["thresholds"]] == list(f.thresholds)

    for g in book.grades(PERIOD)[:25]:
        entry = store.entry(FLOWS_LOG, g.log_index)
        gdoc = entry.record()
        assert entry.record_digest == canonical.record_digest(canonical.canonicalize(gdoc))
        assert (gdoc["type"], gdoc["grade"], gdoc["score"], gdoc["inspectionRatio"]) == (
            "evidence-ledger/flows/grade/v1", g.grade, g.score, repr(g.inspection_ratio))
        assert grade(inputs_from_json(gdoc["inputs"])) == replace(g, log_index=None)

    summary = store.entry(FLOWS_LOG, run.log_index).record()
    assert summary["type"] == "evidence-ledger/flows/analysis/v1"
    assert summary["findingsByRule"] == [list(p) for p in run.findings_by_rule]
    assert summary["asOf"] == run.as_of.isoformat() and summary["supersedes"] == []
    assert summary["policy"]["contagion_share"] == 0.7
    assert run.log_index == store.tree_size(FLOWS_LOG) - 1


def test_a_rerun_supersedes_the_previous_run_without_deleting_it(book: FlowBook, economy: Economy) -> None:
    _logged(book, economy)
    first = book.analyse(PERIOD, as_of=economy.end)  # honest payments not all due yet
    old = book.findings(period=PERIOD, limit=10_000)
    old_grades = book.grades(PERIOD)
    second = book.analyse(PERIOD, as_of=economy.end + timedelta(days=30))
    new = book.findings(period=PERIOD, limit=10_000)
    assert second.log_index > first.log_index
    assert not {f.id for f in old} & {f.id for f in new}
    assert book.finding(old[0].id) == old[0]  # kept, only no longer current
    assert all(first.log_index < g.log_index < second.log_index for g in book.grades(PERIOD))
    assert len(book.grades(PERIOD)) == len(old_grades)
    with book.engine.connect() as conn:
        runs = conn.execute(select(tables.runs.c.log_index, tables.runs.c.current, tables.runs.c.superseded_by)
                            .order_by(tables.runs.c.log_index)).all()
        kept = conn.execute(select(tables.findings.c.id).where(tables.findings.c.current.is_(False))).scalars().all()
    assert [(r.log_index, r.current) for r in runs] == [(first.log_index, False), (second.log_index, True)]
    assert runs[0].superseded_by is not None
    assert set(kept) == {f.id for f in old}


def test_finding_and_grade_queries(book: FlowBook, economy: Economy) -> None:
    _logged(book, economy)
    book.analyse(PERIOD, as_of=economy.end + timedelta(days=30))
    everything = book.findings(limit=10_000)
    assert everything == book.findings(period=PERIOD, limit=10_000)
    shell = next(iter(economy.planted["no_headcount"]))
    mine = book.findings(uscc=shell)
    assert mine and {f.uscc for f in mine} == {shell}
    assert book.findings(uscc_in=[shell]) == mine
    assert book.findings(uscc_in=[]) == []
    page = book.findings(limit=3, offset=2)
    assert page == everything[2:5]
    assert book.findings(period="2026-Q2") == []
    assert book.grade(shell, PERIOD).grade in ("C", "D")
    assert book.grades(PERIOD, uscc=shell) == [book.grade(shell, PERIOD)]
    with pytest.raises(NotFoundError) as e:
        book.grade(shell, "2026-Q2")
    assert str(e.value) == f"no grade of {shell} for 2026-Q2 (is the period analysed?)"
    with pytest.raises(NotFoundError) as e2:
        book.finding("0" * 32)
    assert str(e2.value) == f"no finding {'0' * 32!r}"
    with pytest.raises(InvalidRecordError) as e3:
        book.findings(limit=0)
    assert str(e3.value) == "limit: expected a positive limit, got 0"
    with pytest.raises(InvalidRecordError) as e4:
        book.findings(uscc="not-a-uscc")
    assert str(e4.value).startswith("uscc: expected an 18-character unified social credit code")


@pytest.mark.parametrize("scan_parties", [0, FlowBook.scan_parties], ids=["table-scans", "index-look-ups"])
def test_analyse_loads_what_judging_the_periods_invoices_needs(book: FlowBook, scan_parties: int) -> None:
    """February: two invoices among 1, 2 and 3. Payments are loaded when a party pays or is paid,
    or when they name one of the invoices (4 paying 5 for invoice b involves no party)."""
    book.scan_parties = scan_parties
    book.ingest([enterprise(1), enterprise(2), enterprise(3), enterprise(4), enterprise(5),
                 contract("C-1", buyer=2, seller=1, amount_fen=2_260_000),
                 contract("C-9", buyer=4, seller=3)])
    a = book.record_invoice(invoice(1, seller=1, buyer=2, contract_no="C-1", issued_on=date(2026, 2, 10)))
    b = book.record_invoice(invoice(2, seller=1, buyer=3, issued_on=date(2026, 2, 11)))
    book.record_invoice(invoice(3, seller=3, buyer=4, contract_no="C-9", issued_on=date(2026, 3, 2)))
    book.record_payment(payment("P-1", payer=4, payee=1, invoice_keys=(a.key_hex,)))  # a third party pays
    book.record_payment(payment("P-2", payer=4, payee=5, invoice_keys=(b.key_hex,)))  # outsiders only
    book.record_payment(payment("P-3", payer=4, payee=5))  # nothing to do with February
    run = book.analyse("2026-02", as_of=date(2026, 3, 31))
    assert run.invoices == 2
    rules = {(f.rule, f.records[0].key, f.records[-1].key) for f in book.findings(period="2026-02")}
    assert {r for r in rules if r[0] != "no_contract"} == {
        ("payment_not_from_buyer", a.key_hex, "P-1"), ("third_party_payment", a.key_hex, "P-1"),
        ("payment_not_from_buyer", b.key_hex, "P-2"), ("payment_not_to_seller", b.key_hex, "P-2"),
        ("third_party_payment", b.key_hex, "P-2"), ("no_real_supply", b.key_hex, "P-2")}
    assert ("no_contract", b.key_hex, b.key_hex) in rules
    assert not any(f.uscc == uscc(3) for f in book.findings(period="2026-02"))
    assert {g.uscc for g in book.grades("2026-02")} == {uscc(n) for n in range(1, 6)}
    assert isinstance(book.grade(uscc(4), "2026-02"), Grade)


def test_analyse_rejects_bad_arguments(book: FlowBook) -> None:
    with pytest.raises(InvalidRecordError) as e:
        book.analyse("2026-Q9")
    assert str(e.value) == "period: expected a period 'YYYY-MM', 'YYYY-Qn' or 'YYYY', got '2026-Q9'"
    with pytest.raises(InvalidRecordError) as e2:
        book.analyse("2026-01", as_of="2026-02-01")  # type: ignore[arg-type]
    assert str(e2.value) == "as_of: expected a date, got str 2026-02-01"


# -- referrals ----------------------------------------------------------------------------------

def test_referrals(book: FlowBook, store: LogStore, economy: Economy, clock) -> None:  # type: ignore[no-untyped-def]
    _logged(book, economy)
    book.analyse(PERIOD, as_of=economy.end + timedelta(days=30))
    cycle = book.findings(rule="circular_invoicing", limit=10)
    shell = next(iter(economy.planted["no_headcount"]))
    about_shell = book.findings(uscc=shell)
    ref = book.refer([f.id for f in about_shell] + [about_shell[0].id], referred_by="tax:li.wei",
                     note="shell company, no staff")
    assert (ref.uscc, ref.finding_ids, ref.referred_by, ref.referred_at) == (
        shell, tuple(f.id for f in about_shell), "tax:li.wei", clock.now)
    doc = store.entry(FLOWS_LOG, ref.log_index).record()
    assert doc == {"type": "evidence-ledger/flows/referral/v1", "id": ref.id, "uscc": shell,
                   "findingIds": list(ref.finding_ids), "findingLogIndexes": [f.log_index for f in about_shell],
                   "referredBy": "tax:li.wei", "note": "shell company, no staff",
                   "referredAt": clock.now.isoformat()}
    assert book.referrals() == [ref] and book.referrals(uscc=shell) == [ref]
    assert book.referrals(uscc=cycle[0].uscc) == []
    assert book.referred_usccs() == {shell}

    two = sorted({f.uscc for f in cycle})[:2]
    mixed = [next(f.id for f in cycle if f.uscc == u) for u in two]
    with pytest.raises(InvalidRecordError) as e:
        book.refer(mixed, referred_by="tax:li.wei", note="cycle")
    assert str(e.value) == f"finding_ids: expected findings about one enterprise, got findings about {two[0]}, {two[1]}"
    with pytest.raises(NotFoundError) as e2:
        book.refer([cycle[0].id, "f" * 32, "e" * 32], referred_by="tax:li.wei", note="x")
    assert str(e2.value) == f"no finding {'f' * 32!r} (and 1 more unknown)"
    with pytest.raises(InvalidRecordError) as e3:
        book.refer([], referred_by="tax:li.wei", note="x")
    assert str(e3.value) == "finding_ids: expected a non-empty list of finding ids, got []"
    with pytest.raises(InvalidRecordError) as e4:
        book.refer([cycle[0].id], referred_by=" ", note="x")
    assert str(e4.value) == "referred_by: expected non-empty text, got an empty string"
    assert len(book.referrals()) == 1


def test_a_run_that_cannot_be_stored_names_its_log_indexes(book: FlowBook, store: LogStore,
                                                           monkeypatch) -> None:  # type: ignore[no-untyped-def]
    book.ingest([enterprise(1), enterprise(2)])
    book.record_invoice(invoice(1, seller=1, buyer=2, issued_on=date(2026, 2, 3)))  # no contract, no payment
    before = store.tree_size(FLOWS_LOG)

    def broken(*a, **kw):  # type: ignore[no-untyped-def]
        raise OperationalError("INSERT", {}, Exception("disk I/O error"))

    monkeypatch.setattr(service, "insert", broken)
    with pytest.raises(FlowsError) as e:
        book.analyse("2026-02", as_of=date(2026, 3, 1))
    after = store.tree_size(FLOWS_LOG)
    assert after > before + 2  # findings, two grades and the summary were appended
    message = str(e.value)
    assert message.startswith("analysis run ") and f" of 2026-02 was logged at indexes {before}..{after - 1} of the " \
        "'flows' log but could not be stored (" in message
    assert message.endswith("); nothing else was changed")
    assert book.findings() == [] and book.grades("2026-02") == []
