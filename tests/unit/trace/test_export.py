"""EPCIS document export (schema-valid) and the FSMA 204 sortable CSV."""

from __future__ import annotations

import csv
import io

from evidence_ledger.trace import epcis
from evidence_ledger.trace.export import FSMA_COLUMNS, export_epcis, export_fsma_csv

from .conftest import BELLY, HAM, LOIN, PIGS, Chain, at


def rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_epcis_export_validates_against_the_schema(chain: Chain) -> None:
    tr = chain.tracer
    wrong = chain.capture("wrong", chain.ship(chain.ops["wa"], chain.ops["r1"], [(BELLY, 1)], at(40)),
                          chain.ops["wa"])
    tr.capture(epcis.error_declaration(wrong.event_id, "incorrect_data", [], at(41), original=wrong.event),
               operator_id=chain.ops["wa"].id)
    tr.recall(HAM, "sample failed", regulator="AMR")
    events = tr.query_events()
    doc = tr.export_epcis(events)
    epcis.validate_document(doc)
    assert doc["type"] == "EPCISDocument" and doc["schemaVersion"] == "2.0"
    assert len(epcis.events_of(doc)) == len(events)
    # The events are exactly what was committed; the declaration is there next to the original.
    assert [e["eventID"] for e in epcis.events_of(doc)] == [e.event_id for e in events]
    assert sum(1 for e in epcis.events_of(doc) if "errorDeclaration" in e) == 1
    # A trace result exports too.
    doc2 = export_epcis(tr.trace_back(LOIN))
    assert {e["bizStep"] for e in epcis.events_of(doc2)} >= {"commissioning", "shipping", "receiving", "inspecting"}


def test_fsma_csv_has_the_kdes_and_sorts(chain: Chain) -> None:
    tr = chain.tracer
    text = tr.export_fsma_csv(tr.trace_forward(PIGS))
    header = text.splitlines()[0].split(",")
    assert tuple(header) == FSMA_COLUMNS
    for col in ("Traceability Lot Code", "Product Description", "Quantity", "Unit of Measure",
                "Location Description", "Date", "Reference Document Type", "Reference Document Number"):
        assert col in header
    data = rows(text)
    ctes = [r["CTE"] for r in data]
    assert set(ctes) == {"harvesting", "shipping", "receiving", "transformation"}
    assert "inspecting" not in text  # inspections are not CTEs
    # Sorted by date and time.
    keys = [(r["Date"], r["Time (UTC)"]) for r in data]
    assert keys == sorted(keys)
    harvest = [r for r in data if r["CTE"] == "harvesting"]
    assert harvest == [dict(harvest[0], **{"Traceability Lot Code": PIGS.key, "Quantity": "300",
                                           "Unit of Measure": "KGM", "Harvest Location": "Liuyang, Hunan",
                                           "Product Description": "Live pigs (3 head)"})]
    trans = [r for r in data if r["CTE"] == "transformation"]
    assert {r["Traceability Lot Code"] for r in trans} == {LOIN.key, BELLY.key, HAM.key}
    assert all(r["Input Traceability Lot Codes"] == PIGS.key for r in trans)
    assert all(r["Traceability Lot Code Source"] == "Changsha slaughterhouse" for r in trans)
    ship = next(r for r in data if r["Event ID"] == chain.events["ship_wa"].event_id
                and r["Traceability Lot Code"] == LOIN.key)
    assert (ship["Ship-From Location"], ship["Ship-To Location"]) == ("Changsha slaughterhouse",
                                                                      "Mawangdui Wholesale Market Stall 12")
    assert (ship["Reference Document Type"], ship["Reference Document Number"]) == ("Invoice",
                                                                                    "urn:example:invoice:S-1")
    recv = next(r for r in data if r["Event ID"] == chain.events["recv_r1"].event_id)
    assert (recv["Ship-From Location"], recv["Ship-To Location"]) == ("Mawangdui Wholesale Market Stall 12",
                                                                      "Fresh Mart Furong")
    assert recv["Reference Document Type"] == "EPCIS event"
    assert recv["Log Index"] == str(chain.events["recv_r1"].log_index)
    # Sortable by any column.
    by_lot = rows(export_fsma_csv(tr.query_events(), sort_by=("Traceability Lot Code", "Date")))
    lots = [r["Traceability Lot Code"] for r in by_lot]
    assert lots == sorted(lots)
    by_qty = rows(export_fsma_csv(tr.query_events(), sort_by=("Quantity",)))
    qs = [float(r["Quantity"]) for r in by_qty]
    assert qs == sorted(qs)


def test_fsma_csv_leaves_out_erroneous_events(chain: Chain) -> None:
    tr, wa = chain.tracer, chain.ops["wa"]
    wrong = chain.capture("wrong", chain.ship(wa, chain.ops["r1"], [(BELLY, 1)], at(40)), wa)
    tr.capture(epcis.error_declaration(wrong.event_id, "incorrect_data", [], at(41), original=wrong.event),
               operator_id=wa.id)
    ids = {r["Event ID"] for r in rows(tr.export_fsma_csv(tr.query_events()))}
    assert wrong.event_id not in ids
    ids = {r["Event ID"] for r in rows(export_fsma_csv(tr.query_events(), include_erroneous=True))}
    assert wrong.event_id in ids
