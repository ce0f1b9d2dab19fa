"""The dependency direction of DESIGN.md, enforced by import-linter on the installed package."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_contracts_hold() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run([str(lint), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


def test_standard_library_trace_is_not_shadowed(tmp_path: Path) -> None:
    code = ("import trace, evidence_ledger.trace as ours, evidence_ledger.ledger.merkle; "
            "assert hasattr(trace, 'Trace') and ours is not trace; print(trace.__file__)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert str(ROOT) not in proc.stdout
