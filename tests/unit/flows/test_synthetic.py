"""The synthetic economy: well-formed and deterministic; reconciliation + screening + grading find
every planted case with the right rule and flag no clean enterprise."""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta

import pytest

from evidence_ledger.flows.errors import InvalidRecordError
from evidence_ledger.flows.grading import grade, grade_all, grade_to_json, inputs_from_json
from evidence_ledger.flows.identifiers import invoice_key, validate_invoice_number, validate_uscc
from evidence_ledger.flows.reconcile import link, reconcile
from evidence_ledger.flows.records import Finding, Grade
from evidence_ledger.flows.screening import find_cycles, screen
from evidence_ledger.flows.synthetic import PLANTED_INVOICES_PER_UNIT, UNIT_SIZE, Economy, generate_economy

PLANTED_RULES = {"circular_invoicing", "third_party_payment", "payment_not_from_buyer", "payment_not_to_seller",
                 "no_headcount", "new_and_sudden", "no_real_supply", "no_contract", "contagion",
                 "threshold_clustering"}


@pytest.fixture(scope="module")
def eco() -> Economy:
    return generate_economy(enterprises=300, invoices=5000)


def analyse(e: Economy, as_of_days: int = 31) -> tuple[list[Finding], list[Grade]]:
    as_of = e.end + timedelta(days=as_of_days)
    links = link(e.invoices, e.contracts, e.payments, as_of=as_of)
    found = reconcile(e.invoices, e.contracts, e.payments, as_of=as_of, links=links)
    found += screen(e.enterprises, e.snapshots, e.contracts, e.payments, e.invoices, as_of=as_of,
                    reconciliation=found, links=links)
    return found, grade_all(e.enterprises, e.invoices, found, period="2026-Q3")


def test_shape(eco: Economy) -> None:
    assert len(eco.enterprises) == 300
    assert len(eco.invoices) == 5000
    assert len({e.uscc for e in eco.enterprises}) == 300
    for e in eco.enterprises:
        assert validate_uscc(e.uscc) == e.uscc
        assert e.region == e.uscc[2:8] and e.log_index is None
    assert len({i.key_hex for i in eco.invoices}) == 5000
    assert len({i.number for i in eco.invoices}) == 5000
    for i in eco.invoices:
        assert i.key_hex == invoice_key(i.seller_uscc, i.code, i.number)
        assert validate_invoice_number(i.number) == i.number and i.code == ""
        assert eco.start <= i.issued_on <= eco.end
        assert i.amount_fen > 0 and i.tax_fen == i.amount_fen * 13 // 100 and i.log_index is None
    assert len({c.contract_no for c in eco.contracts}) == len(eco.contracts)
    assert len({p.payment_ref for p in eco.payments}) == len(eco.payments)
    assert (eco.end - eco.start).days == 91
    # Snapshots for every enterprise and month of the period; only shells have nobody insured.
    assert Counter(s.period for s in eco.snapshots) == {"2026-07": 300, "2026-08": 300, "2026-09": 300}
    assert {s.uscc for s in eco.snapshots if s.insured == 0} == eco.planted["no_headcount"]


def test_planted_and_clean(eco: Economy) -> None:
    assert set(eco.planted) == PLANTED_RULES
    assert len(eco.planted["circular_invoicing"]) == 3
    for rule in PLANTED_RULES - {"circular_invoicing"}:
        assert len(eco.planted[rule]) == 1, rule
    involved = set().union(*eco.planted.values())
    assert not involved & eco.clean
    assert len(eco.clean) == 300 - UNIT_SIZE


def test_deterministic_for_a_seed(eco: Economy) -> None:
    again = generate_economy(enterprises=300, invoices=5000)
    assert again.invoices == eco.invoices
    assert again.payments == eco.payments
    assert again.contracts == eco.contracts
    assert again.enterprises == eco.enterprises
    assert again.planted == eco.planted and again.clean == eco.clean
    other = generate_economy(enterprises=300, invoices=5000, seed=7)
    assert other.invoices != eco.invoices


def test_every_planted_case_is_found_and_no_clean_enterprise_is_flagged(eco: Economy) -> None:
    found, grades = analyse(eco)
    hits = {(f.rule, f.uscc) for f in found}
    for rule, who in eco.planted.items():
        for u in who:
            assert (rule, u) in hits, (rule, u)
    flagged = {f.uscc for f in found}
    assert not flagged & eco.clean, [f.reason for f in found if f.uscc in eco.clean]
    by = {g.uscc: g for g in grades}
    assert {by[u].grade for u in eco.clean} <= {"A", "B"}
    for u in eco.planted["circular_invoicing"] | eco.planted["no_real_supply"]:
        assert by[u].grade == "D"
    for u in eco.planted["third_party_payment"] | eco.planted["contagion"] | eco.planted["no_headcount"]:
        assert by[u].grade == "C"
    # The reasons name the right records: the cycle's three invoices, among its members.
    cyc = [f for f in found if f.rule == "circular_invoicing"]
    assert len(cyc) == 3
    members = eco.planted["circular_invoicing"]
    keys = {r.key for r in cyc[0].records}
    assert {(i.seller_uscc, i.buyer_uscc) for i in eco.invoices if i.key_hex in keys} <= {
        (a, b) for a in members for b in members}
    assert dict(cyc[0].measured)["span_days"] < 30


def test_grades_reproduce_from_their_json(eco: Economy) -> None:
    _, grades = analyse(eco)
    for g in grades:
        d = json.loads(json.dumps(grade_to_json(g)))
        assert grade(inputs_from_json(d["inputs"])) == g


@pytest.mark.parametrize("as_of_days", [-30, 0, 10, 45, 120])
def test_no_false_alarms_whatever_the_day_of_judgement(eco: Economy, as_of_days: int) -> None:
    # Judged before every payment is made, many honest invoices are not paid yet (nor due).
    found, _ = analyse(eco, as_of_days=as_of_days)
    assert not {f.uscc for f in found} & eco.clean
    if as_of_days <= 10:
        assert [p for p in eco.payments if p.paid_on > eco.end + timedelta(days=as_of_days)]  # not vacuous


def test_honest_trade_has_no_cycles(eco: Economy) -> None:
    cycles = find_cycles(eco.invoices)
    assert [set(c.members) for c in cycles] == [set(eco.planted["circular_invoicing"])]


def test_honest_amounts_are_not_clustered(eco: Economy) -> None:
    clean_invoices = [i for i in eco.invoices if i.seller_uscc in eco.clean]
    under = sum(1 for i in clean_invoices if 9_500_000 <= i.amount_fen < 10_000_000)
    assert under / len(clean_invoices) < 0.05
    assert len({i.amount_fen for i in clean_invoices}) > 0.9 * len(clean_invoices)


def test_planted_units_scale_with_enterprises() -> None:
    e = generate_economy(enterprises=2000, invoices=8000, seed=11)
    assert len(e.invoices) == 8000
    assert len(e.planted["circular_invoicing"]) == 6
    assert len(e.clean) == 2000 - 2 * UNIT_SIZE
    found, _ = analyse(e)
    hits = {(f.rule, f.uscc) for f in found}
    assert all((rule, u) in hits for rule, who in e.planted.items() for u in who)
    assert not {f.uscc for f in found} & e.clean


def test_bad_sizes() -> None:
    with pytest.raises(InvalidRecordError) as err:
        generate_economy(enterprises=10, invoices=5000)
    assert str(err.value) == "enterprises: expected at least 60 enterprises, got 10"
    with pytest.raises(InvalidRecordError) as err:
        generate_economy(enterprises=300, invoices=300)
    assert str(err.value) == (f"invoices: expected at least {PLANTED_INVOICES_PER_UNIT + 300} invoices for 300 "
                              f"enterprises, got 300")
    with pytest.raises(InvalidRecordError) as err:
        generate_economy(enterprises=300, invoices=5000, days=30)
    assert str(err.value) == "days: expected a period of at least 31 days, got 30"
