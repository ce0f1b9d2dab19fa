"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process answers")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: database reachable; chain ok or degraded")
def readyz(request: Request) -> JSONResponse:
    rt = request.app.state.runtime
    try:
        with rt.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        database = "ok"
    except SQLAlchemyError as e:
        return JSONResponse({"status": "unavailable", "database": f"error: {type(e).__name__}"},
                            status_code=503)
    h = rt.anchorer.health
    pending = {name: rt.store.tree_size(name) - rt.anchorer.anchored_size(name) for name in rt.signers}
    body = {
        "status": h.status,
        "database": database,
        "sequencer": rt.is_sequencer,
        "chain": {
            "kind": rt.settings.chain,
            "status": "ok" if h.chain_ok else "unavailable",
            "lastError": h.last_error,
            "lastErrorAt": h.last_error_at.isoformat() if h.last_error_at else None,
            "consecutiveFailures": h.consecutive_failures,
            "lastAnchorAt": h.last_anchor_at.isoformat() if h.last_anchor_at else None,
        },
        "pendingLeaves": pending,
    }
    return JSONResponse(body, status_code=200)
