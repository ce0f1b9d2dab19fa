"""A synthetic economy with planted fraud, for tests and the ``flows`` benchmark.

The honest economy is a supply chain in four tiers: raw materials -> manufacturing -> wholesale ->
retail. Every buyer of tiers 1-3 trades with two to five suppliers of the tier above, so trade
edges only run down the chain and honest invoicing has no cycles. Invoices are spread over the
trading pairs with log-normal activity; net amounts are log-normal around a median per tier (so
they do not cluster under the single-invoice limits), 13% VAT. Each trading pair has one contract,
signed before the period, worth 100-150% of what is invoiced under it. Buyers pay sellers in full
within 30 days (and within the contract's term): most payments name one invoice, some settle two or
three invoices issued within ten days, some name only the contract. Enterprises were registered
more than a year before the period and have insured staff every month.

Planted, per unit of eleven enterprises (one unit per 1,000 enterprises, at least one), with the
rules that must find them (:attr:`Economy.planted`):

- ``circular_invoicing``: A -> B -> C -> A within 30 days, with contracts and payments in full;
- ``third_party_payment`` (and ``payment_not_from_buyer`` / ``payment_not_to_seller``): seller S
  invoices buyer T twice; one invoice is paid by an unrelated X, the other paid by T to an
  unrelated Y;
- ``no_headcount`` and ``new_and_sudden``: shell H, registered 5-30 days before its first invoice,
  nobody insured, invoices over 1.3 million yuan to E within 20 days;
- ``no_real_supply`` (and ``no_contract``): N invoices E three times, with no contract and no payment;
- ``contagion``: E buys from H and N (over 90% of its inputs) and one honest manufacturer, and
  sells to three honest retailers (about 8% of each retailer's inputs, so they stay clean);
- ``threshold_clustering``: K issues eight invoices just under 100,000 yuan and two small ones.

:attr:`Economy.clean` is every enterprise outside the planted units: none must be flagged by any
rule, whatever ``as_of`` (honest payments come within any default term of 30 days or more). The
planted payment anomalies show once their payments are dated on or before ``as_of``; from the
period's end plus 30 days on, every payment is.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta
from math import exp

from .errors import InvalidRecordError
from .identifiers import invoice_key, make_uscc
from .records import Contract, Enterprise, HeadcountSnapshot, Invoice, Payment

__all__ = ["Economy", "generate_economy", "UNIT_SIZE", "PLANTED_INVOICES_PER_UNIT"]

UNIT_SIZE = 11  # enterprises per planted unit
PLANTED_INVOICES_PER_UNIT = 26
_TIERS = (  # (industry, share of honest enterprises, goods sold, median net invoice in fen)
    ("raw materials", 0.10, "steel billets", 0),
    ("manufacturing", 0.25, "machined parts", 5_000_000),
    ("wholesale", 0.25, "industrial supplies", 3_000_000),
    ("retail", 0.40, "", 1_000_000),
)
# Administrative divisions: Kunshan, Xi'an, Dezhou, Tianjin, Shenzhen, Shanghai Pudong.
_REGIONS = ("320583", "610100", "371400", "120000", "440300", "310115")
_TERMS = (30, 45, 60, 90, None)
_PAY_WITHIN = 30  # honest buyers pay within this many days (and within the contract's term)


@dataclass(slots=True)
class Economy:
    enterprises: list[Enterprise]
    snapshots: list[HeadcountSnapshot]
    contracts: list[Contract]
    payments: list[Payment]
    invoices: list[Invoice]  # by trading pair, in issue order within a pair, then the planted ones
    planted: dict[str, frozenset[str]]  # rule -> enterprises planted for it
    clean: frozenset[str]  # enterprises outside every planted unit
    start: date
    end: date  # the last day of the period (inclusive)


class _Builder:
    """Sequences and record factories shared by the honest and the planted parts."""

    def __init__(self, rng: random.Random, start: date, days: int) -> None:
        self.rng = rng
        self.start = start
        self._days = {n: start + timedelta(days=n) for n in range(-400, days + 200)}
        self.invoices: list[Invoice] = []
        self.contracts: list[Contract] = []
        self.payments: list[Payment] = []
        self._inv = self._con = self._pay = 0

    def day(self, n: int) -> date:
        d = self._days.get(n)
        return d if d is not None else self.start + timedelta(days=n)

    def contract_no(self) -> str:
        self._con += 1
        return f"HT{self._con:09d}"

    def contract(self, buyer: str, seller: str, amount_fen: int, signed: int, subject: str,
                 term: int | None, no: str | None = None) -> str:
        no = no or self.contract_no()
        self.contracts.append(Contract(no, buyer, seller, amount_fen, self.day(signed), subject, term))
        return no

    def invoice(self, seller: str, buyer: str, net_fen: int, on: int, contract_no: str | None,
                goods: str) -> Invoice:
        self._inv += 1
        number = f"26{self._inv:018d}"
        inv = Invoice(invoice_key(seller, "", number), seller, buyer, "", number, net_fen, net_fen * 13 // 100,
                      self._days[on], contract_no, goods)  # invoice and payment days are all cached
        self.invoices.append(inv)
        return inv

    def pay(self, payer: str, payee: str, amount_fen: int, on: int, contract_no: str | None,
            keys: tuple[str, ...]) -> None:
        self._pay += 1
        self.payments.append(Payment(f"PAY{self._pay:012d}", payer, payee, amount_fen, self._days[on], contract_no,
                                     keys))


def _round_up(fen: int, step: int = 10_000) -> int:
    return -(-fen // step) * step


def generate_economy(*, enterprises: int, invoices: int, seed: int = 20261122, start: date = date(2026, 7, 1),
                     days: int = 92) -> Economy:
    """A deterministic economy of ``enterprises`` enterprises and exactly ``invoices`` invoices."""
    if not isinstance(enterprises, int) or enterprises < 60:
        raise InvalidRecordError(f"expected at least 60 enterprises, got {enterprises!r}", "enterprises")
    units = max(1, enterprises // 1000)
    planted_invoices = units * PLANTED_INVOICES_PER_UNIT
    if not isinstance(invoices, int) or invoices < planted_invoices + enterprises:
        raise InvalidRecordError(
            f"expected at least {planted_invoices + enterprises} invoices for {enterprises} enterprises, "
            f"got {invoices!r}", "invoices")
    if not isinstance(days, int) or days < 31:
        raise InvalidRecordError(f"expected a period of at least 31 days, got {days!r}", "days")
    rng = random.Random(seed)
    b = _Builder(rng, start, days)

    usccs = [make_uscc("91" + _REGIONS[i % len(_REGIONS)] + f"{(i * 7919 + 12345) % 10**9:09d}")
             for i in range(enterprises)]
    order = list(range(enterprises))
    rng.shuffle(order)
    unit_idx = order[:units * UNIT_SIZE]
    honest = order[units * UNIT_SIZE:]
    tiers: list[list[str]] = []
    at = 0
    for t, (_, share, _, _) in enumerate(_TIERS):
        n = len(honest) - at if t == len(_TIERS) - 1 else max(3, round(len(honest) * share))
        tiers.append([usccs[i] for i in honest[at:at + n]])
        at += n
    industry = {u: _TIERS[t][0] for t, lst in enumerate(tiers) for u in lst}

    in_fen = _honest_trade(b, tiers, invoices - planted_invoices, days)
    ents: list[Enterprise] = []
    snaps: list[HeadcountSnapshot] = []
    months = _months(start, b.day(days - 1))
    planted: dict[str, set[str]] = {}
    registered: dict[str, date] = {}
    staff: dict[str, int] = {}  # insured headcount; 0 for shells
    used_customers: set[str] = set()
    for k in range(units):
        unit = [usccs[i] for i in unit_idx[k * UNIT_SIZE:(k + 1) * UNIT_SIZE]]
        _plant_unit(b, unit, tiers, in_fen, used_customers, days, planted, registered, staff, industry)

    for u in usccs:
        reg = registered.get(u) or b.day(-rng.randint(400, 5000))
        ents.append(Enterprise(u, f"Enterprise {u[8:17]} ({industry.get(u, 'trading')})", reg, u[2:8],
                               industry.get(u, "trading")))
        insured = staff.get(u)
        if insured is None:
            insured = rng.randint(1, 300)
        employees = insured + (rng.randint(0, 10) if insured else rng.randint(0, 1))
        for m in months:
            snaps.append(HeadcountSnapshot(u, m, employees, insured))

    unit_members = {usccs[i] for i in unit_idx}
    return Economy(
        enterprises=ents, snapshots=snaps, contracts=b.contracts, payments=b.payments, invoices=b.invoices,
        planted={rule: frozenset(s) for rule, s in sorted(planted.items())},
        clean=frozenset(u for u in usccs if u not in unit_members),
        start=start, end=b.day(days - 1),
    )


def _months(first: date, last: date) -> list[str]:
    out = []
    y, m = first.year, first.month
    while (y, m) <= (last.year, last.month):
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def _honest_trade(b: _Builder, tiers: list[list[str]], n_invoices: int, days: int) -> dict[str, int]:
    """Honest invoices, contracts and payments; returns each buyer's input total (fen)."""
    rng = b.rng
    pairs: list[tuple[str, str, int, str]] = []  # (seller, buyer, median net fen, goods)
    weights: list[float] = []
    for t in range(1, len(tiers)):
        suppliers = tiers[t - 1]
        goods = _TIERS[t - 1][2]
        for buyer in tiers[t]:
            for seller in rng.sample(suppliers, min(rng.randint(2, 5), len(suppliers))):
                pairs.append((seller, buyer, int(_TIERS[t][3] * rng.lognormvariate(0, 0.7)), goods))
                weights.append(rng.lognormvariate(0, 1))
    counts = [0] * len(pairs)
    for i in rng.choices(range(len(pairs)), weights=weights, k=n_invoices):
        counts[i] += 1

    in_fen: dict[str, int] = {}
    # random() and gauss() are much cheaper per call than randint() and lognormvariate().
    rand, gauss = rng.random, rng.gauss
    invoice, pay = b.invoice, b.pay
    for (seller, buyer, median, goods), c in zip(pairs, counts, strict=True):
        if not c:
            continue
        term = rng.choice(_TERMS)
        within = min(term or _PAY_WITHIN, _PAY_WITHIN)
        signed = -1 - int(rand() * 300)
        cno = b.contract_no()  # the contract is appended once its amount is known
        on_days = sorted(int(rand() * days) for _ in range(c))
        invs = [invoice(seller, buyer, max(10_000, min(500_000_000, int(median * exp(0.5 * gauss())))), d, cno,
                        goods) for d in on_days]
        total = sum(i.amount_fen + i.tax_fen for i in invs)
        in_fen[buyer] = in_fen.get(buyer, 0) + total
        b.contract(buyer, seller, _round_up(int(total * (1 + rand() / 2)) + 1), signed, goods, term, cno)
        i = 0
        while i < c:
            r = rand()
            if r < 0.15 and i + 1 < c:
                j = i + 1
                limit = i + (2 if rand() < 0.5 else 3)
                while j < c and j < limit and on_days[j] - on_days[i] <= 10:
                    j += 1
                if j - i >= 2:
                    group = invs[i:j]
                    first, last = on_days[i], on_days[j - 1]
                    pay(buyer, seller, sum(g.amount_fen + g.tax_fen for g in group),
                        last + int(rand() * (within - (last - first) + 1)), cno, tuple(g.key_hex for g in group))
                    i = j
                    continue
            inv = invs[i]
            if r < 0.25:  # names only the contract
                pay(buyer, seller, inv.amount_fen + inv.tax_fen, on_days[i] + int(rand() * (within + 1)), cno, ())
            else:
                pay(buyer, seller, inv.amount_fen + inv.tax_fen, on_days[i] + int(rand() * (within + 1)), cno,
                    (inv.key_hex,))
            i += 1
    return in_fen


def _sale(b: _Builder, seller: str, buyer: str, nets: list[int], on: list[int], goods: str, *,
          pay_delay: int = 10, signed: int | None = None) -> list[Invoice]:
    """Invoices under one new contract, each paid in full by the buyer ``pay_delay`` days later."""
    if signed is None:
        signed = min(on) - b.rng.randint(5, 60)
    total = sum(n + n * 13 // 100 for n in nets)
    cno = b.contract(buyer, seller, _round_up(total + 1), signed, goods, 60)
    invs = [b.invoice(seller, buyer, n, d, cno, goods) for n, d in zip(nets, on, strict=True)]
    for inv, d in zip(invs, on, strict=True):
        b.pay(buyer, seller, inv.amount_fen + inv.tax_fen, d + pay_delay, cno, (inv.key_hex,))
    return invs


def _plant_unit(b: _Builder, unit: list[str], tiers: list[list[str]], in_fen: dict[str, int],
                used_customers: set[str], days: int, planted: dict[str, set[str]],
                registered: dict[str, date], staff: dict[str, int], industry: dict[str, str]) -> None:
    rng = b.rng
    a, bb, c, s, t, x, y, h, n, e, k = unit

    def mark(rule: str, *who: str) -> None:
        planted.setdefault(rule, set()).update(who)

    # Circular invoicing: A -> B -> C -> A within 30 days, paper trail complete.
    d0 = rng.randint(0, days - 31)
    for (sel, buy), d in zip(((a, bb), (bb, c), (c, a)), (d0, d0 + rng.randint(1, 14), d0 + rng.randint(15, 29)),
                             strict=True):
        _sale(b, sel, buy, [rng.randint(40_000_000, 90_000_000)], [d], "consulting services")
    mark("circular_invoicing", a, bb, c)
    for u in (a, bb, c):
        industry[u] = "consulting"

    # Third-party payments: S -> T, one paid by X, one paid by T to Y.
    d1 = rng.randint(0, days - 20)
    nets = [rng.randint(3_000_000, 8_000_000), rng.randint(3_000_000, 8_000_000)]
    total = sum(v + v * 13 // 100 for v in nets)
    cno = b.contract(t, s, _round_up(total + 1), d1 - 10, "office equipment", 60)
    i1 = b.invoice(s, t, nets[0], d1, cno, "office equipment")
    i2 = b.invoice(s, t, nets[1], d1 + 5, cno, "office equipment")
    b.pay(x, s, i1.amount_fen + i1.tax_fen, d1 + 7, cno, (i1.key_hex,))
    b.pay(t, y, i2.amount_fen + i2.tax_fen, d1 + 12, cno, (i2.key_hex,))
    mark("third_party_payment", s)
    mark("payment_not_from_buyer", s)
    mark("payment_not_to_seller", s)

    # Shell: registered days before invoicing 1.3+ million yuan to E, nobody insured.
    d2 = rng.randint(0, 10)
    born = d2 - rng.randint(5, 30)
    registered[h] = b.day(born)
    staff[h] = 0
    industry[h] = "trading"
    on = sorted(d2 + rng.randint(0, 20) for _ in range(4))
    _sale(b, h, e, [rng.randint(30_000_000, 60_000_000) for _ in range(4)], on, "steel products",
          signed=born + 1)
    mark("no_headcount", h)
    mark("new_and_sudden", h)

    # No real supply: N invoices E with no contract and no payment.
    for _ in range(3):
        b.invoice(n, e, rng.randint(10_000_000, 20_000_000), rng.randint(0, days - 1), None, "steel products")
    mark("no_real_supply", n)
    mark("no_contract", n)

    # Contagion: E's inputs are mostly H's and N's; one honest manufacturer supplies the rest.
    supplier = rng.choice(tiers[1])
    _sale(b, supplier, e, [rng.randint(15_000_000, 25_000_000)], [rng.randint(0, days - 11)], "machined parts")
    industry[e] = "wholesale"
    ranked = sorted((u for u in tiers[3] if u not in used_customers), key=lambda u: (-in_fen.get(u, 0), u))
    for cust in ranked[:3]:
        used_customers.add(cust)
        net = max(10_000, in_fen.get(cust, 0) * 8 // 113)  # about 8% of its inputs, tax included
        _sale(b, e, cust, [net], [rng.randint(0, days - 11)], "steel products")
    mark("contagion", e)

    # Clustering: eight invoices just under the 100,000-yuan limit, two small ones.
    buyers = rng.sample(tiers[3], 3)
    for i in range(10):
        net = rng.randint(9_550_000, 9_999_900) if i < 8 else rng.randint(1_000_000, 5_000_000)
        _sale(b, k, buyers[i % 3], [net], [rng.randint(0, days - 11)], "packaging")
    mark("threshold_clustering", k)
