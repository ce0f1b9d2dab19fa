"""LogStore against SQLite and PostgreSQL: sequencing, proofs, checkpoints, limits."""

from __future__ import annotations

import threading

import pytest

from evidence_ledger.ledger import canonical, merkle
from evidence_ledger.ledger.checkpoint import NoteSigner, NoteVerifier, generate_signing_key, open_checkpoint
from evidence_ledger.ledger.errors import (
    CanonicalizationError,
    EntryNotFoundError,
    LogNotFoundError,
    RecordTooLargeError,
    TreeSizeError,
)
from evidence_ledger.ledger.log import LogStore

ORIGIN = "test.example/evidence"


@pytest.fixture
def store(engine):  # type: ignore[no-untyped-def]
    s = LogStore(engine, max_record_bytes=1024)
    s.ensure_log("evidence", ORIGIN)
    return s


def test_append_assigns_contiguous_indices_and_commits_record(store: LogStore) -> None:
    e0 = store.append("evidence", {"n": 0})
    rest = store.append_many("evidence", [{"n": i} for i in range(1, 6)])
    assert [e0.index] + [e.index for e in rest] == list(range(6))
    assert store.tree_size("evidence") == 6
    got = store.entry("evidence", 3)
    assert got.record() == {"n": 3}
    assert got.record_digest == canonical.record_digest(b'{"n":3}')
    assert got.leaf_hash == merkle.leaf_hash(canonical.leaf_entry(got.salt, got.record_digest))
    assert got.appended_at.tzinfo is not None


def test_roots_and_proofs_match_reference_tree(store: LogStore) -> None:
    entries = []
    for batch in ([{"i": i} for i in range(b, b + 7)] for b in range(0, 70, 7)):
        entries += store.append_many("evidence", batch)
    leaves = [e.leaf_hash for e in entries]
    for size in (1, 2, 3, 7, 8, 33, 64, 70):
        root = store.root_hash("evidence", size)
        assert root == merkle.root_from_leaf_hashes(leaves[:size])
        for index in range(0, size, 5):
            proof = store.inclusion_proof("evidence", index, size)
            merkle.verify_inclusion(leaves[index], index, size, proof, root)
    for first, second in [(1, 70), (7, 8), (33, 64), (64, 70), (70, 70)]:
        proof = store.consistency_proof("evidence", first, second)
        merkle.verify_consistency(first, second, proof, store.root_hash("evidence", first),
                                  store.root_hash("evidence", second))


def test_a_cold_store_restores_the_frontier_from_the_database(store: LogStore) -> None:
    first = store.append_many("evidence", [{"i": i} for i in range(13)])
    cold = LogStore(store.engine)  # a restarted process: no cached frontier
    more = cold.append_many("evidence", [{"i": i} for i in range(13, 29)])
    leaves = [e.leaf_hash for e in first + more]
    assert cold.root_hash("evidence") == merkle.root_from_leaf_hashes(leaves)


def test_concurrent_appends_from_threads_never_collide(store: LogStore) -> None:
    def work(t: int) -> None:
        for i in range(10):
            store.append_many("evidence", [{"t": t, "i": i}, {"t": t, "i": i, "b": 1}])

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert store.tree_size("evidence") == 80
    assert store.count_entries("evidence") == 80
    leaves = [store.entry("evidence", i).leaf_hash for i in range(80)]
    assert store.root_hash("evidence") == merkle.root_from_leaf_hashes(leaves)


def test_two_stores_on_one_database_serialise_on_the_log_row(store: LogStore) -> None:
    other = LogStore(store.engine)
    for i in range(5):
        store.append("evidence", {"a": i})
        other.append("evidence", {"b": i})
    leaves = [store.entry("evidence", i).leaf_hash for i in range(10)]
    assert store.root_hash("evidence") == merkle.root_from_leaf_hashes(leaves)


def test_oversized_record_is_refused_and_nothing_is_appended(store: LogStore) -> None:
    store.append("evidence", {"ok": 1})
    with pytest.raises(RecordTooLargeError, match=r"record is \d+ bytes; the limit is 1024 bytes"):
        store.append_many("evidence", [{"ok": 2}, {"blob": "x" * 2000}])
    assert store.tree_size("evidence") == 1


def test_non_canonicalisable_record_is_refused(store: LogStore) -> None:
    with pytest.raises(CanonicalizationError):
        store.append("evidence", {"bad": float("nan")})
    assert store.tree_size("evidence") == 0


def test_unknown_log_and_out_of_range_reads(store: LogStore) -> None:
    with pytest.raises(LogNotFoundError, match=r"no log named 'nope' \(known logs: evidence\)"):
        store.append("nope", {})
    store.append_many("evidence", [{"i": 1}, {"i": 2}])
    with pytest.raises(EntryNotFoundError, match="has no entry 5"):
        store.entry("evidence", 5)
    with pytest.raises(TreeSizeError, match=r"tree size must be in \[0, 2\].*got 3"):
        store.inclusion_proof("evidence", 0, 3)
    with pytest.raises(TreeSizeError, match=r"leaf index must be in \[0, 1\)"):
        store.inclusion_proof("evidence", 1, 1)
    with pytest.raises(TreeSizeError, match=r"first tree size must be in \[0, 2\]"):
        store.consistency_proof("evidence", 3, 2)


def test_checkpoints_are_signed_notes_over_the_root_and_idempotent(store: LogStore) -> None:
    signer = NoteSigner(ORIGIN, generate_signing_key())
    store.append_many("evidence", [{"i": i} for i in range(5)])
    cp = store.create_checkpoint("evidence", signer)
    again = store.create_checkpoint("evidence", signer, 5)
    assert again.note == cp.note and again.created_at == cp.created_at
    opened = open_checkpoint(cp.note, [NoteVerifier.from_verifier_key(signer.verifier_key())])
    assert (opened.origin, opened.tree_size, opened.root_hash) == (ORIGIN, 5, store.root_hash("evidence"))
    store.append("evidence", {"i": 5})
    store.create_checkpoint("evidence", signer, 3)
    assert [c.tree_size for c in store.checkpoints("evidence")] == [5, 3]
    assert store.latest_checkpoint("evidence").tree_size == 5
    assert [c.tree_size for c in store.checkpoints("evidence", before_size=5)] == [3]


def test_ensure_log_keeps_an_existing_origin(store: LogStore) -> None:
    info = store.ensure_log("evidence", "other.example/evidence")
    assert info.origin == ORIGIN


def test_inclusion_proofs_for_many_leaves_at_once_match_single_proofs(store: LogStore) -> None:
    entries = store.append_many("evidence", [{"i": i} for i in range(700)])
    root = store.root_hash("evidence", 650)
    indexes = list(range(0, 650, 3))  # enough node look-ups to need several statements
    proofs = store.inclusion_proofs("evidence", indexes, 650)
    assert sorted(proofs) == indexes
    for i, (entry, proof) in proofs.items():
        assert entry.leaf_hash == entries[i].leaf_hash
        assert proof == store.inclusion_proof("evidence", i, 650)
        merkle.verify_inclusion(entry.leaf_hash, i, 650, proof, root)
    with pytest.raises(TreeSizeError, match=r"leaf indexes must be in \[0, 650\)"):
        store.inclusion_proofs("evidence", [649, 650], 650)
