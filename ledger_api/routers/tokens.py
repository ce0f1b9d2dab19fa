"""API tokens (admin only)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from evidence_ledger.ledger.tokens import TokenError, TokenInfo

from ..auth import ALL_ROLES, Principal, Role, require
from ..schemas import TokenCreate, TokenCreated, TokenOut

router = APIRouter(prefix="/tokens", tags=["tokens"])


def _out(t: TokenInfo) -> dict:
    return {"tokenId": t.token_id, "name": t.name, "roles": sorted(t.roles),
            "createdAt": t.created_at, "revokedAt": t.revoked_at}


@router.post("", status_code=201, response_model=TokenCreated, summary="Create a token (shown once)")
def create_token(body: TokenCreate, request: Request,
                 _: Principal = Depends(require(Role.ADMIN))) -> dict:
    unknown = sorted(set(body.roles) - {r.value for r in ALL_ROLES})
    if unknown:
        raise TokenError(f"unknown roles {unknown}; expected some of {sorted(r.value for r in ALL_ROLES)}")
    token, info = request.app.state.runtime.tokens.create(body.name, set(body.roles))
    return {**_out(info), "token": token}


@router.get("", response_model=list[TokenOut], summary="List tokens (never their secrets)")
def list_tokens(request: Request, _: Principal = Depends(require(Role.ADMIN))) -> list[dict]:
    return [_out(t) for t in request.app.state.runtime.tokens.list()]


@router.delete("/{token_id}", status_code=204, summary="Revoke a token")
def revoke_token(token_id: str, request: Request,
                 _: Principal = Depends(require(Role.ADMIN))) -> Response:
    request.app.state.runtime.tokens.revoke(token_id)
    return Response(status_code=204)
