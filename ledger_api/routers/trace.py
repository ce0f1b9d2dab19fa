"""Food traceability over HTTP: operators, EPCIS capture and forms, lots, the GS1 Digital Link
resolver and consumer page, regulators' queries and exports, recalls.

Operators act through tokens whose subject is ``operator:<id>``; regulators are officers and
admins; courts read. Lot status, provenance and QR codes are public: they are what a consumer sees.
"""

from __future__ import annotations

import dataclasses
from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from evidence_ledger.ledger import canonical, merkle
from evidence_ledger.ledger.checkpoint import NoteVerifier, open_checkpoint
from evidence_ledger.ledger.errors import ChainError, LedgerError
from evidence_ledger.trace import epcis
from evidence_ledger.trace.digital_link import digital_link_path, linkset
from evidence_ledger.trace.errors import InvalidEventError
from evidence_ledger.trace.identifiers import ProductId
from evidence_ledger.trace.qr import qr_png, qr_svg
from evidence_ledger.trace.service import Provenance, Tracer

from ..auth import ForbiddenError, Principal, Role, current_principal, optional_principal, require
from ..runtime import Runtime

router = APIRouter(tags=["trace"])
resolver = APIRouter(include_in_schema=True, tags=["digital link"])
REGULATORS = (Role.ADMIN, Role.OFFICER)
READERS = (Role.ADMIN, Role.OFFICER, Role.COURT)


def rt(request: Request) -> Runtime:
    return request.app.state.runtime


def tracer(request: Request) -> Tracer:
    t = rt(request).tracer
    assert t is not None
    return t


def plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.name != "record"}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, bytes):
        return obj.hex()
    if isinstance(obj, (datetime, date)):
        return obj.isoformat()
    return obj


def acting_operator(request: Request, principal: Principal) -> str:
    op = principal.subject_id("operator")
    if op is None or Role.OPERATOR not in principal.roles:
        raise ForbiddenError("this needs a food business operator's token (issued by POST /api/v1/trace/operators)")
    tracer(request).operator(op)
    return op


def product_of(gtin: str, lot: str, serial: str | None = None) -> ProductId:
    return ProductId(gtin=gtin, lot=lot, serial=serial)


# -- operators ---------------------------------------------------------------------------------------

class OperatorCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=255)
    licence: str = Field(min_length=1, max_length=64, description="business / food licence number")
    role: str = Field(description="farm | slaughterhouse | wholesaler | retailer | restaurant")
    gln: str | None = None
    locationName: str | None = Field(None, max_length=255)


@router.post("/operators", status_code=201, summary="Register a food business; returns its API token once")
def create_operator(body: OperatorCreate, request: Request, _: Principal = Depends(require(*REGULATORS))) -> dict:
    op = tracer(request).register_operator(body.name, body.licence, body.role, body.gln, body.locationName)
    token, _info = rt(request).tokens.create(f"operator {body.name}", {"operator"}, subject=f"operator:{op.id}")
    return {**plain(op), "token": token}


@router.get("/operators", summary="Registered food businesses")
def list_operators(request: Request, _: Principal = Depends(require(*READERS))) -> list[dict]:
    return plain(tracer(request).operators())


# -- capture -----------------------------------------------------------------------------------------

@router.post("/events", status_code=201,
             summary="Capture EPCIS 2.0 events (an EPCISDocument, or one event) for the operator")
def capture_events(body: dict[str, Any], request: Request, principal: Principal = Depends(current_principal)) -> dict:
    op = acting_operator(request, principal)
    events = epcis.events_of(body) if body.get("type") in ("EPCISDocument", "EPCISQueryDocument") else [body]
    if not events:
        raise InvalidEventError("the document holds no events", path="$.epcisBody.eventList")
    limit = rt(request).settings.max_bulk_records
    if len(events) > limit:
        raise InvalidEventError(f"at most {limit} events per request; got {len(events)}", path="$.epcisBody.eventList")
    captured = tracer(request).capture_many([(e, op) for e in events])
    return {"captured": len(captured), "events": [{"eventID": c.event_id, "logIndex": c.log_index} for c in captured]}


@router.post("/imports", status_code=201,
             summary="Import another EPCIS repository's events (an EPCISDocument): schema-checked, logged and "
                     "linked into the lineage, without moving this ledger's stock")
def import_events(body: dict[str, Any], request: Request, principal: Principal = Depends(require(*REGULATORS))) -> dict:
    events = epcis.events_of(body)
    if not events:
        raise InvalidEventError("the document holds no events", path="$.epcisBody.eventList")
    limit = rt(request).settings.max_bulk_records
    if len(events) > limit:
        raise InvalidEventError(f"at most {limit} events per request; got {len(events)}", path="$.epcisBody.eventList")
    imported = tracer(request).import_events(events, importer=principal.subject or principal.name)
    return {"imported": len(imported), "events": [{"eventID": c.event_id, "logIndex": c.log_index} for c in imported]}


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid")
    gtin: str
    lot: str
    kg: float = Field(gt=0)


class FormRequest(BaseModel):
    """The simple forms operators fill in; each becomes one EPCIS 2.0 event."""

    model_config = ConfigDict(extra="forbid")
    time: datetime | None = None
    items: list[Item] = Field(default_factory=list, description="commission / ship / receive / dispose / pack children")
    inputs: list[Item] = Field(default_factory=list, description="slaughter: carcasses in")
    outputs: list[Item] = Field(default_factory=list, description="slaughter: cuts out")
    counterpartyId: str | None = Field(None, description="ship: the receiver; receive: the sender")
    parent: str | None = Field(None, description="pack: the case/pallet id (SSCC)")
    certificate: dict[str, Any] | None = Field(None, description="inspect: {type, number, issuer, issued_at, result}")
    reason: str | None = None
    ilmd: dict[str, Any] | None = Field(None, description="commission: e.g. {species, bestBeforeDate, expiryDate, productName}")


FORMS = ("commission", "slaughter", "pack", "ship", "receive", "inspect", "dispose")


@router.post("/forms/{form}", status_code=201, summary=f"Capture by simple form: {', '.join(FORMS)}")
def capture_form(form: str, body: FormRequest, request: Request, principal: Principal = Depends(current_principal)) -> dict:
    op_id = acting_operator(request, principal)
    t = tracer(request)
    me = t.operator(op_id)
    when = body.time or datetime.now().astimezone()
    items = [(product_of(i.gtin, i.lot), i.kg) for i in body.items]
    if form == "commission":
        if len(items) != 1:
            raise InvalidEventError("commission takes exactly one item (the new lot)", path="$.items")
        event = epcis.commission_lot(items[0][0], items[0][1], me.location_uri, when, ilmd=body.ilmd)
    elif form == "slaughter":
        event = epcis.slaughter([(product_of(i.gtin, i.lot), i.kg) for i in body.inputs],
                                [(product_of(i.gtin, i.lot), i.kg) for i in body.outputs], me.location_uri, when)
    elif form == "pack":
        if not body.parent:
            raise InvalidEventError("pack needs the parent (case or pallet id)", path="$.parent")
        event = epcis.pack(body.parent, items, me.location_uri, when)
    elif form in ("ship", "receive"):
        if not body.counterpartyId:
            raise InvalidEventError(f"{form} needs counterpartyId", path="$.counterpartyId")
        other = t.operator(body.counterpartyId)
        if form == "ship":
            event = epcis.ship(items, me.party_uri, other.party_uri, me.location_uri, when, to_location=other.location_uri)
        else:
            event = epcis.receive(items, other.party_uri, me.party_uri, me.location_uri, when, from_location=other.location_uri)
    elif form == "inspect":
        if len(items) != 1 or not body.certificate:
            raise InvalidEventError("inspect takes one item and a certificate", path="$.certificate")
        event = epcis.inspect(items[0][0], body.certificate, me.location_uri, when)
    elif form == "dispose":
        event = epcis.dispose(items, body.reason or "unspecified", me.location_uri, when)
    else:
        raise InvalidEventError(f"unknown form {form!r}; expected one of {', '.join(FORMS)}", path="$")
    c = t.capture(event, operator_id=op_id)
    return {"eventID": c.event_id, "logIndex": c.log_index, "event": c.event}


# -- lots: public status, QR, provenance -----------------------------------------------------------------

@router.get("/lots/{gtin}/{lot}", summary="A lot's status and holders (public: status; holders for regulators)")
def get_lot(gtin: str, lot: str, request: Request, principal: Principal | None = Depends(optional_principal)) -> dict:
    found = tracer(request).lot(product_of(gtin, lot))
    out = plain(found)
    if principal is None or not principal.roles & set(READERS):
        out.pop("holders", None)
    return out


@router.get("/lots/{gtin}/{lot}/qr.{fmt}", summary="QR code carrying the lot's GS1 Digital Link URI (PNG or SVG)")
def lot_qr(gtin: str, lot: str, fmt: str, request: Request) -> Response:
    pid = product_of(gtin, lot)
    tracer(request).lot(pid)
    uri = rt(request).settings.public_base_url + digital_link_path(pid)
    if fmt == "png":
        return Response(qr_png(uri), media_type="image/png")
    if fmt == "svg":
        return Response(qr_svg(uri), media_type="image/svg+xml")
    raise InvalidEventError(f"QR codes come as .png or .svg, not .{fmt}", path="$.format")


# -- regulators ----------------------------------------------------------------------------------------------

def _time(value: str | None, name: str) -> datetime | None:
    if not value:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as e:
        raise InvalidEventError(f"expected an ISO 8601 time, got {value!r}", path=f"$.{name}") from e
    if dt.tzinfo is None:
        raise InvalidEventError(f"the time needs a zone (Z or +08:00), got {value!r}", path=f"$.{name}")
    return dt


def _export(t: Tracer, events: Any, fmt: str, name: str) -> Response:
    if fmt == "csv":
        return Response(t.export_fsma_csv(events), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})
    if fmt == "epcis":
        return JSONResponse(t.export_epcis(events.events if hasattr(events, "events") else events),
                            media_type="application/ld+json")
    return JSONResponse(plain(events))


@router.get("/lots/{gtin}/{lot}/trace/{direction}",
            summary="Trace back to origin or forward to every downstream lot and holder (json, epcis or csv)")
def trace_lot(gtin: str, lot: str, direction: str, request: Request,
              _: Principal = Depends(require(*READERS)),
              fmt: Annotated[str, Query(alias="format", pattern="^(json|epcis|csv)$")] = "json",
              since: str | None = None, until: str | None = None) -> Response:
    t = tracer(request)
    pid = product_of(gtin, lot)
    if direction == "back":
        result = t.trace_back(pid, since=_time(since, "since"), until=_time(until, "until"))
    elif direction == "forward":
        result = t.trace_forward(pid, since=_time(since, "since"), until=_time(until, "until"))
    else:
        raise InvalidEventError(f"direction is back or forward, not {direction!r}", path="$.direction")
    return _export(t, result, fmt, f"trace-{direction}-{gtin}-{lot}")


@router.get("/events", summary="Events by lot, operator and date range (json, epcis or csv)")
def query_events(request: Request, principal: Principal = Depends(current_principal),
                 gtin: str | None = None, lot: str | None = None, operator: str | None = None,
                 since: str | None = None, until: str | None = None,
                 fmt: Annotated[str, Query(alias="format", pattern="^(json|epcis|csv)$")] = "json") -> Response:
    own = principal.subject_id("operator")
    if not principal.roles & set(READERS):
        if own is None:
            raise ForbiddenError("events are for regulators, courts, and operators (their own)")
        operator = own
    product = product_of(gtin, lot) if gtin and lot else None
    events = tracer(request).query_events(product=product, operator_id=operator,
                                          since=_time(since, "since"), until=_time(until, "until"))
    return _export(tracer(request), events, fmt, "events")


class RecallRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    gtin: str
    lot: str
    reason: str = Field(min_length=1, max_length=1000)


@router.post("/recalls", status_code=201, summary="Recall a lot: flag every descendant, list holders, set LotStatus on chain")
def recall(body: RecallRequest, request: Request, principal: Principal = Depends(require(*REGULATORS))) -> dict:
    result = tracer(request).recall(product_of(body.gtin, body.lot), body.reason,
                                    regulator=principal.subject or principal.name)
    return plain(result)


def _operator_view(request: Request, principal: Principal, operator_id: str) -> None:
    if principal.roles & set(READERS):
        return
    if principal.subject_id("operator") != operator_id:
        raise ForbiddenError("an operator sees only its own stock")


@router.get("/operators/{operator_id}/inventory", summary="Stock per lot (optionally at a date)")
def inventory(operator_id: str, request: Request, principal: Principal = Depends(current_principal),
              at: date | None = None) -> list[dict]:
    _operator_view(request, principal, operator_id)
    return plain(tracer(request).inventory(operator_id, at))


@router.get("/operators/{operator_id}/daily-ledger", summary="The day's in / out / stock per lot")
def daily_ledger(operator_id: str, day: date, request: Request,
                 principal: Principal = Depends(current_principal)) -> list[dict]:
    _operator_view(request, principal, operator_id)
    return plain(tracer(request).daily_ledger(operator_id, day))


@router.get("/operators/{operator_id}/expiry-warnings", summary="Lots near or past their dates")
def expiry_warnings(operator_id: str, request: Request, principal: Principal = Depends(current_principal),
                    today: date | None = None) -> list[dict]:
    _operator_view(request, principal, operator_id)
    return plain(tracer(request).expiry_warnings(operator_id, today or date.today()))


# -- the GS1 Digital Link resolver and the consumer page ------------------------------------------------

def _caches(request: Request) -> tuple[dict[int, int], dict[int, bytes]]:
    """Per app: leaves verified against an anchored, signed checkpoint (index -> tree size it was
    proven in; anchored proofs never change, so a verified step stays verified) and checkpoint
    roots whose signature verified (tree size -> root)."""
    state = request.app.state
    if not hasattr(state, "trace_verified"):
        state.trace_verified, state.trace_roots = {}, {}
    return state.trace_verified, state.trace_roots


def verify_steps(request: Request, records: dict[int, str | None]) -> dict[int, tuple[bool, str, int | None]]:
    """Real checks, all steps of a page at once: each step's event record (the copy the page is
    built from, keyed by log index) hashes to its committed digest, salt and digest hash to its
    leaf, and the leaf's inclusion proof leads to the root of the newest anchored checkpoint
    (whose log signature is verified)."""
    indexes = list(records)
    r = rt(request)
    _verified, _roots = _caches(request)
    out: dict[int, tuple[bool, str, int | None]] = {}
    todo = [i for i in indexes if i not in _verified]
    for i in indexes:
        if i in _verified:
            out[i] = (True, "", _verified[i])
    if not todo:
        return out
    try:
        anchor = r.anchorer.book.latest("trace", r.anchorer.chain_id)
    except ChainError as e:
        return {**out, **{i: (False, f"not checked: {type(e).__name__}", None) for i in todo}}
    size = anchor.tree_size if anchor else 0
    pending = [i for i in todo if i >= size]
    out.update({i: (False, "awaiting anchoring", None) for i in pending})
    todo = [i for i in todo if i < size]
    if not todo:
        return out
    root = _roots.get(size)
    if root is None:
        cp = r.store.checkpoint("trace", size)
        try:
            opened = open_checkpoint(cp.note, [NoteVerifier.from_verifier_key(r.verifier_keys["trace"])]) if cp else None
        except LedgerError:
            opened = None
        if opened is None or opened.tree_size != size:
            return {**out, **{i: (False, "checkpoint signature failed", None) for i in todo}}
        root = _roots[size] = opened.root_hash
    for i, (entry, proof) in r.store.inclusion_proofs("trace", todo, size, with_records=False).items():
        body = (records[i] or "").encode()
        leaf = merkle.leaf_hash(canonical.leaf_entry(entry.salt, entry.record_digest))
        try:
            if canonical.record_digest(body) != entry.record_digest or leaf != entry.leaf_hash:
                raise LedgerError("the stored record no longer hashes to its leaf")
            merkle.verify_inclusion(entry.leaf_hash, i, size, proof, root)
        except LedgerError as e:
            out[i] = (False, f"proof failed: {e}", None)
            continue
        _verified[i] = size
        out[i] = (True, "", size)
    return out


def provenance_view(request: Request, p: Provenance) -> dict[str, Any]:
    labels = {"quarantine": "Animal quarantine certificate", "meat_inspection": "Meat quality inspection certificate"}
    steps = []
    checked = verify_steps(request, {s.log_index: s.record for s in p.steps})
    what = {"commissioning": "Raised and registered", "shipping": "Shipped", "receiving": "Received",
            "transforming": "Cut", "packing": "Packed", "inspecting": "Inspected", "holding": "Held",
            "destroying": "Disposed", "selling": "Sold"}
    for s in p.steps:
        ok, note, size = checked[s.log_index]
        label = what.get(s.biz_step or "", (s.biz_step or s.type).replace("_", " ").capitalize())
        if s.type == "TransformationEvent":
            label = "Slaughtered and cut"
        if s.biz_step == "shipping" and s.destination_name:
            label = f"Shipped to {s.destination_name}"
        if s.biz_step == "receiving" and s.source_name:
            label = f"Received from {s.source_name}"
        recall_step = s.disposition == "recalled"
        if recall_step:
            label = "Recalled"
        steps.append({"when": s.event_time.strftime("%Y-%m-%d %H:%M"), "what": label,
                      "who": "the market regulator" if recall_step and not s.operator_name else
                             f"{s.operator_name or 'unknown'}" + (f" ({s.operator_role})" if s.operator_role else ""),
                      "where": s.location_name, "verified": ok, "ledger_note": note, "tree_size": size,
                      "status": s.status})
    certs = [{"label": labels.get(c.kind, c.kind.replace("_", " ").capitalize()), "number": c.number or "—",
              "issuer": c.issuer or "—", "issued_at": c.issued_at.strftime("%Y-%m-%d") if c.issued_at else "—",
              "result": c.result} for c in p.certificates]
    name = p.lot.description
    for key in p.ancestors:  # a cut inherits its carcass's product name unless it has its own
        if name:
            break
        name = tracer(request).lot(key).description
    root = p.recall.root_key if p.recall else p.lot.recall_root
    return {
        "product_name": name, "lot_label": p.product.lot, "gtin": p.product.gtin,
        "origin": p.origin.operator.name if p.origin else None,
        "slaughterhouse": p.slaughterhouse.operator.name if p.slaughterhouse else None,
        "certificates": certs, "steps": steps,
        "recalled": p.lot.status == "recalled" or p.recall is not None,
        "recall_reason": p.recall.reason if p.recall else p.lot.status_reason,
        "recall_root": _lot_label(root) if root else None,
    }


def _lot_label(key: str) -> str:
    """``gtin:0950...|lot:PIG2026A`` -> ``PIG2026A (GTIN 0950...)`` for people."""
    try:
        pid = ProductId.from_key(key)
    except Exception:  # noqa: BLE001 - a label must never break the page
        return key
    return f"{pid.lot} (GTIN {pid.gtin})" if pid.gtin else f"{pid.lot} ({pid.local_id})"


def _wants_json(request: Request, link_type: str | None) -> bool:
    accept = request.headers.get("accept", "")
    return bool(link_type) or "application/json" in accept or "application/linkset+json" in accept


@resolver.get("/01/{gtin}/10/{lot}", summary="GS1 Digital Link: the consumer page, or a linkset / redirect for machines")
def resolve(gtin: str, lot: str, request: Request, link_type: Annotated[str | None, Query(alias="linkType")] = None,
            principal: Principal | None = Depends(optional_principal)) -> Response:
    return _resolve(request, ProductId(gtin=gtin, lot=lot), link_type, principal)


@resolver.get("/01/{gtin}/10/{lot}/21/{serial}", summary="GS1 Digital Link with a serial number")
def resolve_serial(gtin: str, lot: str, serial: str, request: Request,
                   link_type: Annotated[str | None, Query(alias="linkType")] = None,
                   principal: Principal | None = Depends(optional_principal)) -> Response:
    return _resolve(request, ProductId(gtin=gtin, lot=lot), link_type, principal)


def _resolve(request: Request, pid: ProductId, link_type: str | None, principal: Principal | None) -> Response:
    from .pages import page

    t = tracer(request)
    base = rt(request).settings.public_base_url
    path = digital_link_path(pid)
    api = f"{base}/api/v1/trace/lots/{pid.gtin}/{pid.lot}"
    links = {"gs1:pip": f"{base}{path}", "gs1:recallStatus": api, "gs1:traceability": f"{api}/provenance",
             "gs1:certificationInfo": f"{api}/provenance#certificates"}
    if _wants_json(request, link_type):
        if link_type and link_type not in ("all", "linkset"):
            wanted = link_type if link_type.startswith("gs1:") else f"gs1:{link_type}"
            if wanted not in links:
                raise InvalidEventError(f"unknown linkType {link_type!r}; known: {', '.join(links)}", path="$.linkType")
            t.lot(pid)
            return RedirectResponse(links[wanted], status_code=307)
        t.lot(pid)
        return JSONResponse(linkset(pid, base, links), media_type="application/linkset+json")
    p = t.provenance(pid)
    return page(request, "provenance.html", principal, p=provenance_view(request, p))


@router.get("/lots/{gtin}/{lot}/provenance", summary="The consumer page's data as JSON, with each step's ledger check")
def provenance_json(gtin: str, lot: str, request: Request) -> dict:
    p = tracer(request).provenance(product_of(gtin, lot))
    return {**plain(p), "view": provenance_view(request, p)}
