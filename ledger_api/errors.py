"""The one mapping from domain errors to HTTP status codes."""

from __future__ import annotations

import logging
import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from evidence_ledger.flows import errors as flows_errors
from evidence_ledger.ledger.db import DatabaseError
from evidence_ledger.ledger.errors import (
    CanonicalizationError,
    ChainError,
    CheckpointError,
    EntryNotFoundError,
    LedgerError,
    LogNotFoundError,
    NotAnchoredError,
    ProofError,
    RecordTooLargeError,
    TreeSizeError,
    VerificationError,
)

from evidence_ledger.ledger.errors import (
    BlobBackendError,
    BlobIntegrityError,
    BlobNotFoundError,
    BlobTooLargeError,
)
from evidence_ledger.ledger.tokens import TokenNotFoundError
from evidence_ledger.notary import errors as notary_errors
from evidence_ledger.trace import errors as trace_errors

from .auth import AuthError, ForbiddenError

logger = logging.getLogger(__name__)


class BodyTooLargeError(Exception):
    def __init__(self, limit_bytes: int) -> None:
        super().__init__(f"request body exceeds the limit of {limit_bytes} bytes")


# Most specific first: the first matching class wins.
STATUS: list[tuple[type[BaseException], int, str]] = [
    (AuthError, 401, "unauthorized"),
    (notary_errors.UploadTooLargeError, 413, "upload_too_large"),
    (BlobTooLargeError, 413, "upload_too_large"),
    (notary_errors.ResponseTooLargeError, 422, "capture_response_too_large"),
    (notary_errors.UnsafeDestinationError, 422, "capture_destination_refused"),
    (notary_errors.UnsupportedContentError, 422, "capture_unsupported_content"),
    (notary_errors.CaptureTimeoutError, 504, "capture_timeout"),
    (notary_errors.FetchError, 502, "capture_fetch_failed"),
    (notary_errors.ArchiveIntegrityError, 422, "archive_integrity"),
    (notary_errors.CaptureError, 422, "capture_failed"),
    (notary_errors.NotFoundError, 404, "not_found"),
    (notary_errors.PermissionDeniedError, 403, "forbidden"),
    (notary_errors.ConflictError, 409, "conflict"),
    (notary_errors.EvidenceStateError, 409, "evidence_state"),
    (notary_errors.SignatureError, 422, "bad_signature"),
    (notary_errors.AuthorityError, 503, "authority_unavailable"),
    (notary_errors.KeyStorageError, 503, "key_storage"),
    (notary_errors.NotaryError, 400, "bad_request"),
    (trace_errors.InvalidIdentifierError, 422, "bad_identifier"),
    (trace_errors.InvalidEventError, 422, "bad_event"),
    (trace_errors.RuleViolationError, 409, "rule_violation"),
    (trace_errors.NotFoundError, 404, "not_found"),
    (trace_errors.PermissionDeniedError, 403, "forbidden"),
    (trace_errors.TraceError, 400, "bad_request"),
    (flows_errors.InvalidRecordError, 422, "bad_record"),
    (flows_errors.DuplicateRecordError, 409, "duplicate"),
    (flows_errors.NotFoundError, 404, "not_found"),
    (flows_errors.PermissionDeniedError, 403, "forbidden"),
    (flows_errors.DrawStateError, 409, "draw_state"),
    (flows_errors.FlowsError, 400, "bad_request"),
    (BlobNotFoundError, 404, "blob_not_found"),
    (BlobIntegrityError, 503, "blob_integrity"),
    (BlobBackendError, 503, "blob_backend_unavailable"),
    (ForbiddenError, 403, "forbidden"),
    (BodyTooLargeError, 413, "payload_too_large"),
    (RecordTooLargeError, 413, "record_too_large"),
    (LogNotFoundError, 404, "log_not_found"),
    (EntryNotFoundError, 404, "entry_not_found"),
    (TokenNotFoundError, 404, "token_not_found"),
    (TreeSizeError, 400, "bad_tree_size"),
    (NotAnchoredError, 409, "not_anchored"),
    (CanonicalizationError, 422, "bad_record"),
    (VerificationError, 422, "verification_failed"),
    (CheckpointError, 422, "bad_checkpoint"),
    (ProofError, 422, "bad_proof"),
    (ChainError, 503, "chain_unavailable"),
    (DatabaseError, 503, "database_unavailable"),
    (LedgerError, 400, "bad_request"),
]


def status_for(exc: BaseException) -> tuple[int, str]:
    for cls, status, code in STATUS:
        if isinstance(exc, cls):
            return status, code
    return 500, "internal_error"


def error_body(code: str, message: str, **extra: object) -> dict[str, object]:
    return {"error": {"code": code, "message": message, **extra}}


def install(app: FastAPI) -> None:
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        status, code = status_for(exc)
        headers = {}
        if status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        if status in (409, 503):
            headers["Retry-After"] = "2"
        extra: dict[str, object] = {"field": exc.field} if isinstance(exc, VerificationError) else {}
        if isinstance(exc, trace_errors.RuleViolationError):
            extra["rule"] = exc.rule
        if isinstance(exc, trace_errors.InvalidEventError):
            extra["path"] = exc.path
        message = str(exc)
        if isinstance(exc, flows_errors.InvalidRecordError):
            # the API speaks camelCase: name the field as the request spelled it
            extra["field"] = _camel(exc.field)
            message = f"{extra['field']}: {exc.reason}"
        if isinstance(exc, flows_errors.DuplicateRecordError):
            # where the first one sits, so the caller can fetch and compare it
            extra["keyHex"] = exc.key_hex
            extra["logIndex"] = exc.log_index
        return JSONResponse(error_body(code, message, **extra), status_code=status, headers=headers)

    for cls, _, _ in STATUS:
        app.add_exception_handler(cls, handle)

    async def validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {"location": ".".join(str(p) for p in e["loc"]), "message": e["msg"],
             "got": _short(e.get("input"))}
            for e in exc.errors()
        ]
        first = details[0] if details else {"location": "body", "message": "invalid"}
        msg = f"{first['location']}: {first['message']}"
        errs = exc.errors()
        if errs and errs[0].get("type") != "missing":  # a missing field's input is its parent: noise
            msg += f", got {first['got']}"
        return JSONResponse(error_body("invalid_request", msg, details=details), status_code=422)

    app.add_exception_handler(RequestValidationError, validation)

    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(error_body("http_error", str(exc.detail)), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    app.add_exception_handler(StarletteHTTPException, http_error)

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(error_body("internal_error", "internal error; see the server log"),
                            status_code=500)

    app.add_exception_handler(Exception, unexpected)


def _camel(field: str) -> str:
    """``tax_fen`` -> ``taxFen``; ``records[2].amount_fen`` -> ``records[2].amountFen``."""
    return re.sub(r"_([a-z0-9])", lambda m: m.group(1).upper(), field)


def _short(value: object) -> object:
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."
