"""LogStore against SQLite and PostgreSQL: sequencing, proofs, checkpoints, limits."""

from __future__ import annotations

import threading

import pytest

from evidence_ledger.ledger import canonical, merkle
from evidence_ledger.ledger.checkpoint import NoteSigner, NoteVerifier, generate_signing_key, open_checkpoint
from evidence_ledger.ledger.errors import (
    CanonicalizationError,
    EntryNotFoundError,
    InclusionProofError,
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


def test_inclusion_proofs_without_records_read_the_covering_index(store: LogStore) -> None:
    store.append_many("evidence", [{"i": i} for i in range(40)])
    full = store.inclusion_proofs("evidence", [0, 7, 39], 40)
    lean = store.inclusion_proofs("evidence", [0, 7, 39], 40, with_records=False)
    assert sorted(lean) == [0, 7, 39]
    for i, (entry, proof) in lean.items():
        assert entry.record_canonical is None and full[i][0].record_canonical == canonical.canonicalize({"i": i})
        assert (entry.leaf_hash, entry.record_digest, entry.salt, entry.appended_at) == (
            full[i][0].leaf_hash, full[i][0].record_digest, full[i][0].salt, full[i][0].appended_at)
        assert proof == full[i][1]
    if store.engine.dialect.name == "sqlite":  # the planner must not fall back to the table rows
        with store.engine.connect() as conn:
            plan = conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN SELECT idx, leaf_hash, record_digest, salt, appended_at FROM log_entries "
                "INDEXED BY ix_log_entries_leaf WHERE log_id = 1 AND idx IN (1, 2)").all()
        assert "USING COVERING INDEX ix_log_entries_leaf" in plan[0][-1]


@pytest.mark.parametrize("width_bits", [1, 3, 5])
def test_inclusion_proofs_from_the_cached_top_match_single_proofs_as_the_log_grows(
        store: LogStore, monkeypatch: pytest.MonkeyPatch, width_bits: int) -> None:
    # A narrow top splits even a small tree at a level > 0: the path below comes from the
    # database, the path above from the in-memory top, which is kept per tree size and reused.
    from evidence_ledger.ledger import log as log_module

    monkeypatch.setattr(log_module, "_TOP_WIDTH_BITS", width_bits)
    entries = []
    for grow, sizes in ((77, (1, 2, 3, 64, 65, 77)), (123, (200, 77, 100, 128, 129))):
        entries += store.append_many("evidence", [{"i": len(entries) + i} for i in range(grow)])
        for size in sizes:
            root = store.root_hash("evidence", size)
            indexes = sorted({0, size - 1, size // 2, *range(0, size, 7)})
            for _ in range(2):  # the second read comes from the cached top
                proofs = store.inclusion_proofs("evidence", indexes, size)
                assert sorted(proofs) == indexes
                for i, (entry, proof) in proofs.items():
                    assert entry.leaf_hash == entries[i].leaf_hash
                    assert proof == store.inclusion_proof("evidence", i, size)
                    merkle.verify_inclusion(entry.leaf_hash, i, size, proof, root)
    assert len(store._tops) <= log_module._TOP_SIZES_KEPT


def test_a_tampered_cached_top_fails_verification(store: LogStore, monkeypatch: pytest.MonkeyPatch) -> None:
    # The top is a cache, not a trust anchor: a wrong hash in it yields a proof that fails.
    from evidence_ledger.ledger import log as log_module

    monkeypatch.setattr(log_module, "_TOP_WIDTH_BITS", 2)
    entries = store.append_many("evidence", [{"i": i} for i in range(40)])
    root = store.root_hash("evidence", 40)
    store.inclusion_proofs("evidence", [5], 40)
    top = store._tops[(store.log("evidence").id, 40)]
    top.levels.nodes[0][1] = bytes(32)  # the subtree right of leaf 5's
    (entry, proof), = store.inclusion_proofs("evidence", [5], 40).values()
    with pytest.raises(InclusionProofError, match="root mismatch: proof gives"):
        merkle.verify_inclusion(entry.leaf_hash, 5, 40, proof, root)
    assert entry.leaf_hash == entries[5].leaf_hash
