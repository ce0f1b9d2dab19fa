"""Three-flow reconciliation: linking, every rule with its exact explanation, and near misses."""

from __future__ import annotations

import random
from datetime import date, timedelta

import pytest

from evidence_ledger.flows.errors import InvalidRecordError
from evidence_ledger.flows.identifiers import invoice_key, make_uscc
from evidence_ledger.flows.reconcile import RECONCILIATION_RULES, format_fen, link, reconcile
from evidence_ledger.flows.records import Contract, Finding, Invoice, Payment, RecordRef

BUYER, SELLER, OTHER, FOURTH = (make_uscc(f"91320583{n:09d}") for n in (1, 2, 3, 4))
D0 = date(2026, 7, 10)
AS_OF = date(2026, 12, 31)


def inv(n: int, net: int = 1_000_000, *, seller: str = SELLER, buyer: str = BUYER, on: date = D0,
        contract_no: str | None = "HT-1", log_index: int | None = None) -> Invoice:
    number = f"{n:020d}"
    return Invoice(invoice_key(seller, "", number), seller, buyer, "", number, net, net * 13 // 100, on,
                   contract_no, "steel coils", log_index)


def con(no: str = "HT-1", amount: int = 10_000_000, *, buyer: str = BUYER, seller: str = SELLER,
        signed: date = date(2026, 7, 1), term: int | None = 60) -> Contract:
    return Contract(no, buyer, seller, amount, signed, "steel coils", term)


def pay(ref: str, amount: int, *, payer: str = BUYER, payee: str = SELLER, on: date = date(2026, 7, 20),
        contract_no: str | None = None, keys: tuple[str, ...] = ()) -> Payment:
    return Payment(ref, payer, payee, amount, on, contract_no, keys)


def rules(findings: list[Finding]) -> list[tuple[str, str]]:
    return [(f.rule, f.records[0].key) for f in findings]


def test_rule_names() -> None:
    assert RECONCILIATION_RULES == ("no_contract", "payment_not_from_buyer", "payment_not_to_seller",
                                    "amount_mismatch", "exceeds_contract", "payment_overdue")


def test_format_fen() -> None:
    assert format_fen(123456789) == "1,234,567.89 yuan"
    assert format_fen(5) == "0.05 yuan"
    assert format_fen(-150) == "-1.50 yuan"


def test_three_flows_that_agree_give_no_finding() -> None:
    i = inv(1)
    found = reconcile([i], [con()], [pay("P1", i.total_fen, keys=(i.key_hex,))], as_of=AS_OF)
    assert found == []


def test_named_contract_missing_between_the_parties() -> None:
    i = inv(1, contract_no="HT-9", log_index=7)
    # HT-9 exists, but between other parties.
    found = reconcile([i], [con("HT-9", buyer=OTHER)], [pay("P1", i.total_fen, keys=(i.key_hex,))], as_of=AS_OF)
    assert found == [Finding(
        rule="no_contract", uscc=SELLER,
        reason=(f"invoice {i.number} names contract HT-9, which does not exist between buyer {BUYER} "
                f"and seller {SELLER}"),
        records=(RecordRef("invoice", i.key_hex, 7),),
        thresholds=(("contract_signed_on_or_before", "2026-07-10"),),
        measured=(("contract_no", "HT-9"), ("issued_on", "2026-07-10")),
    )]


def test_implicit_contract_must_be_signed_on_or_before_the_invoice() -> None:
    i = inv(1, contract_no=None)
    p = pay("P1", i.total_fen, keys=(i.key_hex,))
    late = con("HT-2", signed=D0 + timedelta(days=1))
    found = reconcile([i], [late], [p], as_of=AS_OF)
    assert rules(found) == [("no_contract", i.key_hex)]
    assert found[0].reason == (f"no contract between buyer {BUYER} and seller {SELLER} signed on or before "
                               f"2026-07-10 covers invoice {i.number}")
    # Near miss: signed the same day links.
    same_day = con("HT-3", signed=D0)
    assert reconcile([i], [late, same_day], [p], as_of=AS_OF) == []


def test_implicit_contract_is_the_latest_signed_before() -> None:
    i = inv(1, contract_no=None)
    cs = [con("HT-A", signed=date(2026, 1, 1)), con("HT-C", signed=date(2026, 7, 11)),
          con("HT-B", signed=date(2026, 6, 1)), con("HT-X", signed=date(2026, 6, 1), buyer=OTHER)]
    links = link([i], cs, [], as_of=AS_OF)
    assert links.contract[i.key_hex].contract_no == "HT-B"


def test_payment_not_from_buyer_and_not_to_seller() -> None:
    i1, i2 = inv(1, log_index=1), inv(2, log_index=2)
    p1 = Payment("P1", OTHER, SELLER, i1.total_fen, date(2026, 7, 20), None, (i1.key_hex,), 11)
    p2 = Payment("P2", BUYER, FOURTH, i2.total_fen, date(2026, 7, 20), None, (i2.key_hex,), 12)
    found = reconcile([i1, i2], [con()], [p1, p2], as_of=AS_OF)
    by_rule = {f.rule: f for f in found}
    # i1 is also overdue: the buyer never paid it.
    assert sorted(by_rule) == ["payment_not_from_buyer", "payment_not_to_seller", "payment_overdue"]
    f = by_rule["payment_not_from_buyer"]
    assert f.uscc == SELLER
    assert f.reason == (f"payment P1 of 11,300.00 yuan toward invoice {i1.number} came from {OTHER}, "
                        f"not from the buyer {BUYER}")
    assert f.records == (RecordRef("invoice", i1.key_hex, 1), RecordRef("payment", "P1", 11))
    assert f.thresholds == (("expected_payer", BUYER),)
    assert f.measured == (("payer", OTHER), ("amount_fen", 1_130_000))
    f = by_rule["payment_not_to_seller"]
    assert f.reason == (f"payment P2 of 11,300.00 yuan toward invoice {i2.number} went to {FOURTH}, "
                        f"not to the seller {SELLER}")
    assert f.records == (RecordRef("invoice", i2.key_hex, 2), RecordRef("payment", "P2", 12))
    assert by_rule["payment_overdue"].records[0].key == i1.key_hex


def test_amount_mismatch_single_payment_and_tolerance() -> None:
    i = inv(1)
    over = pay("P1", i.total_fen + 101, keys=(i.key_hex,))
    found = reconcile([i], [con()], [over], as_of=AS_OF, amount_tolerance_fen=100)
    assert len(found) == 1
    f = found[0]
    assert f.rule == "amount_mismatch"
    assert f.reason == (f"invoice {i.number} totals 11,300.00 yuan but its payments add up to 11,301.01 yuan, "
                        f"1.01 yuan more (tolerance 1.00 yuan)")
    assert f.records == (RecordRef("invoice", i.key_hex, None), RecordRef("payment", "P1", None))
    assert f.thresholds == (("tolerance_fen", 100),)
    assert dict(f.measured) == {"invoice_total_fen": 1_130_000, "group_invoiced_fen": 1_130_000,
                                "group_paid_fen": 1_130_101, "difference_fen": 101, "group_invoices": 1,
                                "group_payments": 1}
    # Near miss: exactly at the tolerance.
    at = pay("P1", i.total_fen + 100, keys=(i.key_hex,))
    assert reconcile([i], [con()], [at], as_of=AS_OF, amount_tolerance_fen=100) == []


def test_underpayment_is_a_mismatch_only_once_due() -> None:
    i = inv(1)  # due 2026-09-08 (60-day term)
    part = pay("P1", 500_000, keys=(i.key_hex,))
    assert reconcile([i], [con()], [part], as_of=date(2026, 9, 8)) == []  # an instalment, maybe
    found = reconcile([i], [con()], [part], as_of=date(2026, 9, 9))
    assert rules(found) == [("amount_mismatch", i.key_hex)]
    assert dict(found[0].measured)["difference_fen"] == -630_000
    assert "630.00 yuan less" not in found[0].reason and "6,300.00 yuan less" in found[0].reason


def test_one_payment_for_several_invoices() -> None:
    a, b, c = inv(1), inv(2, 2_000_000), inv(3, 3_000_000)
    total = a.total_fen + b.total_fen + c.total_fen
    ok = pay("P1", total, keys=(a.key_hex, b.key_hex, c.key_hex))
    assert reconcile([a, b, c], [con()], [ok], as_of=AS_OF) == []
    short = pay("P1", total - 1, keys=(a.key_hex, b.key_hex, c.key_hex))
    found = reconcile([a, b, c], [con()], [short], as_of=AS_OF)
    assert sorted(rules(found)) == sorted(("amount_mismatch", i.key_hex) for i in (a, b, c))
    f = next(f for f in found if f.records[0].key == b.key_hex)
    assert f.reason == (f"invoice {b.number} (22,600.00 yuan) is settled together with 2 other invoice(s) "
                        f"totalling 67,800.00 yuan in all, but the 1 payment(s) add up to 67,799.99 yuan, "
                        f"0.01 yuan less (tolerance 0.00 yuan)")
    # The invoice, its payment, then the group's other invoices, largest first.
    assert [r.key for r in f.records] == [b.key_hex, "P1", c.key_hex, a.key_hex]
    assert dict(f.measured)["group_invoices"] == 3


def test_several_payments_for_one_invoice_sum_up() -> None:
    i = inv(1)
    parts = [pay("P1", 600_000, keys=(i.key_hex,)), pay("P2", 530_000, keys=(i.key_hex,))]
    assert reconcile([i], [con()], parts, as_of=AS_OF) == []
    parts[1] = pay("P2", 530_001, keys=(i.key_hex,))
    found = reconcile([i], [con()], parts, as_of=AS_OF)
    assert rules(found) == [("amount_mismatch", i.key_hex)]
    assert [r.key for r in found[0].records] == [i.key_hex, "P1", "P2"]


def test_payments_naming_only_the_contract() -> None:
    a, b = inv(1), inv(2, 2_000_000)
    ps = [pay("P1", a.total_fen, contract_no="HT-1"), pay("P2", b.total_fen, contract_no="HT-1")]
    links = link([a, b], [con()], ps, as_of=AS_OF)
    assert {p.payment_ref for p in links.payments[a.key_hex]} == {"P1", "P2"}
    assert links.via_contract == {a.key_hex, b.key_hex}
    assert reconcile([a, b], [con()], ps, as_of=AS_OF) == []
    # A payment naming the contract between other parties does not link.
    stray = pay("P3", 99, payer=OTHER, payee=FOURTH, contract_no="HT-1")
    assert reconcile([a, b], [con()], [*ps, stray], as_of=AS_OF) == []
    # Nor does a payment that names an invoice: it is that invoice's.
    keyed = pay("P4", a.total_fen, keys=(a.key_hex,), contract_no="HT-1")
    links = link([a, b], [con()], [keyed], as_of=AS_OF)
    assert b.key_hex not in links.payments


def test_payments_after_as_of_have_not_happened() -> None:
    i = inv(1)
    later = pay("P1", i.total_fen, keys=(i.key_hex,), on=date(2026, 8, 1))
    by_contract = pay("P2", 7, contract_no="HT-1", on=date(2026, 7, 15))
    links = link([i], [con()], [later, by_contract], as_of=date(2026, 7, 31))
    # The invoice is named by a payment (not yet made), so no fallback to the contract's payments.
    assert i.key_hex not in links.payments
    assert reconcile([i], [con()], [later, by_contract], as_of=date(2026, 7, 31)) == []


def test_a_payment_naming_an_unknown_invoice_is_not_judged() -> None:
    i = inv(1)
    p = pay("P1", i.total_fen + 5_000_000, keys=(i.key_hex, "f" * 64))
    assert reconcile([i], [con()], [p], as_of=AS_OF) == []
    assert link([i], [con()], [p], as_of=AS_OF).names_unknown == {"P1"}


def test_exceeds_contract() -> None:
    invs = [inv(1, on=date(2026, 7, 2)), inv(2, on=date(2026, 7, 3)), inv(3, on=date(2026, 7, 4))]
    ps = [pay(f"P{n}", i.total_fen, keys=(i.key_hex,)) for n, i in enumerate(invs)]
    c = con(amount=2 * 1_130_000 + 1)
    found = reconcile(invs, [c], ps, as_of=AS_OF)
    assert len(found) == 1
    f = found[0]
    assert f.rule == "exceeds_contract"
    assert f.reason == (f"with invoice {invs[2].number}, the 3 invoice(s) under contract HT-1 add up to "
                        f"33,900.00 yuan, more than the contract's 22,600.01 yuan (tolerance 0.00 yuan)")
    assert f.records == (RecordRef("invoice", invs[2].key_hex, None), RecordRef("contract", "HT-1", None))
    assert dict(f.measured) == {"invoiced_to_date_fen": 3_390_000, "invoices_to_date": 3,
                                "excess_fen": 3_390_000 - 2_260_001}
    # Exactly the contract amount is fine.
    assert reconcile(invs, [con(amount=3 * 1_130_000)], ps, as_of=AS_OF) == []
    # Every invoice from the crossing one onwards is reported.
    found = reconcile(invs, [con(amount=1_130_000)], ps, as_of=AS_OF)
    assert [f.records[0].key for f in found] == sorted([invs[1].key_hex, invs[2].key_hex])


def test_payment_overdue_after_the_term() -> None:
    i = inv(1, log_index=3)  # 60-day term: due 2026-09-08
    c = con()
    assert reconcile([i], [c], [], as_of=date(2026, 9, 8)) == []
    found = reconcile([i], [c], [], as_of=date(2026, 9, 9))
    assert len(found) == 1
    f = found[0]
    assert f.rule == "payment_overdue"
    assert f.reason == (f"invoice {i.number} of 11,300.00 yuan was due on 2026-09-08; by 2026-09-09 the buyer "
                        f"{BUYER} had not paid it")
    assert f.records == (RecordRef("invoice", i.key_hex, 3), RecordRef("contract", "HT-1", None))
    assert f.thresholds == (("term_days", 60), ("as_of", "2026-09-09"))
    assert f.measured == (("due_on", "2026-09-08"), ("days_overdue", 1), ("first_buyer_payment_on", ""))


def test_late_payment_and_default_term() -> None:
    i = inv(1)
    c = con(term=None)  # the default term applies
    late = pay("P1", i.total_fen, keys=(i.key_hex,), on=date(2026, 8, 20))
    assert reconcile([i], [c], [late], as_of=AS_OF, default_term_days=41) == []  # due 08-20: on time
    found = reconcile([i], [c], [late], as_of=AS_OF, default_term_days=40)
    assert rules(found) == [("payment_overdue", i.key_hex)]
    assert found[0].reason.endswith(f"the buyer {BUYER} first paid on 2026-08-20, 1 days late")
    assert found[0].records[-1] == RecordRef("payment", "P1", None)
    # A payment from someone else does not stop the clock.
    other = pay("P2", i.total_fen, keys=(i.key_hex,), payer=OTHER, on=date(2026, 7, 11))
    found = reconcile([i], [c], [other], as_of=AS_OF)
    assert sorted(f.rule for f in found) == ["payment_not_from_buyer", "payment_overdue"]


def test_findings_do_not_depend_on_input_order() -> None:
    invs = [inv(n, 1_000_000 + n, on=D0 + timedelta(days=n % 5), contract_no=None if n % 3 else "HT-1")
            for n in range(30)]
    cs = [con(amount=20_000_000), con("HT-2", signed=date(2026, 7, 12))]
    ps = [pay(f"P{n}", i.total_fen + (n % 4), keys=(i.key_hex,), payer=OTHER if n % 7 == 0 else BUYER)
          for n, i in enumerate(invs) if n % 5]
    first = reconcile(invs, cs, ps, as_of=AS_OF)
    rng = random.Random(5)
    for _ in range(3):
        rng.shuffle(invs)
        rng.shuffle(cs)
        rng.shuffle(ps)
        assert reconcile(invs, cs, ps, as_of=AS_OF) == first
    assert {f.rule for f in first} == {"amount_mismatch", "payment_not_from_buyer", "payment_overdue",
                                       "exceeds_contract"}


def test_bad_arguments() -> None:
    with pytest.raises(InvalidRecordError) as e:
        reconcile([], [], [], as_of=AS_OF, default_term_days=-1)
    assert str(e.value) == "default_term_days: expected a whole number of days >= 0, got -1"
    with pytest.raises(InvalidRecordError) as e:
        reconcile([], [], [], as_of=AS_OF, amount_tolerance_fen=-5)
    assert str(e.value) == "amount_tolerance_fen: expected an amount in fen >= 0, got -5"
    links = link([], [], [], as_of=date(2026, 1, 1))
    with pytest.raises(InvalidRecordError) as e:
        reconcile([], [], [], as_of=AS_OF, links=links)
    assert str(e.value) == "links: expected links made as of 2026-12-31, got links as of 2026-01-01"
