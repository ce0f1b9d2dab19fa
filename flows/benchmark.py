"""The flows benchmark: ingest, reconciliation, cycle detection and grading at a million invoices,
side by side with a naive baseline that matches records pairwise in Python.

Everything runs in one process on one machine, so the figures are ratios taken at the same moment:

1. **Data set**: :func:`~.synthetic.generate_economy` (a four-tier supply chain with planted fraud),
   one invoice per ~20 enterprises' worth of trade: 1,000,000 invoices, their contracts and payments.
2. **Ingest**: every record through :meth:`FlowBook.ingest` (validation, duplicate check, durable
   append to the ``flows`` log, rows) into a fresh SQLite database; the baseline is the same
   service one record per call (``record_invoice`` & co.: one log append and commit each), on the
   first records of the same data in another fresh database.
3. **Analysis** at full size, in memory: linking + reconciliation, cycle detection, the whole
   screening, grading; then :meth:`FlowBook.analyse` end to end (load from the database, analyse,
   store and log every finding and grade).
4. **Baselines** on growing samples (economies of the same density): pairwise matching of each
   invoice against every contract and payment; cycles by nested scans of the invoice list; grading
   by scanning every invoice and finding per enterprise. Each is checked to give the same answer
   as ours on the sample; its time at full size is extrapolated from the samples with a fitted
   power law (stated as an estimate: running it would take days).
"""

from __future__ import annotations

import gc
import json
import math
import os
import platform
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from evidence_ledger.ledger import db as ledger_db
from evidence_ledger.ledger.benchmark import Progress, print_table
from evidence_ledger.ledger.log import LogStore

from . import db as flows_db
from .grading import grade, grade_all
from .reconcile import link, reconcile
from .records import FLOWS_LOG, Contract, Finding, GradeInputs, Invoice, Payment
from .screening import ScreeningPolicy, find_cycles, screen
from .service import CUSTODY_LOG, FlowBook
from .synthetic import Economy, generate_economy

__all__ = ["run_flows_benchmark"]

_T = TypeVar("_T")


def _timed(fn: Callable[[], _T]) -> tuple[float, _T]:
    gc.collect()
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _book(path: Path) -> FlowBook:
    engine = ledger_db.create_db_engine(f"sqlite:///{path}")
    ledger_db.migrate(engine)
    flows_db.migrate(engine)
    store = LogStore(engine)
    store.ensure_log(FLOWS_LOG, "bench.local/flows")
    store.ensure_log(CUSTODY_LOG, "bench.local/custody")
    return FlowBook(engine, store)


def _records(eco: Economy) -> list[Any]:
    return [*eco.enterprises, *eco.snapshots, *eco.contracts, *eco.invoices, *eco.payments]


def _size(n_invoices: int) -> dict[str, int]:
    return {"enterprises": max(60, n_invoices // 20), "invoices": n_invoices}


# -- the naive baselines ---------------------------------------------------------------------------

def naive_link(invoices: Sequence[Invoice], contracts: Sequence[Contract], payments: Sequence[Payment],
               *, as_of: date | None = None) -> tuple[dict[str, str], dict[str, frozenset[str]]]:
    """Pairwise: each invoice against every contract, then against every payment (the linking
    rules of :func:`.reconcile.link`, without its indexes)."""
    contract_of: dict[str, str] = {}
    payments_of: dict[str, frozenset[str]] = {}
    paid = [p for p in payments if as_of is None or p.paid_on <= as_of]
    future = [p for p in payments if as_of is not None and p.paid_on > as_of]
    for inv in invoices:
        found = None
        for c in contracts:
            if c.buyer_uscc == inv.buyer_uscc and c.seller_uscc == inv.seller_uscc:
                if inv.contract_no is not None:
                    if c.contract_no == inv.contract_no:
                        found = c
                elif c.signed_on <= inv.issued_on and (
                        found is None or (c.signed_on, c.contract_no) > (found.signed_on, found.contract_no)):
                    found = c
        no = inv.contract_no
        if found is not None:
            contract_of[inv.key_hex] = found.contract_no
            no = no or found.contract_no
        named = [p.payment_ref for p in paid if inv.key_hex in p.invoice_keys]
        later = any(inv.key_hex in p.invoice_keys for p in future)
        if not named and not later and no is not None:
            named = [p.payment_ref for p in paid
                     if p.contract_no == no and not p.invoice_keys
                     and (p.payer_uscc == inv.buyer_uscc or p.payee_uscc == inv.seller_uscc)]
        if named:
            payments_of[inv.key_hex] = frozenset(named)
    return contract_of, payments_of


def naive_cycles(invoices: Sequence[Invoice], window_days: int, min_fen: int) -> set[frozenset[str]]:
    """Cycles of two and three enterprises by nested scans of the invoice list."""
    invs = [i for i in invoices if i.amount_fen >= min_fen]
    found: set[frozenset[str]] = set()
    window = timedelta(days=window_days)
    for a in invs:
        for b in invs:
            if b.seller_uscc != a.buyer_uscc or abs(b.issued_on - a.issued_on) > window:
                continue
            if b.buyer_uscc == a.seller_uscc and a.seller_uscc != a.buyer_uscc:
                found.add(frozenset((a.seller_uscc, a.buyer_uscc)))
                continue
            for c in invs:
                if (c.seller_uscc == b.buyer_uscc and c.buyer_uscc == a.seller_uscc
                        and len({a.seller_uscc, a.buyer_uscc, b.buyer_uscc}) == 3):
                    days = [a.issued_on, b.issued_on, c.issued_on]
                    if max(days) - min(days) <= window:
                        found.add(frozenset((a.seller_uscc, a.buyer_uscc, b.buyer_uscc)))
    return found


def naive_grade_inputs(usccs: Sequence[str], invoices: Sequence[Invoice], findings: Sequence[Finding],
                       period: str) -> list[GradeInputs]:
    """Per enterprise, scan every invoice and every finding."""
    out = []
    for u in usccs:
        n_out = n_in = a_out = a_in = 0
        for i in invoices:
            if i.seller_uscc == u:
                n_out += 1
                a_out += i.total_fen
            if i.buyer_uscc == u:
                n_in += 1
                a_in += i.total_fen
        hits: Counter[str] = Counter(f.rule for f in findings if f.uscc == u)
        out.append(GradeInputs(u, period, n_out, n_in, a_out, a_in, tuple(sorted(hits.items()))))
    return out


def _fit(samples: list[tuple[int, float]], n: int) -> tuple[float, float]:
    """Least-squares power law t = a * size^k through the samples; (k, predicted t at n)."""
    xs = [math.log(s) for s, _ in samples]
    ys = [math.log(max(t, 1e-9)) for _, t in samples]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    k = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
    return k, math.exp(my + k * (math.log(n) - mx))


# -- the run -----------------------------------------------------------------------------------------

def run_flows_benchmark(*, invoices: int = 1_000_000, out_dir: Path = Path("bench"), console: Any = None,
                        baseline_sizes: Sequence[int] = (1_000, 2_000, 4_000), naive_ingest: int = 2_000,
                        seed: int = 20261122, keep_db: bool = False) -> dict[str, Any]:
    p = Progress(console)
    work = Path(tempfile.mkdtemp(prefix="flows-bench-"))
    period = "2026-Q3"
    results: dict[str, Any] = {
        "benchmark": "flows", "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "database": "sqlite (WAL, synchronous=FULL), temp file",
    }
    try:
        # 1. data
        size = _size(invoices)
        p.say(f"[1/5] generating an economy of {size['enterprises']:,} enterprises and {invoices:,} invoices")
        gen_s, eco = _timed(lambda: generate_economy(seed=seed, **size))
        as_of = eco.end + timedelta(days=45)
        records = _records(eco)
        results["data"] = {
            "enterprises": len(eco.enterprises), "snapshots": len(eco.snapshots), "contracts": len(eco.contracts),
            "invoices": len(eco.invoices), "payments": len(eco.payments), "records": len(records),
            "planted_enterprises": len(set().union(*eco.planted.values())) if eco.planted else 0,
            "generation_s": round(gen_s, 1), "seed": seed, "period": period, "as_of": as_of.isoformat(),
        }
        p.say(f"      {len(records):,} records generated in {gen_s:.0f} s")

        # 2. ingest: baseline (one record per call) and ours (batched) on the same leading records
        head = records[:naive_ingest]
        naive_book, batch_book = _book(work / "naive.db"), _book(work / "batch.db")
        record_one = {"Enterprise": naive_book.register_enterprise, "HeadcountSnapshot": naive_book.record_snapshot,
                      "Contract": naive_book.record_contract, "Invoice": naive_book.record_invoice,
                      "Payment": naive_book.record_payment}
        naive_s, _ = _timed(lambda: [record_one[type(r).__name__](r) for r in head])
        same_s, rep = _timed(lambda: batch_book.ingest(head))
        assert rep.accepted == len(head), rep.rejected[:3]
        for b in (naive_book, batch_book):
            b.engine.dispose()
        p.say(f"[2/5] ingest of {len(head):,} records: one per call {len(head) / naive_s:,.0f}/s, "
              f"batched {len(head) / same_s:,.0f}/s; now all {len(records):,} records")
        book = _book(work / "flows.db")
        t0 = time.perf_counter()
        accepted = 0
        batch = 50_000
        for i in range(0, len(records), batch):
            r = book.ingest(records[i:i + batch])
            if r.rejected:
                raise RuntimeError(f"ingest rejected {len(r.rejected)} records, first: {r.rejected[0]}")
            accepted += r.accepted
            el = time.perf_counter() - t0
            p.say(f"      {accepted:,} records, {accepted / el:,.0f}/s")
        ingest_s = time.perf_counter() - t0
        results["ingest"] = {
            "records": accepted, "s": round(ingest_s, 1), "records_per_s": round(accepted / ingest_s),
            "invoices_per_s_equivalent": round(len(eco.invoices) / ingest_s),
            "sample_records": len(head), "sample_batched_per_s": round(len(head) / same_s),
            "sample_one_per_call_per_s": round(len(head) / naive_s), "ratio": round(naive_s / same_s, 1),
            "log_size": book.store.tree_size(FLOWS_LOG),
        }

        # 3. analysis at full size, in memory, then end to end through the service
        p.say(f"[3/5] analysis of {len(eco.invoices):,} invoices in memory")
        link_s, links = _timed(lambda: link(eco.invoices, eco.contracts, eco.payments, as_of=as_of))
        rec_s, rec = _timed(lambda: reconcile(eco.invoices, eco.contracts, eco.payments, as_of=as_of, links=links))
        cyc_s, cycles = _timed(lambda: find_cycles(eco.invoices))
        scr_s, scr = _timed(lambda: screen(eco.enterprises, eco.snapshots, eco.contracts, eco.payments, eco.invoices,
                                           as_of=as_of, reconciliation=rec, links=links))
        found = rec + scr
        grd_s, grades = _timed(lambda: grade_all(eco.enterprises, eco.invoices, found, period=period))
        flagged = {f.uscc for f in found}
        planted_missed = {rule: sorted(u - {f.uscc for f in found if f.rule == rule})
                          for rule, u in eco.planted.items()}
        results["analysis"] = {
            "link_s": round(link_s, 2), "reconcile_s": round(rec_s, 2), "reconcile_incl_link_s": round(link_s + rec_s, 2),
            "cycles_s": round(cyc_s, 2), "cycles": len(cycles), "screen_s": round(scr_s, 2), "grading_s": round(grd_s, 2),
            "findings": len(found), "findings_by_rule": dict(Counter(f.rule for f in found)),
            "grades": dict(Counter(g.grade for g in grades)),
            "clean_flagged": len(flagged & eco.clean),
            "planted_missed": {k: v for k, v in planted_missed.items() if v},
        }
        p.say(f"      link+reconcile {link_s + rec_s:.1f} s, cycles {cyc_s:.1f} s ({len(cycles)}), "
              f"screen {scr_s:.1f} s, grading {grd_s:.1f} s; {len(found):,} findings")
        del links, rec, scr, found, grades
        p.say("[4/5] FlowBook.analyse end to end (load, analyse, store and log findings and grades)")
        an_s, run = _timed(lambda: book.analyse(period, as_of=as_of))
        results["analysis"]["service_analyse_s"] = round(an_s, 1)
        results["analysis"]["service_findings"] = sum(n for _, n in run.findings_by_rule)
        book.engine.dispose()

        # 4. baselines on samples of the same density
        p.say(f"[5/5] naive baselines on samples of {', '.join(f'{s:,}' for s in baseline_sizes)} invoices")
        samples: dict[str, list[dict[str, Any]]] = {"reconcile": [], "cycles": [], "grading": []}
        small_policy = ScreeningPolicy(max_cycle_length=3)
        for n in baseline_sizes:
            e = generate_economy(seed=seed, **_size(n))
            a = e.end + timedelta(days=45)
            def ours_reconcile() -> Any:
                lk = link(e.invoices, e.contracts, e.payments, as_of=a)
                reconcile(e.invoices, e.contracts, e.payments, as_of=a, links=lk)
                return lk

            ours_s, links_s = _timed(ours_reconcile)
            naive_rs, (nc, npay) = _timed(lambda: naive_link(e.invoices, e.contracts, e.payments, as_of=a))
            ours_pairs = ({k: c.contract_no for k, c in links_s.contract.items()},
                          {k: frozenset(p.payment_ref for p in ps) for k, ps in links_s.payments.items()})
            agree = sum(1 for i in e.invoices
                        if ours_pairs[0].get(i.key_hex) == nc.get(i.key_hex)
                        and ours_pairs[1].get(i.key_hex) == npay.get(i.key_hex))
            samples["reconcile"].append({"invoices": n, "ours_s": ours_s, "naive_s": naive_rs,
                                         "agree": agree, "of": len(e.invoices)})
            oc_s, oc = _timed(lambda: find_cycles(e.invoices, small_policy))
            nc_s, ncy = _timed(lambda: naive_cycles(e.invoices, small_policy.cycle_window_days,
                                                    small_policy.min_cycle_invoice_fen))
            samples["cycles"].append({"invoices": n, "ours_s": oc_s, "naive_s": nc_s,
                                      "agree": {frozenset(c.members) for c in oc} == ncy, "cycles": len(ncy)})
            f = reconcile(e.invoices, e.contracts, e.payments, as_of=a)
            f += screen(e.enterprises, e.snapshots, e.contracts, e.payments, e.invoices, as_of=a, reconciliation=f)
            og_s, og = _timed(lambda: grade_all(e.enterprises, e.invoices, f, period=period))
            usccs = sorted(x.uscc for x in e.enterprises)
            ng_s, ng = _timed(lambda: [grade(i) for i in naive_grade_inputs(usccs, e.invoices, f, period)])
            samples["grading"].append({"invoices": n, "ours_s": og_s, "naive_s": ng_s,
                                       "agree": [(g.uscc, g.grade) for g in og] == [(g.uscc, g.grade) for g in ng]})
            p.say(f"      {n:,}: reconcile {ours_s * 1e3:.0f} ms vs {naive_rs * 1e3:,.0f} ms, cycles "
                  f"{oc_s * 1e3:.0f} vs {nc_s * 1e3:,.0f} ms, grading {og_s * 1e3:.0f} vs {ng_s * 1e3:,.0f} ms")
        full = {"reconcile": link_s + rec_s, "cycles": cyc_s, "grading": grd_s}
        results["baselines"] = {}
        for name, rows in samples.items():
            k, predicted = _fit([(r["invoices"], r["naive_s"]) for r in rows], invoices)
            last = rows[-1]
            results["baselines"][name] = {
                "samples": [{kk: (round(v, 4) if isinstance(v, float) else v) for kk, v in r.items()} for r in rows],
                "same_size_ratio": round(last["naive_s"] / max(last["ours_s"], 1e-9), 1),
                "naive_exponent": round(k, 2), "naive_at_full_size_s_estimate": round(predicted),
                "ours_at_full_size_s": round(full[name], 2),
                "ratio_at_full_size_estimate": round(predicted / max(full[name], 1e-9)),
            }
    finally:
        if keep_db:
            p.say(f"database kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "flows.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    _print_table(results)
    return results


def _print_table(r: dict[str, Any]) -> None:
    d, ing, an, bl = r["data"], r["ingest"], r["analysis"], r["baselines"]
    rows = [
        (f"ingest, records/s ({d['records']:,} records, {d['invoices']:,} invoices)", f"{ing['records_per_s']:,}",
         "", ""),
        (f"ingest of the first {ing['sample_records']:,} records, records/s", f"{ing['sample_batched_per_s']:,}",
         f"{ing['sample_one_per_call_per_s']:,} (one per call)", f"{ing['ratio']}x"),
    ]
    for name, label in (("reconcile", "reconciliation (link + rules)"), ("cycles", "cycle detection"),
                        ("grading", "grading")):
        b = bl[name]
        s = b["samples"][-1]
        rows.append((f"{label}, {s['invoices']:,} invoices, ms", f"{s['ours_s'] * 1e3:,.1f}",
                     f"{s['naive_s'] * 1e3:,.0f} (pairwise)", f"{b['same_size_ratio']:,}x"))
        rows.append((f"{label}, {d['invoices']:,} invoices, s", f"{b['ours_at_full_size_s']:,}",
                     f"~{b['naive_at_full_size_s_estimate']:,} (n^{b['naive_exponent']} fit)",
                     f"~{b['ratio_at_full_size_estimate']:,}x"))
    rows.append(("screening, all rules incl. cycles, s", f"{an['screen_s']}", "", ""))
    rows.append(("FlowBook.analyse end to end (load, analyse, store, log), s", f"{an['service_analyse_s']}", "", ""))
    rows.append(("findings / clean enterprises flagged / planted missed",
                 f"{an['findings']:,} / {an['clean_flagged']} / {sum(len(v) for v in an['planted_missed'].values())}",
                 "", ""))
    print_table(("measure", "ledger", "baseline", "ratio"), rows)
