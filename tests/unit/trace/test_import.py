"""Importing events from another EPCIS repository: the GS1 examples are accepted, logged and traced,
without the actor check and the stock rules of capture."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from evidence_ledger.ledger import canonical
from evidence_ledger.trace import epcis, tables
from evidence_ledger.trace.errors import InvalidEventError, PermissionDeniedError, RuleViolationError
from evidence_ledger.trace.identifiers import ProductId
from evidence_ledger.trace.service import TRACE_LOG, Tracer

from .conftest import LOIN, at, build_chain

VECTORS = Path(__file__).resolve().parents[2] / "vectors" / "epcis2" / "examples"
EXAMPLES = sorted(VECTORS.glob("*.jsonld"))
IMPORTER = "Partner EPCIS repository"
TRANSFORMATION = VECTORS / "Example_9.6.4-TransformationEvent.jsonld"
TABLES = (tables.events, tables.lots, tables.event_lots, tables.lineage, tables.certificates, tables.holdings,
          tables.movements, tables.shipments)


def events_in(path: Path) -> list[dict[str, Any]]:
    return epcis.events_of(json.loads(path.read_text("utf-8")))


def key(uri: str) -> str:
    return ProductId.from_epc(uri).lot_key


def counts(tracer: Tracer) -> dict[str, int]:
    with tracer.engine.connect() as conn:
        return {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one() for t in TABLES}


def test_examples_are_all_here() -> None:
    assert len(EXAMPLES) == 8


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_each_gs1_example_imports_once_and_is_logged(tracer: Tracer, store, path: Path) -> None:  # type: ignore[no-untyped-def]
    events = events_in(path)
    imported = tracer.import_events(events, importer=IMPORTER)
    assert len(imported) == len(events)
    assert store.tree_size(TRACE_LOG) == len(events)
    for raw, ce in zip(events, imported):
        assert ce.imported_by == IMPORTER and ce.actor == f"importer:{IMPORTER}"
        assert ce.operator_id is None
        assert ce.kind == ("error_declaration" if "errorDeclaration" in raw else "event")
        # Stored exactly as given; an event without an eventID gets its canonical hash.
        expected = raw if "eventID" in raw else {**raw, "eventID": epcis.canonical_event_hash(raw)}
        assert ce.event == expected and ce.event_id == expected["eventID"]
        entry = store.entry(TRACE_LOG, ce.log_index)
        assert entry.record_digest == canonical.record_digest(canonical.canonicalize(expected))
        assert entry.record_digest == canonical.record_digest(ce.record.encode())
        assert tracer.event(ce.log_index) == ce  # what was returned is what was stored
    # Imports do not move this ledger's holdings.
    before = counts(tracer)
    assert before["trace_holdings"] == before["trace_movements"] == before["trace_shipments"] == 0
    # The same document again: duplicate_event, and nothing is logged or stored.
    with pytest.raises(RuleViolationError) as e:
        tracer.import_events(events, importer=IMPORTER)
    assert e.value.rule == "duplicate_event"
    assert store.tree_size(TRACE_LOG) == len(events)
    assert counts(tracer) == before


def test_all_examples_into_one_ledger_export_and_validate(tracer: Tracer, store) -> None:  # type: ignore[no-untyped-def]
    imported = []
    for path in EXAMPLES:
        imported += tracer.import_events(events_in(path), importer=IMPORTER)
    assert len(imported) == sum(len(events_in(p)) for p in EXAMPLES) == 12
    assert store.tree_size(TRACE_LOG) == len(imported)
    assert [ce.log_index for ce in imported] == list(range(len(imported)))
    doc = tracer.export_epcis(imported)
    epcis.validate_document(doc)
    assert [e["eventID"] for e in epcis.events_of(doc)] == [ce.event_id for ce in imported]
    # Query by lot finds imported events too; the FSMA export lists the transformations.
    assert {ce.type for ce in tracer.query_events()} >= {"TransformationEvent", "AggregationEvent"}
    csv = tracer.export_fsma_csv(tracer.query_events())
    assert "transformation" in csv and "receiving" in csv
    # An imported declaration of an event this ledger never had reverses nothing.
    decl = next(ce for ce in imported if ce.kind == "error_declaration")
    assert decl.status == "active" and decl.declared_by is None
    # The corrective event (same objects) is active, and its lineage counts.
    outputs = set(tracer.trace_forward(key("urn:epc:id:sgtin:4012345.011111.987")).lot_keys)
    assert key("urn:epc:id:sgtin:4012345.033333.AGHFG") in outputs


def test_capture_would_refuse_what_import_accepts(tracer: Tracer) -> None:
    op = tracer.register_operator("Us", "US-1", "wholesaler", "0614141000050")
    (receipt,) = events_in(VECTORS / "Example_9.6.2-ObjectEvent.jsonld")
    with pytest.raises((PermissionDeniedError, RuleViolationError)):
        tracer.capture(receipt, operator_id=op.id)
    (ce,) = tracer.import_events([receipt], importer=IMPORTER)
    lot = tracer.lot(key("urn:epc:class:lgtin:4012345.012345.998877"))
    assert lot.origin_operator_id is None and lot.uom == "KGM" and lot.on_hand == 0 and lot.holders == ()
    assert ce.lots[0].quantity == 200 and ce.lots[0].uom == "KGM"


def test_trace_forward_over_the_transformation_input(tracer: Tracer) -> None:
    (ce,) = tracer.import_events(events_in(TRANSFORMATION), importer=IMPORTER)
    source = key("urn:epc:class:lgtin:4012345.011111.4444")
    outputs = {key(f"urn:epc:id:sgtin:4012345.077889.{n}") for n in (25, 26, 27, 28)}
    fwd = tracer.trace_forward(source)
    assert set(fwd.lot_keys) == {source} | outputs
    assert {(e.parent_key, e.child_key, e.kind, e.log_index) for e in fwd.edges} == {
        (source, o, "transformation", ce.log_index) for o in outputs}
    assert [e.event_id for e in fwd.events] == [ce.event_id]
    # Back from an output: every input (the class pattern and the quantity-only lot included).
    back = tracer.trace_back(key("urn:epc:id:sgtin:4012345.077889.25"))
    assert {source, key("urn:epc:id:sgtin:4012345.011122.25"), key("urn:epc:class:lgtin:0614141.077777.987"),
            "urn:epc:idpat:sgtin:4012345.066666.*"} <= set(back.lot_keys)
    # Outputs are made by the event; inputs were only seen in it.
    assert tracer.lot(key("urn:epc:id:sgtin:4012345.077889.26")).origin_log_index == ce.log_index
    assert tracer.lot(source).origin_log_index is None
    prov = tracer.provenance(key("urn:epc:id:sgtin:4012345.077889.27"))
    assert [s.event_id for s in prov.steps] == [ce.event_id] and prov.origin is None
    assert source in prov.ancestors


def test_aggregation_children_lead_to_the_parent(tracer: Tracer) -> None:
    (ce,) = tracer.import_events(events_in(VECTORS / "Example_9.6.3-AggregationEvent.jsonld"), importer=IMPORTER)
    child = key("urn:epc:id:sgtin:0614141.107346.2017")
    fwd = tracer.trace_forward(child)
    assert set(fwd.lot_keys) == {child, "urn:epc:id:sscc:0614141.1234567890"}
    assert [(e.kind, e.log_index) for e in fwd.edges] == [("aggregation", ce.log_index)]
    assert tracer.lot("urn:epc:id:sscc:0614141.1234567890").description == "logistic unit"


def test_a_malformed_event_rejects_the_whole_batch(tracer: Tracer, store) -> None:  # type: ignore[no-untyped-def]
    good = events_in(VECTORS / "Example_9.6.1-ObjectEvent.jsonld")
    bad = copy.deepcopy(events_in(VECTORS / "Example_9.6.2-ObjectEvent.jsonld")[0])
    bad["quantityList"][0]["uom"] = "kilograms"
    with pytest.raises(InvalidEventError) as e:
        tracer.import_events([good[0], bad, good[1]], importer=IMPORTER)
    assert e.value.path == "$.quantityList[0].uom"
    assert "in event 1 of the batch" in "\n".join(getattr(e.value, "__notes__", []))
    no_time = copy.deepcopy(good[1])
    del no_time["eventTime"]
    with pytest.raises(InvalidEventError) as e:
        tracer.import_events([good[0], no_time], importer=IMPORTER)
    assert "eventTime" in str(e.value)
    assert store.tree_size(TRACE_LOG) == 0
    assert all(n == 0 for n in counts(tracer).values())
    with pytest.raises(InvalidEventError):
        tracer.import_events(json.loads(TRANSFORMATION.read_text("utf-8")), importer=IMPORTER)  # a document
    with pytest.raises(PermissionDeniedError):
        tracer.import_events(good, importer=" ")


def test_a_duplicate_inside_one_batch_leaves_nothing(tracer: Tracer, store) -> None:  # type: ignore[no-untyped-def]
    events = events_in(VECTORS / "Example_9.6.1-ObjectEvent.jsonld")
    with pytest.raises(RuleViolationError) as e:
        tracer.import_events(events + events[:1], importer=IMPORTER)
    assert e.value.rule == "duplicate_event"
    assert store.tree_size(TRACE_LOG) == 0 and counts(tracer)["trace_events"] == 0


def test_imported_declarations(tracer: Tracer) -> None:
    (ce,) = tracer.import_events(events_in(TRANSFORMATION), importer=IMPORTER)
    source = key("urn:epc:class:lgtin:4012345.011111.4444")
    decl = epcis.error_declaration(ce.event_id, "incorrect_data", [], at(1), original=ce.event)
    (d,) = tracer.import_events([decl], importer="Another partner")
    assert d.kind == "error_declaration" and d.event_id == ce.event_id
    again = tracer.event(ce.log_index)
    assert again.status == "erroneous" and again.declared_by == d.log_index
    assert tracer.trace_forward(source).lot_keys == (source,)  # its lineage no longer counts
    with pytest.raises(RuleViolationError) as e:
        tracer.import_events([decl], importer="Another partner")
    assert e.value.rule == "duplicate_event"
    # A declaration that arrives before its event: the event is stored erroneous.
    (first, second) = events_in(VECTORS / "Example_9.6.1-ObjectEvent.jsonld")
    early = epcis.error_declaration(first["eventID"], "did_not_occur", [], at(2), original=first)
    out = tracer.import_events([early, first, second], importer=IMPORTER)
    assert [(c.kind, c.status) for c in out] == [("error_declaration", "active"), ("event", "erroneous"),
                                                 ("event", "active")]
    assert out[1].declared_by == out[0].log_index == tracer.event(out[1].log_index).declared_by


def test_an_import_cannot_declare_this_ledgers_events_erroneous(tracer: Tracer, store) -> None:  # type: ignore[no-untyped-def]
    c = build_chain(tracer, through="slaughter")
    mine = c.events["slaughter"]
    decl = epcis.error_declaration(mine.event_id, "did_not_occur", [], at(20), original=mine.event)
    size = store.tree_size(TRACE_LOG)
    with pytest.raises(PermissionDeniedError):
        tracer.import_events([decl], importer=IMPORTER)
    assert tracer.event(mine.log_index).status == "active" and store.tree_size(TRACE_LOG) == size
    # Importing an event this ledger captured is a duplicate.
    with pytest.raises(RuleViolationError) as e:
        tracer.import_events([mine.event], importer=IMPORTER)
    assert e.value.rule == "duplicate_event"


def test_imports_leave_holdings_alone_and_respect_recalls(tracer: Tracer) -> None:
    c = build_chain(tracer, through="slaughter")
    ab = c.ops["abattoir"]
    stock = {l.lot_key: l.quantity for l in tracer.inventory(ab.id)}
    # A partner's record of our loin leaving for somewhere we do not know.
    shipped = epcis.ship([(LOIN, 45)], "0614141000012", "0614141000029", "0614141000036", at(7))
    (ce,) = tracer.import_events([shipped], importer=IMPORTER)
    assert ce.source_operator_id is None and ce.destination_operator_id is None
    assert {l.lot_key: l.quantity for l in tracer.inventory(ab.id)} == stock
    assert tracer.lot(LOIN).in_transit == 0
    # A recall is this ledger's decision: no more imported events on the lot.
    tracer.recall(LOIN, "salmonella", regulator="AMR")
    seen = epcis.receive([(LOIN, 45)], "0614141000012", "0614141000029", "0614141000036", at(9))
    with pytest.raises(RuleViolationError) as e:
        tracer.import_events([seen], importer=IMPORTER)
    assert e.value.rule == "lot_recalled"


def test_a_fresh_tracer_traces_without_waiting_on_itself(engine, store) -> None:  # type: ignore[no-untyped-def]
    # With no operator loaded yet, trace_forward must not open a second connection while it holds
    # one (on SQLite that waited for the first one's lock: "database is locked").
    Tracer(engine, store).import_events(events_in(TRANSFORMATION), importer=IMPORTER)
    fresh = Tracer(engine, store)
    assert len(fresh.trace_forward(key("urn:epc:class:lgtin:4012345.011111.4444")).lots) == 5
    assert fresh.lot(key("urn:epc:id:sgtin:4012345.077889.25")).holders == ()
