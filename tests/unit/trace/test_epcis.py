"""EPCIS 2.0: GS1 examples validate and parse, builders emit schema-valid events, hashes are stable."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from evidence_ledger.trace import epcis
from evidence_ledger.trace.errors import InvalidEventError, InvalidIdentifierError, TraceError
from evidence_ledger.trace.identifiers import ProductId

VECTORS = Path(__file__).resolve().parents[2] / "vectors" / "epcis2"
EXAMPLES = sorted((VECTORS / "examples").glob("*.jsonld"))
CST = timezone(timedelta(hours=8))
T = datetime(2024, 5, 1, 8, 30, 15, 123456, tzinfo=CST)
LOT = ProductId("09506000134352", "LOT42")
CARCASS = ProductId(None, "HOG-0001", local_id="cn-meat:4301000123456789")
CUT = ProductId("4006381333931", "CUT-7")
SERIAL = ProductId("09506000134352", "LOT42", "BOX1")
PLANT = "9506000134352"  # GLN
SHOP = "4006381333931"
CERT = {"type": "quarantine", "number": "CN-430100-2024-000123", "issuer": "Changsha Animal Health Inspection",
        "issued_at": T, "result": "pass"}


def load(path: Path) -> dict:
    return json.loads(path.read_text("utf-8"))


def test_vectors_are_present() -> None:
    assert len(EXAMPLES) == 8
    assert (VECTORS / "LICENSE").is_file()


def test_packaged_schema_matches_the_vector_copy() -> None:
    assert epcis.load_schema() == load(VECTORS / "EPCIS-JSON-Schema.json")
    assert epcis.load_context() == load(VECTORS / "epcis-context.jsonld")
    assert epcis.load_schema() is epcis.load_schema()  # cached


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_gs1_examples_validate_and_parse(path: Path) -> None:
    doc = load(path)
    epcis.validate_document(doc)
    events = epcis.events_of(doc)
    assert events
    for event in events:
        epcis.validate_event(event)
        parsed = epcis.parse_event(event)
        assert parsed.type == event["type"]
        assert parsed.event_time.tzinfo is not None
        assert epcis.to_epcis(parsed)["eventID"] == parsed.event_id
        if "eventID" in event:
            assert parsed.event_id == event["eventID"]
            assert epcis.to_epcis(parsed) == event


def test_example_details_are_normalised() -> None:
    shipping, receiving = (epcis.parse_event(e) for e in epcis.events_of(load(VECTORS / "examples" / "Example_9.6.1-ObjectEvent.jsonld")))
    assert (shipping.type, shipping.action, shipping.biz_step, shipping.disposition) == ("ObjectEvent", "OBSERVE", "shipping", "in_transit")
    assert shipping.event_time == datetime(2005, 4, 3, 20, 33, 31, 116000, tzinfo=timezone(-timedelta(hours=6)))
    assert shipping.read_point == "urn:epc:id:sgln:0614141.07346.1234"
    assert [q.product.key for q in shipping.outputs] == ["gtin:10614141073464|serial:2017", "gtin:10614141073464|serial:2018"]
    assert receiving.biz_location == "urn:epc:id:sgln:0012345.11111.0"

    (obj,) = epcis.events_of(load(VECTORS / "examples" / "Example_9.6.2-ObjectEvent.jsonld"))
    parsed = epcis.parse_event(obj)
    (q,) = parsed.outputs
    assert (q.epc_class, q.quantity, q.uom, q.kg) == ("urn:epc:class:lgtin:4012345.012345.998877", 200.0, "KGM", 200.0)
    assert q.product == ProductId("04012345123456", "998877")
    assert parsed.source == (("possessing_party", "urn:epc:id:sgln:4012345.00001.0"), ("location", "urn:epc:id:sgln:4012345.00225.0"))
    assert parsed.party("owning_party", destination=True) == "urn:epc:id:sgln:0614141.00001.0"

    (agg,) = epcis.events_of(load(VECTORS / "examples" / "Example_9.6.3-AggregationEvent.jsonld"))
    parsed = epcis.parse_event(agg)
    assert parsed.parent == "urn:epc:id:sscc:0614141.1234567890"
    assert len(parsed.children) == 4 and not parsed.inputs and not parsed.outputs
    assert parsed.children[2].product is None  # an idpat pattern is not a product

    (tf,) = epcis.events_of(load(VECTORS / "examples" / "Example_9.6.4-TransformationEventWithDigitalLink.jsonld"))
    parsed = epcis.parse_event(tf)
    assert len(parsed.inputs) == 5 and len(parsed.outputs) == 4
    assert parsed.inputs[3].product == ProductId("00614141777778", "987")
    assert parsed.inputs[4].product is None  # GTIN without lot: a class, not a lot

    declared, corrective = epcis.events_of(load(VECTORS / "examples" / "ErrorDeclarationAndCorrectiveEvent.jsonld"))
    assert epcis.parse_event(declared).error_declaration["correctiveEventIDs"] == [corrective["eventID"]]
    assert epcis.parse_event(corrective).error_declaration is None


def test_events_of_forms() -> None:
    doc = load(EXAMPLES[0])
    events = epcis.events_of(doc)
    query = {"@context": doc["@context"], "type": "EPCISQueryDocument", "schemaVersion": "2.0",
             "creationDate": "2024-01-01T00:00:00Z",
             "epcisBody": {"queryResults": {"queryName": "SimpleEventQuery", "resultsBody": {"eventList": events}}}}
    epcis.validate_document(query)
    assert epcis.events_of(query) == events
    assert epcis.events_of(events) == events
    single = epcis.recall(LOT, "test", T)
    assert epcis.events_of(single) == [single]
    with pytest.raises(InvalidEventError) as info:
        epcis.events_of({"type": "EPCISDocument"})
    assert info.value.path == "$.epcisBody.eventList"


# -- validation errors ------------------------------------------------------------------------

def _ship() -> dict:
    return epcis.ship([(LOT, 20)], PLANT, SHOP, PLANT, T)


@pytest.mark.parametrize(
    ("change", "path", "fragment"),
    [
        (lambda e: e.update(action="MOVE"), "$.action", "'MOVE' is not one of ['OBSERVE', 'ADD', 'DELETE']"),
        (lambda e: e.update(eventTime="yesterday"), "$.eventTime", "'yesterday' is not a 'date-time'"),
        (lambda e: e.update(eventTime="2024-05-01T08:30:00"), "$.eventTime", "is not a 'date-time'"),
        (lambda e: e.pop("eventTimeZoneOffset"), "$", "'eventTimeZoneOffset' is a required property"),
        (lambda e: e["quantityList"][0].pop("epcClass"), "$.quantityList[0]", "'epcClass' is a required property"),
        (lambda e: e["quantityList"][0].update(uom="kilogram"), "$.quantityList[0].uom", "does not match"),
        (lambda e: e["readPoint"].update(id="plant one"), "$.readPoint.id", "is not a 'uri'"),
        (lambda e: e.update(bizStep="slaughtering"), "$.bizStep", "'slaughtering' is not one of"),
        (lambda e: e.update({"my field": 1}), '$["my field"]', "not allowed here"),
        (lambda e: e.update(parentID="urn:x:y"), '$["parentID"]', "not allowed here"),
        (lambda e: e.pop("quantityList"), "$", "'quantityList' is a required property"),
    ],
)
def test_validation_errors_name_the_path(change, path: str, fragment: str) -> None:
    event = _ship()
    change(event)
    with pytest.raises(InvalidEventError) as info:
        epcis.validate_event(event)
    assert info.value.path == path
    assert fragment in str(info.value)
    assert str(info.value).startswith(path + ": ")
    with pytest.raises(InvalidEventError):
        epcis.parse_event(event)


def test_document_errors_name_the_event_index() -> None:
    bad = _ship()
    bad["action"] = "X"
    doc = epcis.epcis_document([_ship(), bad], T)
    with pytest.raises(InvalidEventError) as info:
        epcis.validate_document(doc)
    assert info.value.path == "$.epcisBody.eventList[1].action"
    assert isinstance(info.value, TraceError)
    with pytest.raises(InvalidEventError, match="'type' is a required"):
        epcis.validate_event({"eventTime": "2024-01-01T00:00:00Z"})
    with pytest.raises(InvalidEventError, match="@context"):
        epcis.validate_document({k: v for k, v in _ship().items() if k != "@context"})


def test_validation_never_fetches() -> None:
    import referencing.exceptions

    with pytest.raises(referencing.exceptions.NoSuchResource):
        epcis._retrieve("https://example.com/other-schema.json")
    assert epcis._retrieve(epcis.EPCIS_CONTEXT_URL).contents == epcis.load_context()


# -- event hash -------------------------------------------------------------------------------

def test_event_hash_format_and_stability() -> None:
    event = load(VECTORS / "examples" / "Example_9.6.2-ObjectEvent.jsonld")["epcisBody"]["eventList"][0]
    h = epcis.canonical_event_hash(event)
    assert h.startswith("ni:///sha-256;") and h.endswith("?ver=evl-jcs-1")
    assert len(h.split(";")[1].split("?")[0]) == 64
    # Pinned: changing the algorithm changes every stored eventID.
    assert h == "ni:///sha-256;" + _pinned_digest(event) + "?ver=evl-jcs-1"
    reordered = dict(reversed(list(event.items())))
    assert epcis.canonical_event_hash(reordered) == h
    same_instant = dict(event, eventTime="2013-06-08T16:58:56.591+02:00")
    assert epcis.canonical_event_hash(same_instant) == h
    ignored = dict(event, eventID="urn:uuid:1", recordTime="2024-01-01T00:00:00Z",
                   errorDeclaration={"declarationTime": "2024-01-01T00:00:00Z"})
    ignored["@context"] = epcis.EVENT_CONTEXT
    assert epcis.canonical_event_hash(ignored) == h
    assert epcis.canonical_event_hash(dict(event, disposition="recalled")) != h
    assert epcis.canonical_event_hash(dict(event, eventTime="2013-06-08T14:58:56.592Z")) != h


def _pinned_digest(event: dict) -> str:
    import hashlib

    import rfc8785

    body = {k: v for k, v in event.items() if k not in ("eventID", "recordTime", "errorDeclaration", "@context")}
    body["eventTime"] = "2013-06-08T14:58:56.591Z"
    return hashlib.sha256(rfc8785.dumps(body)).hexdigest()


def test_event_hash_golden_value() -> None:
    event = {"type": "ObjectEvent", "eventTime": "2024-05-01T08:30:00+08:00", "eventTimeZoneOffset": "+08:00",
             "action": "OBSERVE", "epcList": ["https://id.gs1.org/01/09506000134352/21/1"]}
    assert epcis.canonical_event_hash(event) == (
        "ni:///sha-256;" + __import__("hashlib").sha256(
            b'{"action":"OBSERVE","epcList":["https://id.gs1.org/01/09506000134352/21/1"],'
            b'"eventTime":"2024-05-01T00:30:00.000Z","eventTimeZoneOffset":"+08:00","type":"ObjectEvent"}'
        ).hexdigest() + "?ver=evl-jcs-1"
    )


def test_parse_assigns_missing_event_id() -> None:
    event = _ship()
    del event["eventID"]
    parsed = epcis.parse_event(event)
    assert parsed.event_id == epcis.canonical_event_hash(event) == _ship()["eventID"]
    assert "eventID" not in event  # the caller's dict is not modified
    assert epcis.to_epcis(parsed) == _ship()


# -- builders ---------------------------------------------------------------------------------

def _all_builders() -> dict[str, dict]:
    shipped = epcis.ship([(LOT, 20), (SERIAL, 5.5)], PLANT, SHOP, PLANT, T, to_location=SHOP,
                         biz_transactions=[("inv", "urn:evidence-ledger:invoice:044001900111-12345678")])
    return {
        "commission": epcis.commission_lot(LOT, 100, PLANT, T, {"slaughterDate": "2024-05-01",
                                                                 "cbvmda:countryOfOrigin": "CN"}),
        "commission_local": epcis.commission_lot(CARCASS, 98.2, "cn-uscc:91430100MA4L16JQ9B", T, {}),
        "slaughter": epcis.slaughter([(CARCASS, 98.2)], [(CUT, 40), (LOT, 30.5)], PLANT, T),
        "pack": epcis.pack("095060001343520000", [(CUT, 20), (SERIAL, 5)], PLANT, T),
        "unpack": epcis.unpack("urn:epc:id:sscc:9506000.1234567890", [(CUT, 20)], SHOP, T),
        "ship": shipped,
        "receive": epcis.receive([(LOT, 20)], PLANT, SHOP, SHOP, T, from_location=PLANT),
        "inspect": epcis.inspect(LOT, CERT, PLANT, T),
        "inspect_meat": epcis.inspect(SERIAL, dict(CERT, type="meat_inspection", result="fail",
                                                   issued_at="2024-05-01"), PLANT, T),
        "dispose": epcis.dispose([(LOT, 2.5)], "spoiled in cold-chain failure", SHOP, T),
        "dispose_disposed": epcis.dispose([(LOT, 2.5)], "returned for rendering", SHOP, T, disposition="disposed"),
        "recall": epcis.recall(LOT, "Salmonella found in sample 2024-17", T),
        "recall_at": epcis.recall(LOT, "Salmonella", T, location=SHOP),
        "error_full": epcis.error_declaration(shipped["eventID"], "incorrect_data", ["urn:uuid:1"], T, original=shipped),
        "error_min": epcis.error_declaration(shipped["eventID"], "did_not_occur", [], T),
    }


@pytest.mark.parametrize("name", list(_all_builders()))
def test_builders_emit_schema_valid_events(name: str) -> None:
    event = _all_builders()[name]
    epcis.validate_document(event)  # standalone: with @context
    epcis.validate_event(event)
    doc = epcis.epcis_document([event], T, document_id="urn:uuid:3f3e1c1a-0000-4000-8000-000000000000")
    epcis.validate_document(doc)
    parsed = epcis.parse_event(event)
    assert epcis.to_epcis(parsed) == event
    assert parsed.event_time == T.replace(microsecond=123000)
    json.dumps(event)
    if not name.startswith("error"):
        assert event["eventID"] == epcis.canonical_event_hash(event)
    assert _all_builders()[name] == event  # deterministic


def test_commission() -> None:
    e = epcis.parse_event(_all_builders()["commission"])
    assert (e.type, e.action, e.biz_step, e.disposition) == ("ObjectEvent", "ADD", "commissioning", "active")
    (q,) = e.outputs
    assert (q.product, q.quantity, q.uom, q.kg) == (LOT, 100.0, "KGM", 100.0)
    assert e.read_point == e.biz_location == "https://id.gs1.org/414/9506000134352"
    assert e.raw["ilmd"] == {"evl:slaughterDate": "2024-05-01", "cbvmda:countryOfOrigin": "CN"}
    assert e.raw["eventTime"] == "2024-05-01T08:30:15.123+08:00" and e.raw["eventTimeZoneOffset"] == "+08:00"
    local = epcis.parse_event(_all_builders()["commission_local"])
    assert local.outputs[0].product == CARCASS
    assert local.read_point == "cn-uscc:91430100MA4L16JQ9B"


def test_slaughter_is_a_transformation() -> None:
    e = epcis.parse_event(_all_builders()["slaughter"])
    assert e.type == "TransformationEvent" and e.action is None
    assert [(q.product, q.kg) for q in e.inputs] == [(CARCASS, 98.2)]
    assert [(q.product, q.kg) for q in e.outputs] == [(CUT, 40.0), (LOT, 30.5)]


def test_pack_and_serialised_items() -> None:
    e = epcis.parse_event(_all_builders()["pack"])
    assert (e.type, e.action, e.biz_step) == ("AggregationEvent", "ADD", "packing")
    assert e.parent == "https://id.gs1.org/00/095060001343520000"
    # the serialised item: its instance (no quantity) and its lot with the weight
    assert [(q.epc, q.product, q.quantity) for q in e.children] == [
        ("https://id.gs1.org/01/09506000134352/10/LOT42/21/BOX1", SERIAL, None),
        (None, CUT, 20.0),
        (None, LOT, 5.0),
    ]
    assert e.products == (SERIAL, CUT, LOT)
    with pytest.raises(InvalidIdentifierError, match="expected 0"):
        epcis.pack("095060001343520004", [(CUT, 1)], PLANT, T)


def test_ship_and_receive() -> None:
    ship = epcis.parse_event(_all_builders()["ship"])
    assert (ship.action, ship.biz_step, ship.disposition) == ("OBSERVE", "shipping", "in_transit")
    assert ship.source == (("owning_party", "https://id.gs1.org/417/9506000134352"),
                           ("location", "https://id.gs1.org/414/9506000134352"))
    assert ship.destination == (("owning_party", "https://id.gs1.org/417/4006381333931"),
                                ("location", "https://id.gs1.org/414/4006381333931"))
    assert ship.party() == "https://id.gs1.org/417/9506000134352"
    assert ship.biz_location is None
    assert sum(q.kg for q in ship.outputs if q.kg is not None) == 25.5
    assert ship.raw["bizTransactionList"] == [{"type": "inv", "bizTransaction": "urn:evidence-ledger:invoice:044001900111-12345678"}]
    receive = epcis.parse_event(_all_builders()["receive"])
    assert (receive.biz_step, receive.disposition) == ("receiving", "in_progress")
    assert receive.biz_location == "https://id.gs1.org/414/4006381333931"


def test_inspect_certificates() -> None:
    e = epcis.parse_event(_all_builders()["inspect"])
    assert (e.biz_step, e.disposition) == ("inspecting", "conformant")
    (cert,) = e.certificates
    assert cert == {"type": "quarantine", "number": "CN-430100-2024-000123",
                    "issuer": "Changsha Animal Health Inspection", "issued_at": "2024-05-01T08:30:15.123+08:00",
                    "result": "pass", "uri": e.raw["certificationInfo"][0]}
    assert cert["uri"].startswith("urn:evidence-ledger:certificate:quarantine:")
    failed = epcis.parse_event(_all_builders()["inspect_meat"])
    assert failed.disposition == "non_conformant" and failed.certificates[0]["type"] == "meat_inspection"
    given = epcis.inspect(LOT, dict(CERT, uri="https://cert.example.gov.cn/q/123"), PLANT, T)
    assert epcis.parse_event(given).certificates[0]["uri"] == "https://cert.example.gov.cn/q/123"
    with pytest.raises(InvalidEventError, match="'number'") as info:
        epcis.inspect(LOT, {k: v for k, v in CERT.items() if k != "number"}, PLANT, T)
    assert info.value.path == "$.evl:certificate.number"
    with pytest.raises(InvalidEventError, match="issued_at"):
        epcis.inspect(LOT, dict(CERT, issued_at="last week"), PLANT, T)


def test_certification_info_only() -> None:
    event = dict(_ship(), certificationInfo="https://cert.example.org/1")
    event.pop("eventID")
    assert epcis.parse_event(event).certificates == ({"uri": "https://cert.example.org/1"},)


def test_dispose_and_recall() -> None:
    d = epcis.parse_event(_all_builders()["dispose"])
    assert (d.action, d.biz_step, d.disposition) == ("DELETE", "destroying", "destroyed")
    assert [q.product for q in d.inputs] == [LOT] and not d.outputs
    assert d.raw["evl:reason"] == "spoiled in cold-chain failure"
    assert epcis.parse_event(_all_builders()["dispose_disposed"]).disposition == "disposed"
    r = epcis.parse_event(_all_builders()["recall"])
    assert (r.action, r.biz_step, r.disposition, r.read_point) == ("OBSERVE", "holding", "recalled", None)
    assert r.products == (LOT,)
    with pytest.raises(InvalidEventError):
        epcis.dispose([(LOT, 1)], "", SHOP, T)
    with pytest.raises(InvalidEventError):
        epcis.dispose([(LOT, 1)], "x", SHOP, T, disposition="eaten")


def test_error_declaration() -> None:
    built = _all_builders()
    shipped, full, minimal = built["ship"], built["error_full"], built["error_min"]
    assert full["eventID"] == shipped["eventID"]
    assert {k: v for k, v in full.items() if k != "errorDeclaration"} == shipped
    assert full["errorDeclaration"] == {"declarationTime": "2024-05-01T08:30:15.123+08:00", "reason": "incorrect_data",
                                        "correctiveEventIDs": ["urn:uuid:1"]}
    # the declaration keeps the original's hash id
    assert epcis.canonical_event_hash(full) == shipped["eventID"]
    parsed = epcis.parse_event(minimal)
    assert parsed.event_id == shipped["eventID"] and parsed.error_declaration["reason"] == "did_not_occur"
    with pytest.raises(InvalidEventError, match="reason"):
        epcis.error_declaration(shipped["eventID"], "oops", [], T)
    with pytest.raises(InvalidEventError, match="differs"):
        epcis.error_declaration("urn:uuid:2", "did_not_occur", [], T, original=shipped)


@pytest.mark.parametrize(
    "call",
    [
        lambda: epcis.commission_lot(LOT, 0, PLANT, T),
        lambda: epcis.commission_lot(LOT, -1, PLANT, T),
        lambda: epcis.commission_lot(LOT, float("nan"), PLANT, T),
        lambda: epcis.commission_lot(LOT, True, PLANT, T),
        lambda: epcis.commission_lot(LOT, 1, PLANT, datetime(2024, 5, 1)),  # naive time
        lambda: epcis.ship([], PLANT, SHOP, PLANT, T),
        lambda: epcis.ship([("gtin", 1)], PLANT, SHOP, PLANT, T),
        lambda: epcis.slaughter([(CARCASS, 1)], [], PLANT, T),
    ],
)
def test_builders_reject_bad_input(call) -> None:
    with pytest.raises(InvalidEventError):
        call()


def test_builders_reject_bad_locations() -> None:
    with pytest.raises(InvalidIdentifierError):
        epcis.commission_lot(LOT, 1, "Plant 1", T)
    with pytest.raises(InvalidIdentifierError):
        epcis.ship([(LOT, 1)], "9506000134350", SHOP, PLANT, T)


def test_utc_time_is_written_with_z() -> None:
    e = epcis.recall(LOT, "x", datetime(2024, 5, 1, tzinfo=timezone.utc))
    assert (e["eventTime"], e["eventTimeZoneOffset"]) == ("2024-05-01T00:00:00.000Z", "+00:00")
    west = epcis.recall(LOT, "x", datetime(2024, 5, 1, tzinfo=timezone(-timedelta(hours=3, minutes=30))))
    assert west["eventTimeZoneOffset"] == "-03:30"


def test_trace_event_is_immutable() -> None:
    e = epcis.parse_event(_ship())
    with pytest.raises(AttributeError):
        e.biz_step = "receiving"  # type: ignore[misc]
    assert copy.deepcopy(e) == e
