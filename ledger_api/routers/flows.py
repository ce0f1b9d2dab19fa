"""Transaction flows over HTTP: enterprises, headcount, contracts, payments, invoices, analyses,
findings with their proofs, referrals to public security, credit grades, inspection draws, and
the custody trail of agencies' reads.

Who sees what follows the agencies' remits (issue 5, "agencies' views"), written once in
:data:`SEES`: tax sees the trade records, findings and grades; human resources sees employment
data and nothing of the trade; public security sees only enterprises and findings referred to
it; market regulation sees everything. An enterprise acts through a token whose subject is
``enterprise:<uscc>`` and sees, and may record, only what it is a party to. Every successful read
by an agency (tax, hr, police, market) is appended to the ``custody`` log through
``FlowBook.record_access``; an enterprise reading its own data and the public reading a draw are
not agency reads. Inspection draws are public: anyone can fetch the committed population and the
revealed seed and recompute the draw.
"""

from __future__ import annotations

import dataclasses
import time
from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from evidence_ledger.flows import draw as draw_rules
from evidence_ledger.flows.errors import FlowsError, NotFoundError
from evidence_ledger.flows.identifiers import validate_uscc
from evidence_ledger.flows.records import (
    Contract,
    Enterprise,
    Finding,
    HeadcountSnapshot,
    Invoice,
    Payment,
    RecordRef,
)
from evidence_ledger.flows.service import FlowBook
from evidence_ledger.ledger.errors import NotAnchoredError

from ..auth import ForbiddenError, Principal, Role, optional_principal, require
from ..runtime import Runtime
from .pages import page

router = APIRouter(tags=["flows"])
pages_router = APIRouter(include_in_schema=False)

A, TAX, HR, POLICE, MARKET, ENT = Role.ADMIN, Role.TAX, Role.HR, Role.POLICE, Role.MARKET, Role.ENTERPRISE
AGENCIES = frozenset({TAX, HR, POLICE, MARKET})

# Who sees each kind of data outright. Police additionally sees what was referred to it, and an
# enterprise what it is a party to; both are checked per item, not here.
SEES: dict[str, frozenset[Role]] = {
    "enterprise": frozenset({A, TAX, HR, MARKET}),
    "snapshot": frozenset({A, HR, MARKET}),  # employment data: not tax
    "contract": frozenset({A, TAX, MARKET}),
    "payment": frozenset({A, TAX, MARKET}),
    "invoice": frozenset({A, TAX, MARKET}),
    "finding": frozenset({A, TAX, MARKET}),
    "grade": frozenset({A, TAX, MARKET}),
    "referral": frozenset({A, TAX, MARKET, POLICE}),
}
UNLISTED_KIND = frozenset({A, MARKET})  # a cited kind not in SEES: only those who see all
# Who records each kind (single routes and /bulk alike).
WRITES: dict[str, frozenset[Role]] = {
    "enterprise": frozenset({A, MARKET}),
    "snapshot": frozenset({A, HR}),
    "contract": frozenset({A, TAX}),
    "payment": frozenset({A, TAX}),
    "invoice": frozenset({A, TAX}),
}
MAX_WAIT_S = 30.0


def rt(request: Request) -> Runtime:
    return request.app.state.runtime


def book(request: Request) -> FlowBook:
    fb = rt(request).flows
    assert fb is not None
    return fb


# -- who is asking --------------------------------------------------------------------------------

def own_uscc(principal: Principal) -> str | None:
    """The enterprise a token acts for (role enterprise, subject ``enterprise:<uscc>``)."""
    if ENT not in principal.roles:
        return None
    return principal.subject_id("enterprise")


def sees(principal: Principal, kind: str) -> bool:
    return bool(principal.roles & SEES.get(kind, UNLISTED_KIND))


def is_agency(principal: Principal) -> bool:
    return bool(principal.roles & AGENCIES)


def actor_of(principal: Principal) -> str:
    """Who read, for the custody log: ``<agency role>:<token subject or name>``, e.g. ``tax:alice``."""
    roles = "+".join(sorted(r.value for r in (principal.roles & AGENCIES) or principal.roles))
    return f"{roles}:{principal.subject or principal.name}"


def about(uscc: str) -> str:
    """The custody subject of reads about one enterprise."""
    return f"enterprise:{uscc}"


def custody(request: Request, principal: Principal, action: str, subject: str) -> None:
    """Record an agency's successful read. Called after the data was fetched, before it is sent;
    an agency may state why in the ``X-Access-Reason`` header."""
    if is_agency(principal):
        reason = request.headers.get("x-access-reason")
        book(request).record_access(actor_of(principal), action, subject,
                                    reason=reason[:500] if reason else None)


def referred(request: Request, principal: Principal, uscc: str) -> bool:
    return POLICE in principal.roles and uscc in book(request).referred_usccs()


def check_enterprise_view(request: Request, principal: Principal, kind: str, uscc: str) -> None:
    """Agencies by remit, police when the enterprise was referred, an enterprise for itself."""
    if sees(principal, kind) or own_uscc(principal) == uscc:
        return
    if kind in ("enterprise", "finding") and referred(request, principal, uscc):
        return
    raise ForbiddenError(f"reading {kind} data of enterprise {uscc} is outside this token's remit "
                         f"(roles {sorted(principal.roles)})")


def scoped_uscc(principal: Principal, kind: str, uscc: str | None) -> str | None:
    """The enterprise a list is filtered by: an enterprise token is held to its own."""
    wanted = validate_uscc(uscc) if uscc else None
    if sees(principal, kind):
        return wanted
    own = own_uscc(principal)
    if own is None:
        raise ForbiddenError(f"listing {kind}s needs one of the roles {sorted(SEES[kind])} or an enterprise's "
                             f"token; this token has {sorted(principal.roles)}")
    if wanted is not None and wanted != own:
        raise ForbiddenError(f"an enterprise sees only its own {kind}s; asked for {wanted}, the token is for {own}")
    return own


def check_writer(principal: Principal, kind: str, parties: tuple[str, ...]) -> None:
    """Recorders by remit; an enterprise only records what it is a party to (it is the invoice's
    seller, the payment's payer, or the contract's buyer or seller)."""
    if principal.roles & WRITES[kind]:
        return
    own = own_uscc(principal)
    if own is not None and own in parties:
        return
    who = f"enterprise {own}" if own else f"roles {sorted(principal.roles)}"
    raise ForbiddenError(f"recording a {kind} needs one of the roles {sorted(WRITES[kind])}, or the "
                         f"token of the enterprise that is {_party_words(kind)}; this token acts for {who}")


def _party_words(kind: str) -> str:
    return {"invoice": "its seller", "payment": "its payer", "contract": "its buyer or seller"}.get(kind, "it")


def _norm(value: str, field: str) -> str:
    return validate_uscc(value, field)


# -- JSON shapes ------------------------------------------------------------------------------------

# (name, value) pair lists that read better as JSON objects; their keys are rule and grade names.
PAIR_FIELDS = frozenset({"thresholds", "measured", "rule_hits", "findings_by_rule", "grades_by_grade"})


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def out(obj: Any) -> Any:
    """Dataclasses to camelCase JSON; dates and times ISO 8601; amounts stay integer fen."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        d: dict[str, Any] = {}
        for f in dataclasses.fields(obj):
            v = getattr(obj, f.name)
            d[camel(f.name)] = {str(k): out(x) for k, x in v} if f.name in PAIR_FIELDS else out(v)
        if isinstance(obj, Invoice):
            d["totalFen"] = obj.total_fen
        return d
    if isinstance(obj, (list, tuple)):
        return [out(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): out(v) for k, v in obj.items()}
    if isinstance(obj, (datetime, date)):
        return obj.isoformat()
    return obj


# -- request bodies ---------------------------------------------------------------------------------

Uscc = Annotated[str, Field(min_length=1, max_length=64, description="18-character unified social credit code")]
Fen = Annotated[StrictInt, Field(ge=0, le=10**15, description="integer fen (1/100 yuan)")]
Count = Annotated[StrictInt, Field(ge=0, le=10**7)]
Text = Annotated[str, Field(min_length=1, max_length=255)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EnterpriseIn(_Body):
    uscc: Uscc
    name: Text
    registeredOn: date
    region: str | None = Field(None, max_length=16, description="administrative division code")
    industry: str | None = Field(None, max_length=64)

    def record(self) -> Enterprise:
        return Enterprise(uscc=self.uscc, name=self.name, registered_on=self.registeredOn,
                          region=self.region, industry=self.industry)


class HeadcountIn(_Body):
    period: str = Field(pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$", description="YYYY-MM")
    employees: Count
    insured: Count = Field(description="people with social insurance paid by the enterprise")

    def record(self, uscc: str) -> HeadcountSnapshot:
        return HeadcountSnapshot(uscc=uscc, period=self.period, employees=self.employees, insured=self.insured)


class ContractIn(_Body):
    contractNo: Text
    buyerUscc: Uscc
    sellerUscc: Uscc
    amountFen: Fen
    signedOn: date
    subject: str = Field(min_length=1, max_length=1000, description="what is supplied")
    paymentTermDays: StrictInt | None = Field(None, ge=0, le=3650)

    def record(self) -> Contract:
        return Contract(contract_no=self.contractNo, buyer_uscc=self.buyerUscc, seller_uscc=self.sellerUscc,
                        amount_fen=self.amountFen, signed_on=self.signedOn, subject=self.subject,
                        payment_term_days=self.paymentTermDays)

    def parties(self) -> tuple[str, ...]:
        return (_norm(self.buyerUscc, "buyerUscc"), _norm(self.sellerUscc, "sellerUscc"))


class PaymentIn(_Body):
    paymentRef: Text
    payerUscc: Uscc
    payeeUscc: Uscc
    amountFen: Fen
    paidOn: date
    contractNo: str | None = Field(None, max_length=255)
    invoiceKeys: list[str] = Field(default_factory=list, max_length=1000)

    def record(self) -> Payment:
        return Payment(payment_ref=self.paymentRef, payer_uscc=self.payerUscc, payee_uscc=self.payeeUscc,
                       amount_fen=self.amountFen, paid_on=self.paidOn, contract_no=self.contractNo,
                       invoice_keys=tuple(self.invoiceKeys))

    def parties(self) -> tuple[str, ...]:
        return (_norm(self.payerUscc, "payerUscc"),)


class InvoiceIn(_Body):
    keyHex: str = Field("", max_length=64, description="empty: computed from seller, code and number")
    sellerUscc: Uscc
    buyerUscc: Uscc
    code: str = Field("", max_length=12)
    number: str = Field(min_length=1, max_length=20)
    amountFen: Fen = Field(description="net of tax")
    taxFen: Fen
    issuedOn: date
    contractNo: str | None = Field(None, max_length=255)
    goods: str = Field("", max_length=1000)

    def record(self) -> Invoice:
        return Invoice(key_hex=self.keyHex, seller_uscc=self.sellerUscc, buyer_uscc=self.buyerUscc,
                       code=self.code, number=self.number, amount_fen=self.amountFen, tax_fen=self.taxFen,
                       issued_on=self.issuedOn, contract_no=self.contractNo, goods=self.goods)

    def parties(self) -> tuple[str, ...]:
        return (_norm(self.sellerUscc, "sellerUscc"),)


class EnterpriseItem(EnterpriseIn):
    kind: Literal["enterprise"]


class SnapshotItem(HeadcountIn):
    kind: Literal["snapshot"]
    uscc: Uscc

    def record(self) -> HeadcountSnapshot:  # type: ignore[override]
        return super().record(self.uscc)


class ContractItem(ContractIn):
    kind: Literal["contract"]


class PaymentItem(PaymentIn):
    kind: Literal["payment"]


class InvoiceItem(InvoiceIn):
    kind: Literal["invoice"]


BulkItem = Annotated[EnterpriseItem | SnapshotItem | ContractItem | PaymentItem | InvoiceItem,
                     Field(discriminator="kind")]


class BulkIn(_Body):
    records: list[BulkItem] = Field(min_length=1, description="typed records, each with kind: enterprise | "
                                                               "snapshot | contract | payment | invoice")


class AnalysisIn(_Body):
    period: str = Field(min_length=4, max_length=7, description="YYYY-MM, YYYY-Qn or YYYY")
    asOf: date | None = Field(None, description="the day overdue payments are judged at (default: period end)")


class ReferralIn(_Body):
    findingIds: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(min_length=1, max_length=1000)
    note: str = Field(min_length=1, max_length=4000)


class DrawIn(_Body):
    period: str = Field(min_length=4, max_length=7)
    inspectors: list[Annotated[str, Field(min_length=1, max_length=128)]] = Field(min_length=1, max_length=10_000)
    perEnterprise: StrictInt = Field(2, ge=1, le=100)


Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0)]
WaitS = Annotated[float, Query(alias="waitS", ge=0, le=MAX_WAIT_S, description="wait this long for anchors")]


# -- enterprises and headcount -------------------------------------------------------------------------

@router.post("/enterprises", status_code=201, summary="Register an enterprise (market regulation)")
def register_enterprise(body: EnterpriseIn, request: Request,
                        principal: Principal = Depends(require(*WRITES["enterprise"]))) -> dict:
    return out(book(request).register_enterprise(body.record()))


@router.get("/enterprises", summary="Registered enterprises")
def list_enterprises(request: Request, principal: Principal = Depends(require(*SEES["enterprise"])),
                     limit: Limit = 100, offset: Offset = 0) -> list[dict]:
    found = book(request).enterprises(limit=limit, offset=offset)
    custody(request, principal, "list enterprises", "enterprises")
    return out(found)


@router.post("/enterprises/{uscc}/tokens", status_code=201,
             summary="Issue the enterprise's API token (role enterprise, shown once)")
def enterprise_token(uscc: str, request: Request, principal: Principal = Depends(require(A, MARKET))) -> dict:
    e = book(request).enterprise(_norm(uscc, "uscc"))
    token, info = rt(request).tokens.create(f"enterprise {e.name}", {ENT.value}, subject=f"enterprise:{e.uscc}")
    return {"uscc": e.uscc, "tokenId": info.token_id, "roles": [ENT.value], "subject": f"enterprise:{e.uscc}",
            "token": token}


@router.get("/enterprises/{uscc}", summary="One enterprise (agencies by remit; police when referred; itself)")
def get_enterprise(uscc: str, request: Request,
                   principal: Principal = Depends(require(A, TAX, HR, MARKET, POLICE, ENT))) -> dict:
    code = _norm(uscc, "uscc")
    check_enterprise_view(request, principal, "enterprise", code)
    e = book(request).enterprise(code)
    custody(request, principal, "view enterprise", about(code))
    return out(e)


@router.post("/enterprises/{uscc}/headcount", status_code=201,
             summary="Record a month's employment and social-insurance headcount (human resources)")
def record_headcount(uscc: str, body: HeadcountIn, request: Request,
                     principal: Principal = Depends(require(*WRITES["snapshot"]))) -> dict:
    return out(book(request).record_snapshot(body.record(_norm(uscc, "uscc"))))


@router.get("/enterprises/{uscc}/headcount", summary="Headcount snapshots (employment data: not tax)")
def get_headcount(uscc: str, request: Request,
                  principal: Principal = Depends(require(A, HR, MARKET, ENT))) -> list[dict]:
    code = _norm(uscc, "uscc")
    check_enterprise_view(request, principal, "snapshot", code)
    fb = book(request)
    fb.enterprise(code)
    snaps = fb.snapshots(code)
    custody(request, principal, "view headcount", about(code))
    return out(snaps)


# -- trade records in ------------------------------------------------------------------------------------

@router.post("/contracts", status_code=201, summary="Record a contract (tax; an enterprise that is a party)")
def record_contract(body: ContractIn, request: Request,
                    principal: Principal = Depends(require(A, TAX, ENT))) -> dict:
    check_writer(principal, "contract", body.parties())
    return out(book(request).record_contract(body.record()))


@router.post("/payments", status_code=201, summary="Record a payment (tax; the paying enterprise)")
def record_payment(body: PaymentIn, request: Request,
                   principal: Principal = Depends(require(A, TAX, ENT))) -> dict:
    check_writer(principal, "payment", body.parties())
    return out(book(request).record_payment(body.record()))


@router.post("/invoices", status_code=201,
             summary="Record an invoice (tax; the selling enterprise); a duplicate is 409 with the first's log index")
def record_invoice(body: InvoiceIn, request: Request,
                   principal: Principal = Depends(require(A, TAX, ENT))) -> dict:
    check_writer(principal, "invoice", body.parties())
    return out(book(request).record_invoice(body.record()))


@router.post("/bulk", summary="Record many typed records; valid ones are accepted, bad ones listed by position")
def bulk(body: BulkIn, request: Request, principal: Principal = Depends(require(A, TAX))) -> dict:
    limit = rt(request).settings.max_bulk_records
    if len(body.records) > limit:
        raise FlowsError(f"records: expected at most {limit} records per request, got {len(body.records)}")
    for i, item in enumerate(body.records):
        if not principal.roles & WRITES[item.kind]:
            raise ForbiddenError(f"records[{i}]: recording a {item.kind} needs one of the roles "
                                 f"{sorted(WRITES[item.kind])}; this token has {sorted(principal.roles)}")
    report = book(request).ingest([item.record() for item in body.records])
    return out(report)


# -- trade records out ---------------------------------------------------------------------------------

@router.get("/invoices", summary="Invoices by enterprise, direction and issue date (an enterprise: its own)")
def list_invoices(request: Request, principal: Principal = Depends(require(A, TAX, MARKET, ENT)),
                  uscc: str | None = None,
                  direction: Annotated[Literal["any", "in", "out"], Query(description="out: sold; in: bought")] = "any",
                  since: date | None = None, until: date | None = None,
                  limit: Limit = 100, offset: Offset = 0) -> list[dict]:
    code = scoped_uscc(principal, "invoice", uscc)
    found = book(request).invoices(uscc=code, direction=direction, since=since, until=until,
                                   limit=limit, offset=offset)
    custody(request, principal, "list invoices", about(code) if code else "invoices")
    return out(found)


@router.get("/invoices/{key_hex}", summary="One invoice by its key (an enterprise: when it is a party)")
def get_invoice(key_hex: str, request: Request,
                principal: Principal = Depends(require(A, TAX, MARKET, ENT))) -> dict:
    fb = book(request)
    if sees(principal, "invoice"):
        inv = fb.invoice(key_hex)
        custody(request, principal, "view invoice", f"invoice:{inv.key_hex}")
        return out(inv)
    own = own_uscc(principal)
    try:
        inv = fb.invoice(key_hex)
    except NotFoundError:
        inv = None
    # Unknown and not-yours answer alike: invoice keys are guessable from seller, code and number.
    if own is None or inv is None or own not in (inv.seller_uscc, inv.buyer_uscc):
        raise ForbiddenError(f"no invoice with key {key_hex} that this enterprise is a party to")
    return out(inv)


@router.get("/contracts", summary="Contracts by enterprise (an enterprise: its own)")
def list_contracts(request: Request, principal: Principal = Depends(require(A, TAX, MARKET, ENT)),
                   uscc: str | None = None, limit: Limit = 100, offset: Offset = 0) -> list[dict]:
    code = scoped_uscc(principal, "contract", uscc)
    found = book(request).contracts(uscc=code, limit=limit, offset=offset)
    custody(request, principal, "list contracts", about(code) if code else "contracts")
    return out(found)


@router.get("/payments", summary="Payments by enterprise (an enterprise: its own)")
def list_payments(request: Request, principal: Principal = Depends(require(A, TAX, MARKET, ENT)),
                  uscc: str | None = None, limit: Limit = 100, offset: Offset = 0) -> list[dict]:
    code = scoped_uscc(principal, "payment", uscc)
    found = book(request).payments(uscc=code, limit=limit, offset=offset)
    custody(request, principal, "list payments", about(code) if code else "payments")
    return out(found)


# -- analysis, findings, referrals ---------------------------------------------------------------------

@router.post("/analyses", status_code=201,
             summary="Analyse a period: three-flow reconciliation, fraud screening, credit grades")
def analyse(body: AnalysisIn, request: Request, principal: Principal = Depends(require(A, TAX, MARKET))) -> dict:
    return out(book(request).analyse(body.period, as_of=body.asOf))


@router.get("/findings", summary="Rule findings (an enterprise: its own; police: referred enterprises')")
def list_findings(request: Request, principal: Principal = Depends(require(A, TAX, MARKET, POLICE, ENT)),
                  period: str | None = None, uscc: str | None = None, rule: str | None = None,
                  limit: Limit = 100, offset: Offset = 0) -> list[dict]:
    fb = book(request)
    wanted = _norm(uscc, "uscc") if uscc else None
    if sees(principal, "finding"):
        found = fb.findings(period=period, uscc=wanted, rule=rule, limit=limit, offset=offset)
    elif POLICE in principal.roles:
        cases = fb.referred_usccs()
        if wanted is not None and wanted not in cases:
            raise ForbiddenError(f"enterprise {wanted} was not referred to public security")
        found = fb.findings(period=period, uscc=wanted, rule=rule, uscc_in=None if wanted else cases,
                            limit=limit, offset=offset)
    else:
        code = scoped_uscc(principal, "finding", wanted)
        found = fb.findings(period=period, uscc=code, rule=rule, limit=limit, offset=offset)
    custody(request, principal, "list findings", about(wanted) if wanted else "findings")
    return out(found)


@router.get("/findings/{finding_id}",
            summary="One finding with a proof bundle per cited record (the record itself where the reader may see it)")
def get_finding(finding_id: str, request: Request,
                principal: Principal = Depends(require(A, TAX, MARKET, POLICE, ENT)),
                wait_s: WaitS = 0) -> dict:
    fb = book(request)
    f = fb.finding(finding_id)
    check_enterprise_view(request, principal, "finding", f.uscc)
    deadline = time.monotonic() + wait_s
    police_case = referred(request, principal, f.uscc)
    cited = [_cited(request, principal, f, ref, deadline, police_case) for ref in f.records]
    own_bundle = _bundle(request, f.log_index, deadline, include_record=True)
    custody(request, principal, f"view finding {f.id}", about(f.uscc))
    return {**out(f), "bundle": own_bundle["bundle"], "anchored": own_bundle["anchored"], "cited": cited}


def _bundle(request: Request, index: int | None, deadline: float, *, include_record: bool) -> dict:
    if index is None:
        return {"anchored": False, "bundle": None, "note": "not recorded in the flows log"}
    try:
        b = rt(request).bundle("flows", index, include_record=include_record,
                               wait_s=max(0.0, deadline - time.monotonic()))
    except NotAnchoredError:
        return {"anchored": False, "bundle": None,
                "note": f"entry {index} is not anchored yet: the next checkpoint will cover it; retry shortly "
                        f"(or pass waitS)"}
    return {"anchored": True, "bundle": b, "note": None}


def _cited(request: Request, principal: Principal, f: Finding, ref: RecordRef, deadline: float,
           police_case: bool) -> dict:
    visible = sees(principal, ref.kind) or police_case or _party_to(request, principal, ref)
    head = {"kind": ref.kind, "key": ref.key, "logIndex": ref.log_index, "visible": visible}
    if not visible:
        # No bundle at all: its digest is an unsalted SHA-256 of a low-entropy record, which a
        # reader could confirm guesses against. Its leaf is public: /api/v1/logs/flows/entries/i/proof.
        return {**head, "anchored": None, "bundle": None,
                "note": f"withheld: this token may not see {ref.kind} records (roles {sorted(principal.roles)})"}
    return {**head, **_bundle(request, ref.log_index, deadline, include_record=True)}


def _party_to(request: Request, principal: Principal, ref: RecordRef) -> bool:
    """Whether the enterprise behind the token is a party to a cited record: read from the record
    as committed in the log (contract numbers are only unique per pair of parties)."""
    own = own_uscc(principal)
    if own is None or ref.log_index is None:
        return False
    if ref.kind == "enterprise":
        return ref.key == own
    if ref.kind == "snapshot":
        return ref.key.startswith(own + "/")
    if ref.kind not in ("contract", "payment", "invoice"):
        return False
    record = rt(request).store.entry("flows", ref.log_index).record()
    if not isinstance(record, dict) or record.get("type") != f"evidence-ledger/flows/{ref.kind}/v1":
        return False
    parties = {record.get(k) for k in ("buyerUscc", "sellerUscc", "payerUscc", "payeeUscc")}
    return own in parties


@router.post("/referrals", status_code=201, summary="Refer findings about one enterprise to public security")
def refer(body: ReferralIn, request: Request, principal: Principal = Depends(require(TAX, MARKET))) -> dict:
    return out(book(request).refer(body.findingIds, referred_by=principal.subject or principal.name, note=body.note))


@router.get("/referrals", summary="Cases referred to public security")
def list_referrals(request: Request, principal: Principal = Depends(require(*SEES["referral"])),
                   uscc: str | None = None) -> list[dict]:
    code = _norm(uscc, "uscc") if uscc else None
    found = book(request).referrals(uscc=code)
    custody(request, principal, "list referrals", about(code) if code else "referrals")
    return out(found)


# -- credit grades -------------------------------------------------------------------------------------

@router.get("/grades", summary="A period's credit grades (an enterprise: its own)")
def list_grades(request: Request, period: str, principal: Principal = Depends(require(A, TAX, MARKET, ENT)),
                uscc: str | None = None) -> list[dict]:
    code = scoped_uscc(principal, "grade", uscc)
    found = book(request).grades(period, uscc=code)
    custody(request, principal, f"list grades {period}", about(code) if code else "grades")
    return out(found)


@router.get("/grades/{uscc}/{period}",
            summary="One grade with the inputs it was computed from and its log index (to reproduce or appeal)")
def get_grade(uscc: str, period: str, request: Request,
              principal: Principal = Depends(require(A, TAX, MARKET, ENT))) -> dict:
    code = _norm(uscc, "uscc")
    check_enterprise_view(request, principal, "grade", code)
    g = book(request).grade(code, period)
    custody(request, principal, f"view grade {period}", about(code))
    return out(g)


# -- verifiable random inspections (public reads) ----------------------------------------------------

@router.post("/draws", status_code=201,
             summary="Commit an inspection draw: the seed's hash and the population's digest go on the ledger first")
def commit_draw(body: DrawIn, request: Request, principal: Principal = Depends(require(A, MARKET))) -> dict:
    return out(book(request).commit_draw(body.period, body.inspectors, per_enterprise=body.perEnterprise))


@router.post("/draws/{draw_id}/reveal",
             summary="Reveal the seed and draw (once), after the commitment is anchored: the anchoring block's "
                     "hash is mixed into the seed")
def reveal_draw(draw_id: str, request: Request, wait_s: Annotated[float, Query(
                    alias="waitS", ge=0, le=MAX_WAIT_S, description="wait this long for the commitment's anchor")] = 30.0,
                principal: Principal = Depends(require(A, MARKET))) -> dict:
    fb = book(request)
    commit_index = fb.draw(draw_id).commit_log_index
    deadline = time.monotonic() + wait_s
    while fb.beacon is not None and fb.beacon(commit_index) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    return out(fb.reveal_draw(draw_id))


@router.get("/draws", summary="Inspection draws (public)")
def list_draws(request: Request, period: str | None = None) -> list[dict]:
    return out(book(request).draws(period=period))


@router.get("/draws/{draw_id}",
            summary="A draw with everything needed to recompute it: population, inspectors, ratios, seed (public)")
def get_draw(draw_id: str, request: Request) -> dict:
    return public_draw(book(request), draw_id)


@router.get("/draws/{draw_id}/verify", summary="Recompute the draw on the server and list any problems (public)")
def verify_draw(draw_id: str, request: Request) -> dict:
    return draw_verdict(book(request), draw_id)


def public_draw(fb: FlowBook, draw_id: str) -> dict:
    d = fb.draw(draw_id)
    population, inspectors, ratios, per_enterprise = fb.draw_population(draw_id)
    return {**out(d), "population": [[u, g] for u, g in population], "inspectors": list(inspectors),
            "ratios": dict(ratios), "perEnterprise": per_enterprise,
            "verifyUrl": f"/api/v1/flows/draws/{d.id}/verify", "pageUrl": f"/flows/draws/{d.id}"}


def draw_verdict(fb: FlowBook, draw_id: str) -> dict:
    """Before the reveal only the population can be checked against its committed digest; after
    it, the seed against the commitment and every selection, recomputed."""
    d = fb.draw(draw_id)
    population, inspectors, ratios, per_enterprise = fb.draw_population(draw_id)
    if d.seed_hex is None:
        try:
            digest = draw_rules.population_digest(population, inspectors, ratios, per_enterprise)
        except FlowsError as e:
            digest = f"not computable ({e})"
        problems = [] if digest == d.population_hex else [
            f"population: digest {digest} differs from the recorded {d.population_hex}"]
        problems.append("the seed is not revealed yet, so the selections cannot be recomputed")
        return {"drawId": d.id, "revealed": False, "valid": False, "problems": problems}
    problems = draw_rules.verify_draw(d.commitment_hex, d.seed_hex, population, inspectors, ratios,
                                      per_enterprise, d.selections, population_hex=d.population_hex,
                                      beacon_hex=d.beacon_block_hash_hex)
    if fb.beacon is not None and d.beacon_block_hash_hex is not None:
        anchored = fb.beacon(d.commit_log_index)
        if anchored is None:
            problems.append(f"beacon: the anchor of the commitment (index {d.commit_log_index}) cannot be confirmed "
                            "now (chain unavailable or anchor no longer recorded); the beacon is unchecked")
        elif (anchored[0], anchored[1].lower().removeprefix("0x")) != (
                d.beacon_block_number, d.beacon_block_hash_hex):
            problems.append(f"beacon: block {d.beacon_block_number} ({d.beacon_block_hash_hex}) is not the confirmed "
                            f"anchor of the commitment (index {d.commit_log_index}); the ledger has {anchored}")
    return {"drawId": d.id, "revealed": True, "valid": not problems, "problems": list(problems)}


# -- access custody -------------------------------------------------------------------------------------

@router.get("/accesses", summary="The custody trail: which agency read what, when (and why)")
def list_accesses(request: Request, principal: Principal = Depends(require(A, MARKET)),
                  subject: str | None = None, limit: Limit = 100) -> list[dict]:
    found = book(request).accesses(subject=subject, limit=limit)
    custody(request, principal, "list accesses", "custody")
    return out(found)


# -- pages ------------------------------------------------------------------------------------------------

@pages_router.get("/flows/draws", response_class=HTMLResponse)
def draws_page(request: Request, period: str | None = None,
               principal: Principal | None = Depends(optional_principal)) -> HTMLResponse:
    """Every inspection draw, newest first (public: anyone may recompute any of them)."""
    return page(request, "flows_draws.html", principal, draws=list(reversed(book(request).draws(period=period))),
                period=period)


@pages_router.get("/flows/draws/{draw_id}", response_class=HTMLResponse)
def draw_page(draw_id: str, request: Request,
              principal: Principal | None = Depends(optional_principal)) -> HTMLResponse:
    fb = book(request)
    return page(request, "flows_draw.html", principal, d=public_draw(fb, draw_id),
                verdict=draw_verdict(fb, draw_id),
                recipe=(draw_rules.__doc__ or "").strip())


@pages_router.get("/flows/enterprises/{uscc}", response_class=HTMLResponse)
def enterprise_page(uscc: str, request: Request, period: str | None = None,
                    principal: Principal | None = Depends(optional_principal)) -> Response:
    if principal is None:
        return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
    fb = book(request)
    code = _norm(uscc, "uscc")
    try:
        check_enterprise_view(request, principal, "enterprise", code)
    except ForbiddenError as e:
        return page(request, "flows_enterprise.html", principal, status_code=403, error=str(e), uscc=code)
    e = fb.enterprise(code)
    findings = grade = None
    headcount = None
    allowed_findings = sees(principal, "finding") or own_uscc(principal) == code or referred(request, principal, code)
    if allowed_findings:
        findings = fb.findings(uscc=code, period=period, limit=200)
    if sees(principal, "grade") or own_uscc(principal) == code:
        grade = _latest_grade(fb, code, period, findings)
    if sees(principal, "snapshot") or own_uscc(principal) == code:
        headcount = fb.snapshots(code)
    custody(request, principal, "view enterprise page", about(code))
    return page(request, "flows_enterprise.html", principal, e=out(e), uscc=code, period=period,
                findings=out(findings) if findings is not None else None,
                grade=out(grade) if grade is not None else None,
                headcount=out(headcount) if headcount is not None else None)


def _latest_grade(fb: FlowBook, uscc: str, period: str | None, findings: list[Finding] | None) -> Any:
    """The grade of the asked period, else of the latest period the enterprise was graded in
    among the periods anything was found or drawn in."""
    periods = [period] if period else sorted(
        {f.period for f in (findings or []) if f.period} | {d.period for d in fb.draws()}, reverse=True)
    for p in periods:
        try:
            return fb.grade(uscc, p)
        except NotFoundError:
            continue
    return None
