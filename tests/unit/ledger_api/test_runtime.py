"""Two service processes on one database: one anchors (holds the sequencer lock), the other waits."""

from __future__ import annotations

from evidence_ledger.ledger.chain import memory_chain
from evidence_ledger.ledger_api.runtime import Runtime
from evidence_ledger.ledger_api.settings import Settings


def test_only_the_sequencer_anchors_and_the_other_process_sees_it(tmp_path, db_url, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    shared = memory_chain()  # stands for one chain both processes talk to
    monkeypatch.setattr("evidence_ledger.ledger_api.runtime.memory_chain", lambda: shared)
    settings = Settings(_env_file=None, data_dir=tmp_path / "var", database_url=db_url, chain="memory",
                        anchor_interval_s=0.1)
    a, b = Runtime.build(settings), Runtime.build(settings)
    a.start()
    b.start()
    try:
        assert a.is_sequencer and not b.is_sequencer and b.anchorer.passive
        e = b.store.append("evidence", {"from": "b"})
        records = b.anchorer.flush("evidence", timeout_s=20)
        assert records[0].tree_size > e.index
        assert b.anchorer.anchored_size("evidence") == a.anchorer.anchored_size("evidence") == 1
        assert b.anchorer._thread is None  # the passive process never sent a transaction
    finally:
        b.stop()
        a.stop()
