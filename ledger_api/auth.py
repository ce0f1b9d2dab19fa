"""Roles and the bearer-token dependency. Every route states the roles it admits."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

from fastapi import Depends, Request

from evidence_ledger.ledger.tokens import TokenError, TokenInfo


class Role(StrEnum):
    ADMIN = "admin"
    OFFICER = "officer"
    OPERATOR = "operator"
    TAX = "tax"
    HR = "hr"
    POLICE = "police"
    COURT = "court"
    MARKET = "market"  # market regulation: sees every flow, runs inspection draws
    ENTERPRISE = "enterprise"  # an enterprise acting for itself (subject ``enterprise:<uscc>``)


ALL_ROLES = frozenset(Role)

# Who may append to each log. custody is written by the services themselves (admin only by hand).
LOG_WRITERS: dict[str, frozenset[Role]] = {
    "evidence": frozenset({Role.ADMIN, Role.OFFICER}),
    "trace": frozenset({Role.ADMIN, Role.OPERATOR, Role.OFFICER}),
    # Flows records go in through /api/v1/flows, whose checks (parties, duplicates) and per-agency
    # views a raw append or read would bypass.
    "flows": frozenset({Role.ADMIN}),
    "custody": frozenset({Role.ADMIN}),
}
# Who may read records (and bundles carrying salt + digest): writers, plus courts and auditors;
# market regulation also reads the flows and their custody trail. Enterprises never use the raw
# log API: they see their own records through /api/v1/flows, which filters by party.
LOG_READERS: dict[str, frozenset[Role]] = {
    name: writers | {Role.COURT} | ({Role.MARKET} if name in ("flows", "custody") else frozenset())
    for name, writers in LOG_WRITERS.items()
}


class AuthError(Exception):
    """401: no usable credentials."""


class ForbiddenError(Exception):
    """403: authenticated, but the role does not allow this."""


class Principal:
    def __init__(self, token: TokenInfo) -> None:
        self.token = token
        self.roles = frozenset(Role(r) for r in token.roles if r in Role.__members__.values())

    @property
    def name(self) -> str:
        return self.token.name

    @property
    def subject(self) -> str | None:
        return self.token.subject

    def subject_id(self, kind: str) -> str | None:
        """The id in a subject like ``officer:<id>``, if the token acts for one of that kind."""
        s = self.token.subject or ""
        prefix = kind + ":"
        return s[len(prefix):] if s.startswith(prefix) else None


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise AuthError("expected 'Authorization: Bearer <token>'")
    return value.strip()


SESSION_COOKIE = "ledger_session"


def _token(request: Request) -> str | None:
    return _bearer(request) or request.cookies.get(SESSION_COOKIE)


def optional_principal(request: Request) -> Principal | None:
    """For pages that show more to signed-in users; a bad cookie counts as signed out."""
    token = _token(request)
    if token is None:
        return None
    try:
        return Principal(request.app.state.runtime.tokens.authenticate(token))
    except TokenError:
        return None


def current_principal(request: Request) -> Principal:
    token = _token(request)
    if token is None:
        raise AuthError("this endpoint needs an API token: send 'Authorization: Bearer <token>'")
    try:
        return Principal(request.app.state.runtime.tokens.authenticate(token))
    except TokenError as e:
        raise AuthError(str(e)) from e


def require(*roles: Role) -> Callable[..., Principal]:
    allowed = frozenset(roles)

    def dep(principal: Principal = Depends(current_principal)) -> Principal:
        if not principal.roles & allowed:
            raise ForbiddenError(
                f"needs one of the roles {sorted(allowed)}; this token has {sorted(principal.roles)}")
        return principal

    return dep


def check_log_role(principal: Principal, log_name: str, table: dict[str, frozenset[Role]],
                   action: str) -> None:
    allowed = table.get(log_name, frozenset({Role.ADMIN}))
    if not principal.roles & allowed:
        raise ForbiddenError(f"{action} log {log_name!r} needs one of the roles {sorted(allowed)}; "
                             f"this token has {sorted(principal.roles)}")
