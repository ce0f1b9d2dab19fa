"""Every RFC 6962 conformance vector (transparency-dev/merkle testdata), valid and invalid."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from evidence_ledger.ledger.errors import ConsistencyProofError, InclusionProofError
from evidence_ledger.ledger.merkle import (
    MemoryTree,
    leaf_hash,
    root_from_inclusion_proof,
    verify_consistency,
    verify_inclusion,
)

VECTORS = Path(__file__).resolve().parents[2] / "vectors" / "rfc6962"
INCLUSION = sorted((VECTORS / "inclusion").rglob("*.json"))
CONSISTENCY = sorted((VECTORS / "consistency").rglob("*.json"))

# The certificate-transparency test tree the happy paths are built on.
LEAVES = [bytes.fromhex(h) for h in (
    "", "00", "10", "2021", "3031", "40414243", "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
)]


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(VECTORS)) for p in paths]


def _b64(value: str | None) -> bytes:
    return base64.b64decode(value or "")


def _proof(value: list[str] | None) -> list[bytes]:
    return [_b64(p) for p in value or []]


def _tree() -> MemoryTree:
    tree = MemoryTree()
    for entry in LEAVES:
        tree.append_entry(entry)
    return tree


def test_vectors_present() -> None:
    assert len(INCLUSION) >= 90
    assert len(CONSISTENCY) >= 90
    assert (VECTORS / "LICENSE").is_file()


@pytest.mark.parametrize("path", INCLUSION, ids=_ids(INCLUSION))
def test_inclusion_vector(path: Path) -> None:
    v = json.loads(path.read_text())
    args = (_b64(v["leafHash"]), v["leafIdx"], v["treeSize"], _proof(v["proof"]), _b64(v["root"]))
    if v["wantErr"]:
        with pytest.raises(InclusionProofError):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)
        assert root_from_inclusion_proof(*args[:4]) == args[4]


@pytest.mark.parametrize("path", CONSISTENCY, ids=_ids(CONSISTENCY))
def test_consistency_vector(path: Path) -> None:
    v = json.loads(path.read_text())
    args = (v["size1"], v["size2"], _proof(v["proof"]), _b64(v["root1"]), _b64(v["root2"]))
    if v["wantErr"]:
        with pytest.raises(ConsistencyProofError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


HAPPY_INCLUSION = [p for p in INCLUSION if p.name == "happy-path.json" and "additional" not in p.parts]
HAPPY_CONSISTENCY = [p for p in CONSISTENCY if p.name == "happy-path.json"]


@pytest.mark.parametrize("path", HAPPY_INCLUSION, ids=_ids(HAPPY_INCLUSION))
def test_generated_inclusion_proof_matches_vector(path: Path) -> None:
    """Our generator reproduces the published proof byte for byte."""
    v = json.loads(path.read_text())
    tree = _tree()
    index, size = v["leafIdx"], v["treeSize"]
    assert tree.leaf_hash(index) == _b64(v["leafHash"])
    assert tree.root(size) == _b64(v["root"])
    assert tree.inclusion_proof(index, size) == _proof(v["proof"])


@pytest.mark.parametrize("path", HAPPY_CONSISTENCY, ids=_ids(HAPPY_CONSISTENCY))
def test_generated_consistency_proof_matches_vector(path: Path) -> None:
    v = json.loads(path.read_text())
    tree = _tree()
    size1, size2 = v["size1"], v["size2"]
    assert tree.root(size1) == _b64(v["root1"])
    assert tree.root(size2) == _b64(v["root2"])
    assert tree.consistency_proof(size1, size2) == _proof(v["proof"])


def test_leaf_hash_of_test_tree() -> None:
    assert leaf_hash(b"").hex() == "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
