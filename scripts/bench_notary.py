"""Notary benchmark (what `ledger bench notary` runs): prints a table and writes bench/notary.json."""

from __future__ import annotations

import argparse
from pathlib import Path

from evidence_ledger.notary.benchmark import run_notary_benchmark


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out-dir", type=Path, default=Path("bench"), help="where notary.json goes (default: bench)")
    ap.add_argument("--data-mb", type=int, default=256, help="MiB hashed in 1 MiB chunks (default: 256)")
    ap.add_argument("--files", type=int, default=300, help="files notarized (default: 300)")
    ap.add_argument("--file-kb", type=int, default=512, help="size of each file in KiB (default: 512)")
    ap.add_argument("--pages", type=int, default=5, help="web captures measured (default: 5)")
    ap.add_argument("--chromium", type=Path, default=Path("/usr/bin/chromium"), help="Chromium binary")
    a = ap.parse_args(argv)
    run_notary_benchmark(out_dir=a.out_dir, data_mb=a.data_mb, files=a.files, file_kb=a.file_kb,
                         pages=a.pages, chromium_path=a.chromium)


if __name__ == "__main__":
    main()
