"""Server-rendered pages: verification for everyone, cases and evidence for officers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from evidence_ledger.ledger.tokens import TokenError
from evidence_ledger.notary.errors import NotaryError

from ..auth import SESSION_COOKIE, Principal, optional_principal
from .notary import acting_officer, notary, readable_case, readable_evidence, run_verification

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).resolve().parent.parent / "templates")


def page(request: Request, name: str, principal: Principal | None, status_code: int = 200,
         **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, name, {"principal": principal, **context},
                                      status_code=status_code)


def _login_redirect(request: Request) -> RedirectResponse:
    return RedirectResponse(f"/login?next={request.url.path}", status_code=303)


@router.get("/", response_class=HTMLResponse)
def home() -> RedirectResponse:
    return RedirectResponse("/verify", status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/cases",
               principal: Principal | None = Depends(optional_principal)) -> HTMLResponse:
    return page(request, "login.html", principal, next=_safe_next(next))


@router.post("/login")
def login(request: Request, token: str = Form(...), next: str = Form("/cases")) -> Response:
    try:
        request.app.state.runtime.tokens.authenticate(token.strip())
    except TokenError as e:
        return page(request, "login.html", None, status_code=401, error=f"Sign-in failed: {e}",
                    next=_safe_next(next))
    resp = RedirectResponse(_safe_next(next), status_code=303)
    resp.set_cookie(SESSION_COOKIE, token.strip(), httponly=True, samesite="strict",
                    secure=request.url.scheme == "https", max_age=12 * 3600)
    return resp


@router.post("/logout")
def logout() -> Response:
    resp = RedirectResponse("/verify", status_code=303)
    resp.delete_cookie(SESSION_COOKIE)
    return resp


def _safe_next(next: str) -> str:
    # Only local paths: never redirect to another site after sign-in.
    return next if next.startswith("/") and not next.startswith("//") else "/cases"


# -- verification -------------------------------------------------------------------------------

def verdict_view(v: Any) -> dict[str, Any]:
    lines: list[str] = []
    if v.evidence_id:
        lines.append(f"Evidence {v.evidence_id} ({v.kind}) in case {v.case_reference}")
    if v.agency_name:
        lines.append(f"Captured by {v.officer_name or v.officer_id} of {v.agency_name}"
                     + (f", key {v.key_id_hex[:16]}…" if v.key_id_hex else ""))
    if v.captured_at:
        lines.append(f"Captured at {v.captured_at:%Y-%m-%d %H:%M:%S %Z}")
    if v.notarized_at:
        lines.append(f"Notarized at {v.notarized_at:%Y-%m-%d %H:%M:%S %Z}")
    if v.anchored_at:
        lines.append(f"Anchored on chain at block time {v.anchored_at:%Y-%m-%d %H:%M:%S %Z}"
                     + (" (checked on chain)" if v.chain_checked else " (not checked on chain)"))
    if v.matched:
        lines.append("The file is the notarized content" if v.matched == "content"
                     else f"The file is part '{v.matched.split(':', 1)[1]}' of the capture")
    if v.signature_ok:
        lines.append("The officer's signature verifies")
    if v.authorized is True:
        lines.append("The officer's key was authorised at anchoring time")
    if v.status == "corrected":
        lines.append(f"CORRECTED: superseded by {v.corrected_by}")
    elif v.status == "withdrawn":
        lines.append(f"WITHDRAWN: {v.withdrawal_reason or 'no reason given'}")
    else:
        lines.append("Not corrected or withdrawn")
    lines += list(v.notes)
    if v.ok:
        headline = "Verified: this matches notarized evidence"
        if v.status in ("corrected", "withdrawn"):
            headline += f" (since {v.status})"
    else:
        headline = "Not verified"
    return {"ok": v.ok, "headline": headline, "lines": lines, "problems": list(v.reasons)}


@router.get("/verify", response_class=HTMLResponse)
def verify_form(request: Request, evidence: str | None = None,
                principal: Principal | None = Depends(optional_principal)) -> HTMLResponse:
    return page(request, "verify.html", principal, evidence_id=evidence)


@router.post("/verify", response_class=HTMLResponse)
async def verify_page(request: Request, principal: Principal | None = Depends(optional_principal)) -> HTMLResponse:
    try:
        verdict = verdict_view(await run_verification(request))
        status = 200
    except NotaryError as e:
        verdict = {"ok": False, "headline": "Could not verify", "lines": [], "problems": [str(e)]}
        status = 400
    return page(request, "verify.html", principal, status_code=status, verdict=verdict)


# -- cases and evidence (signed-in officers, courts, admins) --------------------------------------

@router.get("/cases", response_class=HTMLResponse)
def cases_page(request: Request, principal: Principal | None = Depends(optional_principal)) -> Response:
    if principal is None:
        return _login_redirect(request)
    n = notary(request)
    officer = acting_officer(request, principal) if principal.subject_id("officer") else None
    cases = n.cases(officer.agency_id if officer else None)
    return page(request, "cases.html", principal, cases=cases, officer=officer)


@router.post("/cases")
def create_case_page(request: Request, reference: str = Form(...), title: str = Form(...),
                     principal: Principal | None = Depends(optional_principal)) -> Response:
    if principal is None:
        return _login_redirect(request)
    officer = acting_officer(request, principal)
    case = notary(request).create_case(reference, title, officer.agency_id, principal.subject or principal.name)
    return RedirectResponse(f"/cases/{case.id}", status_code=303)


@router.get("/cases/{case_id}", response_class=HTMLResponse)
def case_page(case_id: str, request: Request, principal: Principal | None = Depends(optional_principal)) -> Response:
    if principal is None:
        return _login_redirect(request)
    case = readable_case(request, principal, case_id)
    n = notary(request)
    can_add = principal.subject_id("officer") is not None
    timeline = n.case_timeline(case_id)
    return page(request, "case.html", principal, case=case, evidence=n.case_evidence(case_id),
                timeline=timeline, agency=n.agency(case.agency_id), can_add=can_add,
                actors=actor_names(n, {t.actor for t in timeline}))


def actor_names(n: Any, actors: set[str]) -> dict[str, str]:
    """Display names for subjects like ``officer:<id>``; the logs keep the stable ids."""
    names = {}
    for actor in actors:
        if actor.startswith("officer:"):
            try:
                o = n.officer(actor.split(":", 1)[1])
                names[actor] = f"{o.name}, {o.role}"
            except NotaryError:
                pass
    return names


@router.get("/evidence/{evidence_id}", response_class=HTMLResponse)
def evidence_page(evidence_id: str, request: Request,
                  principal: Principal | None = Depends(optional_principal)) -> Response:
    if principal is None:
        return _login_redirect(request)
    ev = readable_evidence(request, principal, evidence_id)
    n = notary(request)
    n.record_custody(evidence_id, principal.subject or principal.name, "view", "evidence page")
    custody = n.custody(evidence_id)
    return page(request, "evidence.html", principal, ev=ev, record=ev.record, case=n.case(ev.case_id),
                officer=n.officer(ev.officer_id), custody=custody,
                actors=actor_names(n, {c.actor for c in custody}))
