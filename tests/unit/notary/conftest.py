"""A notary over a fresh database (SQLite and PostgreSQL), blob store and in-process chain."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from evidence_ledger.ledger.anchoring import Anchorer
from evidence_ledger.ledger.blobs import LocalBlobStore
from evidence_ledger.ledger.bundle import bundle_for_entry
from evidence_ledger.ledger.chain import Web3Chain, memory_chain
from evidence_ledger.ledger.checkpoint import NoteSigner, generate_signing_key
from evidence_ledger.ledger.log import LogStore
from evidence_ledger.notary import db as notary_db
from evidence_ledger.notary.service import Notary


@pytest.fixture(scope="session")
def chain() -> Web3Chain:
    c = memory_chain()
    yield c
    c.close()


@dataclass
class World:
    notary: Notary
    store: LogStore
    blobs: LocalBlobStore
    chain: Web3Chain
    anchorer: Anchorer
    signers: dict[str, NoteSigner]
    kek: bytes

    def anchor(self) -> None:
        self.anchorer.anchor_all()

    def bundle(self, log_name: str, index: int, include_record: bool = True) -> dict[str, Any]:
        return bundle_for_entry(self.store, self.anchorer.book, chain_id=self.chain.chain_id,
                                verifier_key=self.signers[log_name].verifier_key(), log_name=log_name,
                                index=index, include_record=include_record)

    def bundle_source(self, index: int) -> dict[str, Any]:
        return self.bundle("evidence", index)


def make_world(engine, tmp_path, chain: Web3Chain, *, with_authority: bool) -> World:  # type: ignore[no-untyped-def]
    notary_db.migrate(engine)
    store = LogStore(engine)
    run = uuid.uuid4().hex[:8]  # the chain outlives each test's database: fresh log origins
    signers = {}
    for name in ("evidence", "custody"):
        origin = f"test.example/{name}/{run}"
        store.ensure_log(name, origin)
        signers[name] = NoteSigner(origin, generate_signing_key())
    anchorer = Anchorer(store, lambda: chain, signers)
    blobs = LocalBlobStore(tmp_path / "blobs")
    kek = os.urandom(32)
    notary = Notary(engine, store, blobs, kek, (lambda: chain) if with_authority else None,
                    trusted_log_keys=[s.verifier_key() for s in signers.values()])
    return World(notary, store, blobs, chain, anchorer, signers, kek)


@pytest.fixture
def world(engine, tmp_path, chain) -> World:  # type: ignore[no-untyped-def]
    return make_world(engine, tmp_path, chain, with_authority=True)
