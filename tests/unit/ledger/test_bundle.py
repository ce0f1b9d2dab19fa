"""Proof bundles: build, verify offline and on chain, and reject any altered byte by name."""

from __future__ import annotations

import copy
import json

import jsonschema
import pytest

from evidence_ledger.ledger import db
from evidence_ledger.ledger.anchoring import Anchorer
from evidence_ledger.ledger.bundle import build_bundle, bundle_schema, verify_bundle
from evidence_ledger.ledger.chain import memory_chain
from evidence_ledger.ledger.checkpoint import NoteSigner, generate_signing_key
from evidence_ledger.ledger.errors import BundleFormatError, VerificationError
from evidence_ledger.ledger.log import LogStore

ORIGIN = "test.example/evidence"


@pytest.fixture(scope="module")
def world(tmp_path_factory):  # type: ignore[no-untyped-def]
    engine = db.create_db_engine(f"sqlite:///{tmp_path_factory.mktemp('b') / 'l.db'}")
    db.migrate(engine)
    store = LogStore(engine)
    store.ensure_log("evidence", ORIGIN)
    signer = NoteSigner(ORIGIN, generate_signing_key())
    chain = memory_chain()
    anchorer = Anchorer(store, lambda: chain, {"evidence": signer})
    records = [{"item": i, "officer": "J. Smith", "sha256": f"{i:064x}"} for i in range(37)]
    entries = store.append_many("evidence", records[:20])
    anchorer.anchor_log("evidence")
    entries += store.append_many("evidence", records[20:])
    anchorer.anchor_log("evidence")

    def bundle_for(index: int, include_record: bool = True) -> dict:
        anchor = anchorer.book.covering("evidence", chain.chain_id, index)
        cp = store.checkpoint("evidence", anchor.tree_size)
        return build_bundle(log=store.log("evidence"), verifier_key=signer.verifier_key(),
                            entry=store.entry("evidence", index),
                            proof=store.inclusion_proof("evidence", index, anchor.tree_size),
                            checkpoint=cp, anchor=anchor, include_record=include_record)

    return {"chain": chain, "signer": signer, "records": records, "bundle_for": bundle_for}


def test_bundle_matches_schema_and_verifies_offline_and_on_chain(world) -> None:  # type: ignore[no-untyped-def]
    b = world["bundle_for"](5)
    jsonschema.validate(b, bundle_schema())
    assert b["inclusionProof"]["treeSize"] == 20  # the earliest anchor that covers leaf 5
    offline = verify_bundle(b)
    assert not offline.chain_checked and not offline.key_pinned
    on_chain = verify_bundle(json.dumps(b), chain=world["chain"],
                             trusted_keys=[world["signer"].verifier_key()])
    assert on_chain.chain_checked and on_chain.key_pinned
    assert [c.name for c in on_chain.checks] == ["record", "leaf", "checkpoint.signature", "inclusionProof", "anchor"]
    late = world["bundle_for"](30)
    assert late["inclusionProof"]["treeSize"] == 37
    verify_bundle(late, chain=world["chain"])


def test_record_supplied_separately(world) -> None:  # type: ignore[no-untyped-def]
    b = world["bundle_for"](3, include_record=False)
    assert "canonical" not in b["record"]
    verify_bundle(b, record=world["records"][3])
    verify_bundle(b, record_bytes=json.dumps(world["records"][3], indent=2).encode())
    with pytest.raises(VerificationError, match="the record hashes to") as e:
        verify_bundle(b, record={**world["records"][3], "officer": "someone else"})
    assert e.value.field == "record"


def _flip(s: str, i: int) -> str:
    c = s[i]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    repl = alphabet[(alphabet.index(c) + 1) % len(alphabet)] if c in alphabet else ("x" if c != "x" else "y")
    return s[:i] + repl + s[i + 1:]


FIELDS = {
    "record.canonical": ("record", "canonical"),
    "record.digest": ("record", "digest"),
    "record.salt": ("record", "salt"),
    "leaf.hash": ("leaf", "hash"),
    "checkpoint": ("checkpoint",),
    "anchor.txHash": ("anchor", "txHash"),
    "anchor.blockHash": ("anchor", "blockHash"),
    "anchor.contract": ("anchor", "contract"),
}


def _get(doc: dict, path: tuple) -> str:
    for p in path:
        doc = doc[p]
    return doc  # type: ignore[return-value]


def _set(doc: dict, path: tuple, value: object) -> None:
    for p in path[:-1]:
        doc = doc[p]
    doc[path[-1]] = value


@pytest.mark.parametrize("name", list(FIELDS))
def test_every_altered_character_fails_and_names_the_part(world, name: str) -> None:  # type: ignore[no-untyped-def]
    original = world["bundle_for"](7)
    path = FIELDS[name]
    text = _get(original, path)
    expected = {
        "record.canonical": ("record",), "record.digest": ("record", "leaf"),
        "record.salt": ("record.salt", "leaf"), "leaf.hash": ("leaf",), "checkpoint": ("checkpoint",),
        "anchor.txHash": ("anchor.txHash",), "anchor.blockHash": ("anchor.blockHash",),
        "anchor.contract": ("anchor.contract", "anchor.txHash"),
    }[name]
    positions = range(2, len(text)) if name.startswith("anchor") else range(len(text))
    for i in positions:
        bad = copy.deepcopy(original)
        altered = _flip(text, i)
        if altered == text:
            continue
        _set(bad, path, altered)
        with pytest.raises(VerificationError) as e:
            verify_bundle(bad, chain=world["chain"])
        assert e.value.field.startswith(expected), (name, i, e.value.field, str(e.value))


def test_altered_proof_sizes_and_indices_fail(world) -> None:  # type: ignore[no-untyped-def]
    b = world["bundle_for"](7)
    for i, h in enumerate(b["inclusionProof"]["hashes"]):
        bad = copy.deepcopy(b)
        bad["inclusionProof"]["hashes"][i] = _flip(h, 0)
        with pytest.raises(VerificationError, match="does not lead to the checkpoint's root") as e:
            verify_bundle(bad)
        assert e.value.field == "inclusionProof"
    cases = [
        (("leaf", "index"), 8, "inclusionProof"),
        (("inclusionProof", "treeSize"), 21, "inclusionProof.treeSize"),
        (("anchor", "blockNumber"), b["anchor"]["blockNumber"] + 1, "anchor.blockNumber"),
        (("anchor", "checkpointIndex"), 1, "anchor.checkpointIndex"),
        (("anchor", "chainId"), 5, "anchor.chainId"),
        (("anchor", "blockTime"), "2020-01-01T00:00:00Z", "anchor.blockTime"),
        (("log", "origin"), "evil.example/evidence", "log.logId"),
    ]
    for path, value, field in cases:
        bad = copy.deepcopy(b)
        _set(bad, path, value)
        with pytest.raises(VerificationError) as e:
            verify_bundle(bad, chain=world["chain"])
        assert e.value.field == field, (path, e.value.field, str(e.value))
    bad = copy.deepcopy(b)
    bad["inclusionProof"]["hashes"].pop()
    with pytest.raises(VerificationError):
        verify_bundle(bad)


def test_a_key_not_trusted_or_a_resigned_checkpoint_fails(world) -> None:  # type: ignore[no-untyped-def]
    b = world["bundle_for"](2)
    other = NoteSigner(ORIGIN, generate_signing_key())
    with pytest.raises(VerificationError, match="not one of the trusted log keys"):
        verify_bundle(b, trusted_keys=[other.verifier_key()])
    forged = copy.deepcopy(b)
    forged["log"]["verifierKey"] = other.verifier_key()
    with pytest.raises(VerificationError) as e:
        verify_bundle(forged)
    assert e.value.field == "checkpoint"


@pytest.mark.parametrize("doc", [b"", b"[]", b"{", b'{"type": "evidence-ledger/proof-bundle/v1"}', b"\xff\xfe"])
def test_malformed_bundles_are_format_errors(doc: bytes) -> None:
    with pytest.raises(BundleFormatError):
        verify_bundle(doc)


def test_non_canonical_base64_is_refused(world) -> None:  # type: ignore[no-untyped-def]
    b = world["bundle_for"](4)
    salt = b["record"]["salt"]
    last = salt[-2]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    b["record"]["salt"] = salt[:-2] + alphabet[alphabet.index(last) ^ 1] + "="
    with pytest.raises(BundleFormatError, match="not canonical base64") as e:
        verify_bundle(b)
    assert e.value.field == "record.salt"
