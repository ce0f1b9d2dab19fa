"""Request and response bodies of the HTTP API (domain records stay in the domain packages)."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


def b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


class _Out(BaseModel):
    model_config = ConfigDict(populate_by_name=True)


class AppendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    record: dict[str, Any] | list[Any] = Field(description="any JSON object or array; canonicalised with RFC 8785")


class BulkAppendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    records: list[dict[str, Any] | list[Any]] = Field(min_length=1)


class AppendedEntry(_Out):
    index: int
    leafHash: str
    recordDigest: str
    appendedAt: datetime


class BulkAppendResponse(_Out):
    log: str
    firstIndex: int
    count: int
    treeSize: int
    entries: list[AppendedEntry]


class EntryOut(AppendedEntry):
    log: str
    salt: str
    record: Any | None


class AnchorOut(_Out):
    chainId: int
    contract: str
    txHash: str
    blockNumber: int
    blockHash: str
    blockTime: datetime
    checkpointIndex: int
    gasUsed: int


class CheckpointOut(_Out):
    log: str
    treeSize: int
    rootHash: str
    note: str
    createdAt: datetime
    anchor: AnchorOut | None = None


class LogOut(_Out):
    name: str
    origin: str
    logId: str
    treeSize: int
    verifierKey: str
    anchoredSize: int | None = None


class InclusionProofOut(_Out):
    log: str
    index: int
    treeSize: int
    leafHash: str
    rootHash: str
    hashes: list[str]


class ConsistencyProofOut(_Out):
    log: str
    first: int
    second: int
    firstRoot: str
    secondRoot: str
    hashes: list[str]


class VerifyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    bundle: dict[str, Any]
    record: Any | None = Field(None, description="optional: the record itself, checked against the digest")
    checkChain: bool = Field(True, description="also look the anchor up on this server's chain")


class VerifyCheck(_Out):
    name: str
    detail: str


class VerifyOut(_Out):
    valid: bool
    field: str | None = None
    message: str
    log: str | None = None
    leafIndex: int | None = None
    treeSize: int | None = None
    anchoredAt: datetime | None = None
    chainId: int | None = None
    txHash: str | None = None
    chainChecked: bool = False
    checks: list[VerifyCheck] = []


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=128)
    roles: list[str] = Field(min_length=1)


class TokenOut(_Out):
    tokenId: str
    name: str
    roles: list[str]
    createdAt: datetime
    revokedAt: datetime | None = None


class TokenCreated(TokenOut):
    token: str = Field(description="shown once; store it now")
