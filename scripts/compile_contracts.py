"""Compile contracts/*.sol with the pinned solc and write contracts/build/<Name>.json.

Usage: python scripts/compile_contracts.py [--check]

``--check`` writes nothing and exits 1 if the committed artifacts differ from a fresh compile.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from evidence_ledger.ledger.compiler import compile_contracts, render_artifact, write_artifacts

REPO_ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="verify, do not write")
    args = parser.parse_args(argv)
    contracts_dir = REPO_ROOT / "contracts"
    build_dir = contracts_dir / "build"
    artifacts = compile_contracts(contracts_dir, REPO_ROOT / "node_modules")
    if args.check:
        stale = [
            name
            for name, artifact in sorted(artifacts.items())
            if not (build_dir / f"{name}.json").is_file()
            or (build_dir / f"{name}.json").read_bytes() != render_artifact(artifact)
        ]
        for name in stale:
            print(f"stale: contracts/build/{name}.json", file=sys.stderr)
        return 1 if stale else 0
    for path in write_artifacts(artifacts, build_dir):
        print(path.relative_to(REPO_ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
