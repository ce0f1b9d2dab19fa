"""Three-flow reconciliation: does each invoice have the contract and the payments it should have?

Linking (:func:`link`), per invoice, using dict indexes only (no pairwise matching):

- **contract**: the contract the invoice names (``contract_no``) between the same buyer and seller;
  an invoice naming none takes the latest contract between its buyer and seller signed on or
  before the invoice date. A named contract_no that does not exist between the parties links
  nothing.
- **payments**: the payments whose ``invoice_keys`` name the invoice. An invoice that no payment
  names falls back to the payments that name its contract_no (the named one, else the linked
  contract's) and no invoice at all, provided the payer is the buyer or the payee is the seller
  (a contract_no alone is unique only per pair). Payments dated after ``as_of`` have not happened
  yet and are left out.

Rules (:data:`RECONCILIATION_RULES`), one :class:`Finding` per (invoice, rule), about the seller:

- ``no_contract``: no contract links the invoice.
- ``payment_not_from_buyer`` / ``payment_not_to_seller``: a linked payment's payer is not the buyer
  / its payee is not the seller.
- ``amount_mismatch``: invoices and the payments linked to them form settlement groups (connected
  components: one payment for several invoices, several payments for one invoice, or the invoices
  and payments of one contract). Each group's paid sum is compared with its invoiced sum (totals,
  tax included); each invoice of a group that differs by more than the tolerance gets a finding.
  Paying too little is only a disagreement once every invoice of the group is past due (until
  then it may be an instalment); paying too much is one at once. A group holding a payment that
  also names invoices outside the analysed set is not judged (its other part is unknown).
- ``exceeds_contract``: the invoices under one contract, in issue order, add up to more than the
  contract amount (plus the tolerance); the invoices from the one that crosses the amount onwards
  get a finding each.
- ``payment_overdue``: ``as_of`` is past the due day (``issued_on`` + the contract's
  ``payment_term_days``, else the default term) and no linked payment from the buyer is dated on or
  before it.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date

from .errors import InvalidRecordError
from .records import Contract, Finding, Invoice, Payment, RecordRef

__all__ = [
    "RECONCILIATION_RULES",
    "Links",
    "link",
    "reconcile",
    "format_fen",
    "invoice_ref",
    "contract_ref",
    "payment_ref",
]

RECONCILIATION_RULES = (
    "no_contract",
    "payment_not_from_buyer",
    "payment_not_to_seller",
    "amount_mismatch",
    "exceeds_contract",
    "payment_overdue",
)
_RULE_ORDER = {r: i for i, r in enumerate(RECONCILIATION_RULES)}
# A group's other invoices cited by an amount_mismatch finding, at most (the counts are measured).
_MAX_CITED_GROUP_INVOICES = 20


def format_fen(fen: int) -> str:
    """``123456`` -> ``"1,234.56 yuan"`` (exact: no float)."""
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}{whole:,}.{cents:02d} yuan"


def invoice_ref(inv: Invoice) -> RecordRef:
    return RecordRef("invoice", inv.key_hex, inv.log_index)


def contract_ref(c: Contract) -> RecordRef:
    return RecordRef("contract", c.contract_no, c.log_index)


def payment_ref(p: Payment) -> RecordRef:
    return RecordRef("payment", p.payment_ref, p.log_index)


@dataclass(frozen=True, slots=True)
class Links:
    """What :func:`link` found, per invoice ``key_hex``. Invoices without a contract or without
    payments are absent from ``contract`` / ``payments``."""

    as_of: date | None
    contract: dict[str, Contract]
    payments: dict[str, tuple[Payment, ...]]
    # Invoices whose payments came through their contract_no (no payment named the invoice).
    via_contract: frozenset[str]
    # Payments (payment_ref) naming invoice keys absent from the linked invoices.
    names_unknown: frozenset[str]
    # Invoices in a settlement group of more than one invoice or payment (the rest pair 1:1).
    grouped: frozenset[str]


def link(
    invoices: Iterable[Invoice],
    contracts: Iterable[Contract],
    payments: Iterable[Payment],
    *,
    as_of: date | None = None,
) -> Links:
    """Link each invoice to its contract and payments (see the module docstring)."""
    invoices = invoices if isinstance(invoices, Sequence) else list(invoices)
    by_no: dict[tuple[str, str, str], Contract] = {}
    by_pair: dict[tuple[str, str], list[Contract]] = {}
    for c in contracts:
        by_no[(c.buyer_uscc, c.seller_uscc, c.contract_no)] = c
        lst = by_pair.get((c.buyer_uscc, c.seller_uscc))
        if lst is None:
            by_pair[(c.buyer_uscc, c.seller_uscc)] = [c]
        else:
            lst.append(c)
    pair_dates: dict[tuple[str, str], list[date]] = {}
    for pair, lst in by_pair.items():
        if len(lst) > 1:
            lst.sort(key=lambda c: (c.signed_on, c.contract_no))
            pair_dates[pair] = [c.signed_on for c in lst]

    present = {inv.key_hex for inv in invoices}
    later: set[str] = set()  # keys named only by payments after as_of: no contract fallback for them
    payments_of: dict[str, tuple[Payment, ...]] = {}
    pay_by_contract: dict[str, list[Payment]] = {}
    names_unknown: set[str] = set()
    grouped: set[str] = set()
    for p in payments:
        keys = p.invoice_keys
        if as_of is not None and p.paid_on > as_of:
            if keys:
                later.update(keys)
            continue
        if keys:
            if len(keys) > 1:
                keys = tuple(dict.fromkeys(keys))  # a key listed twice links once
            n_present = 0
            alone = (p,)  # shared by the invoices it settles, so settlement buckets can key on identity
            for k in keys:
                if k in present:
                    n_present += 1
                    cur = payments_of.get(k)
                    if cur is None:
                        payments_of[k] = alone
                    else:
                        payments_of[k] = cur + (p,)
                        grouped.add(k)
                else:
                    names_unknown.add(p.payment_ref)
            if n_present > 1:
                grouped.update(k for k in keys if k in present)
        elif p.contract_no is not None:
            pay_by_contract.setdefault(p.contract_no, []).append(p)

    contract_of: dict[str, Contract] = {}
    via_contract: set[str] = set()
    chosen: dict[tuple[str, str, str], tuple[Payment, ...]] = {}  # one tuple per (pair, contract_no)
    for inv in invoices:
        key = inv.key_hex
        no = inv.contract_no
        c: Contract | None = None
        if no is not None:
            c = by_no.get((inv.buyer_uscc, inv.seller_uscc, no))
        else:
            lst = by_pair.get((inv.buyer_uscc, inv.seller_uscc))
            if lst is not None:
                if len(lst) == 1:
                    if lst[0].signed_on <= inv.issued_on:
                        c = lst[0]
                else:
                    i = bisect.bisect_right(pair_dates[(inv.buyer_uscc, inv.seller_uscc)], inv.issued_on)
                    if i:
                        c = lst[i - 1]
        if c is not None:
            contract_of[key] = c
            if no is None:
                no = c.contract_no
        if pay_by_contract and no is not None and key not in payments_of and key not in later:
            cand = pay_by_contract.get(no)
            if cand:
                buyer, seller = inv.buyer_uscc, inv.seller_uscc
                ck = (buyer, seller, no)
                mine = chosen.get(ck)
                if mine is None:
                    mine = chosen[ck] = tuple(p for p in cand if p.payer_uscc == buyer or p.payee_uscc == seller)
                if mine:
                    payments_of[key] = mine
                    via_contract.add(key)
    grouped.update(via_contract)
    return Links(as_of, contract_of, payments_of, frozenset(via_contract), frozenset(names_unknown),
                 frozenset(grouped))


def reconcile(
    invoices: Iterable[Invoice],
    contracts: Iterable[Contract],
    payments: Iterable[Payment],
    *,
    as_of: date,
    default_term_days: int = 90,
    amount_tolerance_fen: int = 0,
    links: Links | None = None,
) -> list[Finding]:
    """Where the contract, fund and invoice flows disagree; findings sorted by (seller, rule, invoice).

    ``links`` (from :func:`link` with the same ``as_of``) saves linking twice when screening follows.
    """
    if not isinstance(default_term_days, int) or default_term_days < 0:
        raise InvalidRecordError(f"expected a whole number of days >= 0, got {default_term_days!r}",
                                 "default_term_days")
    if not isinstance(amount_tolerance_fen, int) or amount_tolerance_fen < 0:
        raise InvalidRecordError(f"expected an amount in fen >= 0, got {amount_tolerance_fen!r}",
                                 "amount_tolerance_fen")
    invoices = invoices if isinstance(invoices, Sequence) else list(invoices)
    if links is None:
        links = link(invoices, contracts, payments, as_of=as_of)
    elif links.as_of != as_of:
        raise InvalidRecordError(f"expected links made as of {as_of}, got links as of {links.as_of}", "links")
    contract_of, payments_of = links.contract, links.payments
    as_of_ord = as_of.toordinal()
    tol = amount_tolerance_fen
    out: list[Finding] = []

    contract_sum: dict[int, int] = {}  # id(contract) -> invoiced under it
    contract_by_id: dict[int, Contract] = {}
    grouped_keys, unknown = links.grouped, links.names_unknown
    grouped: list[Invoice] = []  # invoices in settlement groups beyond one invoice and one payment
    for inv in invoices:
        key = inv.key_hex
        total = inv.amount_fen + inv.tax_fen
        c = contract_of.get(key)
        if c is None:
            term = default_term_days
            out.append(_no_contract(inv))
        else:
            term = c.payment_term_days
            if term is None:
                term = default_term_days
            cid = id(c)
            so_far = contract_sum.get(cid)
            if so_far is None:
                contract_sum[cid] = total
                contract_by_id[cid] = c
            else:
                contract_sum[cid] = so_far + total
        due = inv.issued_on.toordinal() + term
        ps = payments_of.get(key)
        if ps is None:
            if as_of_ord > due:
                out.append(_overdue(inv, c, [], due, as_of))
            continue
        buyer, seller = inv.buyer_uscc, inv.seller_uscc
        for p in ps:
            if p.payer_uscc != buyer or p.payee_uscc != seller:
                out.extend(_wrong_party(inv, p))
        if key in grouped_keys:
            grouped.append(inv)
        elif ps[0].payment_ref not in unknown:
            paid = ps[0].amount_fen
            if paid > total + tol or (paid < total - tol and as_of_ord > due):
                out.append(_mismatch(inv, [inv], list(ps), paid, total, tol))
        if as_of_ord > due:
            from_buyer = [p for p in ps if p.payer_uscc == buyer]
            if not any(p.paid_on.toordinal() <= due for p in from_buyer):
                out.append(_overdue(inv, c, from_buyer, due, as_of))

    def due_ord(inv: Invoice) -> int:
        c = contract_of.get(inv.key_hex)
        term = c.payment_term_days if c is not None and c.payment_term_days is not None else default_term_days
        return inv.issued_on.toordinal() + term

    if grouped:
        out.extend(_group_mismatches(grouped, payments_of, links.names_unknown, tol, as_of_ord, due_ord))

    over = {cid for cid, invoiced in contract_sum.items() if invoiced > contract_by_id[cid].amount_fen + tol}
    if over:
        out.extend(_exceeding(invoices, contract_of, over, tol))

    out.sort(key=lambda f: (f.uscc, _RULE_ORDER[f.rule], f.records[0].key, f.records[-1].key))
    return out


def _no_contract(inv: Invoice) -> Finding:
    buyer, seller = inv.buyer_uscc, inv.seller_uscc
    if inv.contract_no is not None:
        why = (f"invoice {inv.number} names contract {inv.contract_no}, which does not exist "
               f"between buyer {buyer} and seller {seller}")
    else:
        why = (f"no contract between buyer {buyer} and seller {seller} signed on or before "
               f"{inv.issued_on} covers invoice {inv.number}")
    return Finding(
        rule="no_contract", uscc=seller, reason=why, records=(invoice_ref(inv),),
        thresholds=(("contract_signed_on_or_before", inv.issued_on.isoformat()),),
        measured=(("contract_no", inv.contract_no or ""), ("issued_on", inv.issued_on.isoformat())),
    )


def _wrong_party(inv: Invoice, p: Payment) -> list[Finding]:
    out: list[Finding] = []
    buyer, seller = inv.buyer_uscc, inv.seller_uscc
    refs = (invoice_ref(inv), payment_ref(p))
    if p.payer_uscc != buyer:
        out.append(Finding(
            rule="payment_not_from_buyer", uscc=seller,
            reason=(f"payment {p.payment_ref} of {format_fen(p.amount_fen)} toward invoice "
                    f"{inv.number} came from {p.payer_uscc}, not from the buyer {buyer}"),
            records=refs, thresholds=(("expected_payer", buyer),),
            measured=(("payer", p.payer_uscc), ("amount_fen", p.amount_fen)),
        ))
    if p.payee_uscc != seller:
        out.append(Finding(
            rule="payment_not_to_seller", uscc=seller,
            reason=(f"payment {p.payment_ref} of {format_fen(p.amount_fen)} toward invoice "
                    f"{inv.number} went to {p.payee_uscc}, not to the seller {seller}"),
            records=refs, thresholds=(("expected_payee", seller),),
            measured=(("payee", p.payee_uscc), ("amount_fen", p.amount_fen)),
        ))
    return out


def _overdue(inv: Invoice, c: Contract | None, from_buyer: list[Payment], due_ord: int, as_of: date) -> Finding:
    total = inv.amount_fen + inv.tax_fen
    due = date.fromordinal(due_ord)
    if from_buyer:
        first = min(p.paid_on for p in from_buyer)
        why = (f"invoice {inv.number} of {format_fen(total)} was due on {due}; the buyer "
               f"{inv.buyer_uscc} first paid on {first}, {(first - due).days} days late")
    else:
        first = None
        why = (f"invoice {inv.number} of {format_fen(total)} was due on {due}; by {as_of} "
               f"the buyer {inv.buyer_uscc} had not paid it")
    recs = (invoice_ref(inv),) + ((contract_ref(c),) if c is not None else ()) + tuple(
        payment_ref(p) for p in sorted(from_buyer, key=lambda p: (p.paid_on, p.payment_ref)))
    return Finding(
        rule="payment_overdue", uscc=inv.seller_uscc, reason=why, records=recs,
        thresholds=(("term_days", due_ord - inv.issued_on.toordinal()), ("as_of", as_of.isoformat())),
        measured=(("due_on", due.isoformat()), ("days_overdue", as_of.toordinal() - due_ord),
                  ("first_buyer_payment_on", first.isoformat() if first else "")),
    )

def _mismatch(inv: Invoice, group_invoices: list[Invoice], group_payments: list[Payment], paid: int,
              invoiced: int, tol: int) -> Finding:
    total = inv.amount_fen + inv.tax_fen
    diff = paid - invoiced
    word = "more" if diff > 0 else "less"
    if len(group_invoices) == 1:
        why = (f"invoice {inv.number} totals {format_fen(total)} but its payments add up to "
               f"{format_fen(paid)}, {format_fen(abs(diff))} {word} (tolerance {format_fen(tol)})")
    else:
        why = (f"invoice {inv.number} ({format_fen(total)}) is settled together with "
               f"{len(group_invoices) - 1} other invoice(s) totalling {format_fen(invoiced)} in all, but "
               f"the {len(group_payments)} payment(s) add up to {format_fen(paid)}, "
               f"{format_fen(abs(diff))} {word} (tolerance {format_fen(tol)})")
    others = [g for g in group_invoices if g.key_hex != inv.key_hex]
    others.sort(key=lambda g: (-(g.amount_fen + g.tax_fen), g.key_hex))
    recs = ((invoice_ref(inv),) + tuple(payment_ref(p) for p in group_payments)
            + tuple(invoice_ref(g) for g in others[:_MAX_CITED_GROUP_INVOICES]))
    return Finding(
        rule="amount_mismatch", uscc=inv.seller_uscc, reason=why, records=recs,
        thresholds=(("tolerance_fen", tol),),
        measured=(("invoice_total_fen", total), ("group_invoiced_fen", invoiced), ("group_paid_fen", paid),
                  ("difference_fen", diff), ("group_invoices", len(group_invoices)),
                  ("group_payments", len(group_payments))),
    )


def _group_mismatches(grouped: list[Invoice], payments_of: dict[str, tuple[Payment, ...]],
                      names_unknown: frozenset[str], tol: int, as_of_ord: int,
                      due_ord: Callable[[Invoice], int]) -> list[Finding]:
    """Settlement groups with more than one invoice or payment. Invoices linked to exactly the same
    payments form a bucket (one payment for several invoices; one contract's payments); buckets
    sharing a payment are merged with union-find over payment refs, which is rarely needed."""
    by_id: dict[int, tuple[list[Invoice], tuple[Payment, ...]]] = {}
    for inv in grouped:
        ps = payments_of[inv.key_hex]
        b = by_id.get(id(ps))
        if b is None:
            by_id[id(ps)] = ([inv], ps)
        else:
            b[0].append(inv)
    # Equal payment tuples that are distinct objects join the same bucket here.
    buckets: dict[tuple[str, ...], tuple[list[Invoice], tuple[Payment, ...]]] = {}
    for invs0, ps in by_id.values():
        refs = tuple(p.payment_ref for p in ps)
        b = buckets.get(refs)
        if b is None:
            buckets[refs] = (invs0, ps)
        else:
            b[0].extend(invs0)
    uses: dict[str, int] = {}
    for refs in buckets:
        for r in refs:
            uses[r] = uses.get(r, 0) + 1
    groups: list[tuple[list[Invoice], dict[str, Payment]]] = []
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:  # path compression
            parent[x], x = root, parent[x]
        return root

    shared: list[tuple[tuple[str, ...], list[Invoice], tuple[Payment, ...]]] = []
    for refs, (invs, ps) in buckets.items():
        if all(uses[r] == 1 for r in refs):
            groups.append((invs, {p.payment_ref: p for p in ps}))
        else:
            shared.append((refs, invs, ps))
            for r in refs:
                parent.setdefault(r, r)
            root = find(refs[0])
            for r in refs[1:]:
                other = find(r)
                if other != root:
                    parent[other] = root
    merged: dict[str, tuple[list[Invoice], dict[str, Payment]]] = {}
    for refs, invs, ps in shared:
        m_invs, m_pays = merged.setdefault(find(refs[0]), ([], {}))
        m_invs.extend(invs)
        for p in ps:
            m_pays[p.payment_ref] = p
    groups.extend(merged.values())

    out: list[Finding] = []
    for invs, pays in groups:
        if any(ref in names_unknown for ref in pays):
            continue
        paid = sum(p.amount_fen for p in pays.values())
        invoiced = sum(i.amount_fen + i.tax_fen for i in invs)
        if paid > invoiced + tol or (paid < invoiced - tol and as_of_ord > max(due_ord(i) for i in invs)):
            plist = sorted(pays.values(), key=lambda p: (p.paid_on, p.payment_ref))
            for inv in invs:
                out.append(_mismatch(inv, invs, plist, paid, invoiced, tol))
    return out


def _exceeding(invoices: Sequence[Invoice], contract_of: dict[str, Contract],
               over: set[int], tol: int) -> list[Finding]:
    under: dict[int, list[Invoice]] = {}
    contracts: dict[int, Contract] = {}
    for inv in invoices:
        c = contract_of.get(inv.key_hex)
        if c is not None and id(c) in over:
            under.setdefault(id(c), []).append(inv)
            contracts[id(c)] = c
    out: list[Finding] = []
    for cid, invs in under.items():
        c = contracts[cid]
        invs.sort(key=lambda i: (i.issued_on, i.key_hex))
        running = 0
        for n, inv in enumerate(invs, 1):
            running += inv.amount_fen + inv.tax_fen
            if running > c.amount_fen + tol:
                out.append(Finding(
                    rule="exceeds_contract", uscc=inv.seller_uscc,
                    reason=(f"with invoice {inv.number}, the {n} invoice(s) under contract {c.contract_no} "
                            f"add up to {format_fen(running)}, more than the contract's "
                            f"{format_fen(c.amount_fen)} (tolerance {format_fen(tol)})"),
                    records=(invoice_ref(inv), contract_ref(c)),
                    thresholds=(("contract_amount_fen", c.amount_fen), ("tolerance_fen", tol)),
                    measured=(("invoiced_to_date_fen", running), ("invoices_to_date", n),
                              ("excess_fen", running - c.amount_fen)),
                ))
    return out
