"""Fraud screening: rules that each say which records, which rule and which threshold.

Rules (:data:`SCREENING_RULES`), in the order they run (later rules use earlier results):

- ``no_real_supply`` (serious), the "three elements" test: an invoice (invoice flow) with neither a
  contract (goods flow) nor a linked payment from its buyer (fund flow). One finding per invoice,
  about the seller.
- ``third_party_payment`` (serious): a linked payment toward the invoice was made by someone other
  than the buyer or to someone other than the seller. One finding per invoice, citing the payments.
- ``circular_invoicing`` (serious): a simple cycle seller -> buyer -> ... -> seller of 2 to
  ``max_cycle_length`` enterprises whose invoices (one per edge, each at least
  ``min_cycle_invoice_fen``) all fall within ``cycle_window_days`` (last minus first issue day).
  Invoices are aggregated into (seller, buyer) edges; an iterative Tarjan pass keeps the strongly
  connected components with two or more enterprises (an acyclic supply chain has none); bounded
  depth-first search from each component's smallest member, through larger members only, finds
  each cycle once (no rotations), pruning paths whose edges' dates cannot share a window. The
  reported invoices are the tightest window's. One finding per member per cycle.
- ``no_headcount`` (warning): output (invoice totals in the analysed set) of at least
  ``large_invoicing_fen`` while the latest headcount snapshot up to ``as_of`` shows nobody insured,
  or there is no snapshot at all.
- ``new_and_sudden`` (warning): registered at most ``new_registration_days`` before its first
  output invoice, and invoicing at least ``sudden_volume_fen`` within ``new_registration_days``
  of registering.
- ``threshold_clustering`` (warning): at least ``clustering_min_invoices`` output invoices, and at
  least ``clustering_min_share`` of them, whose net amount (single-invoice limits apply to the
  amount before tax) is within ``clustering_band`` below one of ``clustering_limits_fen``.
- ``contagion`` (serious): an enterprise whose abnormal input invoices (buyer side) reach
  ``contagion_share`` of its input total and ``contagion_min_abnormal_fen``: each of its output
  invoices gets a finding citing that invoice and the largest abnormal inputs. Abnormal inputs are
  invoices cited by findings of ``abnormal_invoice_rules`` (reconciliation's and the rules above)
  and every output invoice of a seller hit by ``abnormal_seller_rules`` (shell signs). Outputs
  flagged this way are abnormal inputs downstream; this repeats to a fixed point, at most
  ``contagion_max_depth`` rounds.

Amounts are invoice totals (tax included) except for clustering. Shares are compared exactly (as
fractions), so 70% means 70%.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from fractions import Fraction

from .errors import InvalidRecordError
from .reconcile import Links, format_fen, invoice_ref, link, payment_ref, reconcile
from .records import Contract, Enterprise, Finding, HeadcountSnapshot, Invoice, Payment, RecordRef

__all__ = ["SCREENING_RULES", "SEVERITY", "ScreeningPolicy", "screen", "find_cycles", "strongly_connected"]

SCREENING_RULES = (
    "no_real_supply",
    "third_party_payment",
    "circular_invoicing",
    "contagion",
    "no_headcount",
    "new_and_sudden",
    "threshold_clustering",
)
SEVERITY = {
    "no_real_supply": "serious",
    "third_party_payment": "serious",
    "circular_invoicing": "serious",
    "contagion": "serious",
    "no_headcount": "warning",
    "new_and_sudden": "warning",
    "threshold_clustering": "warning",
}
_RULE_ORDER = {r: i for i, r in enumerate(SCREENING_RULES)}


@dataclass(frozen=True, slots=True)
class ScreeningPolicy:
    """Every threshold the rules apply; each finding repeats the ones it used."""

    # circular_invoicing
    cycle_window_days: int = 90  # last minus first issue day of the cycle's invoices
    max_cycle_length: int = 5  # enterprises in the cycle (2 = A->B->A)
    min_cycle_invoice_fen: int = 100_000  # 1,000.00 yuan: smaller invoices do not make edges
    max_cycles: int = 100_000  # stop the search after this many cycles (a guard on dense data)
    # contagion
    contagion_share: float = 0.70
    contagion_min_abnormal_fen: int = 10_000_000  # 100,000.00 yuan of abnormal inputs
    contagion_max_depth: int = 5
    abnormal_invoice_rules: tuple[str, ...] = (
        "no_real_supply", "third_party_payment", "circular_invoicing", "contagion",
        "no_contract", "payment_not_from_buyer", "payment_not_to_seller",
    )
    abnormal_seller_rules: tuple[str, ...] = ("no_headcount", "new_and_sudden")
    # shell signs
    large_invoicing_fen: int = 100_000_000  # 1,000,000.00 yuan of output in the analysed set
    new_registration_days: int = 180
    sudden_volume_fen: int = 100_000_000  # 1,000,000.00 yuan within the first 180 days
    clustering_limits_fen: tuple[int, ...] = (10_000_000, 100_000_000)  # 100,000 and 1,000,000 yuan
    clustering_band: float = 0.05  # "just under" = at least limit x (1 - band), below the limit
    clustering_min_invoices: int = 5
    clustering_min_share: float = 0.50
    # how many records an enterprise-level finding cites at most (counts are in `measured`)
    cited_records: int = 20

    def __post_init__(self) -> None:
        for name in ("cycle_window_days", "min_cycle_invoice_fen", "contagion_min_abnormal_fen",
                     "large_invoicing_fen", "new_registration_days", "sudden_volume_fen"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise InvalidRecordError(f"expected a whole number >= 0, got {v!r}", name)
        for name in ("max_cycles", "contagion_max_depth", "clustering_min_invoices", "cited_records"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise InvalidRecordError(f"expected a whole number >= 1, got {v!r}", name)
        if not isinstance(self.max_cycle_length, int) or self.max_cycle_length < 2:
            raise InvalidRecordError(f"expected a cycle length >= 2, got {self.max_cycle_length!r}",
                                     "max_cycle_length")
        for name in ("contagion_share", "clustering_band", "clustering_min_share"):
            v = getattr(self, name)
            if not isinstance(v, int | float) or isinstance(v, bool) or not 0 < v <= 1:
                raise InvalidRecordError(f"expected a share in (0, 1], got {v!r}", name)
        if not self.clustering_limits_fen or any(
                not isinstance(x, int) or x <= 0 for x in self.clustering_limits_fen):
            raise InvalidRecordError(f"expected limits in fen > 0, got {self.clustering_limits_fen!r}",
                                     "clustering_limits_fen")

    def fraction(self, name: str) -> Fraction:
        """A share as the decimal the policy states (0.7 is 7/10, not the float's expansion)."""
        return Fraction(repr(float(getattr(self, name))))

    def thresholds(self, *names: str) -> tuple[tuple[str, float | int | str], ...]:
        out: list[tuple[str, float | int | str]] = []
        for n in names:
            v = getattr(self, n)
            out.append((n, ",".join(map(str, v)) if isinstance(v, tuple) else v))
        return tuple(out)


def screen(
    enterprises: Iterable[Enterprise],
    snapshots: Iterable[HeadcountSnapshot],
    contracts: Iterable[Contract],
    payments: Iterable[Payment],
    invoices: Iterable[Invoice],
    *,
    policy: ScreeningPolicy = ScreeningPolicy(),
    as_of: date,
    reconciliation: list[Finding] | None = None,
    links: Links | None = None,
    default_term_days: int = 90,
) -> list[Finding]:
    """Run every screening rule; findings sorted by (enterprise, rule, first cited record).

    ``reconciliation`` is :func:`reconcile`'s output over the same records (computed here, with
    ``default_term_days``, when not given); its findings count toward contagion. ``links`` (from
    :func:`link` with the same ``as_of``) saves linking again.
    """
    if not isinstance(as_of, date):
        raise InvalidRecordError(f"expected a date, got {as_of!r}", "as_of")
    invoices = invoices if isinstance(invoices, Sequence) else list(invoices)
    payments = payments if isinstance(payments, Sequence) else list(payments)
    contracts = contracts if isinstance(contracts, Sequence) else list(contracts)
    if links is None:
        links = link(invoices, contracts, payments, as_of=as_of)
    elif links.as_of != as_of:
        raise InvalidRecordError(f"expected links made as of {as_of}, got links as of {links.as_of}", "links")
    if reconciliation is None:
        reconciliation = reconcile(invoices, contracts, payments, as_of=as_of,
                                   default_term_days=default_term_days, links=links)
    ents = {e.uscc: e for e in enterprises}

    out = _three_elements(invoices, links)
    out.extend(_circular(invoices, policy))

    # One pass of per-enterprise aggregates for the shell signs and contagion.
    out_by_seller: dict[str, list[Invoice]] = {}
    in_fen: dict[str, int] = {}
    in_count: dict[str, int] = {}
    for inv in invoices:
        lst = out_by_seller.get(inv.seller_uscc)
        if lst is None:
            out_by_seller[inv.seller_uscc] = [inv]
        else:
            lst.append(inv)
        b = inv.buyer_uscc
        in_fen[b] = in_fen.get(b, 0) + inv.amount_fen + inv.tax_fen
        in_count[b] = in_count.get(b, 0) + 1

    out.extend(_shell_signs(out_by_seller, ents, snapshots, policy, as_of))
    out.extend(_contagion(invoices, out_by_seller, in_fen, in_count, reconciliation + out, policy))
    out.sort(key=lambda f: (f.uscc, _RULE_ORDER[f.rule], f.records[0].key if f.records else ""))
    return out


# --- three elements ---------------------------------------------------------------------------

def _three_elements(invoices: Sequence[Invoice], links: Links) -> list[Finding]:
    contract_of, payments_of = links.contract, links.payments
    out: list[Finding] = []
    for inv in invoices:
        key = inv.key_hex
        ps = payments_of.get(key, ())
        buyer, seller = inv.buyer_uscc, inv.seller_uscc
        total = inv.amount_fen + inv.tax_fen
        if key not in contract_of and not any(p.payer_uscc == buyer for p in ps):
            others = " (only payments from others)" if ps else ""
            out.append(Finding(
                rule="no_real_supply", uscc=seller,
                reason=(f"invoice {inv.number} of {format_fen(total)} from {seller} to {buyer} has no "
                        f"contract between them and no payment from the buyer{others}: no goods or "
                        f"fund flow backs the invoice flow"),
                records=(invoice_ref(inv),) + tuple(payment_ref(p) for p in ps),
                thresholds=(("contract_required", "yes"), ("buyer_payment_required", "yes")),
                measured=(("contract", "none"), ("buyer_paid_fen", 0), ("invoice_total_fen", total),
                          ("other_payments", len(ps))),
                severity=SEVERITY["no_real_supply"],
            ))
        if ps:
            third = [p for p in ps if p.payer_uscc != buyer or p.payee_uscc != seller]
            if third:
                third_fen = sum(p.amount_fen for p in third)
                parts = "; ".join(
                    f"{p.payment_ref}: {format_fen(p.amount_fen)} from {p.payer_uscc} to {p.payee_uscc}"
                    for p in third)
                out.append(Finding(
                    rule="third_party_payment", uscc=seller,
                    reason=(f"invoice {inv.number} of {format_fen(total)} from {seller} to {buyer} is "
                            f"paid {'wholly' if third_fen >= total and len(third) == len(ps) else 'partly'}"
                            f" outside the parties ({parts})"),
                    records=(invoice_ref(inv),) + tuple(payment_ref(p) for p in third),
                    thresholds=(("payer", buyer), ("payee", seller)),
                    measured=(("third_party_fen", third_fen), ("invoice_total_fen", total),
                              ("third_party_payments", len(third)),
                              ("payers", ",".join(sorted({p.payer_uscc for p in third}))),
                              ("payees", ",".join(sorted({p.payee_uscc for p in third})))),
                    severity=SEVERITY["third_party_payment"],
                ))
    return out


# --- circular invoicing ---------------------------------------------------------------------

def strongly_connected(succ: Sequence[Sequence[int]]) -> list[list[int]]:
    """Tarjan's strongly connected components of nodes ``0..len(succ)-1``, iteratively (no
    recursion limit); only components of two or more nodes, each sorted."""
    n = len(succ)
    index = [-1] * n
    low = [0] * n
    on_stack = [False] * n
    stack: list[int] = []
    comps: list[list[int]] = []
    counter = 0
    for root in range(n):
        if index[root] != -1:
            continue
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack[root] = True
        work = [(root, 0)]
        while work:
            v, i = work[-1]
            nbrs = succ[v]
            if i < len(nbrs):
                work[-1] = (v, i + 1)
                w = nbrs[i]
                if index[w] == -1:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack[w] = True
                    work.append((w, 0))
                elif on_stack[w] and index[w] < low[v]:
                    low[v] = index[w]
                continue
            work.pop()
            if work:
                u = work[-1][0]
                if low[v] < low[u]:
                    low[u] = low[v]
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack[w] = False
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    comps.append(sorted(comp))
    return comps


@dataclass(frozen=True, slots=True)
class Cycle:
    members: tuple[str, ...]  # from the smallest USCC, in invoicing order
    invoices: tuple[Invoice, ...]  # invoices[i] is from members[i] to members[i + 1] (wrapping)
    span_days: int


def find_cycles(invoices: Iterable[Invoice], policy: ScreeningPolicy = ScreeningPolicy()) -> list[Cycle]:
    """Every simple invoice cycle of 2..max_cycle_length enterprises within the window, once each."""
    min_fen, window, max_len = policy.min_cycle_invoice_fen, policy.cycle_window_days, policy.max_cycle_length
    edges: dict[tuple[str, str], list[Invoice]] = {}
    for inv in invoices:
        if inv.seller_uscc != inv.buyer_uscc and inv.amount_fen + inv.tax_fen >= min_fen:
            k = (inv.seller_uscc, inv.buyer_uscc)
            lst = edges.get(k)
            if lst is None:
                edges[k] = [inv]
            else:
                lst.append(inv)
    names = sorted({u for pair in edges for u in pair})
    ids = {u: i for i, u in enumerate(names)}
    succ: list[list[int]] = [[] for _ in names]
    for s, b in edges:
        succ[ids[s]].append(ids[b])
    for lst2 in succ:
        lst2.sort()

    cycles: list[Cycle] = []
    for comp in strongly_connected(succ):
        members = set(comp)
        local = {u: [v for v in succ[u] if v in members] for u in comp}
        # Per edge: invoices in (day, key) order, their day ordinals, and the first/last day.
        ed: dict[tuple[int, int], tuple[list[Invoice], list[int]]] = {}
        for u in comp:
            for v in local[u]:
                invs = sorted(edges[(names[u], names[v])], key=lambda i: (i.issued_on, i.key_hex))
                ed[(u, v)] = (invs, [i.issued_on.toordinal() for i in invs])
        for s in comp:
            _cycles_from(s, local, ed, window, max_len, names, cycles, policy.max_cycles)
            if len(cycles) >= policy.max_cycles:
                return cycles
    return cycles


def _cycles_from(s: int, local: dict[int, list[int]], ed: dict[tuple[int, int], tuple[list[Invoice], list[int]]],
                 window: int, max_len: int, names: list[str], cycles: list[Cycle], cap: int) -> None:
    path = [s]
    on_path = {s}

    def dfs(u: int, lo: float, hi: float) -> None:
        for v in local[u]:
            if len(cycles) >= cap:
                return
            ords = ed[(u, v)][1]
            # Some day t starts the window: t in [first - window, last] for every edge on the path.
            nlo = max(lo, ords[0] - window)
            nhi = min(hi, ords[-1])
            if nlo > nhi:
                continue
            if v == s:
                if len(path) >= 2:
                    c = _fit_window(path, ed, window, names, int(nlo), int(nhi))
                    if c is not None:
                        cycles.append(c)
            elif v > s and v not in on_path and len(path) < max_len:
                path.append(v)
                on_path.add(v)
                dfs(v, nlo, nhi)
                path.pop()
                on_path.discard(v)

    dfs(s, float("-inf"), float("inf"))


def _fit_window(path: list[int], ed: dict[tuple[int, int], tuple[list[Invoice], list[int]]], window: int,
                names: list[str], lo: int, hi: int) -> Cycle | None:
    """The tightest choice of one invoice per edge (smallest last-minus-first day), if within the
    window: for each candidate first day t, each edge takes its first invoice on or after t."""
    hops = [(path[i], path[(i + 1) % len(path)]) for i in range(len(path))]
    lists = [ed[h] for h in hops]
    starts: set[int] = set()
    for _, ords in lists:
        starts.update(ords[bisect.bisect_left(ords, lo):bisect.bisect_right(ords, hi)])
    best: tuple[int, int] | None = None
    for t in sorted(starts):
        last = t
        for _, ords in lists:
            i = bisect.bisect_left(ords, t)
            if i == len(ords):
                last = -1
                break
            if ords[i] > last:
                last = ords[i]
        if last < 0:
            break  # some edge has nothing on or after t; later t cannot do better
        if best is None or last - t < best[0]:
            best = (last - t, t)
    if best is None or best[0] > window:
        return None
    t = best[1]
    chosen = tuple(invs[bisect.bisect_left(ords, t)] for invs, ords in lists)
    return Cycle(tuple(names[u] for u in path), chosen, best[0])


def _circular(invoices: Sequence[Invoice], policy: ScreeningPolicy) -> list[Finding]:
    out: list[Finding] = []
    thresholds = policy.thresholds("cycle_window_days", "max_cycle_length", "min_cycle_invoice_fen")
    for c in find_cycles(invoices, policy):
        k = len(c.members)
        ring = ">".join(c.members + (c.members[0],))
        first = min(i.issued_on for i in c.invoices)
        last = max(i.issued_on for i in c.invoices)
        total = sum(i.amount_fen + i.tax_fen for i in c.invoices)
        refs = tuple(invoice_ref(i) for i in c.invoices)
        measured: tuple[tuple[str, float | int | str], ...] = (
            ("cycle_length", k), ("span_days", c.span_days), ("cycle", ring),
            ("first_issued_on", first.isoformat()), ("last_issued_on", last.isoformat()),
            ("cycle_total_fen", total))
        for m in c.members:
            out.append(Finding(
                rule="circular_invoicing", uscc=m,
                reason=(f"{m} is one of {k} enterprises invoicing in a circle ({ring}): {k} invoices "
                        f"from {first} to {last}, {c.span_days} days apart at most, within the "
                        f"{policy.cycle_window_days}-day window"),
                records=refs, thresholds=thresholds, measured=measured,
                severity=SEVERITY["circular_invoicing"],
            ))
    return out


# --- shell signs --------------------------------------------------------------------------

def _top(invs: Iterable[Invoice], n: int, *, net: bool = False) -> list[Invoice]:
    if net:
        return sorted(invs, key=lambda i: (-i.amount_fen, i.key_hex))[:n]
    return sorted(invs, key=lambda i: (-(i.amount_fen + i.tax_fen), i.key_hex))[:n]


def _enterprise_refs(uscc: str, ents: dict[str, Enterprise]) -> tuple[RecordRef, ...]:
    e = ents.get(uscc)
    return (RecordRef("enterprise", uscc, e.log_index),) if e is not None else ()


def _shell_signs(out_by_seller: dict[str, list[Invoice]], ents: dict[str, Enterprise],
                 snapshots: Iterable[HeadcountSnapshot], policy: ScreeningPolicy, as_of: date) -> list[Finding]:
    month = f"{as_of.year:04d}-{as_of.month:02d}"
    latest: dict[str, HeadcountSnapshot] = {}
    for sn in snapshots:
        if sn.period <= month:
            cur = latest.get(sn.uscc)
            if cur is None or sn.period > cur.period:
                latest[sn.uscc] = sn
    band = policy.fraction("clustering_band")
    # Smallest net amount that is "just under" each limit: ceil(limit x (1 - band)).
    bands = [(-((-limit * (band.denominator - band.numerator)) // band.denominator), limit)
             for limit in sorted(policy.clustering_limits_fen)]
    min_share = policy.fraction("clustering_min_share")
    n_cite = policy.cited_records
    out: list[Finding] = []
    for seller in sorted(out_by_seller):
        outs = out_by_seller[seller]
        out_fen = sum(i.amount_fen + i.tax_fen for i in outs)
        ent = ents.get(seller)
        if out_fen >= policy.large_invoicing_fen:
            snap = latest.get(seller)
            if snap is None or snap.insured == 0:
                if snap is None:
                    why = f"no headcount snapshot on record up to {month}"
                    snap_refs: tuple[RecordRef, ...] = ()
                    meas: tuple[tuple[str, float | int | str], ...] = (("snapshot_period", "none"),)
                else:
                    why = (f"its latest headcount snapshot ({snap.period}) shows {snap.employees} "
                           f"employee(s) and nobody insured")
                    snap_refs = (RecordRef("snapshot", f"{seller}/{snap.period}", snap.log_index),)
                    meas = (("snapshot_period", snap.period), ("employees", snap.employees), ("insured", 0))
                out.append(Finding(
                    rule="no_headcount", uscc=seller,
                    reason=(f"{seller} invoiced {format_fen(out_fen)} in {len(outs)} invoice(s), at least "
                            f"{format_fen(policy.large_invoicing_fen)}, but {why}"),
                    records=_enterprise_refs(seller, ents) + snap_refs
                    + tuple(invoice_ref(i) for i in _top(outs, n_cite)),
                    thresholds=policy.thresholds("large_invoicing_fen") + (("insured_at_most", 0),),
                    measured=(("output_fen", out_fen), ("output_invoices", len(outs))) + meas,
                    severity=SEVERITY["no_headcount"],
                ))
        if ent is not None:
            first = min(i.issued_on for i in outs)
            waited = (first - ent.registered_on).days
            if 0 <= waited <= policy.new_registration_days:
                until = ent.registered_on + timedelta(days=policy.new_registration_days)
                early = [i for i in outs if i.issued_on <= until]
                early_fen = sum(i.amount_fen + i.tax_fen for i in early)
                if early_fen >= policy.sudden_volume_fen:
                    out.append(Finding(
                        rule="new_and_sudden", uscc=seller,
                        reason=(f"{seller}, registered on {ent.registered_on}, issued its first invoice "
                                f"{waited} days later and invoiced {format_fen(early_fen)} in "
                                f"{len(early)} invoice(s) by {until}, at least "
                                f"{format_fen(policy.sudden_volume_fen)} within "
                                f"{policy.new_registration_days} days of registering"),
                        records=_enterprise_refs(seller, ents)
                        + tuple(invoice_ref(i) for i in _top(early, n_cite)),
                        thresholds=policy.thresholds("new_registration_days", "sudden_volume_fen"),
                        measured=(("registered_on", ent.registered_on.isoformat()),
                                  ("first_invoice_on", first.isoformat()),
                                  ("days_to_first_invoice", waited), ("early_output_fen", early_fen),
                                  ("early_invoices", len(early))),
                        severity=SEVERITY["new_and_sudden"],
                    ))
        if len(outs) >= policy.clustering_min_invoices:
            under: list[Invoice] = []
            per_limit = {limit: 0 for _, limit in bands}
            for i in outs:
                a = i.amount_fen
                for lo, limit in bands:
                    if lo <= a < limit:
                        under.append(i)
                        per_limit[limit] += 1
                        break
            n = len(under)
            if n >= policy.clustering_min_invoices and n * min_share.denominator >= min_share.numerator * len(outs):
                out.append(Finding(
                    rule="threshold_clustering", uscc=seller,
                    reason=(f"{n} of {seller}'s {len(outs)} invoices ({n / len(outs):.1%}) have net amounts "
                            f"within {float(band):.0%} below a single-invoice limit "
                            f"({', '.join(format_fen(limit) for _, limit in bands)}); at least "
                            f"{policy.clustering_min_invoices} and {float(min_share):.0%} flag clustering"),
                    records=_enterprise_refs(seller, ents)
                    + tuple(invoice_ref(i) for i in _top(under, n_cite, net=True)),
                    thresholds=policy.thresholds("clustering_limits_fen", "clustering_band",
                                                 "clustering_min_invoices", "clustering_min_share"),
                    measured=(("just_under_invoices", n), ("output_invoices", len(outs)),
                              ("just_under_share", round(n / len(outs), 4)),
                              ("just_under_net_fen", sum(i.amount_fen for i in under)))
                    + tuple((f"just_under_{limit}_fen", c) for limit, c in per_limit.items()),
                    severity=SEVERITY["threshold_clustering"],
                ))
    return out


# --- contagion ---------------------------------------------------------------------------

def _contagion(invoices: Sequence[Invoice], out_by_seller: dict[str, list[Invoice]], in_fen: dict[str, int],
               in_count: dict[str, int], findings: list[Finding], policy: ScreeningPolicy) -> list[Finding]:
    inv_rules = set(policy.abnormal_invoice_rules)
    seller_rules = set(policy.abnormal_seller_rules)
    abnormal_keys: set[str] = set()
    bad_sellers: set[str] = set()
    for f in findings:
        if f.rule in inv_rules:
            abnormal_keys.update(r.key for r in f.records if r.kind == "invoice")
        if f.rule in seller_rules:
            bad_sellers.add(f.uscc)
    abnormal: dict[str, Invoice] = {}
    for inv in invoices:
        if inv.key_hex in abnormal_keys:
            abnormal[inv.key_hex] = inv
    for s in sorted(bad_sellers):
        for inv in out_by_seller.get(s, ()):
            abnormal[inv.key_hex] = inv
    abn_fen: dict[str, int] = {}
    abn_in: dict[str, list[Invoice]] = {}
    for inv in abnormal.values():
        b = inv.buyer_uscc
        abn_fen[b] = abn_fen.get(b, 0) + inv.amount_fen + inv.tax_fen
        abn_in.setdefault(b, []).append(inv)

    share = policy.fraction("contagion_share")
    flagged: dict[str, int] = {}  # enterprise -> the round it was first flagged in
    frontier = set(abn_fen)
    depth = 1
    while frontier and depth <= policy.contagion_max_depth:
        newly = [b for b in sorted(frontier) if b not in flagged and abn_fen[b] >= policy.contagion_min_abnormal_fen
                 and abn_fen[b] * share.denominator >= share.numerator * in_fen[b]]
        frontier = set()
        for b in newly:
            flagged[b] = depth
        for b in newly:
            for inv in out_by_seller.get(b, ()):
                if inv.key_hex not in abnormal:
                    abnormal[inv.key_hex] = inv
                    nb = inv.buyer_uscc
                    abn_fen[nb] = abn_fen.get(nb, 0) + inv.amount_fen + inv.tax_fen
                    abn_in.setdefault(nb, []).append(inv)
                    frontier.add(nb)
        depth += 1

    out: list[Finding] = []
    thresholds = policy.thresholds("contagion_share", "contagion_min_abnormal_fen", "contagion_max_depth")
    for e in sorted(flagged):
        outs = out_by_seller.get(e, ())
        if not outs:
            continue
        ins = abn_in[e]
        cited = tuple(invoice_ref(i) for i in _top(ins, policy.cited_records))
        a, t = abn_fen[e], in_fen[e]
        measured: tuple[tuple[str, float | int | str], ...] = (
            ("abnormal_share", round(a / t, 4)), ("abnormal_input_fen", a), ("input_fen", t),
            ("abnormal_input_invoices", len(ins)), ("input_invoices", in_count[e]),
            ("cited_inputs", len(cited)), ("output_invoices", len(outs)), ("depth", flagged[e]))
        head = (f"{a / t:.1%} of {e}'s inputs are abnormal ({format_fen(a)} of {format_fen(t)}, "
                f"{len(ins)} of {in_count[e]} invoices), at least {float(share):.0%} and "
                f"{format_fen(policy.contagion_min_abnormal_fen)}")
        for inv in sorted(outs, key=lambda i: (i.issued_on, i.key_hex)):
            out.append(Finding(
                rule="contagion", uscc=e,
                reason=(f"{head}; so its invoice {inv.number} to {inv.buyer_uscc} is flagged "
                        f"(round {flagged[e]})"),
                records=(invoice_ref(inv),) + cited, thresholds=thresholds, measured=measured,
                severity=SEVERITY["contagion"],
            ))
    return out
