"""Transaction-flows benchmark (what `ledger bench flows` runs): prints a table and writes bench/flows.json."""

from __future__ import annotations

import argparse
from pathlib import Path

from evidence_ledger.flows.benchmark import run_flows_benchmark


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--invoices", type=int, default=1_000_000, help="invoices generated (default: 1000000)")
    ap.add_argument("--out-dir", type=Path, default=Path("bench"), help="where flows.json goes (default: bench)")
    ap.add_argument("--baseline-sizes", type=int, nargs="+", default=[1_000, 2_000, 4_000],
                    help="sample sizes (invoices) of the pairwise baselines")
    ap.add_argument("--naive-ingest", type=int, default=2_000, help="records ingested one per call for the baseline")
    ap.add_argument("--seed", type=int, default=20261122, help="data set seed")
    ap.add_argument("--keep-db", action="store_true", help="keep the temporary databases")
    a = ap.parse_args(argv)
    run_flows_benchmark(invoices=a.invoices, out_dir=a.out_dir, baseline_sizes=a.baseline_sizes,
                        naive_ingest=a.naive_ingest, seed=a.seed, keep_db=a.keep_db)


if __name__ == "__main__":
    main()
