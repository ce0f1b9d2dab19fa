"""Credit grades: the documented scoring, ceilings, inputs from records, and reproduction from JSON."""

from __future__ import annotations

import json
from datetime import date

import pytest

from evidence_ledger.flows.errors import InvalidRecordError
from evidence_ledger.flows.grading import (
    GRADING_VERSION,
    INSPECTION_RATIOS,
    explain,
    grade,
    grade_all,
    grade_from_json,
    grade_inputs,
    grade_inputs_to_json,
    grade_to_json,
    inputs_from_json,
)
from evidence_ledger.flows.identifiers import invoice_key, make_uscc
from evidence_ledger.flows.records import Enterprise, Finding, Grade, GradeInputs, Invoice

U = [make_uscc(f"91610100{n:09d}") for n in range(6)]


def inputs(*hits: tuple[str, int], uscc: str = U[0]) -> GradeInputs:
    return GradeInputs(uscc, "2026-Q3", 10, 8, 5_000_000, 4_000_000, tuple(sorted(hits)))


def scored(*hits: tuple[str, int]) -> tuple[str, int]:
    g = grade(inputs(*hits))
    return g.grade, g.score


def test_inspection_ratios() -> None:
    assert INSPECTION_RATIOS == {"A": 0.03, "B": 0.05, "C": 0.20, "D": 1.0}
    assert INSPECTION_RATIOS["A"] < 0.05 <= INSPECTION_RATIOS["B"]
    assert INSPECTION_RATIOS["C"] >= 0.20 and INSPECTION_RATIOS["D"] == 1.0


def test_a_clean_record_is_a() -> None:
    g = grade(inputs())
    assert g == Grade(U[0], "2026-Q3", "A", 100, 0.03, inputs())


def test_deductions_and_caps() -> None:
    assert scored(("payment_overdue", 1)) == ("A", 98)
    assert scored(("payment_overdue", 5)) == ("A", 90)  # 5 x 2 = 10, the cap
    assert scored(("payment_overdue", 50)) == ("A", 90)  # still capped
    assert scored(("payment_overdue", 5), ("amount_mismatch", 1)) == ("B", 87)
    assert scored(("no_headcount", 1)) == ("B", 75)
    assert scored(("no_headcount", 1), ("payment_overdue", 3)) == ("C", 69)
    assert scored(("no_headcount", 1), ("new_and_sudden", 1)) == ("C", 55)
    assert scored(("no_headcount", 1), ("new_and_sudden", 1), ("threshold_clustering", 1)) == ("D", 35)
    assert scored(("some_future_rule", 7)) == ("A", 90)  # the default weight: 5 per hit, at most 10


def test_grade_boundaries() -> None:
    assert scored(("no_contract", 2)) == ("A", 90)
    assert scored(("no_contract", 2), ("payment_overdue", 1)) == ("B", 88)
    assert scored(("no_headcount", 1), ("payment_overdue", 2)) == ("B", 71)
    assert scored(("no_headcount", 1), ("amount_mismatch", 2)) == ("C", 69)
    assert scored(("no_headcount", 1), ("new_and_sudden", 1), ("payment_overdue", 7)) == ("C", 45)
    assert scored(("no_headcount", 1), ("new_and_sudden", 1), ("payment_overdue", 7), ("amount_mismatch", 2)) \
        == ("D", 39)


def test_serious_fraud_caps_the_grade() -> None:
    assert scored(("circular_invoicing", 1)) == ("D", 60)
    assert scored(("no_real_supply", 1)) == ("D", 85)
    assert scored(("third_party_payment", 1)) == ("C", 90)
    assert scored(("third_party_payment", 2)) == ("C", 80)
    assert scored(("third_party_payment", 3)) == ("D", 70)
    assert scored(("contagion", 1)) == ("C", 80)
    # A ceiling never raises a grade.
    assert scored(("contagion", 2), ("no_headcount", 1), ("new_and_sudden", 1)) == ("D", 15)


def test_score_floor_is_zero() -> None:
    hits = [(r, 100) for r in ("circular_invoicing", "no_real_supply", "contagion", "third_party_payment")]
    assert scored(*hits) == ("D", 0)


def test_explanation() -> None:
    assert explain(inputs(("payment_overdue", 6), ("third_party_payment", 1))) == (
        "payment_overdue: 6 hit(s) x 2 = 12, capped at 10: -10",
        "third_party_payment: 1 hit(s) x 10 = 10, capped at 40: -10",
        "score 80 -> B (A >= 90, B >= 70, C >= 40, D below)",
        "third_party_payment: 1 hit(s) >= 1 caps the grade at C",
    )


def inv(n: int, seller: int, buyer: int, net: int) -> Invoice:
    number = f"{n:020d}"
    return Invoice(invoice_key(U[seller], "", number), U[seller], U[buyer], "", number, net, net * 13 // 100,
                   date(2026, 7, 1), None, "goods")


def test_grade_inputs_from_records() -> None:
    ents = [Enterprise(u, f"E{n}", date(2010, 1, 1)) for n, u in enumerate(U[:4])]
    invs = [inv(1, 0, 1, 1_000_000), inv(2, 0, 2, 2_000_000), inv(3, 1, 0, 500_000), inv(4, 5, 0, 100)]
    findings = [
        Finding("payment_overdue", U[0], "r", ()), Finding("payment_overdue", U[0], "r", ()),
        Finding("contagion", U[0], "r", ()), Finding("no_contract", U[1], "r", ()),
        Finding("no_contract", U[5], "r", ()),  # not among the enterprises graded
    ]
    got = grade_inputs(ents, invs, findings, period="2026-Q3")
    assert got == [
        GradeInputs(U[0], "2026-Q3", 2, 2, 3_390_000, 565_000 + 113, (("contagion", 1), ("payment_overdue", 2))),
        GradeInputs(U[1], "2026-Q3", 1, 1, 565_000, 1_130_000, (("no_contract", 1),)),
        GradeInputs(U[2], "2026-Q3", 0, 1, 0, 2_260_000, ()),
        GradeInputs(U[3], "2026-Q3", 0, 0, 0, 0, ()),
    ]
    grades = grade_all(list(reversed(ents)), invs, findings, period="2026-Q3")
    assert [(g.uscc, g.grade, g.score) for g in grades] == [
        (U[0], "C", 76), (U[1], "A", 95), (U[2], "A", 100), (U[3], "A", 100)]
    with pytest.raises(InvalidRecordError) as e:
        grade_inputs(ents, invs, findings, period="")
    assert str(e.value) == "period: expected a period label such as '2026-Q3', got ''"


def test_json_round_trip_reproduces_the_grade() -> None:
    g = grade(inputs(("contagion", 1), ("payment_overdue", 3)))
    d = json.loads(json.dumps(grade_to_json(g)))  # through real JSON text
    assert d == {
        "version": GRADING_VERSION, "uscc": U[0], "period": "2026-Q3", "grade": "C", "score": 74,
        "inspection_ratio": 0.2,
        "inputs": {"version": GRADING_VERSION, "uscc": U[0], "period": "2026-Q3", "invoices_out": 10,
                   "invoices_in": 8, "amount_out_fen": 5_000_000, "amount_in_fen": 4_000_000,
                   "rule_hits": {"contagion": 1, "payment_overdue": 3}},
        "explanation": list(explain(g.inputs)),
    }
    assert grade(inputs_from_json(d["inputs"])) == g
    assert grade_from_json(d) == g
    assert grade_inputs_to_json(g.inputs) == d["inputs"]


def test_a_tampered_grade_does_not_reproduce() -> None:
    d = grade_to_json(grade(inputs(("circular_invoicing", 1))))
    d["grade"] = "B"
    with pytest.raises(InvalidRecordError) as e:
        grade_from_json(d)
    assert str(e.value) == "grade: the inputs give 'D', the stored grade says 'B'"
    d = grade_to_json(grade(inputs(("circular_invoicing", 1))))
    d["inputs"]["rule_hits"] = {}  # hits quietly dropped
    with pytest.raises(InvalidRecordError) as e:
        grade_from_json(d)
    assert str(e.value) == "grade: the inputs give 'A', the stored grade says 'D'"


def test_bad_json_inputs() -> None:
    good = grade_inputs_to_json(inputs())
    with pytest.raises(InvalidRecordError) as e:
        inputs_from_json({**good, "version": "flows-grading/0"})
    assert str(e.value) == f"version: expected version {GRADING_VERSION!r}, got 'flows-grading/0'"
    with pytest.raises(InvalidRecordError) as e:
        inputs_from_json({k: v for k, v in good.items() if k != "invoices_in"})
    assert "missing invoices_in" in str(e.value)
    with pytest.raises(InvalidRecordError) as e:
        inputs_from_json({**good, "amount_out_fen": -1})
    assert str(e.value) == "amount_out_fen: expected a whole number >= 0, got -1"
    with pytest.raises(InvalidRecordError) as e:
        inputs_from_json({**good, "rule_hits": {"contagion": 0}})
    assert str(e.value) == "rule_hits: expected (rule name, hits >= 1), got ('contagion', 0)"
    with pytest.raises(InvalidRecordError) as e:
        inputs_from_json({**good, "rule_hits": [["contagion", 1]]})
    assert str(e.value) == "rule_hits: expected an object of rule -> hits, got list"


def test_unsorted_rule_hits_are_refused() -> None:
    bad = GradeInputs(U[0], "2026-Q3", 0, 0, 0, 0, (("payment_overdue", 1), ("contagion", 1)))
    with pytest.raises(InvalidRecordError) as e:
        grade(bad)
    assert str(e.value).startswith("rule_hits: expected rule hits sorted by rule, each rule once")
