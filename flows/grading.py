"""Credit grades A-D from an enterprise's rule hits, reproducible from the stored inputs.

Scoring (version :data:`GRADING_VERSION`; changing any number below means a new version):

1. Start at 100. For each rule hit in the period, deduct the rule's weight per hit, at most the
   rule's cap (:data:`RULE_WEIGHTS`; a rule not listed costs :data:`DEFAULT_WEIGHT`). The score
   does not go below 0.
2. Grade by score: A >= 90, B >= 70, C >= 40, D below (:data:`GRADE_FLOORS`).
3. Serious fraud caps the grade whatever the score (:data:`GRADE_CEILINGS`): any circular
   invoicing or invoice without real supply -> D (falsely issued invoices); three or more invoices
   paid through third parties -> D, one or two -> at most C; any contagion -> at most C.

The inspection ratio is the grade's share in :data:`INSPECTION_RATIOS`: A 3% (under 5%), B 5%,
C 20%, D every one. Reconciliation and shell-sign warnings only lower the score, so a single late
payment leaves an enterprise at A (98) and a shell company showing two signs lands at C.

:func:`grade_inputs_to_json` / :func:`grade_to_json` give the plain JSON appended to the log;
``grade(inputs_from_json(d))`` reproduces the grade, and :func:`grade_from_json` checks a stored one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .errors import InvalidRecordError
from .records import Enterprise, Finding, Grade, GradeInputs, Invoice

__all__ = [
    "GRADING_VERSION",
    "INSPECTION_RATIOS",
    "GRADES",
    "GRADE_FLOORS",
    "RULE_WEIGHTS",
    "DEFAULT_WEIGHT",
    "GRADE_CEILINGS",
    "grade_inputs",
    "grade",
    "grade_all",
    "explain",
    "grade_inputs_to_json",
    "inputs_from_json",
    "grade_to_json",
    "grade_from_json",
]

GRADING_VERSION = "flows-grading/1"
GRADES = ("A", "B", "C", "D")
INSPECTION_RATIOS: Mapping[str, float] = {"A": 0.03, "B": 0.05, "C": 0.20, "D": 1.0}
GRADE_FLOORS = (("A", 90), ("B", 70), ("C", 40))  # the lowest score of each grade; D below
# rule -> (points per hit, most points the rule can cost)
RULE_WEIGHTS: Mapping[str, tuple[int, int]] = {
    # reconciliation
    "no_contract": (5, 20),
    "payment_not_from_buyer": (5, 15),
    "payment_not_to_seller": (5, 15),
    "amount_mismatch": (3, 15),
    "exceeds_contract": (5, 15),
    "payment_overdue": (2, 10),
    # fraud screening
    "no_real_supply": (15, 45),
    "third_party_payment": (10, 40),
    "circular_invoicing": (40, 60),
    "contagion": (20, 40),
    "no_headcount": (25, 25),
    "new_and_sudden": (20, 20),
    "threshold_clustering": (20, 20),
}
DEFAULT_WEIGHT = (5, 10)
# (rule, hits at least, best grade allowed)
GRADE_CEILINGS = (
    ("circular_invoicing", 1, "D"),
    ("no_real_supply", 1, "D"),
    ("third_party_payment", 3, "D"),
    ("third_party_payment", 1, "C"),
    ("contagion", 1, "C"),
)


def grade_inputs(enterprises: Iterable[Enterprise], invoices: Iterable[Invoice], findings: Iterable[Finding],
                 *, period: str) -> list[GradeInputs]:
    """One :class:`GradeInputs` per enterprise (sorted by USCC): its invoices in and out among
    ``invoices`` (the period's) and its findings counted per rule."""
    if not isinstance(period, str) or not period:
        raise InvalidRecordError(f"expected a period label such as '2026-Q3', got {period!r}", "period")
    usccs = sorted({e.uscc for e in enterprises})
    n_out = dict.fromkeys(usccs, 0)
    n_in = dict.fromkeys(usccs, 0)
    fen_out = dict.fromkeys(usccs, 0)
    fen_in = dict.fromkeys(usccs, 0)
    for inv in invoices:
        total = inv.amount_fen + inv.tax_fen
        s, b = inv.seller_uscc, inv.buyer_uscc
        if s in n_out:
            n_out[s] += 1
            fen_out[s] += total
        if b in n_in:
            n_in[b] += 1
            fen_in[b] += total
    hits: dict[str, dict[str, int]] = {}
    for f in findings:
        if f.uscc in n_out:
            h = hits.setdefault(f.uscc, {})
            h[f.rule] = h.get(f.rule, 0) + 1
    return [
        GradeInputs(uscc=u, period=period, invoices_out=n_out[u], invoices_in=n_in[u],
                    amount_out_fen=fen_out[u], amount_in_fen=fen_in[u],
                    rule_hits=tuple(sorted(hits.get(u, {}).items())))
        for u in usccs
    ]


def _check(inputs: GradeInputs) -> None:
    if not isinstance(inputs, GradeInputs):
        raise InvalidRecordError(f"expected GradeInputs, got {type(inputs).__name__}", "inputs")
    for name in ("invoices_out", "invoices_in", "amount_out_fen", "amount_in_fen"):
        v = getattr(inputs, name)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise InvalidRecordError(f"expected a whole number >= 0, got {v!r}", name)
    rules = [r for r, _ in inputs.rule_hits]
    if rules != sorted(set(rules)):
        raise InvalidRecordError(f"expected rule hits sorted by rule, each rule once, got {inputs.rule_hits!r}",
                                 "rule_hits")
    for r, n in inputs.rule_hits:
        if not isinstance(r, str) or not r or not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise InvalidRecordError(f"expected (rule name, hits >= 1), got {(r, n)!r}", "rule_hits")


def _score_and_grade(inputs: GradeInputs) -> tuple[int, str, list[str]]:
    why: list[str] = []
    score = 100
    for rule, n in inputs.rule_hits:
        per_hit, cap = RULE_WEIGHTS.get(rule, DEFAULT_WEIGHT)
        cost = min(per_hit * n, cap)
        score -= cost
        why.append(f"{rule}: {n} hit(s) x {per_hit} = {per_hit * n}, capped at {cap}: -{cost}")
    score = max(score, 0)
    g = next((name for name, floor in GRADE_FLOORS if score >= floor), "D")
    why.append(f"score {score} -> {g} (A >= 90, B >= 70, C >= 40, D below)")
    hits = dict(inputs.rule_hits)
    for rule, at_least, ceiling in GRADE_CEILINGS:
        if hits.get(rule, 0) >= at_least and GRADES.index(ceiling) > GRADES.index(g):
            why.append(f"{rule}: {hits[rule]} hit(s) >= {at_least} caps the grade at {ceiling}")
            g = ceiling
    return score, g, why


def grade(inputs: GradeInputs) -> Grade:
    """The grade, score and inspection ratio for ``inputs`` (see the module docstring)."""
    _check(inputs)
    score, g, _ = _score_and_grade(inputs)
    return Grade(uscc=inputs.uscc, period=inputs.period, grade=g, score=score,
                 inspection_ratio=INSPECTION_RATIOS[g], inputs=inputs)


def explain(inputs: GradeInputs) -> tuple[str, ...]:
    """How the grade was reached, one line per deduction and ceiling (for appeals)."""
    _check(inputs)
    return tuple(_score_and_grade(inputs)[2])


def grade_all(enterprises: Iterable[Enterprise], invoices: Iterable[Invoice], findings: Iterable[Finding],
              *, period: str) -> list[Grade]:
    """Grade every enterprise (sorted by USCC)."""
    return [grade(i) for i in grade_inputs(enterprises, invoices, findings, period=period)]


def grade_inputs_to_json(inputs: GradeInputs) -> dict[str, Any]:
    _check(inputs)
    return {
        "version": GRADING_VERSION,
        "uscc": inputs.uscc,
        "period": inputs.period,
        "invoices_out": inputs.invoices_out,
        "invoices_in": inputs.invoices_in,
        "amount_out_fen": inputs.amount_out_fen,
        "amount_in_fen": inputs.amount_in_fen,
        "rule_hits": {r: n for r, n in inputs.rule_hits},
    }


def inputs_from_json(d: Mapping[str, Any]) -> GradeInputs:
    """The :class:`GradeInputs` that :func:`grade_inputs_to_json` wrote."""
    if not isinstance(d, Mapping):
        raise InvalidRecordError(f"expected a JSON object, got {type(d).__name__}")
    if d.get("version") != GRADING_VERSION:
        raise InvalidRecordError(f"expected version {GRADING_VERSION!r}, got {d.get('version')!r}", "version")
    fields = ("uscc", "period", "invoices_out", "invoices_in", "amount_out_fen", "amount_in_fen", "rule_hits")
    missing = [f for f in fields if f not in d]
    if missing:
        raise InvalidRecordError(f"expected fields {', '.join(fields)}; missing {', '.join(missing)}")
    hits = d["rule_hits"]
    if not isinstance(hits, Mapping):
        raise InvalidRecordError(f"expected an object of rule -> hits, got {type(hits).__name__}", "rule_hits")
    for name in ("uscc", "period"):
        if not isinstance(d[name], str):
            raise InvalidRecordError(f"expected a string, got {d[name]!r}", name)
    inputs = GradeInputs(uscc=d["uscc"], period=d["period"], invoices_out=d["invoices_out"],
                         invoices_in=d["invoices_in"], amount_out_fen=d["amount_out_fen"],
                         amount_in_fen=d["amount_in_fen"], rule_hits=tuple(sorted(hits.items())))
    _check(inputs)
    return inputs


def grade_to_json(g: Grade) -> dict[str, Any]:
    return {
        "version": GRADING_VERSION,
        "uscc": g.uscc,
        "period": g.period,
        "grade": g.grade,
        "score": g.score,
        "inspection_ratio": g.inspection_ratio,
        "inputs": grade_inputs_to_json(g.inputs),
        "explanation": list(explain(g.inputs)),
    }


def grade_from_json(d: Mapping[str, Any]) -> Grade:
    """Recompute a stored grade from its inputs; :class:`InvalidRecordError` if the stored grade,
    score or ratio is not what the inputs give."""
    if not isinstance(d, Mapping) or "inputs" not in d:
        raise InvalidRecordError("expected a grade object with its inputs")
    g = grade(inputs_from_json(d["inputs"]))
    for name, want in (("grade", g.grade), ("score", g.score), ("inspection_ratio", g.inspection_ratio),
                       ("uscc", g.uscc), ("period", g.period)):
        if d.get(name) != want:
            raise InvalidRecordError(f"the inputs give {want!r}, the stored grade says {d.get(name)!r}", name)
    return g
