"""RFC 6962 / RFC 9162 Merkle trees: hashing, compact ranges, proof plans and verifiers.

Hashing (RFC 9162 section 2.1.1)::

    leaf hash  = SHA-256(0x00 || entry)
    node hash  = SHA-256(0x01 || left || right)
    empty root = SHA-256("")

Node addressing (for stores)
----------------------------
A *complete* subtree at ``(level, index)`` covers the leaves
``[index * 2**level, (index + 1) * 2**level)``; level 0 holds the leaf hashes.  Only complete
subtrees are ever stored: once written, a complete node never changes, so a store is append-only
too.  Everything a log needs is computed from those nodes:

* :class:`Frontier` is the compact range of a tree of size ``n`` (one complete subtree per set bit
  of ``n``, largest first).  It appends leaves in O(1) amortised hashing and reports the complete
  nodes each append creates, so a store persists exactly those.  It is restored from the nodes
  named by :meth:`Frontier.frontier_node_ids`.
* Proof *plans* (:func:`inclusion_proof_plan`, :func:`consistency_proof_plan`) name, for each proof
  element, the complete nodes whose right fold (:func:`fold_range`) is that element.  A store
  fetches all of them in one query (:func:`all_node_ids`) -- at most about ``2 * log2(n)`` nodes.
  :func:`inclusion_proof` and :func:`consistency_proof` do the whole thing given a batch getter.

Verifiers (:func:`verify_inclusion`, :func:`verify_consistency`) implement RFC 9162 sections
2.1.3.2 and 2.1.4.2 directly and share no code with the generators.  They follow
transparency-dev/merkle's ``proof`` package in edge cases (a consistency proof from size 0 is
rejected as meaningless; equal sizes need an empty proof and equal roots).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from hashlib import sha256
from itertools import repeat

from .errors import ConsistencyProofError, InclusionProofError, TreeSizeError

__all__ = [
    "HASH_SIZE",
    "EMPTY_ROOT",
    "NodeId",
    "Node",
    "ProofPlan",
    "leaf_hash",
    "node_hash",
    "root_from_leaf_hashes",
    "Frontier",
    "range_node_ids",
    "fold_range",
    "inclusion_proof_plan",
    "consistency_proof_plan",
    "all_node_ids",
    "inclusion_proof",
    "consistency_proof",
    "MemoryTree",
    "verify_inclusion",
    "root_from_inclusion_proof",
    "verify_consistency",
    "root_from_consistency_proof",
]

HASH_SIZE = 32
EMPTY_ROOT = sha256(b"").digest()

NodeId = tuple[int, int]
"""``(level, index)`` of a complete subtree."""
Node = tuple[int, int, bytes]
"""``(level, index, hash)`` of a complete subtree."""
ProofPlan = list[list[NodeId]]
"""For each proof element, the complete nodes whose right fold is that element."""
GetNodes = Callable[[list[NodeId]], Mapping[NodeId, bytes]]

_LEAF = b"\x00"
_NODE = b"\x01"


def leaf_hash(entry: bytes) -> bytes:
    """RFC 6962 leaf hash: ``SHA-256(0x00 || entry)``."""
    return sha256(_LEAF + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 interior node hash: ``SHA-256(0x01 || left || right)``."""
    return sha256(_NODE + left + right).digest()


def root_from_leaf_hashes(leaf_hashes: Sequence[bytes]) -> bytes:
    """Reference MTH (RFC 9162 section 2.1.1) of a list of leaf hashes, bottom-up.

    At each level adjacent pairs are hashed and an odd last node is promoted unchanged, which is
    exactly the RFC's split at the largest power of two smaller than ``n``.
    """
    level = list(leaf_hashes)
    if not level:
        return EMPTY_ROOT
    while len(level) > 1:
        nxt = [sha256(_NODE + a + b).digest() for a, b in zip(level[0::2], level[1::2])]
        if len(level) & 1:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def _check_size(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TreeSizeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 0:
        raise TreeSizeError(f"{name} must be >= 0, got {value}")
    return value


class Frontier:
    """Compact range ``[0, size)``: the complete subtrees of ``size``'s binary decomposition.

    ``hashes`` lists them left to right (largest first).  ``append``/``extend`` return the new
    complete nodes ``(level, index, hash)`` created, leaf nodes (level 0) included, which is what
    a node store must persist.
    """

    __slots__ = ("_size", "_hashes")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        _check_size("size", size)
        hs = list(hashes)
        want = size.bit_count()
        if len(hs) != want:
            raise TreeSizeError(
                f"a frontier of size {size} has {want} subtree hashes, got {len(hs)}"
            )
        for h in hs:
            if not isinstance(h, bytes) or len(h) != HASH_SIZE:
                raise TreeSizeError(f"frontier hashes must be {HASH_SIZE} bytes, got {h!r}")
        self._size = size
        self._hashes = hs

    @property
    def size(self) -> int:
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        return tuple(self._hashes)

    def copy(self) -> Frontier:
        f = Frontier.__new__(Frontier)
        f._size = self._size
        f._hashes = list(self._hashes)
        return f

    def __repr__(self) -> str:
        return f"Frontier(size={self._size}, root={self.root().hex()})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Frontier):
            return NotImplemented
        return self._size == other._size and self._hashes == other._hashes

    @staticmethod
    def frontier_node_ids(size: int) -> list[NodeId]:
        """``(level, index)`` of the frontier subtrees of a tree of ``size``, largest first."""
        _check_size("size", size)
        return [
            (level, (size >> level) - 1)
            for level in range(size.bit_length() - 1, -1, -1)
            if (size >> level) & 1
        ]

    def append(self, leaf_hash: bytes) -> list[Node]:
        """Append one leaf hash; return the new complete nodes (the leaf first, then parents)."""
        if len(leaf_hash) != HASH_SIZE:
            raise TreeSizeError(f"leaf hash must be {HASH_SIZE} bytes, got {len(leaf_hash)}")
        idx = self._size
        h = leaf_hash
        out = [(0, idx, h)]
        hashes = self._hashes
        level = 0
        while idx & 1:
            h = sha256(_NODE + hashes.pop() + h).digest()
            idx >>= 1
            level += 1
            out.append((level, idx, h))
        hashes.append(h)
        self._size += 1
        return out

    def extend(self, leaf_hashes: Iterable[bytes]) -> list[Node]:
        """Append many leaf hashes; return every new complete node, ordered by level then index.

        Hashes level by level with list comprehensions, so the per-node cost is one SHA-256 call
        and no Python-level loop bookkeeping.
        """
        cur = leaf_hashes if isinstance(leaf_hashes, list) else list(leaf_hashes)
        m = len(cur)
        if not m:
            return []
        if set(map(len, cur)) != {HASH_SIZE}:
            bad = next(h for h in cur if len(h) != HASH_SIZE)
            raise TreeSizeError(f"leaf hashes must be {HASH_SIZE} bytes, got {len(bad)}")
        n = self._size
        total = n + m
        # Old frontier by level.
        old = dict(zip([lv for lv, _ in Frontier.frontier_node_ids(n)], self._hashes))
        out: list[Node] = list(zip(repeat(0), range(n, total), cur))
        new_front: dict[int, bytes] = {}
        level = 0
        first = n  # index of the first new node at this level
        while True:
            end = total >> level  # exclusive end of complete nodes at this level
            if first & 1:
                # The left sibling of the first new node is the old frontier node.
                pair_src = [old[level]]
                pair_src.extend(cur)
                start = first - 1
            else:
                pair_src = cur
                start = first
            if end & 1:
                new_front[level] = pair_src[-1]
            if len(pair_src) < 2:
                break
            nxt = [
                sha256(_NODE + a + b).digest()
                for a, b in zip(pair_src[0::2], pair_src[1::2])
            ]
            level += 1
            first = start >> 1
            out.extend(zip(repeat(level), range(first, first + len(nxt)), nxt))
            cur = nxt
        # Levels above the last one touched keep their old frontier nodes.
        hashes = []
        for lv in range(total.bit_length() - 1, -1, -1):
            if (total >> lv) & 1:
                hashes.append(new_front[lv] if lv in new_front else old[lv])
        self._hashes = hashes
        self._size = total
        return out

    def root(self) -> bytes:
        """MTH of the tree: right fold of the frontier (``EMPTY_ROOT`` for size 0)."""
        hashes = self._hashes
        if not hashes:
            return EMPTY_ROOT
        h = hashes[-1]
        for left in reversed(hashes[:-1]):
            h = sha256(_NODE + left + h).digest()
        return h


def _largest_pow2_below(n: int) -> int:
    """Largest power of two strictly smaller than ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def range_node_ids(start: int, end: int) -> list[NodeId]:
    """Maximal complete subtrees covering leaves ``[start, end)``, left to right (largest first).

    ``start`` must be aligned as an RFC 6962 subtree: a multiple of the smallest power of two
    ``>= end - start``.  Then :func:`fold_range` of their hashes is ``MTH(D[start:end])``.
    """
    _check_size("start", start)
    _check_size("end", end)
    if end <= start:
        raise TreeSizeError(f"range [start, end) must be non-empty, got [{start}, {end})")
    width = end - start
    align = 1 << (width - 1).bit_length()
    if start % align:
        raise TreeSizeError(
            f"range start must be a multiple of {align} for a range of {width} leaves, got {start}"
        )
    ids = []
    for level in range(width.bit_length() - 1, -1, -1):
        if (width >> level) & 1:
            ids.append((level, start >> level))
            start += 1 << level
    return ids


def fold_range(hashes: Sequence[bytes]) -> bytes:
    """Fold the hashes of a :func:`range_node_ids` decomposition right to left into its MTH."""
    if not hashes:
        raise TreeSizeError("cannot fold an empty range")
    h = hashes[-1]
    for i in range(len(hashes) - 2, -1, -1):
        h = sha256(_NODE + hashes[i] + h).digest()
    return h


def inclusion_proof_plan(index: int, size: int) -> ProofPlan:
    """Node ids for each element of RFC 9162 ``PATH(index, D[size])``, from the leaf upward."""
    _check_size("index", index)
    _check_size("size", size)
    if index >= size:
        raise TreeSizeError(f"leaf index must be < tree size {size}, got {index}")
    plan: ProofPlan = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _largest_pow2_below(hi - lo)
        mid = lo + k
        if index < mid:
            plan.append(range_node_ids(mid, hi))
            hi = mid
        else:
            plan.append([(k.bit_length() - 1, lo // k)])
            lo = mid
    plan.reverse()
    return plan


def consistency_proof_plan(size1: int, size2: int) -> ProofPlan:
    """Node ids for each element of RFC 9162 ``PROOF(size1, D[size2])`` (``0 < size1 <= size2``).

    ``size1 == size2`` gives an empty plan.
    """
    _check_size("size1", size1)
    _check_size("size2", size2)
    if size1 == 0:
        raise TreeSizeError("size1 must be > 0 (a consistency proof from the empty tree is meaningless), got 0")
    if size1 > size2:
        raise TreeSizeError(f"size1 must be <= size2 ({size2}), got {size1}")
    plan: ProofPlan = []
    if size1 == size2:
        return plan
    lo, hi, whole = 0, size2, True
    while True:
        if size1 == hi:
            if not whole:
                plan.append(range_node_ids(lo, hi))
            break
        k = _largest_pow2_below(hi - lo)
        mid = lo + k
        if size1 <= mid:
            plan.append(range_node_ids(mid, hi))
            hi = mid
        else:
            plan.append([(k.bit_length() - 1, lo // k)])
            lo = mid
            whole = False
    plan.reverse()
    return plan


def all_node_ids(plan: Iterable[Iterable[NodeId]]) -> list[NodeId]:
    """Flatten a plan into the distinct node ids it needs, in first-use order."""
    return list(dict.fromkeys(nid for element in plan for nid in element))


def _materialise(plan: ProofPlan, get_nodes: GetNodes) -> list[bytes]:
    if not plan:
        return []
    ids = all_node_ids(plan)
    nodes = get_nodes(ids)
    try:
        return [
            nodes[element[0]] if len(element) == 1 else fold_range([nodes[nid] for nid in element])
            for element in plan
        ]
    except KeyError as exc:
        raise TreeSizeError(f"node store has no node (level, index) = {exc.args[0]}") from None


def inclusion_proof(index: int, size: int, get_nodes: GetNodes) -> list[bytes]:
    """Inclusion proof for leaf ``index`` in the tree of ``size``; fetches nodes in one call."""
    return _materialise(inclusion_proof_plan(index, size), get_nodes)


def consistency_proof(size1: int, size2: int, get_nodes: GetNodes) -> list[bytes]:
    """Consistency proof from ``size1`` to ``size2``; fetches nodes in one call."""
    return _materialise(consistency_proof_plan(size1, size2), get_nodes)


class MemoryTree:
    """In-memory node store (a dict of complete nodes) for tests, baselines and benchmarks."""

    def __init__(self) -> None:
        self.nodes: dict[NodeId, bytes] = {}
        self.frontier = Frontier()
        self.fetches = 0  # number of get_nodes calls
        self.fetched = 0  # number of node ids requested

    @property
    def size(self) -> int:
        return self.frontier.size

    def append(self, leaf_hash: bytes) -> int:
        """Append a leaf hash; return its index."""
        index = self.frontier.size
        for level, idx, h in self.frontier.append(leaf_hash):
            self.nodes[(level, idx)] = h
        return index

    def append_entry(self, entry: bytes) -> int:
        """Append a raw entry (hashed with :func:`leaf_hash`); return its index."""
        return self.append(leaf_hash(entry))

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        nodes = self.nodes
        for level, idx, h in self.frontier.extend(leaf_hashes):
            nodes[(level, idx)] = h

    def leaf_hash(self, index: int) -> bytes:
        if not 0 <= index < self.size:
            raise TreeSizeError(f"leaf index must be < tree size {self.size}, got {index}")
        return self.nodes[(0, index)]

    def get_nodes(self, ids: list[NodeId]) -> dict[NodeId, bytes]:
        self.fetches += 1
        self.fetched += len(ids)
        nodes = self.nodes
        return {nid: nodes[nid] for nid in ids if nid in nodes}

    def root(self, size: int | None = None) -> bytes:
        """Root of the current tree, or of the earlier tree of ``size`` leaves."""
        if size is None:
            return self.frontier.root()
        _check_size("size", size)
        if size > self.size:
            raise TreeSizeError(f"size must be <= tree size {self.size}, got {size}")
        if size == 0:
            return EMPTY_ROOT
        ids = Frontier.frontier_node_ids(size)
        return fold_range([self.nodes[nid] for nid in ids])

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        size = self.size if size is None else size
        if size > self.size:
            raise TreeSizeError(f"size must be <= tree size {self.size}, got {size}")
        return inclusion_proof(index, size, self.get_nodes)

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        size2 = self.size if size2 is None else size2
        if size2 > self.size:
            raise TreeSizeError(f"size2 must be <= tree size {self.size}, got {size2}")
        return consistency_proof(size1, size2, self.get_nodes)


# --------------------------------------------------------------------------------------------
# Verifiers: RFC 9162 sections 2.1.3.2 and 2.1.4.2, written out directly (no plan functions).
# --------------------------------------------------------------------------------------------


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def root_from_inclusion_proof(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes]
) -> bytes:
    """Root implied by an inclusion proof (RFC 9162 section 2.1.3.2, steps 1-4 and sn check)."""
    if not (_is_int(index) and _is_int(size)) or index < 0 or size < 0:
        raise InclusionProofError(f"index and size must be non-negative ints, got {index!r}, {size!r}")
    if index >= size:
        raise InclusionProofError(f"leaf index must be < tree size {size}, got {index}")
    if len(leaf_hash) != HASH_SIZE:
        raise InclusionProofError(f"leaf hash must be {HASH_SIZE} bytes, got {len(leaf_hash)}")
    proof = list(proof) if proof is not None else []
    for i, p in enumerate(proof):
        if len(p) != HASH_SIZE:
            raise InclusionProofError(f"proof[{i}] must be {HASH_SIZE} bytes, got {len(p)}")
    fn, sn = index, size - 1
    r = leaf_hash
    for p in proof:
        if sn == 0:
            raise InclusionProofError(
                f"proof too long: {len(proof)} hashes for leaf {index} of tree size {size}"
            )
        if fn & 1 or fn == sn:
            r = sha256(_NODE + p + r).digest()
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = sha256(_NODE + r + p).digest()
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise InclusionProofError(
            f"proof too short: {len(proof)} hashes for leaf {index} of tree size {size}"
        )
    return r


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree of ``size`` with ``root``.

    Raises :class:`InclusionProofError` naming what failed.
    """
    if len(root) != HASH_SIZE:
        raise InclusionProofError(f"root hash must be {HASH_SIZE} bytes, got {len(root)}")
    calculated = root_from_inclusion_proof(leaf_hash, index, size, proof)
    if calculated != root:
        raise InclusionProofError(
            f"root mismatch: proof gives {calculated.hex()}, expected {root.hex()}"
        )


def root_from_consistency_proof(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes
) -> bytes:
    """Verify ``proof`` against ``root1`` and return the implied root of the tree of ``size2``.

    RFC 9162 section 2.1.4.2; preconditions as in transparency-dev/merkle: ``size1 <= size2``,
    ``size1 > 0``, equal sizes need an empty proof (the result is then ``root1``).
    """
    if not (_is_int(size1) and _is_int(size2)) or size1 < 0 or size2 < 0:
        raise ConsistencyProofError(f"sizes must be non-negative ints, got {size1!r}, {size2!r}")
    proof = list(proof) if proof is not None else []
    if size2 < size1:
        raise ConsistencyProofError(f"size1 must be <= size2 ({size2}), got {size1}")
    if size1 == 0:
        raise ConsistencyProofError("size1 must be > 0: a consistency proof from the empty tree is meaningless")
    if size1 == size2:
        if proof:
            raise ConsistencyProofError(
                f"sizes are equal ({size1}), so the proof must be empty, got {len(proof)} hashes"
            )
        return root1
    if not proof:
        raise ConsistencyProofError(f"empty proof for sizes {size1} < {size2}")
    if len(root1) != HASH_SIZE:
        raise ConsistencyProofError(f"root1 must be {HASH_SIZE} bytes, got {len(root1)}")
    for i, p in enumerate(proof):
        if len(p) != HASH_SIZE:
            raise ConsistencyProofError(f"proof[{i}] must be {HASH_SIZE} bytes, got {len(p)}")
    # Step 2: if size1 is an exact power of 2, prepend root1.
    if size1 & (size1 - 1) == 0:
        proof.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    # Step 4.
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            raise ConsistencyProofError(
                f"proof too long: {len(proof)} hashes for sizes {size1} -> {size2}"
            )
        if fn & 1 or fn == sn:
            fr = sha256(_NODE + c + fr).digest()
            sr = sha256(_NODE + c + sr).digest()
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = sha256(_NODE + sr + c).digest()
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ConsistencyProofError(
            f"proof too short: {len(proof)} hashes for sizes {size1} -> {size2}"
        )
    if fr != root1:
        raise ConsistencyProofError(
            f"root1 mismatch: proof gives {fr.hex()}, expected {root1.hex()}"
        )
    return sr


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Check that the tree of ``size2`` with ``root2`` extends the tree of ``size1`` with ``root1``.

    Raises :class:`ConsistencyProofError` naming what failed.
    """
    calculated = root_from_consistency_proof(size1, size2, proof, root1)
    if size1 != size2 and len(root2) != HASH_SIZE:
        raise ConsistencyProofError(f"root2 must be {HASH_SIZE} bytes, got {len(root2)}")
    if calculated != root2:
        if size1 == size2:
            raise ConsistencyProofError(
                f"sizes are equal ({size1}) but the roots differ: {root1.hex()} != {root2.hex()}"
            )
        raise ConsistencyProofError(
            f"root2 mismatch: proof gives {calculated.hex()}, expected {root2.hex()}"
        )
