"""Proof bundles: build one for a log entry, and verify one offline and against a chain.

The verifier shares no code with the generator beyond the hash primitives: it recomputes the
leaf from salt and digest, the root from the inclusion proof, checks the checkpoint's signature
and body, and (with a chain) reads the anchor transaction's receipt and the contract's state.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any

import jsonschema

from . import canonical, merkle
from .anchoring import AnchorBook, AnchorRecord
from .chain import ChainClient, log_id_for
from .checkpoint import NoteVerifier, open_checkpoint
from .errors import (
    BundleFormatError,
    CanonicalizationError,
    ChainError,
    CheckpointError,
    InclusionProofError,
    NotAnchoredError,
    VerificationError,
)
from .log import Entry, LogInfo, LogStore, StoredCheckpoint

BUNDLE_TYPE = "evidence-ledger/proof-bundle/v1"
SCHEMA_FILE = "proof-bundle.v1.schema.json"


@cache
def bundle_schema() -> dict[str, Any]:
    text = resources.files(__package__).joinpath("schemas", SCHEMA_FILE).read_text()
    return json.loads(text)


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def build_bundle(*, log: LogInfo, verifier_key: str, entry: Entry, proof: Sequence[bytes],
                 checkpoint: StoredCheckpoint, anchor: AnchorRecord,
                 include_record: bool = False) -> dict[str, Any]:
    record: dict[str, Any] = {"digest": _b64(entry.record_digest), "salt": _b64(entry.salt)}
    if include_record and entry.record_canonical is not None:
        record["canonical"] = entry.record_canonical.decode()
    return {
        "type": BUNDLE_TYPE,
        "log": {"name": log.name, "origin": log.origin,
                "logId": "0x" + log_id_for(log.origin).hex(), "verifierKey": verifier_key},
        "record": record,
        "leaf": {"index": entry.index, "hash": _b64(entry.leaf_hash)},
        "inclusionProof": {"treeSize": checkpoint.tree_size, "hashes": [_b64(h) for h in proof]},
        "checkpoint": checkpoint.note,
        "anchor": {
            "chainId": anchor.chain_id,
            "contract": anchor.contract_address,
            "txHash": anchor.tx_hash_hex,
            "blockNumber": anchor.block_number,
            "blockHash": anchor.block_hash_hex,
            "blockTime": anchor.anchored_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "checkpointIndex": anchor.checkpoint_index,
        },
    }


def bundle_for_entry(store: LogStore, book: AnchorBook, *, chain_id: int, verifier_key: str,
                     log_name: str, index: int, include_record: bool = False) -> dict[str, Any]:
    """The bundle of entry ``index``, proving inclusion in the earliest anchored checkpoint that
    covers it. Raises ``NotAnchoredError`` until such a checkpoint exists."""
    entry = store.entry(log_name, index)
    anchor = book.covering(log_name, chain_id, index)
    checkpoint = store.checkpoint(log_name, anchor.tree_size)
    if checkpoint is None:  # anchors are recorded only for stored checkpoints
        raise NotAnchoredError(f"checkpoint {anchor.tree_size} of {log_name!r} is missing")
    proof = store.inclusion_proof(log_name, index, anchor.tree_size)
    return build_bundle(log=store.log(log_name), verifier_key=verifier_key, entry=entry, proof=proof,
                        checkpoint=checkpoint, anchor=anchor, include_record=include_record)


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    detail: str


@dataclass(frozen=True)
class VerificationReport:
    """A bundle that verified: what was checked, and what it proves."""

    log_name: str
    origin: str
    leaf_index: int
    tree_size: int
    root_hash: bytes
    record_digest: bytes
    anchored_at: datetime
    chain_id: int
    tx_hash_hex: str
    checks: tuple[Check, ...] = field(default_factory=tuple)
    chain_checked: bool = False
    key_pinned: bool = False


def parse_bundle(data: bytes | str | dict[str, Any]) -> dict[str, Any]:
    """Parse and schema-check a bundle; errors name the offending JSON path."""
    if isinstance(data, (bytes, str)):
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError) as e:
            raise BundleFormatError("bundle", f"not valid JSON: {e}") from e
    else:
        doc = data
    if not isinstance(doc, dict):
        raise BundleFormatError("bundle", f"expected a JSON object, got {type(doc).__name__}")
    validator = jsonschema.Draft202012Validator(bundle_schema())
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        path = ".".join(str(p) for p in e.absolute_path) or "bundle"
        raise BundleFormatError(path, f"does not match the proof-bundle schema: {e.message}")
    return doc


def _unb64(path: str, value: str) -> bytes:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        raise BundleFormatError(path, f"not valid base64: {e}") from e
    if len(raw) != 32:
        raise BundleFormatError(path, f"expected 32 bytes, got {len(raw)}")
    if base64.b64encode(raw).decode() != value:  # unused bits set: another spelling of the same bytes
        raise BundleFormatError(path, "not canonical base64 (altered padding bits)")
    return raw


def verify_bundle(data: bytes | str | dict[str, Any], *, record: object | None = None,
                  record_bytes: bytes | None = None, trusted_keys: Sequence[str] = (),
                  chain: ChainClient | None = None) -> VerificationReport:
    """Verify a bundle; raise ``VerificationError`` whose ``field`` names what did not match.

    ``record`` is the record as JSON data, ``record_bytes`` its raw JSON; either is
    canonicalised and compared with the committed digest. ``trusted_keys`` pins the log's
    verifier keys (else the bundle's own key is used and the report says it was not pinned).
    ``chain`` checks the anchor transaction, contract, block, tree size and root on chain.
    """
    doc = parse_bundle(data)
    checks: list[Check] = []
    log = doc["log"]

    if log_id_for(log["origin"]).hex() != log["logId"][2:]:
        raise VerificationError("log.logId", "is not keccak256 of the log origin")

    digest = _unb64("record.digest", doc["record"]["digest"])
    salt = _unb64("record.salt", doc["record"]["salt"])
    supplied = None
    if record_bytes is not None:
        try:
            supplied = canonical.canonicalize(json.loads(record_bytes))
        except (ValueError, UnicodeDecodeError) as e:
            raise VerificationError("record", f"the record file is not valid JSON: {e}") from e
    elif record is not None:
        supplied = canonical.canonicalize(record)
    elif "canonical" in doc["record"]:
        try:
            supplied = canonical.canonicalize(json.loads(doc["record"]["canonical"]))
        except (ValueError, CanonicalizationError) as e:
            raise VerificationError("record.canonical", f"not canonicalisable JSON: {e}") from e
    if supplied is not None:
        actual = canonical.record_digest(supplied)
        if actual != digest:
            raise VerificationError(
                "record", f"the record hashes to {_b64(actual)}, but the bundle commits to "
                f"{_b64(digest)}: the record or the digest was altered")
        checks.append(Check("record", "the record's canonical JSON hashes to the committed digest"))

    leaf = _unb64("leaf.hash", doc["leaf"]["hash"])
    computed_leaf = merkle.leaf_hash(canonical.leaf_entry(salt, digest))
    if computed_leaf != leaf:
        raise VerificationError(
            "leaf", f"SHA-256(0x00 || salt || digest) = {_b64(computed_leaf)} but the bundle's "
            f"leaf hash is {_b64(leaf)}: the salt, the digest or the leaf hash was altered")
    checks.append(Check("leaf", "salt and digest hash to the leaf"))

    # The checkpoint: signature first, then its body against the proof's claims.
    key = log["verifierKey"]
    pinned = bool(trusted_keys)
    if pinned and key not in trusted_keys:
        raise VerificationError("log.verifierKey", "is not one of the trusted log keys")
    try:
        verifiers = [NoteVerifier.from_verifier_key(k) for k in (trusted_keys or [key])]
        cp = open_checkpoint(doc["checkpoint"], verifiers)
    except CheckpointError as e:
        raise VerificationError("checkpoint", str(e)) from e
    checks.append(Check("checkpoint.signature",
                        "signed by the log key" + (" (pinned)" if pinned else " (from the bundle, not pinned)")))
    if cp.origin != log["origin"]:
        raise VerificationError("checkpoint", f"origin {cp.origin!r} is not the log's {log['origin']!r}")
    size = doc["inclusionProof"]["treeSize"]
    if cp.tree_size != size:
        raise VerificationError(
            "inclusionProof.treeSize", f"is {size} but the checkpoint's tree size is {cp.tree_size}")

    index = doc["leaf"]["index"]
    proof = [_unb64(f"inclusionProof.hashes.{i}", h) for i, h in enumerate(doc["inclusionProof"]["hashes"])]
    try:
        merkle.verify_inclusion(leaf, index, size, proof, cp.root_hash)
    except InclusionProofError as e:
        raise VerificationError("inclusionProof", f"does not lead to the checkpoint's root: {e}") from e
    checks.append(Check("inclusionProof", f"leaf {index} is in the tree of size {size}"))

    anchor = doc["anchor"]
    try:
        anchored_at = datetime.strptime(anchor["blockTime"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError as e:
        raise BundleFormatError("anchor.blockTime", f"expected YYYY-MM-DDTHH:MM:SSZ: {e}") from e

    if chain is not None:
        _verify_on_chain(chain, doc, cp.tree_size, cp.root_hash, anchored_at)
        checks.append(Check("anchor", f"transaction {anchor['txHash']} on chain {anchor['chainId']} "
                            f"anchors this root at tree size {size}"))

    return VerificationReport(
        log_name=log["name"], origin=log["origin"], leaf_index=index, tree_size=size,
        root_hash=cp.root_hash, record_digest=digest, anchored_at=anchored_at,
        chain_id=anchor["chainId"], tx_hash_hex=anchor["txHash"], checks=tuple(checks),
        chain_checked=chain is not None, key_pinned=pinned)


def _verify_on_chain(chain: ChainClient, doc: dict[str, Any], tree_size: int, root: bytes,
                     anchored_at: datetime) -> None:
    anchor = doc["anchor"]
    try:
        chain_id = chain.chain_id
    except ChainError as e:
        raise VerificationError("anchor.chainId", f"cannot ask the chain: {e}") from e
    if chain_id != anchor["chainId"]:
        raise VerificationError("anchor.chainId",
                                f"the bundle names chain {anchor['chainId']}, the node is chain {chain_id}")
    try:
        got = chain.fetch_anchor(anchor["txHash"], anchor["contract"])
    except ChainError as e:
        raise VerificationError("anchor.txHash", f"not an anchor transaction of {anchor['contract']} "
                                f"on chain {chain_id}: {e}") from e
    expected = [
        ("anchor.contract", got.contract_address.lower(), anchor["contract"].lower()),
        ("anchor.blockNumber", got.block_number, anchor["blockNumber"]),
        ("anchor.blockHash", got.block_hash_hex.lower(), anchor["blockHash"].lower()),
        ("anchor.blockTime", int(got.anchored_at.timestamp()), int(anchored_at.timestamp())),
        ("anchor.checkpointIndex", got.checkpoint_index, anchor["checkpointIndex"]),
        ("log.logId", "0x" + got.log_id.hex(), doc["log"]["logId"]),
        ("checkpoint.treeSize", got.tree_size, tree_size),
        ("checkpoint.rootHash", got.root_hash.hex(), root.hex()),
    ]
    for name, on_chain, claimed in expected:
        if on_chain != claimed:
            raise VerificationError(name, f"the chain says {on_chain}, the bundle says {claimed}")
