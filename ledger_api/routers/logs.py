"""The logs: checkpoints, appends, entries, inclusion and consistency proofs, bundles, verification."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request

from evidence_ledger.ledger.anchoring import AnchorRecord
from evidence_ledger.ledger.bundle import verify_bundle
from evidence_ledger.ledger.chain import log_id_for
from evidence_ledger.ledger.errors import (
    ChainError,
    EntryNotFoundError,
    LedgerError,
    NotAnchoredError,
    VerificationError,
)
from evidence_ledger.ledger.log import Entry, StoredCheckpoint

from ..auth import LOG_READERS, LOG_WRITERS, Principal, check_log_role, current_principal
from ..runtime import Runtime
from ..schemas import (
    AppendedEntry,
    AppendRequest,
    BulkAppendRequest,
    BulkAppendResponse,
    CheckpointOut,
    ConsistencyProofOut,
    EntryOut,
    InclusionProofOut,
    LogOut,
    VerifyOut,
    VerifyRequest,
    b64,
)

router = APIRouter(tags=["logs"])

LogName = Annotated[str, Path(pattern=r"^[a-z][a-z0-9_-]{0,63}$", description="log name, e.g. evidence")]


def rt(request: Request) -> Runtime:
    return request.app.state.runtime


def _anchor_out(a: AnchorRecord | None) -> dict | None:
    if a is None:
        return None
    return {"chainId": a.chain_id, "contract": a.contract_address, "txHash": a.tx_hash_hex,
            "blockNumber": a.block_number, "blockHash": a.block_hash_hex,
            "blockTime": a.anchored_at, "checkpointIndex": a.checkpoint_index,
            "gasUsed": a.gas_used}


def _checkpoint_out(r: Runtime, cp: StoredCheckpoint) -> dict:
    anchor = None
    try:
        anchor = r.anchorer.book.at_size(cp.log_name, r.anchorer.chain_id, cp.tree_size)
    except ChainError:
        pass
    return {"log": cp.log_name, "treeSize": cp.tree_size, "rootHash": b64(cp.root_hash),
            "note": cp.note, "createdAt": cp.created_at, "anchor": _anchor_out(anchor)}


def _appended(e: Entry) -> dict:
    return {"index": e.index, "leafHash": b64(e.leaf_hash), "recordDigest": b64(e.record_digest),
            "appendedAt": e.appended_at}


@router.get("/logs", response_model=list[LogOut], summary="List the logs")
def list_logs(request: Request) -> list[dict]:
    r = rt(request)
    return [_log_out(r, info.name) for info in r.store.logs()]


@router.get("/logs/{log}", response_model=LogOut, summary="One log: origin, size, key")
def get_log(log: LogName, request: Request) -> dict:
    return _log_out(rt(request), log)


def _log_out(r: Runtime, name: str) -> dict:
    info = r.store.log(name)
    return {"name": info.name, "origin": info.origin, "logId": "0x" + log_id_for(info.origin).hex(),
            "treeSize": info.tree_size, "verifierKey": r.verifier_keys.get(name, ""),
            "anchoredSize": r.anchorer.anchored_size(name)}


@router.get("/logs/{log}/checkpoints", response_model=list[CheckpointOut],
            summary="Signed checkpoints, newest first, with their anchors")
def list_checkpoints(log: LogName, request: Request,
                     limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                     before: Annotated[int | None, Query(ge=0, description="tree sizes below this")] = None,
                     ) -> list[dict]:
    r = rt(request)
    return [_checkpoint_out(r, cp) for cp in r.store.checkpoints(log, limit=limit, before_size=before)]


@router.get("/logs/{log}/checkpoints/latest", response_model=CheckpointOut,
            summary="The newest signed checkpoint")
def latest_checkpoint(log: LogName, request: Request) -> dict:
    r = rt(request)
    cp = r.store.latest_checkpoint(log)
    if cp is None:
        raise NotAnchoredError(f"log {log!r} has no checkpoint yet")
    return _checkpoint_out(r, cp)


@router.get("/logs/{log}/checkpoints/{tree_size}", response_model=CheckpointOut,
            summary="The signed checkpoint at a tree size")
def get_checkpoint(log: LogName, tree_size: Annotated[int, Path(ge=0)], request: Request) -> dict:
    r = rt(request)
    cp = r.store.checkpoint(log, tree_size)
    if cp is None:
        raise EntryNotFoundError(f"log {log!r} has no checkpoint at tree size {tree_size}")
    return _checkpoint_out(r, cp)


@router.post("/logs/{log}/entries", status_code=201, response_model=AppendedEntry,
             summary="Append one record (durable when this returns)")
def append(log: LogName, body: AppendRequest, request: Request,
           principal: Principal = Depends(current_principal)) -> dict:
    r = rt(request)
    r.store.log(log)
    check_log_role(principal, log, LOG_WRITERS, "appending to")
    return _appended(r.store.append(log, body.record))


@router.post("/logs/{log}/entries/bulk", status_code=201, response_model=BulkAppendResponse,
             summary="Append many records atomically (all or none)")
def append_bulk(log: LogName, body: BulkAppendRequest, request: Request,
                principal: Principal = Depends(current_principal)) -> dict:
    r = rt(request)
    r.store.log(log)
    check_log_role(principal, log, LOG_WRITERS, "appending to")
    limit = r.settings.max_bulk_records
    if len(body.records) > limit:
        raise LedgerError(f"a bulk append takes at most {limit} records; got {len(body.records)}")
    entries = r.store.append_many(log, body.records)
    return {"log": log, "firstIndex": entries[0].index, "count": len(entries),
            "treeSize": entries[-1].index + 1, "entries": [_appended(e) for e in entries]}


@router.get("/logs/{log}/entries/{index}", response_model=EntryOut,
            summary="One entry with its record (restricted)")
def get_entry(log: LogName, index: Annotated[int, Path(ge=0)], request: Request,
              principal: Principal = Depends(current_principal)) -> dict:
    r = rt(request)
    r.store.log(log)
    check_log_role(principal, log, LOG_READERS, "reading records of")
    e = r.store.entry(log, index)
    return {**_appended(e), "log": log, "salt": b64(e.salt), "record": e.record()}


@router.get("/logs/{log}/entries/{index}/proof", response_model=InclusionProofOut,
            summary="Inclusion proof of a leaf in a tree (public: hashes only)")
def inclusion_proof(log: LogName, index: Annotated[int, Path(ge=0)], request: Request,
                    tree_size: Annotated[int | None, Query(ge=1, alias="treeSize")] = None) -> dict:
    r = rt(request)
    size = r.store.tree_size(log) if tree_size is None else tree_size
    proof = r.store.inclusion_proof(log, index, size)
    e = r.store.entry(log, index)
    return {"log": log, "index": index, "treeSize": size, "leafHash": b64(e.leaf_hash),
            "rootHash": b64(r.store.root_hash(log, size)), "hashes": [b64(h) for h in proof]}


@router.get("/logs/{log}/entries/{index}/bundle", summary="Proof bundle of an entry (restricted)",
            response_description="a proof bundle (see ledger/schemas/proof-bundle.v1.schema.json)")
def bundle(log: LogName, index: Annotated[int, Path(ge=0)], request: Request,
           principal: Principal = Depends(current_principal),
           include_record: Annotated[bool, Query(alias="includeRecord")] = False,
           wait_s: Annotated[float, Query(alias="waitS", ge=0, le=30,
                                          description="wait up to this long for the anchor")] = 0,
           ) -> dict[str, Any]:
    r = rt(request)
    r.store.log(log)
    check_log_role(principal, log, LOG_READERS, "reading records of")
    return r.bundle(log, index, include_record=include_record, wait_s=wait_s)


@router.get("/logs/{log}/consistency", response_model=ConsistencyProofOut,
            summary="Consistency proof between two tree sizes (public)")
def consistency(log: LogName, request: Request,
                first: Annotated[int, Query(ge=1)],
                second: Annotated[int | None, Query(ge=1)] = None) -> dict:
    r = rt(request)
    size2 = r.store.tree_size(log) if second is None else second
    proof = r.store.consistency_proof(log, first, size2)
    return {"log": log, "first": first, "second": size2,
            "firstRoot": b64(r.store.root_hash(log, first)),
            "secondRoot": b64(r.store.root_hash(log, size2)), "hashes": [b64(h) for h in proof]}


@router.post("/logs/{log}/flush", response_model=list[CheckpointOut],
             summary="Anchor now (urgent evidence); waits up to 30 s")
def flush(log: LogName, request: Request, principal: Principal = Depends(current_principal)) -> list[dict]:
    r = rt(request)
    r.store.log(log)
    check_log_role(principal, log, LOG_WRITERS, "flushing")
    r.anchorer.flush(log, timeout_s=30)
    cp = r.store.latest_checkpoint(log)
    return [] if cp is None else [_checkpoint_out(r, cp)]


@router.post("/verify", response_model=VerifyOut, tags=["verify"],
             summary="Verify a proof bundle (public); a failed verdict names what did not match")
def verify(body: VerifyRequest, request: Request) -> dict:
    r = rt(request)
    chain = None
    if body.checkChain:
        try:
            chain = r.anchorer.chain()
        except ChainError as e:
            return {"valid": False, "field": "anchor", "message": f"cannot reach the chain to check the anchor: {e}"}
    try:
        rep = verify_bundle(body.bundle, record=body.record, chain=chain)
    except VerificationError as e:
        return {"valid": False, "field": e.field, "message": str(e)}
    return {"valid": True, "message": f"leaf {rep.leaf_index} of {rep.origin} is in the tree of size "
            f"{rep.tree_size}, anchored at {rep.anchored_at.isoformat()} on chain {rep.chain_id}",
            "log": rep.log_name, "leafIndex": rep.leaf_index, "treeSize": rep.tree_size,
            "anchoredAt": rep.anchored_at, "chainId": rep.chain_id, "txHash": rep.tx_hash_hex,
            "chainChecked": rep.chain_checked,
            "checks": [{"name": c.name, "detail": c.detail} for c in rep.checks]}
