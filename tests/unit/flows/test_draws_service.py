"""Verifiable random inspections through the service: commit (seed hidden), reveal, recompute."""

from __future__ import annotations

import json
from datetime import date

import pytest
from sqlalchemy import update

from evidence_ledger.flows import tables
from evidence_ledger.flows.draw import population_digest, seed_commitment, verify_draw
from evidence_ledger.flows.errors import DrawStateError, InvalidRecordError, NotFoundError
from evidence_ledger.flows.service import FLOWS_LOG, FlowBook
from evidence_ledger.ledger.log import LogStore

from .conftest import contract, enterprise, invoice, uscc

PERIOD = "2026-02"
INSPECTORS = ["insp-wang", "insp-zhao", "insp-chen", "insp-liu"]


@pytest.fixture
def graded(book: FlowBook) -> FlowBook:
    """Twelve enterprises graded for February: 1 sells to 2 without a contract (hits for 1)."""
    book.ingest([enterprise(n) for n in range(1, 13)] + [contract("C-1", buyer=4, seller=3)])
    book.record_invoice(invoice(1, seller=1, buyer=2, issued_on=date(2026, 2, 3)))
    book.record_invoice(invoice(2, seller=3, buyer=4, contract_no="C-1", issued_on=date(2026, 2, 4)))
    book.analyse(PERIOD, as_of=date(2026, 3, 1))
    return book


def _seed_in_db(book: FlowBook, draw_id: str) -> str:
    with book.engine.connect() as conn:
        return conn.execute(tables.draws.select().where(tables.draws.c.id == draw_id)).one().seed_hex


def test_commit_then_reveal_end_to_end(graded: FlowBook, store: LogStore, clock) -> None:  # type: ignore[no-untyped-def]
    book = graded
    before = store.tree_size(FLOWS_LOG)
    d = book.commit_draw(PERIOD, INSPECTORS, per_enterprise=2)
    assert (d.period, d.commit_log_index, d.committed_at) == (PERIOD, before, clock.now)
    assert (d.seed_hex, d.reveal_log_index, d.revealed_at, d.selections) == (None, None, None, ())
    assert book.draw(d.id) == d and book.draws(period=PERIOD) == [d]

    population, inspectors, ratios, per = book.draw_population(d.id)
    assert population == [(g.uscc, g.grade) for g in book.grades(PERIOD)]
    assert (inspectors, per) == (INSPECTORS, 2)
    assert ratios == {g.grade: g.inspection_ratio for g in book.grades(PERIOD)}
    assert d.population_hex == population_digest(population, inspectors, ratios, per)

    # The commitment is logged before anything is drawn, and the seed is nowhere but the row.
    commit = store.entry(FLOWS_LOG, d.commit_log_index).record()
    assert commit["type"] == "evidence-ledger/flows/draw-commitment/v1"
    assert (commit["drawId"], commit["commitmentHex"], commit["populationHex"], commit["populationSize"]) == (
        d.id, d.commitment_hex, d.population_hex, 12)
    seed_hex = _seed_in_db(book, d.id)
    assert seed_commitment(bytes.fromhex(seed_hex)) == d.commitment_hex
    assert store.tree_size(FLOWS_LOG) == before + 1
    assert all(seed_hex not in store.entry(FLOWS_LOG, i).record_canonical.decode()  # type: ignore[union-attr]
               for i in range(store.tree_size(FLOWS_LOG)))

    clock.advance(hours=1)
    r = book.reveal_draw(d.id)
    assert (r.seed_hex, r.reveal_log_index, r.revealed_at) == (seed_hex, before + 1, clock.now)
    assert r == book.draw(d.id)
    assert verify_draw(r.commitment_hex, r.seed_hex, population, inspectors, ratios, per, r.selections,
                       population_hex=r.population_hex) == []
    # Grade D is always drawn: enterprise 1 invoiced with neither contract nor payment.
    assert book.grade(uscc(1), PERIOD).grade == "D"
    assert {s.uscc for s in r.selections} >= {g.uscc for g in book.grades(PERIOD) if g.grade == "D"} >= {uscc(1)}
    assert all(len(s.inspectors) == 2 and set(s.inspectors) <= set(INSPECTORS) for s in r.selections)

    reveal = store.entry(FLOWS_LOG, r.reveal_log_index).record()  # type: ignore[arg-type]
    assert (reveal["type"], reveal["seedHex"], reveal["commitLogIndex"], reveal["selections"]) == (
        "evidence-ledger/flows/draw-reveal/v1", seed_hex, d.commit_log_index, len(r.selections))
    logged = [store.entry(FLOWS_LOG, r.reveal_log_index + 1 + n).record() for n in range(len(r.selections))]  # type: ignore[operator]
    assert [(x["uscc"], x["grade"], x["ticketHex"], tuple(x["inspectors"])) for x in logged] == [
        (s.uscc, s.grade, s.ticket_hex, s.inspectors) for s in r.selections]

    with pytest.raises(DrawStateError) as e:
        book.reveal_draw(d.id)
    assert str(e.value) == f"draw {d.id} was already revealed, at index {r.reveal_log_index} of the 'flows' log"


def test_reveal_refuses_without_the_commitment_in_the_log(graded: FlowBook, store: LogStore) -> None:
    book = graded
    d = book.commit_draw(PERIOD, INSPECTORS)
    size = store.tree_size(FLOWS_LOG)
    with book.engine.begin() as conn:
        conn.execute(update(tables.draws).where(tables.draws.c.id == d.id).values(commit_log_index=size + 50))
    with pytest.raises(DrawStateError) as e:
        book.reveal_draw(d.id)
    assert str(e.value).startswith(f"the commitment of draw {d.id} is not in the 'flows' log at index {size + 50} (")
    assert str(e.value).endswith("); the seed stays secret")
    # An index that holds some other record is no commitment either.
    with book.engine.begin() as conn:
        conn.execute(update(tables.draws).where(tables.draws.c.id == d.id).values(commit_log_index=0))
    with pytest.raises(DrawStateError) as e2:
        book.reveal_draw(d.id)
    assert str(e2.value) == f"index 0 of the 'flows' log is not the commitment of draw {d.id}; the seed stays secret"
    assert store.tree_size(FLOWS_LOG) == size and book.draw(d.id).seed_hex is None


def test_reveal_refuses_a_seed_that_does_not_match(graded: FlowBook) -> None:
    book = graded
    d = book.commit_draw(PERIOD, INSPECTORS)
    with book.engine.begin() as conn:
        conn.execute(update(tables.draws).where(tables.draws.c.id == d.id).values(seed_hex="00" * 32))
    with pytest.raises(DrawStateError) as e:
        book.reveal_draw(d.id)
    assert str(e.value) == (f"the revealed seed commits to {seed_commitment(bytes(32))}, but the recorded "
                            f"commitment is {d.commitment_hex}")


def test_draws_are_listed_and_checked(graded: FlowBook) -> None:
    book = graded
    a = book.commit_draw(PERIOD, INSPECTORS, per_enterprise=1)
    b = book.reveal_draw(book.commit_draw(PERIOD, INSPECTORS[:2]).id)
    assert [x.id for x in book.draws()] == [a.id, b.id]
    assert book.draws(period="2026-03") == []
    assert book.draws(period=PERIOD)[0].seed_hex is None and book.draws(period=PERIOD)[1].seed_hex is not None
    assert a.commitment_hex != b.commitment_hex  # a fresh seed each time
    assert json.loads(json.dumps(book.draw_population(a.id)[2])) == book.draw_population(b.id)[2]


def test_commit_draw_errors(graded: FlowBook) -> None:
    book = graded
    with pytest.raises(NotFoundError) as e:
        book.commit_draw("2026-03", INSPECTORS)
    assert str(e.value) == "no grades for 2026-03 to draw from (analyse the period first)"
    with pytest.raises(InvalidRecordError) as e2:
        book.commit_draw(PERIOD, INSPECTORS[:1], per_enterprise=2)
    assert str(e2.value) == "inspectors: expected at least 2 inspectors, got 1"
    with pytest.raises(InvalidRecordError) as e3:
        book.commit_draw(PERIOD, ["a", "a"])
    assert str(e3.value) == "inspectors: expected each inspector once, got duplicates"
    with pytest.raises(InvalidRecordError) as e4:
        book.commit_draw(PERIOD, "insp-wang")
    assert str(e4.value) == "inspectors: expected a list of inspector ids, got str"
    with pytest.raises(NotFoundError) as e5:
        book.draw("0" * 32)
    assert str(e5.value) == f"no draw {'0' * 32!r}"
    with pytest.raises(NotFoundError):
        book.reveal_draw("0" * 32)
    assert book.draws() == []


def test_with_a_beacon_the_reveal_waits_for_the_anchor_and_mixes_its_block_hash(
        graded: FlowBook, store: LogStore) -> None:
    anchors: dict[int, tuple[int, str]] = {}
    book = FlowBook(graded.engine, store, clock=graded._clock,
                    beacon=lambda index: next((a for size, a in anchors.items() if size > index), None))
    d = book.commit_draw(PERIOD, INSPECTORS, per_enterprise=1)
    with pytest.raises(DrawStateError) as e:
        book.reveal_draw(d.id)
    assert str(e.value) == (f"the commitment of draw {d.id} (index {d.commit_log_index} of the 'flows' log) is not "
                            "anchored on the chain yet; the anchoring block's hash goes into the draw, so reveal "
                            "once it is anchored")
    assert book.draw(d.id).seed_hex is None  # still secret
    block_hash = "0x" + "5e" * 32
    anchors[d.commit_log_index + 1] = (4242, block_hash)
    r = book.reveal_draw(d.id)
    assert (r.beacon_block_number, r.beacon_block_hash_hex) == (4242, "5e" * 32)
    population, inspectors, ratios, per = book.draw_population(d.id)
    assert verify_draw(r.commitment_hex, r.seed_hex, population, inspectors, ratios, per, r.selections,
                       population_hex=r.population_hex, beacon_hex=r.beacon_block_hash_hex) == []
    reveal = store.entry(FLOWS_LOG, r.reveal_log_index).record()
    assert (reveal["beaconBlockNumber"], reveal["beaconBlockHashHex"]) == (4242, "5e" * 32)
