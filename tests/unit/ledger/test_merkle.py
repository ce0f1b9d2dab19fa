"""Merkle tree: frontier, proof plans, generated proofs against the independent verifiers."""

from __future__ import annotations

import hashlib
import math
import random

import pytest

from evidence_ledger.ledger.errors import (
    ConsistencyProofError,
    InclusionProofError,
    TreeSizeError,
)
from evidence_ledger.ledger.merkle import (
    EMPTY_ROOT,
    Frontier,
    MemoryTree,
    all_node_ids,
    consistency_proof,
    consistency_proof_plan,
    fold_range,
    inclusion_proof,
    inclusion_proof_plan,
    leaf_hash,
    node_hash,
    range_node_ids,
    root_from_consistency_proof,
    root_from_inclusion_proof,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)

# certificate-transparency / transparency-dev test tree and its roots for sizes 1..8.
CT_LEAVES = [bytes.fromhex(h) for h in (
    "", "00", "10", "2021", "3031", "40414243", "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
)]
CT_ROOTS = [bytes.fromhex(h) for h in (
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
)]


def _leaves(n: int, seed: int = 1) -> list[bytes]:
    rnd = random.Random(seed)
    return [leaf_hash(rnd.randbytes(rnd.randrange(0, 40))) for _ in range(n)]


def _mth(leaves: list[bytes]) -> bytes:
    """Textbook recursive RFC 9162 MTH, independent of root_from_leaf_hashes."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaves[0]
    k = 1 << ((n - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + _mth(leaves[:k]) + _mth(leaves[k:])).digest()


LEAVES = _leaves(300)


@pytest.fixture(scope="module")
def tree64() -> MemoryTree:
    tree = MemoryTree()
    tree.extend(_leaves(70, seed=7))
    return tree


# --- hashing and known answers -------------------------------------------------------------


def test_hash_primitives() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert leaf_hash(b"") == hashlib.sha256(b"\x00").digest()
    a, b = b"a" * 32, b"b" * 32
    assert node_hash(a, b) == hashlib.sha256(b"\x01" + a + b).digest()


def test_known_answer_roots() -> None:
    hashes = [leaf_hash(x) for x in CT_LEAVES]
    frontier = Frontier()
    for size in range(1, 9):
        frontier.append(hashes[size - 1])
        assert root_from_leaf_hashes(hashes[:size]) == CT_ROOTS[size - 1]
        assert frontier.root() == CT_ROOTS[size - 1]
    assert CT_ROOTS[7].hex() == "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
    assert root_from_leaf_hashes([]) == EMPTY_ROOT
    assert Frontier().root() == EMPTY_ROOT


# --- frontier ---------------------------------------------------------------------------------


def test_frontier_matches_reference_0_to_300() -> None:
    frontier = Frontier()
    for n in range(301):
        want = root_from_leaf_hashes(LEAVES[:n])
        assert frontier.size == n
        assert frontier.root() == want
        if n <= 40:
            assert want == _mth(LEAVES[:n])
        if n < 300:
            frontier.append(LEAVES[n])


@pytest.mark.parametrize("n", [0, 1, 2, 3, 5, 64, 127, 128, 129, 255, 300])
@pytest.mark.parametrize("split", [0, 1, 3, 64])
def test_extend_equals_append(n: int, split: int) -> None:
    split = min(split, n)
    a, b = Frontier(), Frontier()
    nodes_a = []
    for h in LEAVES[:n]:
        nodes_a.extend(a.append(h))
    nodes_b = b.extend(LEAVES[:split]) + b.extend(LEAVES[split:n])
    assert a == b
    assert a.root() == b.root() == root_from_leaf_hashes(LEAVES[:n])
    assert sorted(nodes_a) == sorted(nodes_b)


def test_random_large_sizes() -> None:
    rnd = random.Random(42)
    for _ in range(5):
        n = rnd.randrange(1000, 5000)
        leaves = _leaves(n, seed=n)
        frontier = Frontier()
        pos = 0
        while pos < n:  # random batch sizes, including single appends
            step = rnd.choice([1, 2, 7, 100, 999])
            if step == 1:
                frontier.append(leaves[pos])
            else:
                frontier.extend(leaves[pos : pos + step])
            pos = min(n, pos + step)
        assert frontier.root() == root_from_leaf_hashes(leaves)


def test_append_reports_complete_nodes() -> None:
    frontier = Frontier()
    assert frontier.append(LEAVES[0]) == [(0, 0, LEAVES[0])]
    nodes = frontier.append(LEAVES[1])
    assert nodes == [(0, 1, LEAVES[1]), (1, 0, node_hash(LEAVES[0], LEAVES[1]))]
    frontier.append(LEAVES[2])
    nodes = frontier.append(LEAVES[3])
    assert [(lv, i) for lv, i, _ in nodes] == [(0, 3), (1, 1), (2, 0)]
    assert nodes[-1][2] == root_from_leaf_hashes(LEAVES[:4])


def test_all_complete_nodes_reported() -> None:
    """Every complete subtree of the final tree is reported exactly once, with the right hash."""
    n = 77
    frontier = Frontier()
    reported: dict[tuple[int, int], bytes] = {}
    for batch in (LEAVES[:1], LEAVES[1:10], LEAVES[10:11], LEAVES[11:77]):
        for level, index, h in frontier.extend(batch):
            assert (level, index) not in reported
            reported[(level, index)] = h
    want = {}
    for level in range(n.bit_length()):
        width = 1 << level
        for index in range(n >> level):
            want[(level, index)] = root_from_leaf_hashes(LEAVES[index * width : (index + 1) * width])
    assert reported == want


def test_frontier_restore_from_node_ids(tree64: MemoryTree) -> None:
    for size in range(0, 71):
        ids = Frontier.frontier_node_ids(size)
        assert len(ids) == bin(size).count("1")
        restored = Frontier(size, [tree64.nodes[i] for i in ids])
        assert restored.root() == tree64.root(size)
    # Restored frontier keeps growing correctly.
    f = Frontier(37, [tree64.nodes[i] for i in Frontier.frontier_node_ids(37)])
    leaves = [tree64.nodes[(0, i)] for i in range(70)]
    f.extend(leaves[37:70])
    assert f.root() == tree64.root()
    assert Frontier.frontier_node_ids(13) == [(3, 0), (2, 2), (0, 12)]


def test_frontier_validation() -> None:
    with pytest.raises(TreeSizeError):
        Frontier(3, [b"x" * 32])
    with pytest.raises(TreeSizeError):
        Frontier(1, [b"short"])
    with pytest.raises(TreeSizeError):
        Frontier(-1)
    with pytest.raises(TreeSizeError):
        Frontier().append(b"short")
    with pytest.raises(TreeSizeError):
        Frontier().extend([b"x" * 32, b"short"])


# --- ranges and plans -------------------------------------------------------------------------


def test_range_node_ids() -> None:
    assert range_node_ids(0, 13) == [(3, 0), (2, 2), (0, 12)]
    assert range_node_ids(8, 13) == [(2, 2), (0, 12)]
    assert range_node_ids(12, 13) == [(0, 12)]
    assert range_node_ids(16, 32) == [(4, 1)]
    for bad in ((1, 3), (2, 5), (0, 0), (5, 4)):
        with pytest.raises(TreeSizeError):
            range_node_ids(*bad)


def test_fold_range_is_subtree_root(tree64: MemoryTree) -> None:
    leaves = [tree64.nodes[(0, i)] for i in range(70)]
    for start, end in ((0, 70), (64, 70), (32, 45), (40, 41), (48, 61)):
        ids = range_node_ids(start, end)
        assert fold_range([tree64.nodes[i] for i in ids]) == root_from_leaf_hashes(leaves[start:end])
    with pytest.raises(TreeSizeError):
        fold_range([])


def test_plan_errors() -> None:
    for index, size in ((0, 0), (5, 5), (6, 5), (-1, 5)):
        with pytest.raises(TreeSizeError, match="index|size"):
            inclusion_proof_plan(index, size)
    for size1, size2 in ((0, 0), (0, 5), (6, 5), (-1, 3)):
        with pytest.raises(TreeSizeError):
            consistency_proof_plan(size1, size2)
    assert consistency_proof_plan(5, 5) == []
    assert inclusion_proof_plan(0, 1) == []


def test_all_node_ids_dedupes() -> None:
    assert all_node_ids([[(0, 1), (1, 0)], [(1, 0)], [(2, 1)]]) == [(0, 1), (1, 0), (2, 1)]


# --- generated proofs verify, and are rejected when tampered -------------------------------


def _flip_each_byte(proof: list[bytes], every: bool = True):
    """Copies of ``proof`` with one byte changed: every byte of every element (or 3 per element)."""
    for i, h in enumerate(proof):
        for j in range(len(h)) if every else (0, 17, len(h) - 1):
            bad = bytearray(h)
            bad[j] ^= 0x01
            yield proof[:i] + [bytes(bad)] + proof[i + 1 :]


def _rejects(exc_type, fn, *args) -> bool:
    """True if ``fn(*args)`` raises ``exc_type`` (cheaper than pytest.raises in hot loops)."""
    try:
        fn(*args)
    except exc_type:
        return True
    return False


def test_all_inclusion_proofs_up_to_64(tree64: MemoryTree) -> None:
    for size in range(1, 65):
        root = tree64.root(size)
        for index in range(size):
            proof = tree64.inclusion_proof(index, size)
            leaf = tree64.leaf_hash(index)
            verify_inclusion(leaf, index, size, proof, root)
            assert root_from_inclusion_proof(leaf, index, size, proof) == root
            assert len(proof) == len(inclusion_proof_plan(index, size))


def test_all_consistency_proofs_up_to_64(tree64: MemoryTree) -> None:
    for size2 in range(1, 65):
        root2 = tree64.root(size2)
        for size1 in range(1, size2 + 1):
            proof = tree64.consistency_proof(size1, size2)
            verify_consistency(size1, size2, proof, tree64.root(size1), root2)
            assert root_from_consistency_proof(size1, size2, proof, tree64.root(size1)) == root2


def test_tampered_inclusion_proofs_rejected(tree64: MemoryTree) -> None:
    for size in range(1, 65):
        root = tree64.root(size)
        for index in range(size):
            proof = tree64.inclusion_proof(index, size)
            leaf = tree64.leaf_hash(index)
            for bad in _flip_each_byte(proof, every=size <= 24):
                assert _rejects(InclusionProofError, verify_inclusion, leaf, index, size, bad, root)
            bad_leaf = bytes([leaf[0] ^ 1]) + leaf[1:]
            with pytest.raises(InclusionProofError, match="root mismatch"):
                verify_inclusion(bad_leaf, index, size, proof, root)
            if size > 1:
                with pytest.raises(InclusionProofError):
                    verify_inclusion(leaf, (index + 1) % size, size, proof, root)


def test_tampered_consistency_proofs_rejected(tree64: MemoryTree) -> None:
    for size2 in range(2, 65):
        root2 = tree64.root(size2)
        for size1 in range(1, size2):
            root1 = tree64.root(size1)
            proof = tree64.consistency_proof(size1, size2)
            for bad in _flip_each_byte(proof, every=size2 <= 24):
                assert _rejects(ConsistencyProofError, verify_consistency, size1, size2, bad, root1, root2)
            with pytest.raises(ConsistencyProofError):
                verify_consistency(size1, size2, proof, root2, root1)
            with pytest.raises(ConsistencyProofError):
                verify_consistency(size1, size2, proof[:-1], root1, root2)
            with pytest.raises(ConsistencyProofError):
                verify_consistency(size1, size2, proof + [root1], root1, root2)


def test_inclusion_verifier_messages() -> None:
    h = b"\x00" * 32
    with pytest.raises(InclusionProofError, match="index"):
        verify_inclusion(h, 3, 3, [], h)
    with pytest.raises(InclusionProofError, match="leaf hash must be 32 bytes"):
        verify_inclusion(b"x", 0, 1, [], h)
    with pytest.raises(InclusionProofError, match="too long"):
        verify_inclusion(h, 0, 1, [h], h)
    with pytest.raises(InclusionProofError, match="too short"):
        verify_inclusion(h, 0, 4, [h], h)
    with pytest.raises(InclusionProofError, match="proof\\[0\\] must be 32 bytes"):
        verify_inclusion(h, 0, 2, [b""], h)
    with pytest.raises(InclusionProofError, match="root hash must be 32 bytes"):
        verify_inclusion(h, 0, 1, [], b"")


def test_consistency_verifier_edge_cases() -> None:
    h, g = b"\x01" * 32, b"\x02" * 32
    verify_consistency(5, 5, [], h, h)
    with pytest.raises(ConsistencyProofError, match="roots differ"):
        verify_consistency(5, 5, [], h, g)
    with pytest.raises(ConsistencyProofError, match="must be empty"):
        verify_consistency(5, 5, [h], h, h)
    with pytest.raises(ConsistencyProofError, match="empty tree"):
        verify_consistency(0, 5, [], EMPTY_ROOT, h)
    with pytest.raises(ConsistencyProofError, match="size1 must be <= size2"):
        verify_consistency(6, 5, [], h, h)
    with pytest.raises(ConsistencyProofError, match="empty proof"):
        verify_consistency(4, 5, [], h, g)


# --- proof cost: O(log n) nodes in one fetch -------------------------------------------------


def test_plan_node_count_is_logarithmic() -> None:
    rnd = random.Random(2024)
    for _ in range(400):
        size = rnd.randrange(1, 1 << 20)
        bound = 2 * math.ceil(math.log2(size)) + 2 if size > 1 else 2
        index = rnd.randrange(size)
        assert len(all_node_ids(inclusion_proof_plan(index, size))) <= bound
        size1 = rnd.randrange(1, size + 1)
        assert len(all_node_ids(consistency_proof_plan(size1, size))) <= bound
    for size in (1, 2, 3, (1 << 20) - 1, 1 << 20, (1 << 20) + 1):
        bound = 2 * math.ceil(math.log2(size)) + 2 if size > 1 else 2
        for index in (0, size // 2, size - 1):
            assert len(all_node_ids(inclusion_proof_plan(index, size))) <= bound
            assert len(all_node_ids(consistency_proof_plan(index + 1, size))) <= bound


def test_proof_functions_fetch_once(tree64: MemoryTree) -> None:
    calls: list[list[tuple[int, int]]] = []

    def get_nodes(ids):
        calls.append(ids)
        return {i: tree64.nodes[i] for i in ids}

    proof = inclusion_proof(13, 57, get_nodes)
    assert len(calls) == 1
    verify_inclusion(tree64.leaf_hash(13), 13, 57, proof, tree64.root(57))
    proof = consistency_proof(13, 57, get_nodes)
    assert len(calls) == 2
    verify_consistency(13, 57, proof, tree64.root(13), tree64.root(57))
    with pytest.raises(TreeSizeError, match="no node"):
        inclusion_proof(3, 100, lambda ids: {})


def test_memory_tree_bounds(tree64: MemoryTree) -> None:
    with pytest.raises(TreeSizeError):
        tree64.inclusion_proof(0, 71)
    with pytest.raises(TreeSizeError):
        tree64.consistency_proof(1, 71)
    with pytest.raises(TreeSizeError):
        tree64.root(71)
    assert tree64.root(0) == EMPTY_ROOT


def test_large_tree_proofs() -> None:
    rnd = random.Random(5)
    n = 5000
    tree = MemoryTree()
    tree.extend(_leaves(n, seed=99))
    for _ in range(50):
        size = rnd.randrange(1, n + 1)
        index = rnd.randrange(size)
        verify_inclusion(tree.leaf_hash(index), index, size, tree.inclusion_proof(index, size), tree.root(size))
        size1 = rnd.randrange(1, size + 1)
        verify_consistency(size1, size, tree.consistency_proof(size1, size), tree.root(size1), tree.root(size))
