"""API tokens, stored hashed. A token is ``el_<token id>_<secret>``; only SHA-256(secret) is kept."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, insert, select, update

from . import tables
from .errors import LedgerError

TOKEN_PREFIX = "el_"


class TokenError(LedgerError):
    """A token is malformed, unknown or revoked."""


class TokenNotFoundError(TokenError):
    """No active token with that id."""


@dataclass(frozen=True, slots=True)
class TokenInfo:
    token_id: str
    name: str
    roles: frozenset[str]
    subject: str | None
    created_at: datetime
    revoked_at: datetime | None


class TokenBook:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(self, name: str, roles: set[str] | frozenset[str],
               subject: str | None = None) -> tuple[str, TokenInfo]:
        """Returns the token (shown once) and its stored description."""
        if not roles:
            raise TokenError("a token needs at least one role")
        token_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            conn.execute(insert(tables.api_tokens).values(
                token_id=token_id, secret_sha256=hashlib.sha256(secret.encode()).digest(),
                name=name, roles=",".join(sorted(roles)), subject=subject, created_at=now))
        return (f"{TOKEN_PREFIX}{token_id}_{secret}",
                TokenInfo(token_id, name, frozenset(roles), subject, now, None))

    def authenticate(self, token: str) -> TokenInfo:
        if not token.startswith(TOKEN_PREFIX) or token.count("_") < 2:
            raise TokenError("malformed token: expected el_<id>_<secret>")
        token_id, _, secret = token[len(TOKEN_PREFIX):].partition("_")
        t = tables.api_tokens.c
        with self.engine.connect() as conn:
            row = conn.execute(select(tables.api_tokens).where(t.token_id == token_id)).first()
        digest = hashlib.sha256(secret.encode()).digest()
        if row is None or not hmac.compare_digest(row.secret_sha256, digest):
            raise TokenError("unknown token")
        if row.revoked_at is not None:
            raise TokenError("token revoked")
        return _info(row)

    def revoke(self, token_id: str) -> None:
        t = tables.api_tokens.c
        with self.engine.begin() as conn:
            res = conn.execute(update(tables.api_tokens).where(
                t.token_id == token_id, t.revoked_at.is_(None)).values(revoked_at=datetime.now(UTC)))
        if not res.rowcount:
            raise TokenNotFoundError(f"no active token {token_id!r}")

    def list(self) -> list[TokenInfo]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(tables.api_tokens).order_by(tables.api_tokens.c.id)).all()
        return [_info(r) for r in rows]

    def count_active(self) -> int:
        return sum(1 for t in self.list() if t.revoked_at is None)


def _aware(dt: datetime | None) -> datetime | None:
    return None if dt is None or dt.tzinfo else dt.replace(tzinfo=UTC)


def _info(row) -> TokenInfo:  # type: ignore[no-untyped-def]
    return TokenInfo(row.token_id, row.name, frozenset(row.roles.split(",")), row.subject,
                     _aware(row.created_at) or row.created_at, _aware(row.revoked_at))
