"""Fraud screening: each rule on a minimal case with its exact explanation, and a near miss."""

from __future__ import annotations

import random
from datetime import date, timedelta

import pytest

from evidence_ledger.flows.errors import InvalidRecordError
from evidence_ledger.flows.identifiers import invoice_key, make_uscc
from evidence_ledger.flows.records import (
    Contract,
    Enterprise,
    Finding,
    HeadcountSnapshot,
    Invoice,
    Payment,
    RecordRef,
)
from evidence_ledger.flows.screening import (
    SCREENING_RULES,
    SEVERITY,
    ScreeningPolicy,
    find_cycles,
    screen,
    strongly_connected,
)

U = [make_uscc(f"91371400{n:09d}") for n in range(40)]
D0 = date(2026, 7, 10)
AS_OF = date(2026, 8, 31)


class World:
    """Records under construction: every invoice gets a contract and a payment from its buyer
    unless told otherwise, so only what a test plants can fire."""

    def __init__(self) -> None:
        self.enterprises = [Enterprise(u, f"E{n}", date(2010, 1, 1), "371400", "wholesale", n)
                            for n, u in enumerate(U)]
        self.snapshots = [HeadcountSnapshot(u, "2026-07", 20, 18) for u in U]
        self.contracts: list[Contract] = []
        self.payments: list[Payment] = []
        self.invoices: list[Invoice] = []

    def invoice(self, seller: int, buyer: int, net: int = 1_000_000, *, on: date = D0, contract: bool = True,
                paid_by: int | None = None, paid_to: int | None = None, paid: bool = True) -> Invoice:
        n = len(self.invoices) + 1
        number = f"{n:020d}"
        cno = f"HT-{n}" if contract else None
        i = Invoice(invoice_key(U[seller], "", number), U[seller], U[buyer], "", number, net, net * 13 // 100, on,
                    cno, "goods", 1000 + n)
        self.invoices.append(i)
        if contract:
            self.contracts.append(Contract(f"HT-{n}", U[buyer], U[seller], i.total_fen, on - timedelta(days=5),
                                           "goods", 30, 2000 + n))
        if paid:
            payer = U[buyer if paid_by is None else paid_by]
            payee = U[seller if paid_to is None else paid_to]
            self.payments.append(Payment(f"P{n}", payer, payee, i.total_fen, on + timedelta(days=3), cno,
                                         (i.key_hex,), 3000 + n))
        return i

    def screen(self, policy: ScreeningPolicy = ScreeningPolicy(), **kw: object) -> list[Finding]:
        return screen(self.enterprises, self.snapshots, self.contracts, self.payments, self.invoices,
                      policy=policy, as_of=AS_OF, **kw)  # type: ignore[arg-type]


def only(findings: list[Finding], rule: str) -> list[Finding]:
    return [f for f in findings if f.rule == rule]


def ref(i: Invoice) -> RecordRef:
    return RecordRef("invoice", i.key_hex, i.log_index)


def test_rules_and_severities() -> None:
    assert SCREENING_RULES == ("no_real_supply", "third_party_payment", "circular_invoicing", "contagion",
                               "no_headcount", "new_and_sudden", "threshold_clustering")
    assert {r for r, s in SEVERITY.items() if s == "serious"} == {
        "no_real_supply", "third_party_payment", "circular_invoicing", "contagion"}
    assert {r for r, s in SEVERITY.items() if s == "warning"} == {
        "no_headcount", "new_and_sudden", "threshold_clustering"}


def test_an_honest_world_is_not_flagged() -> None:
    w = World()
    for n in range(10):
        w.invoice(n, n + 1, 2_000_000 + n)
    assert w.screen() == []


def test_no_real_supply() -> None:
    w = World()
    i = w.invoice(1, 2, 5_000_000, contract=False, paid=False)
    found = w.screen()
    f = only(found, "no_real_supply")
    assert f == [Finding(
        rule="no_real_supply", uscc=U[1],
        reason=(f"invoice {i.number} of 56,500.00 yuan from {U[1]} to {U[2]} has no contract between them and "
                f"no payment from the buyer: no goods or fund flow backs the invoice flow"),
        records=(ref(i),),
        thresholds=(("contract_required", "yes"), ("buyer_payment_required", "yes")),
        measured=(("contract", "none"), ("buyer_paid_fen", 0), ("invoice_total_fen", 5_650_000),
                  ("other_payments", 0)),
        severity="serious",
    )]


def test_no_real_supply_near_misses() -> None:
    w = World()
    w.invoice(1, 2, contract=False)  # paid by the buyer: a fund flow
    w.invoice(3, 4, paid=False)  # a contract: a goods flow
    assert only(w.screen(), "no_real_supply") == []
    # Paid, but only by somebody else: still no real supply, and a third-party payment.
    w.invoice(5, 6, contract=False, paid_by=7)
    found = w.screen()
    assert [f.uscc for f in only(found, "no_real_supply")] == [U[5]]
    assert only(found, "no_real_supply")[0].reason.endswith(
        "no payment from the buyer (only payments from others): no goods or fund flow backs the invoice flow")


def test_third_party_payment() -> None:
    w = World()
    i = w.invoice(1, 2, paid_by=9)
    j = w.invoice(1, 3, paid_to=8)
    found = only(w.screen(), "third_party_payment")
    assert {f.records for f in found} == {
        (ref(i), RecordRef("payment", "P1", 3001)),
        (ref(j), RecordRef("payment", "P2", 3002)),
    }
    f, g = sorted(found, key=lambda f: f.records[0] != ref(i))
    assert f.uscc == U[1] and f.severity == "serious"
    assert f.reason == (f"invoice {i.number} of 11,300.00 yuan from {U[1]} to {U[2]} is paid wholly outside "
                        f"the parties (P1: 11,300.00 yuan from {U[9]} to {U[1]})")
    assert dict(f.measured) == {"third_party_fen": 1_130_000, "invoice_total_fen": 1_130_000,
                                "third_party_payments": 1, "payers": U[9], "payees": U[1]}
    assert dict(g.measured)["payees"] == U[8]


def test_third_party_payment_partly() -> None:
    w = World()
    i = w.invoice(1, 2)
    w.payments.append(Payment("PX", U[9], U[1], 100, D0, None, (i.key_hex,)))
    found = only(w.screen(), "third_party_payment")
    assert len(found) == 1
    assert "is paid partly outside the parties (PX: 1.00 yuan from" in found[0].reason


def test_three_company_cycle() -> None:
    w = World()
    ab = w.invoice(1, 2, on=D0)
    bc = w.invoice(2, 3, on=D0 + timedelta(days=10))
    ca = w.invoice(3, 1, on=D0 + timedelta(days=29))
    w.invoice(3, 4, on=D0)  # an edge out of the cycle
    found = only(w.screen(), "circular_invoicing")
    assert [f.uscc for f in found] == [U[1], U[2], U[3]]
    ring = f"{U[1]}>{U[2]}>{U[3]}>{U[1]}"
    for f in found:
        assert f.records == (ref(ab), ref(bc), ref(ca))
        assert f.severity == "serious"
        assert f.thresholds == (("cycle_window_days", 90), ("max_cycle_length", 5), ("min_cycle_invoice_fen", 100_000))
        assert f.measured == (("cycle_length", 3), ("span_days", 29), ("cycle", ring),
                              ("first_issued_on", "2026-07-10"), ("last_issued_on", "2026-08-08"),
                              ("cycle_total_fen", 3 * 1_130_000))
    assert found[1].reason == (f"{U[2]} is one of 3 enterprises invoicing in a circle ({ring}): 3 invoices from "
                               f"2026-07-10 to 2026-08-08, 29 days apart at most, within the 90-day window")


def test_cycle_window_edges() -> None:
    w = World()
    w.invoice(1, 2, on=D0)
    w.invoice(2, 1, on=D0 + timedelta(days=30))
    assert len(only(w.screen(ScreeningPolicy(cycle_window_days=30)), "circular_invoicing")) == 2
    assert only(w.screen(ScreeningPolicy(cycle_window_days=29)), "circular_invoicing") == []


def test_cycle_takes_the_tightest_invoices() -> None:
    w = World()
    w.invoice(1, 2, on=D0)
    late_ab = w.invoice(1, 2, on=D0 + timedelta(days=100))
    ba = w.invoice(2, 1, on=D0 + timedelta(days=104))
    cycles = find_cycles(w.invoices, ScreeningPolicy(cycle_window_days=5))
    assert len(cycles) == 1
    assert cycles[0].members == (U[1], U[2])
    assert cycles[0].invoices == (late_ab, ba)
    assert cycles[0].span_days == 4


def test_cycles_are_found_once_and_bounded_by_length() -> None:
    w = World()
    ring = [10, 11, 12, 13, 14, 15]
    for a, b in zip(ring, ring[1:] + ring[:1], strict=True):
        w.invoice(a, b)
    assert find_cycles(w.invoices) == []  # six enterprises: longer than 5
    cycles = find_cycles(w.invoices, ScreeningPolicy(max_cycle_length=6))
    assert len(cycles) == 1
    assert cycles[0].members == tuple(U[n] for n in ring)
    # Both directions of a pair make one 2-cycle, however many invoices there are.
    w2 = World()
    for _ in range(3):
        w2.invoice(1, 2)
        w2.invoice(2, 1)
    assert [c.members for c in find_cycles(w2.invoices)] == [(U[1], U[2])]


def test_small_invoices_do_not_make_cycles() -> None:
    w = World()
    w.invoice(1, 2, 88_494)  # 999.98 yuan with tax: under 1,000 yuan
    w.invoice(2, 1, 5_000_000)
    assert find_cycles(w.invoices) == []
    assert find_cycles(w.invoices, ScreeningPolicy(min_cycle_invoice_fen=0)) != []


def test_cycle_search_does_not_depend_on_order() -> None:
    w = World()
    rng = random.Random(3)
    for _ in range(80):
        a, b = rng.sample(range(1, 12), 2)
        w.invoice(a, b, rng.randint(200_000, 900_000), on=D0 + timedelta(days=rng.randint(0, 200)))
    first = find_cycles(w.invoices)
    assert first  # a random dense graph has cycles
    for _ in range(3):
        rng.shuffle(w.invoices)
        assert find_cycles(w.invoices) == first
    for c in first:
        assert c.span_days <= 90
        assert [i.seller_uscc for i in c.invoices] == list(c.members)
        assert [i.buyer_uscc for i in c.invoices] == list(c.members[1:] + c.members[:1])
    assert len({(c.members) for c in first}) == len(first)


def test_strongly_connected_components() -> None:
    # 0 <-> 1, 2 -> 3 -> 4 -> 2, 5 alone, 1 -> 2
    succ = [[1], [0, 2], [3], [4], [2], []]
    assert sorted(strongly_connected(succ)) == [[0, 1], [2, 3, 4]]
    # A 200,000-node chain closing into one cycle: no recursion limit.
    n = 200_000
    chain = [[i + 1] for i in range(n - 1)] + [[0]]
    comps = strongly_connected(chain)
    assert len(comps) == 1 and len(comps[0]) == n
    assert strongly_connected([[i + 1] for i in range(n - 1)] + [[]]) == []


def contagion_world(abnormal_net: int, honest_net: int) -> tuple[World, list[Invoice], list[Invoice]]:
    """E (20) buys from N (21) with no contract nor payment, and honestly from 22; sells to 23 and 24."""
    w = World()
    bad = [w.invoice(21, 20, abnormal_net, contract=False, paid=False)]
    w.invoice(22, 20, honest_net)
    outs = [w.invoice(20, 23, 3_000_000, on=D0 + timedelta(days=3)),
            w.invoice(20, 24, 4_000_000, on=D0 + timedelta(days=4))]
    w.invoice(25, 23, 80_000_000)  # 23 and 24 have large honest inputs
    w.invoice(25, 24, 80_000_000)
    return w, bad, outs


def test_contagion_at_exactly_the_share() -> None:
    w, bad, outs = contagion_world(70_000_000, 30_000_000)  # 70% of inputs abnormal
    found = only(w.screen(), "contagion")
    assert len(found) == 2
    assert {f.records[0] for f in found} == {ref(o) for o in outs}
    f = next(f for f in found if f.records[0] == ref(outs[0]))
    assert f.uscc == U[20] and f.severity == "serious"
    assert f.records == (ref(outs[0]), ref(bad[0]))
    assert f.thresholds == (("contagion_share", 0.7), ("contagion_min_abnormal_fen", 10_000_000),
                            ("contagion_max_depth", 5))
    assert dict(f.measured) == {"abnormal_share": 0.7, "abnormal_input_fen": 79_100_000,
                                "input_fen": 113_000_000, "abnormal_input_invoices": 1, "input_invoices": 2,
                                "cited_inputs": 1, "output_invoices": 2, "depth": 1}
    assert f.reason == (f"70.0% of {U[20]}'s inputs are abnormal (791,000.00 yuan of 1,130,000.00 yuan, 1 of 2 "
                        f"invoices), at least 70% and 100,000.00 yuan; so its invoice {outs[0].number} to "
                        f"{U[23]} is flagged (round 1)")


def test_contagion_near_misses() -> None:
    w, _, _ = contagion_world(69_000_000, 31_000_000)  # 69%
    assert only(w.screen(), "contagion") == []
    w, _, _ = contagion_world(7_000_000, 3_000_000)  # 70%, but under 100,000 yuan
    assert only(w.screen(), "contagion") == []
    w, _, _ = contagion_world(7_000_000, 3_000_000)
    assert len(only(w.screen(ScreeningPolicy(contagion_min_abnormal_fen=7_910_000)), "contagion")) == 2
    assert only(w.screen(ScreeningPolicy(contagion_min_abnormal_fen=7_910_001)), "contagion") == []


def test_contagion_spreads_downstream_to_a_bounded_depth() -> None:
    w = World()
    w.invoice(21, 20, 50_000_000, contract=False, paid=False)  # abnormal into 20
    w.invoice(20, 30, 40_000_000)  # 30 buys only from 20
    w.invoice(30, 31, 30_000_000)  # 31 buys only from 30
    found = only(w.screen(), "contagion")
    assert [(f.uscc, dict(f.measured)["depth"]) for f in found] == [(U[20], 1), (U[30], 2)]
    assert only(w.screen(ScreeningPolicy(contagion_max_depth=1)), "contagion")[0].uscc == U[20]
    assert len(only(w.screen(ScreeningPolicy(contagion_max_depth=1)), "contagion")) == 1


def test_contagion_cites_the_largest_inputs_only() -> None:
    w = World()
    bad = [w.invoice(21, 20, 1_000_000 + n, contract=False, paid=False) for n in range(25)]
    out = w.invoice(20, 30, 1_000_000)
    f = only(w.screen(), "contagion")
    assert len(f) == 1
    assert f[0].records == (ref(out),) + tuple(ref(i) for i in sorted(bad, key=lambda i: -i.amount_fen)[:20])
    assert dict(f[0].measured)["abnormal_input_invoices"] == 25
    assert dict(f[0].measured)["cited_inputs"] == 20


def test_contagion_counts_reconciliation_findings() -> None:
    # No contract between the parties (reconciliation's no_contract), though the buyer paid.
    w = World()
    w.invoice(21, 20, 50_000_000, contract=False)
    w.invoice(20, 30, 1_000_000)
    assert [f.uscc for f in only(w.screen(), "contagion")] == [U[20]]
    assert only(w.screen(), "no_real_supply") == []
    # Without it (an empty reconciliation handed in), nothing is abnormal.
    assert only(w.screen(reconciliation=[]), "contagion") == []


def shell_world(net: int, *, insured: int | None, registered: date = date(2010, 1, 1)) -> World:
    w = World()
    w.enterprises[5] = Enterprise(U[5], "Shell", registered, "371400", "trading", 5)
    w.snapshots = [s for s in w.snapshots if s.uscc != U[5]]
    if insured is not None:
        w.snapshots += [HeadcountSnapshot(U[5], "2026-06", 9, 9), HeadcountSnapshot(U[5], "2026-08", 1, insured),
                        HeadcountSnapshot(U[5], "2026-09", 50, 50)]  # after as_of: not yet reported
    for k in range(4):
        w.invoice(5, 6 + k, net, on=D0 + timedelta(days=k))
    return w


def test_no_headcount() -> None:
    w = shell_world(22_123_894, insured=0)  # 4 x 250,000.00 yuan with tax: exactly 1,000,000.00 yuan
    found = only(w.screen(), "no_headcount")
    assert len(found) == 1
    f = found[0]
    assert f.uscc == U[5] and f.severity == "warning"
    assert f.reason == (f"{U[5]} invoiced 1,000,000.00 yuan in 4 invoice(s), at least 1,000,000.00 yuan, but its "
                        f"latest headcount snapshot (2026-08) shows 1 employee(s) and nobody insured")
    assert f.records[:2] == (RecordRef("enterprise", U[5], 5), RecordRef("snapshot", f"{U[5]}/2026-08", None))
    assert [r.kind for r in f.records[2:]] == ["invoice"] * 4
    assert dict(f.measured) == {"output_fen": 100_000_000, "output_invoices": 4, "snapshot_period": "2026-08",
                                "employees": 1, "insured": 0}
    assert f.thresholds == (("large_invoicing_fen", 100_000_000), ("insured_at_most", 0))


def test_no_headcount_without_snapshots_and_near_misses() -> None:
    w = shell_world(22_123_894, insured=None)
    f = only(w.screen(), "no_headcount")
    assert len(f) == 1
    assert f[0].reason.endswith("but no headcount snapshot on record up to 2026-08")
    assert dict(f[0].measured)["snapshot_period"] == "none"
    # One fen less in total: 22,123,893 x 4 x 1.13 rounds to 99,999,996 fen.
    assert only(shell_world(22_123_893, insured=0).screen(), "no_headcount") == []
    # Somebody insured in the latest month.
    assert only(shell_world(22_123_894, insured=1).screen(), "no_headcount") == []


def test_new_and_sudden() -> None:
    # Registered 180 days before its first invoice (D0), the last day that still counts as new; only
    # that first invoice falls within the 180 days, and it alone reaches the volume.
    w = shell_world(88_495_576, insured=5, registered=D0 - timedelta(days=180))
    found = only(w.screen(), "new_and_sudden")
    assert len(found) == 1
    f = found[0]
    assert f.severity == "warning"
    assert f.reason == (f"{U[5]}, registered on 2026-01-11, issued its first invoice 180 days later and invoiced "
                        f"1,000,000.00 yuan in 1 invoice(s) by 2026-07-10, at least 1,000,000.00 yuan within 180 "
                        f"days of registering")
    assert f.records == (RecordRef("enterprise", U[5], 5), ref(w.invoices[0]))
    assert dict(f.measured)["days_to_first_invoice"] == 180
    assert f.thresholds == (("new_registration_days", 180), ("sudden_volume_fen", 100_000_000))
    # One fen short on that first invoice: the later ones fall outside the 180 days.
    assert only(shell_world(88_495_575, insured=5, registered=D0 - timedelta(days=180)).screen(),
                "new_and_sudden") == []


def test_new_and_sudden_window_and_near_misses() -> None:
    w = shell_world(30_000_000, insured=5, registered=D0 - timedelta(days=20))
    f = only(w.screen(), "new_and_sudden")
    assert dict(f[0].measured) == {"registered_on": "2026-06-20", "first_invoice_on": "2026-07-10",
                                   "days_to_first_invoice": 20, "early_output_fen": 4 * 33_900_000,
                                   "early_invoices": 4}
    assert f[0].records[0] == RecordRef("enterprise", U[5], 5)
    # Registered 181 days before its first invoice: not new.
    assert only(shell_world(30_000_000, insured=5, registered=D0 - timedelta(days=181)).screen(),
                "new_and_sudden") == []
    # New, but under the volume.
    assert only(shell_world(22_123_893, insured=5, registered=D0 - timedelta(days=20)).screen(),
                "new_and_sudden") == []


def clustering_world(just_under: int, others: int, *, net: int = 9_600_000) -> World:
    w = World()
    for k in range(just_under):
        w.invoice(7, 8 + k % 3, net + k)
    for k in range(others):
        w.invoice(7, 8 + k % 3, 2_000_000 + k)
    return w


def test_threshold_clustering() -> None:
    w = clustering_world(5, 5)  # 5 of 10: 50%
    found = only(w.screen(), "threshold_clustering")
    assert len(found) == 1
    f = found[0]
    assert f.uscc == U[7] and f.severity == "warning"
    assert f.reason == (f"5 of {U[7]}'s 10 invoices (50.0%) have net amounts within 5% below a single-invoice "
                        f"limit (100,000.00 yuan, 1,000,000.00 yuan); at least 5 and 50% flag clustering")
    under = sorted(w.invoices[:5], key=lambda i: -i.amount_fen)
    assert f.records == (RecordRef("enterprise", U[7], 7),) + tuple(ref(i) for i in under)
    assert dict(f.measured) == {"just_under_invoices": 5, "output_invoices": 10, "just_under_share": 0.5,
                                "just_under_net_fen": 5 * 9_600_000 + 10, "just_under_10000000_fen": 5,
                                "just_under_100000000_fen": 0}
    assert f.thresholds == (("clustering_limits_fen", "10000000,100000000"), ("clustering_band", 0.05),
                            ("clustering_min_invoices", 5), ("clustering_min_share", 0.5))


def test_threshold_clustering_near_misses() -> None:
    assert only(clustering_world(4, 0).screen(), "threshold_clustering") == []  # 4 invoices only
    assert only(clustering_world(5, 6).screen(), "threshold_clustering") == []  # 45%
    # The band: 95,000.00 yuan is in, 94,999.99 is not, 100,000.00 is at the limit, not under it.
    assert len(only(clustering_world(5, 0, net=9_500_000).screen(), "threshold_clustering")) == 1
    assert only(clustering_world(5, 0, net=9_499_995).screen(), "threshold_clustering") == []
    assert only(clustering_world(5, 0, net=10_000_000).screen(), "threshold_clustering") == []
    # Just under the 1,000,000-yuan limit counts too.
    f = only(clustering_world(5, 0, net=99_000_000).screen(), "threshold_clustering")
    assert dict(f[0].measured)["just_under_100000000_fen"] == 5


def test_shell_outputs_are_abnormal_inputs_downstream() -> None:
    w = shell_world(30_000_000, insured=0)
    # 6..9 each buy only from the shell: its invoices make 100% of their inputs.
    for k in range(4):
        w.invoice(6 + k, 30, 1_000_000)
    found = w.screen()
    assert {f.uscc for f in only(found, "contagion")} == {U[6], U[7], U[8], U[9]}
    off = ScreeningPolicy(abnormal_seller_rules=())
    assert only(w.screen(off), "contagion") == []


def test_screen_is_sorted_and_order_independent() -> None:
    w = shell_world(30_000_000, insured=0)
    w.invoice(1, 2, on=D0)
    w.invoice(2, 1, on=D0 + timedelta(days=3))
    w.invoice(11, 12, contract=False, paid=False)
    first = w.screen()
    assert [(f.uscc, SCREENING_RULES.index(f.rule)) for f in first] == sorted(
        (f.uscc, SCREENING_RULES.index(f.rule)) for f in first)
    rng = random.Random(9)
    for _ in range(3):
        rng.shuffle(w.invoices)
        rng.shuffle(w.payments)
        rng.shuffle(w.contracts)
        assert w.screen() == first


@pytest.mark.parametrize(("kw", "message"), [
    ({"cycle_window_days": -1}, "cycle_window_days: expected a whole number >= 0, got -1"),
    ({"max_cycle_length": 1}, "max_cycle_length: expected a cycle length >= 2, got 1"),
    ({"contagion_share": 1.5}, "contagion_share: expected a share in (0, 1], got 1.5"),
    ({"clustering_min_share": 0}, "clustering_min_share: expected a share in (0, 1], got 0"),
    ({"contagion_max_depth": 0}, "contagion_max_depth: expected a whole number >= 1, got 0"),
    ({"clustering_limits_fen": ()}, "clustering_limits_fen: expected limits in fen > 0, got ()"),
])
def test_policy_validation(kw: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidRecordError) as e:
        ScreeningPolicy(**kw)  # type: ignore[arg-type]
    assert str(e.value) == message


def test_as_of_must_be_a_date() -> None:
    with pytest.raises(InvalidRecordError) as e:
        screen([], [], [], [], [], as_of="2026-08-31")  # type: ignore[arg-type]
    assert str(e.value) == "as_of: expected a date, got '2026-08-31'"
