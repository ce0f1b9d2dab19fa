"""Evidence notarization over HTTP: agencies, officers, cases, evidence, custody, verification.

Officers act through tokens whose subject is ``officer:<id>``; they see their own agency's cases.
Courts and admins read everything. Every read of evidence is recorded in the custody log.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import tempfile
from collections.abc import Iterator
from datetime import datetime
from typing import IO, Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from evidence_ledger.ledger.errors import ChainError, NotAnchoredError
from evidence_ledger.notary.capture import capture_url
from evidence_ledger.notary.errors import InvalidEvidenceError, NotFoundError, UploadTooLargeError
from evidence_ledger.notary.service import Case, Evidence, Notary, Officer

from ..auth import ForbiddenError, Principal, Role, current_principal, require
from ..runtime import Runtime

router = APIRouter(tags=["notary"])
CHUNK = 1 << 20


def rt(request: Request) -> Runtime:
    return request.app.state.runtime


def notary(request: Request) -> Notary:
    n = rt(request).notary
    assert n is not None
    return n


# -- who may do what ---------------------------------------------------------------------------

def acting_officer(request: Request, principal: Principal) -> Officer:
    officer_id = principal.subject_id("officer")
    if officer_id is None or Role.OFFICER not in principal.roles:
        raise ForbiddenError("this needs an officer's token (issued by POST /api/v1/officers)")
    officer = notary(request).officer(officer_id)
    if not officer.active:
        raise ForbiddenError(f"officer {officer_id} was revoked")
    return officer


def readable_case(request: Request, principal: Principal, case_id: str) -> Case:
    case = notary(request).case(case_id)
    if principal.roles & {Role.ADMIN, Role.COURT}:
        return case
    officer = acting_officer(request, principal)
    if officer.agency_id != case.agency_id:
        raise ForbiddenError("this case belongs to another agency")
    return case


def readable_evidence(request: Request, principal: Principal, evidence_id: str) -> Evidence:
    ev = notary(request).evidence(evidence_id)
    readable_case(request, principal, ev.case_id)
    return ev


def actor_name(principal: Principal) -> str:
    return principal.subject or f"token:{principal.token.token_id}"


# -- JSON shapes ---------------------------------------------------------------------------------

def plain(obj: Any) -> Any:
    """Dataclasses to JSON: bytes as hex, datetimes as ISO 8601."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if f.name not in ("record_json", "withdrawal_record_json")}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, bytes):
        return obj.hex()
    if isinstance(obj, datetime):
        return obj.isoformat()
    return obj


def evidence_out(ev: Evidence) -> dict[str, Any]:
    return {**plain(ev), "record": ev.record}


# -- uploads: spooled to disk as they arrive, never held whole in memory ---------------------------

async def spool_body(request: Request, limit: int) -> tuple[IO[bytes], int]:
    f = tempfile.SpooledTemporaryFile(max_size=CHUNK)
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            f.close()
            raise UploadTooLargeError(limit)
        f.write(chunk)
    f.seek(0)
    return f, size


def read_chunks(f: IO[bytes]) -> Iterator[bytes]:
    while data := f.read(CHUNK):
        yield data


def _opt_time(value: str | None, field: str) -> datetime | None:
    if not value:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as e:
        raise InvalidEvidenceError(f"{field}: expected an ISO 8601 time like 2026-11-21T10:00:00Z, got {value!r}") from e
    if dt.tzinfo is None:
        raise InvalidEvidenceError(f"{field}: the time needs a zone (e.g. Z or +08:00), got {value!r}")
    return dt


async def upload_from_request(request: Request, limit: int) -> tuple[IO[bytes], dict[str, Any]]:
    """Multipart (a form with ``file`` and metadata fields) or a raw body with metadata in the query."""
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=20)
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidEvidenceError("expected a file in the form field 'file'")
        upload.file.seek(0, io.SEEK_END)
        if upload.file.tell() > limit:
            raise UploadTooLargeError(limit)
        upload.file.seek(0)
        meta = {k: (v if isinstance(v, str) else None) for k, v in form.items() if k != "file"}
        meta.setdefault("filename", upload.filename)
        meta.setdefault("media_type", upload.content_type)
        return upload.file, meta
    f, _ = await spool_body(request, limit)
    meta = dict(request.query_params)
    meta.setdefault("media_type", ctype or "application/octet-stream")
    return f, meta


# -- agencies and officers (admin) ----------------------------------------------------------------

class AgencyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(min_length=1, max_length=64, description="e.g. SAMR-SZ")
    name: str = Field(min_length=1, max_length=255)
    kind: str = Field(description="market_regulation | tax | human_resources | public_security | court")


class OfficerCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    agencyId: str
    name: str = Field(min_length=1, max_length=255)
    role: str = "officer"
    publicKey: str | None = Field(None, description="base64 Ed25519 public key if the officer keeps the private key")


class Revocation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field("unspecified", max_length=64)


@router.post("/agencies", status_code=201, summary="Register an agency (and on chain)")
def create_agency(body: AgencyCreate, request: Request, _: Principal = Depends(require(Role.ADMIN))) -> dict:
    return plain(notary(request).register_agency(body.code, body.name, body.kind))


@router.get("/agencies", summary="Agencies")
def list_agencies(request: Request, _: Principal = Depends(require(Role.ADMIN, Role.COURT))) -> list[dict]:
    return plain(notary(request).agencies())


@router.post("/officers", status_code=201,
             summary="Register an officer and their signing key; returns their API token once")
def create_officer(body: OfficerCreate, request: Request, _: Principal = Depends(require(Role.ADMIN))) -> dict:
    public_key = None
    if body.publicKey is not None:
        try:
            public_key = base64.b64decode(body.publicKey, validate=True)
        except ValueError as e:
            raise InvalidEvidenceError(f"publicKey: expected base64 of 32 bytes: {e}") from e
    officer = notary(request).register_officer(body.agencyId, body.name, body.role, public_key)
    token, _info = rt(request).tokens.create(f"officer {body.name}", {"officer"}, subject=f"officer:{officer.id}")
    return {**plain(officer), "token": token}


@router.post("/officers/{officer_id}/revoke", summary="Revoke an officer's key (here and on chain)")
def revoke_officer(officer_id: str, body: Revocation, request: Request,
                   _: Principal = Depends(require(Role.ADMIN))) -> dict:
    return plain(notary(request).revoke_officer(officer_id, body.reason))


# -- cases ------------------------------------------------------------------------------------------

class CaseCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reference: str = Field(min_length=1, max_length=64)
    title: str = Field(min_length=1, max_length=255)


@router.post("/cases", status_code=201, summary="Open a case in the officer's agency")
def create_case(body: CaseCreate, request: Request, principal: Principal = Depends(current_principal)) -> dict:
    officer = acting_officer(request, principal)
    return plain(notary(request).create_case(body.reference, body.title, officer.agency_id, actor_name(principal)))


@router.get("/cases/{case_id}", summary="A case with its evidence and timeline")
def get_case(case_id: str, request: Request, principal: Principal = Depends(current_principal)) -> dict:
    case = readable_case(request, principal, case_id)
    n = notary(request)
    return {**plain(case), "evidence": [plain(e) for e in n.case_evidence(case_id)],
            "timeline": plain(n.case_timeline(case_id)),
            "pageUrl": f"{rt(request).settings.public_base_url}/cases/{case_id}"}


@router.get("/cases/{case_id}/qr.{fmt}", summary="QR code opening the case page (PNG or SVG)")
def case_qr(case_id: str, fmt: str, request: Request, principal: Principal = Depends(current_principal)) -> Response:
    readable_case(request, principal, case_id)
    return qr_response(f"{rt(request).settings.public_base_url}/cases/{case_id}", fmt)


def qr_response(url: str, fmt: str) -> Response:
    import qrcode
    import qrcode.image.svg

    if fmt == "svg":
        img = qrcode.make(url, image_factory=qrcode.image.svg.SvgPathImage, box_size=10, border=2)
        return Response(img.to_string(), media_type="image/svg+xml")
    if fmt == "png":
        buf = io.BytesIO()
        qrcode.make(url, box_size=8, border=2).save(buf, format="PNG")
        return Response(buf.getvalue(), media_type="image/png")
    raise NotFoundError(f"QR codes come as .png or .svg, not .{fmt}")


# -- evidence ---------------------------------------------------------------------------------------

async def _with_upload(request: Request, principal: Principal, case_id: str, action: Any) -> Any:
    """Check the officer and case, spool the upload, and run ``action`` (notarize or prepare)."""
    officer = await run_in_threadpool(acting_officer, request, principal)
    await run_in_threadpool(readable_case, request, principal, case_id)
    limit = rt(request).settings.max_upload_bytes
    f: IO[bytes] | None = None
    try:
        f, meta = await upload_from_request(request, limit)
        return await run_in_threadpool(
            action, officer.id, case_id, read_chunks(f),
            filename=meta.get("filename") or None, media_type=meta.get("media_type") or "application/octet-stream",
            captured_at=_opt_time(meta.get("capturedAt"), "capturedAt"), device=meta.get("device") or None,
            location=meta.get("location") or None, description=meta.get("description") or None, max_bytes=limit)
    finally:
        if f is not None:
            f.close()
        await request.close()  # closes a parsed form's spooled files


@router.post("/cases/{case_id}/files", status_code=201,
             summary="Notarize a file: multipart form (file + capturedAt, device, location, description) "
                     "or a raw body with those as query parameters")
async def upload_file(case_id: str, request: Request, principal: Principal = Depends(current_principal)) -> dict:
    ev = await _with_upload(request, principal, case_id, notary(request).notarize_file)
    return evidence_out(ev)


@router.post("/cases/{case_id}/files/prepare",
             summary="Two-step signing, step 1: store a file and return its unsigned evidence record "
                     "(for officers who keep their own key)")
async def prepare_file(case_id: str, request: Request, principal: Principal = Depends(current_principal)) -> dict:
    record = await _with_upload(request, principal, case_id, notary(request).prepare_file_record)
    return {"record": record}


class SignedRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")
    record: dict[str, Any]


@router.post("/evidence/signed", status_code=201,
             summary="Two-step signing, step 2: submit the record signed on the officer's device")
def submit_signed(body: SignedRecord, request: Request, principal: Principal = Depends(current_principal)) -> dict:
    officer = acting_officer(request, principal)
    signer = (body.record.get("officer") or {}).get("id") if isinstance(body.record.get("officer"), dict) else None
    if signer != officer.id:
        raise ForbiddenError(f"the record is by officer {signer!r}; this token acts for {officer.id}")
    return evidence_out(notary(request).submit_signed_record(body.record))


class CaptureRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(min_length=1, max_length=4096)


@router.post("/cases/{case_id}/captures", status_code=201,
             summary="Capture a web page (WARC, screenshot, DOM, TLS, manifest) and notarize it")
def capture(case_id: str, body: CaptureRequest, request: Request,
            principal: Principal = Depends(current_principal)) -> dict:
    officer = acting_officer(request, principal)
    readable_case(request, principal, case_id)
    policy = rt(request).capture_policy
    assert policy is not None
    web = capture_url(body.url, policy)
    return evidence_out(notary(request).notarize_capture(officer.id, case_id, web))


@router.get("/evidence/{evidence_id}", summary="An evidence item (the read is recorded in the custody log)")
def get_evidence(evidence_id: str, request: Request, principal: Principal = Depends(current_principal),
                 reason: Annotated[str | None, Query(max_length=255)] = None) -> dict:
    ev = readable_evidence(request, principal, evidence_id)
    notary(request).record_custody(evidence_id, actor_name(principal), "view", reason)
    return evidence_out(ev)


@router.get("/evidence/{evidence_id}/content", summary="Download the content or one part (custody: download)")
def get_content(evidence_id: str, request: Request, principal: Principal = Depends(current_principal),
                part: str | None = None, reason: Annotated[str | None, Query(max_length=255)] = None,
                ) -> StreamingResponse:
    ev = readable_evidence(request, principal, evidence_id)
    chunks = notary(request).open_evidence(evidence_id, actor_name(principal), reason, "download", part)
    media = ev.media_type
    name = ev.filename or f"{evidence_id}"
    if part is not None:
        match = [p for p in ev.parts if p.name == part]
        media, name = match[0].media_type, part
    safe = "".join(c for c in name if c.isalnum() or c in "._-") or "evidence"
    return StreamingResponse(chunks, media_type=media,
                             headers={"Content-Disposition": f'attachment; filename="{safe}"'})


def evidence_bundle(request: Request, ev: Evidence, wait_s: float = 0) -> dict:
    return rt(request).bundle("evidence", ev.log_index, include_record=True, wait_s=wait_s)


@router.get("/evidence/{evidence_id}/bundle", summary="Proof bundle of the evidence record (custody: export)")
def get_bundle(evidence_id: str, request: Request, principal: Principal = Depends(current_principal),
               wait_s: Annotated[float, Query(alias="waitS", ge=0, le=30)] = 0) -> dict:
    ev = readable_evidence(request, principal, evidence_id)
    bundle = evidence_bundle(request, ev, wait_s)
    notary(request).record_custody(evidence_id, actor_name(principal), "export", "proof bundle")
    return bundle


@router.get("/evidence/{evidence_id}/certificate.pdf", summary="Notarization certificate (PDF)")
def get_certificate(evidence_id: str, request: Request, principal: Principal = Depends(current_principal),
                    wait_s: Annotated[float, Query(alias="waitS", ge=0, le=30)] = 5) -> Response:
    from evidence_ledger.notary.certificate import render_certificate

    ev = readable_evidence(request, principal, evidence_id)
    bundle = evidence_bundle(request, ev, wait_s)
    n = notary(request)
    n.record_custody(evidence_id, actor_name(principal), "export", "certificate")
    url = f"{rt(request).settings.public_base_url}/verify?evidence={evidence_id}"
    shots = [p for p in ev.parts if p.media_type == "image/png"]
    screenshot = n.blobs.get_bytes(shots[0].sha256) if shots else None
    pdf = render_certificate(ev, bundle, url, screenshot_png=screenshot)
    return Response(pdf, media_type="application/pdf",
                    headers={"Content-Disposition": f'inline; filename="certificate-{evidence_id}.pdf"'})


class CorrectionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=1000)
    description: str | None = Field(None, max_length=4000)
    location: str | None = Field(None, max_length=255)
    device: str | None = Field(None, max_length=255)


@router.post("/evidence/{evidence_id}/corrections", status_code=201,
             summary="Correct evidence metadata: a new signed record that supersedes the old")
def correct(evidence_id: str, body: CorrectionRequest, request: Request,
            principal: Principal = Depends(current_principal)) -> dict:
    officer = acting_officer(request, principal)
    readable_evidence(request, principal, evidence_id)
    changes = {k: v for k, v in body.model_dump().items() if k != "reason" and v is not None}
    ev = notary(request).correct(evidence_id, officer.id, body.reason, **changes)
    return evidence_out(ev)


@router.post("/evidence/{evidence_id}/withdrawal", summary="Withdraw evidence (kept, marked withdrawn)")
def withdraw(evidence_id: str, body: Revocation, request: Request,
             principal: Principal = Depends(current_principal)) -> dict:
    officer = acting_officer(request, principal)
    readable_evidence(request, principal, evidence_id)
    return evidence_out(notary(request).withdraw(evidence_id, officer.id, body.reason))


@router.get("/evidence/{evidence_id}/custody", summary="Custody events of an evidence item")
def get_custody(evidence_id: str, request: Request, principal: Principal = Depends(current_principal)) -> list[dict]:
    readable_evidence(request, principal, evidence_id)
    return plain(notary(request).custody(evidence_id))


# -- verification (public) ---------------------------------------------------------------------------

async def run_verification(request: Request) -> Any:
    """A file and/or a bundle from a multipart form (fields ``file``, ``bundle``, ``evidence``)."""
    try:
        return await _run_verification(request)
    finally:
        await request.close()  # closes the form's spooled files


async def _run_verification(request: Request) -> Any:
    r = rt(request)
    form = await request.form(max_files=2, max_fields=5)
    upload, bundle_file = form.get("file"), form.get("bundle")
    evidence_id = form.get("evidence") if isinstance(form.get("evidence"), str) else None
    file_obj = upload.file if isinstance(upload, UploadFile) and upload.filename else None
    bundle = None
    if isinstance(bundle_file, UploadFile) and bundle_file.filename:
        raw = await bundle_file.read(2 * 1024 * 1024 + 1)
        if len(raw) > 2 * 1024 * 1024:
            raise InvalidEvidenceError("a proof bundle is at most 2 MiB")
        try:
            bundle = json.loads(raw)
        except ValueError as e:
            raise InvalidEvidenceError(f"the bundle is not JSON: {e}") from e
    if file_obj is None and bundle is None:
        raise InvalidEvidenceError("send a file, a proof bundle, or both")
    n = notary(request)

    def verify() -> Any:
        try:
            chain = r.anchorer.chain()
        except ChainError:
            chain = None

        def source(index: int) -> dict:
            return evidence_bundle(request, n.evidence_at(index))

        b = bundle
        if b is None and evidence_id:
            try:
                b = evidence_bundle(request, n.evidence(evidence_id))
            except (NotFoundError, NotAnchoredError):
                b = None
        return n.verify(data_chunks=read_chunks(file_obj) if file_obj else None, bundle=b, chain=chain,
                        bundle_source=source)

    return await run_in_threadpool(verify)


@router.post("/evidence/verify", tags=["verify"],
             summary="Verify a file and/or a proof bundle (multipart: file, bundle); public")
async def verify_evidence(request: Request) -> dict:
    return plain(await run_verification(request))
