"""Traceability benchmark (what `ledger bench trace` runs): prints a table and writes bench/trace.json."""

from __future__ import annotations

import argparse
from pathlib import Path

from evidence_ledger.ledger_api.bench_trace import run_trace_benchmark


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=1_000_000, help="EPCIS events generated and captured (default: 1000000)")
    ap.add_argument("--out-dir", type=Path, default=Path("bench"), help="where trace.json goes (default: bench)")
    ap.add_argument("--page-samples", type=int, default=500, help="distinct retail lots whose consumer page is fetched")
    ap.add_argument("--batch", type=int, default=2_000, help="events per Tracer.capture_many call (default: 2000)")
    ap.add_argument("--baseline-samples", type=int, default=10, help="lots whose provenance is also replayed")
    ap.add_argument("--seed", type=int, default=20261121, help="data set seed")
    ap.add_argument("--keep-db", action="store_true", help="keep the temporary database")
    ap.add_argument("--db", type=Path, default=None,
                    help="directory keeping the captured database; a later run with the same --events and --seed "
                         "skips generation/capture and measures it")
    ap.add_argument("--only", choices=["page"], default=None,
                    help="measure only the consumer page (writes trace-page.json, not trace.json)")
    ap.add_argument("--page-seed", type=int, default=None,
                    help="seed picking the lots whose page is fetched (default: --seed + 1)")
    a = ap.parse_args(argv)
    run_trace_benchmark(events=a.events, out_dir=a.out_dir, page_samples=a.page_samples, batch=a.batch,
                        baseline_samples=a.baseline_samples, seed=a.seed, keep_db=a.keep_db, db=a.db, only=a.only,
                        page_seed=a.page_seed)


if __name__ == "__main__":
    main()
