"""Exports for regulators: an EPCIS 2.0 document and the FSMA 204 sortable spreadsheet (CSV).

FSMA 204 (21 CFR 1 subpart S) asks for the key data elements (KDEs) of each critical tracking
event (CTE) as an electronic sortable spreadsheet. Events map to CTEs as follows (events that
are not CTEs — inspections, disposals, recalls — and events declared erroneous are left out):

===========================================  ===================
event                                        CTE
===========================================  ===================
commissioning (ObjectEvent ADD) by a farm    harvesting
bizStep ``cooling``                          cooling
commissioning by anyone else; packing        initial packing
TransformationEvent                          transformation
bizStep ``shipping``                         shipping
bizStep ``receiving``                        receiving
===========================================  ===================

One row per (event, traceability lot): for a transformation or packing, one row per new lot with
the input lots in ``Input Traceability Lot Codes``. The reference document is the event's first
``bizTransactionList`` entry, else the EPCIS event itself (type ``EPCIS event``, its eventID).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from . import epcis
from .errors import InvalidEventError

__all__ = ["FSMA_COLUMNS", "CTE_ORDER", "export_epcis", "export_fsma_csv", "cte_of", "fsma_rows"]

FSMA_COLUMNS = (
    "CTE",
    "Traceability Lot Code",
    "Product Description",
    "Quantity",
    "Unit of Measure",
    "Location Description",
    "Location Identifier",
    "Date",
    "Time (UTC)",
    "Reference Document Type",
    "Reference Document Number",
    "Traceability Lot Code Source",
    "Ship-From Location",
    "Ship-To Location",
    "Input Traceability Lot Codes",
    "Harvest Location",
    "Cooling Location",
    "Operator",
    "Event ID",
    "Log Index",
)
CTE_ORDER = ("harvesting", "cooling", "initial packing", "transformation", "shipping", "receiving")

_BT_PREFIXES = ("https://ref.gs1.org/cbv/BTT-", "urn:epcglobal:cbv:btt:", "cbv:BTT-")
_BT_NAMES = {"po": "Purchase order", "desadv": "Despatch advice", "inv": "Invoice", "bol": "Bill of lading",
             "recadv": "Receiving advice", "prodorder": "Production order", "poc": "Purchase order confirmation",
             "rma": "Return merchandise authorisation", "pedigree": "Pedigree", "testprd": "Test procedure"}


def _events(events: Any) -> list[Any]:
    if hasattr(events, "events") and hasattr(events, "direction"):  # a TraceResult
        return list(events.events)
    return list(events)


def _record(e: Any) -> dict[str, Any]:
    return e.event if hasattr(e, "record") else dict(e)


def export_epcis(events: Iterable[Any], *, creation_date: datetime | None = None,
                 document_id: str | None = None) -> dict[str, Any]:
    """An EPCISDocument of the events (CapturedEvents or event dicts, a TraceResult too), each
    validated against the GS1 EPCIS 2.0 JSON Schema, as is the document."""
    records = []
    for i, e in enumerate(_events(events)):
        rec = _record(e)
        try:
            epcis.validate_event(rec)
        except InvalidEventError as err:
            raise InvalidEventError(err.reason, path=f"$.epcisBody.eventList[{i}]{err.path[1:]}") from err
        records.append(rec)
    doc = epcis.epcis_document(records, creation_date or datetime.now(UTC), document_id=document_id)
    epcis.validate_document(doc)
    return doc


def cte_of(e: Any) -> str | None:
    """The FSMA 204 CTE of a captured event, or None if it is not one."""
    step = e.biz_step or ""
    if e.type == "TransformationEvent":
        return "transformation"
    if step == "cooling":
        return "cooling"
    if step == "shipping":
        return "shipping"
    if step == "receiving":
        return "receiving"
    if e.type == "AggregationEvent" and e.action == "ADD":
        return "initial packing"
    if e.type in ("ObjectEvent", "TransactionEvent") and e.action == "ADD":
        return "harvesting" if e.operator_role == "farm" else "initial packing"
    return None


def _reference(rec: dict[str, Any], event_id: str) -> tuple[str, str]:
    for bt in rec.get("bizTransactionList") or ():
        if isinstance(bt, dict) and bt.get("bizTransaction"):
            kind = str(bt.get("type") or "")
            for p in _BT_PREFIXES:
                if kind.startswith(p):
                    kind = kind[len(p):]
            return _BT_NAMES.get(kind, kind or "Business transaction"), str(bt["bizTransaction"])
    return "EPCIS event", event_id


def _num(q: float | None) -> str:
    if q is None:
        return ""
    return str(int(q)) if float(q).is_integer() else f"{q:.6f}".rstrip("0").rstrip(".")


def fsma_rows(events: Iterable[Any] | Any, *, include_erroneous: bool = False) -> list[dict[str, str]]:
    """The FSMA 204 rows (dicts keyed by :data:`FSMA_COLUMNS`) of the events, unsorted."""
    rows: list[dict[str, str]] = []
    for e in _events(events):
        if e.kind != "event" or (e.status != "active" and not include_erroneous):
            continue
        cte = cte_of(e)
        if cte is None:
            continue
        rec = e.event
        doc_type, doc_no = _reference(rec, e.event_id)
        when = e.event_time.astimezone(UTC)
        location = e.location_name or ""
        location_id = e.biz_location or e.read_point or ""
        if cte in ("transformation", "initial packing") and any(l.role in ("output", "parent") for l in e.lots):
            made = [l for l in e.lots if l.role in ("output", "parent")]
            inputs = ";".join(dict.fromkeys(l.lot_key for l in e.lots if l.role in ("input", "child")))
        else:
            made = [l for l in e.lots if l.role in ("epc", "output")]
            inputs = ""
        for l in made:
            rows.append({
                "CTE": cte,
                "Traceability Lot Code": l.lot_key,
                "Product Description": l.description or "",
                "Quantity": _num(l.quantity),
                "Unit of Measure": l.uom or "",
                "Location Description": location,
                "Location Identifier": location_id,
                "Date": when.date().isoformat(),
                "Time (UTC)": when.strftime("%H:%M:%S"),
                "Reference Document Type": doc_type,
                "Reference Document Number": doc_no,
                "Traceability Lot Code Source": location if cte in ("harvesting", "initial packing",
                                                                   "transformation") else "",
                "Ship-From Location": (location if cte == "shipping" else e.source_name or "")
                if cte in ("shipping", "receiving") else "",
                "Ship-To Location": (e.destination_name or "" if cte == "shipping" else location)
                if cte in ("shipping", "receiving") else "",
                "Input Traceability Lot Codes": inputs,
                "Harvest Location": location if cte == "harvesting" else "",
                "Cooling Location": location if cte == "cooling" else "",
                "Operator": e.operator_name or "",
                "Event ID": e.event_id,
                "Log Index": str(e.log_index),
            })
    return rows


def export_fsma_csv(events: Iterable[Any] | Any, *, sort_by: Sequence[str] = ("Date", "Time (UTC)",
                                                                              "Traceability Lot Code", "CTE"),
                    include_erroneous: bool = False) -> str:
    """The FSMA 204 sortable spreadsheet as CSV (header row, then one row per event and lot),
    sorted by ``sort_by`` (column names; dates and times are ISO, so text order is time order)."""
    unknown = [c for c in sort_by if c not in FSMA_COLUMNS]
    if unknown:
        raise InvalidEventError(f"unknown sort columns {unknown}; the columns are {list(FSMA_COLUMNS)}",
                                path="$.sort_by")
    rows = fsma_rows(events, include_erroneous=include_erroneous)
    cte_rank = {c: i for i, c in enumerate(CTE_ORDER)}

    def key(r: dict[str, str]) -> tuple[Any, ...]:
        out: list[Any] = []
        for c in sort_by:
            if c == "CTE":
                out.append(cte_rank.get(r[c], 99))
            elif c in ("Quantity", "Log Index"):
                out.append(float(r[c] or 0))
            else:
                out.append(r[c])
        out.append(int(r["Log Index"]))
        return tuple(out)

    rows.sort(key=key)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(FSMA_COLUMNS), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()
