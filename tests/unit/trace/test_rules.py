"""Every rejection rule: a clear rule name, a message saying what was expected and what came,
and nothing logged or stored."""

from __future__ import annotations

import pytest

from evidence_ledger.trace import epcis
from evidence_ledger.trace.errors import PermissionDeniedError, RuleViolationError
from evidence_ledger.trace.identifiers import ProductId
from evidence_ledger.trace.service import TRACE_LOG, Tracer

from .conftest import BELLY, HAM, LOIN, PIGS, Chain, at, build_chain

FILLET = ProductId("06901234000061", "FILLET-1")


def rejected(chain: Chain, store, event: dict, op, rule: str) -> RuleViolationError:  # type: ignore[no-untyped-def]
    size = store.tree_size(TRACE_LOG)
    with pytest.raises(RuleViolationError) as e:
        chain.tracer.capture(event, operator_id=op.id)
    assert e.value.rule == rule, str(e.value)
    assert store.tree_size(TRACE_LOG) == size  # nothing was logged
    return e.value


def test_receiving_what_was_never_shipped(chain: Chain, store) -> None:  # type: ignore[no-untyped-def]
    o = chain.ops
    # Shipped to Furong (r1), not to Yuelu (r2).
    chain.capture("s", chain.ship(o["wa"], o["r1"], [(BELLY, 5)], at(30)), o["wa"])
    err = rejected(chain, store, chain.receive(o["wa"], o["r2"], [(BELLY, 5)], at(31)), o["r2"], "not_shipped")
    assert BELLY.key in str(err) and "Fresh Mart Yuelu" in str(err)
    # Never shipped at all (an unknown lot).
    rejected(chain, store, chain.receive(o["wa"], o["r2"], [(FILLET, 5)], at(31)), o["r2"], "not_shipped")
    # Shipped by someone else than the stated source.
    rejected(chain, store, chain.receive(o["wb"], o["r1"], [(BELLY, 5)], at(31)), o["r1"], "not_shipped")
    # More than shipped.
    err = rejected(chain, store, chain.receive(o["wa"], o["r1"], [(BELLY, 6)], at(31)), o["r1"], "over_received")
    assert "6 KGM" in str(err) and "5 KGM" in str(err)
    # Already received in full.
    rejected(chain, store, chain.receive(o["wa"], o["r1"], [(LOIN, 1)], at(31)), o["r1"], "not_shipped")


def test_shipping_more_than_is_held(chain: Chain, store) -> None:  # type: ignore[no-untyped-def]
    o = chain.ops
    err = rejected(chain, store, chain.ship(o["wa"], o["r1"], [(BELLY, 31)], at(30)), o["wa"], "over_shipped")
    assert "holds 30 KGM" in str(err) and "31 KGM" in str(err)
    rejected(chain, store, chain.ship(o["wa"], o["r1"], [(HAM, 1)], at(30)), o["wa"], "over_shipped")
    # Units convert: 30 kg is 30000 g.
    ev = chain.ship(o["wa"], o["r1"], [(BELLY, 30)], at(30))
    ev["quantityList"][0].update(quantity=30001, uom="GRM")
    ev["eventID"] = epcis.canonical_event_hash(ev)
    rejected(chain, store, ev, o["wa"], "over_shipped")
    ev["quantityList"][0].update(quantity=30000)
    ev["eventID"] = epcis.canonical_event_hash(ev)
    chain.tracer.capture(ev, operator_id=o["wa"].id)
    assert chain.tracer.lot(BELLY).in_transit == 30


def test_cuts_cannot_weigh_more_than_the_carcass(tracer: Tracer, store) -> None:  # type: ignore[no-untyped-def]
    c = build_chain(tracer, through="wholesale")
    ab, farm = c.ops["abattoir"], c.ops["farm"]
    pigs2 = ProductId("06901234000016", "PIG-2026-002")
    c.capture("c2", c.commission(farm, pigs2, 200, at(30)), farm)
    c.capture("s2", c.ship(farm, ab, [(pigs2, 200)], at(31)), farm)
    c.capture("r2", c.receive(farm, ab, [(pigs2, 200)], at(32)), ab)
    too_much = epcis.slaughter([(pigs2, 200)], [(FILLET, 150), (ProductId("06901234000078", "RIB-2"), 50.5)],
                               ab.location_uri, at(33))
    err = rejected(c, store, too_much, ab, "mass_balance")
    assert "200.5 kg" in str(err) and "200 kg" in str(err)
    assert tracer.inventory(ab.id)[0].quantity == 200  # nothing consumed
    # Exactly the carcass weight is fine.
    ok = epcis.slaughter([(pigs2, 200)], [(FILLET, 150), (ProductId("06901234000078", "RIB-2"), 50)],
                         ab.location_uri, at(33))
    tracer.capture(ok, operator_id=ab.id)


def test_yield_tolerance_is_configurable(engine, store) -> None:  # type: ignore[no-untyped-def]
    tracer = Tracer(engine, store, yield_tolerance=0.05)
    c = build_chain(tracer, through="slaughter")
    ab, farm = c.ops["abattoir"], c.ops["farm"]
    pigs2 = ProductId("06901234000016", "PIG-2026-002")
    c.capture("c2", c.commission(farm, pigs2, 100, at(30)), farm)
    c.capture("s2", c.ship(farm, ab, [(pigs2, 100)], at(31)), farm)
    c.capture("r2", c.receive(farm, ab, [(pigs2, 100)], at(32)), ab)
    err = rejected(c, store, epcis.slaughter([(pigs2, 100)], [(FILLET, 106)], ab.location_uri, at(33)), ab,
                   "mass_balance")
    assert "105 kg" in str(err) and "5.0%" in str(err)
    tracer.capture(epcis.slaughter([(pigs2, 100)], [(FILLET, 104)], ab.location_uri, at(33)), operator_id=ab.id)


def test_events_on_a_disposed_lot(chain: Chain, store) -> None:  # type: ignore[no-untyped-def]
    tr, o = chain.tracer, chain.ops
    # The lot is disposed only when nobody holds any of it any more.
    tr.capture(epcis.dispose([(HAM, 50)], "cold chain broken", o["wb"].location_uri, at(30)), operator_id=o["wb"].id)
    assert tr.lot(HAM).status == "active"
    tr.capture(epcis.dispose([(HAM, 30)], "cold chain broken", o["r3"].location_uri, at(31)), operator_id=o["r3"].id)
    lot = tr.lot(HAM)
    assert lot.status == "disposed" and lot.status_reason == "cold chain broken" and lot.on_hand == 0
    err = rejected(chain, store, epcis.inspect(HAM, {"type": "meat_inspection", "number": "X", "issuer": "Y",
                                                     "issued_at": at(32), "result": "pass"},
                                               o["r3"].location_uri, at(32)), o["r3"], "lot_disposed")
    assert "cold chain broken" in str(err)
    # Disposing of more than is held.
    rejected(chain, store, epcis.dispose([(LOIN, 16)], "expired", o["r1"].location_uri, at(33)), o["r1"],
             "insufficient_stock")


def test_events_on_a_recalled_lot(chain: Chain, store) -> None:  # type: ignore[no-untyped-def]
    tr, o = chain.tracer, chain.ops
    tr.recall(BELLY, "Salmonella in a sample", regulator="Changsha AMR")
    err = rejected(chain, store, chain.ship(o["wa"], o["r1"], [(BELLY, 5)], at(40)), o["wa"], "lot_recalled")
    assert "Salmonella" in str(err)
    # Destroying recalled goods is what a recall asks for.
    tr.capture(epcis.dispose([(BELLY, 30)], "recall", o["wa"].location_uri, at(41)), operator_id=o["wa"].id)
    assert tr.lot(BELLY).status == "recalled"


def test_the_operator_must_be_the_actor(chain: Chain, store) -> None:  # type: ignore[no-untyped-def]
    tr, o = chain.tracer, chain.ops
    with pytest.raises(PermissionDeniedError):  # a shipment is recorded by its source
        tr.capture(chain.ship(o["wa"], o["r1"], [(BELLY, 5)], at(40)), operator_id=o["r1"].id)
    with pytest.raises(PermissionDeniedError):  # a receipt by its destination
        tr.capture(chain.receive(o["wa"], o["r1"], [(LOIN, 1)], at(40)), operator_id=o["wa"].id)
    with pytest.raises(PermissionDeniedError):  # anything else by the owner of its location
        tr.capture(chain.commission(o["farm"], FILLET, 5, at(40)), operator_id=o["abattoir"].id)
    with pytest.raises(PermissionDeniedError):  # recalls come from regulators
        tr.capture(epcis.recall(LOIN, "x", at(40), location=o["r1"].location_uri), operator_id=o["r1"].id)
    assert store.tree_size(TRACE_LOG) == len(chain.events)


def test_other_rules(chain: Chain, store) -> None:  # type: ignore[no-untyped-def]
    o = chain.ops
    rejected(chain, store, chain.events["ship_r1"].event, o["wa"], "duplicate_event")
    stranger = "https://id.gs1.org/417/6901234000993"
    ev = epcis.ship([(BELLY, 1)], o["wa"].party_uri, stranger, o["wa"].location_uri, at(40))
    rejected(chain, store, ev, o["wa"], "unknown_destination")
    # Another operator may not commission a lot the farm created.
    rejected(chain, store, chain.commission(o["abattoir"], PIGS, 5, at(40)), o["abattoir"], "lot_exists")
    # Shipping, inspecting or processing a lot nobody created.
    rejected(chain, store, chain.ship(o["wa"], o["r1"], [(FILLET, 1)], at(40)), o["wa"], "unknown_lot")
    rejected(chain, store, epcis.inspect(FILLET, {"type": "quarantine", "number": "1", "issuer": "x",
                                                  "issued_at": at(40), "result": "pass"},
                                         o["wa"].location_uri, at(40)), o["wa"], "unknown_lot")
    # A counted lot cannot be shipped by weight.
    eggs = ProductId("06901234000085", "EGG-1")
    ev = chain.commission(o["farm"], eggs, 1, at(41))
    ev["quantityList"][0].update(quantity=360, uom="H87")
    ev["eventID"] = epcis.canonical_event_hash(ev)
    chain.tracer.capture(ev, operator_id=o["farm"].id)
    rejected(chain, store, chain.ship(o["farm"], o["r1"], [(eggs, 2)], at(42)), o["farm"], "unit_mismatch")


def test_packing_moves_children_into_the_container(tracer: Tracer, store) -> None:  # type: ignore[no-untyped-def]
    c = build_chain(tracer, through="wholesale")
    wa, r1 = c.ops["wa"], c.ops["r1"]
    sscc = "069012340000000016"
    tracer.capture(epcis.pack(sscc, [(LOIN, 10), (BELLY, 20)], wa.location_uri, at(20)), operator_id=wa.id)
    pallet = "https://id.gs1.org/00/" + sscc
    inv = {l.lot_key: l.quantity for l in tracer.inventory(wa.id)}
    assert inv == {LOIN.key: 30, BELLY.key: 30, pallet: 30}
    ship = epcis.ship([(LOIN, 1)], wa.party_uri, r1.party_uri, wa.location_uri, at(21))
    ship.pop("quantityList")
    ship["epcList"] = [pallet]
    ship["eventID"] = epcis.canonical_event_hash(ship)
    tracer.capture(ship, operator_id=wa.id)
    recv = epcis.receive([(LOIN, 1)], wa.party_uri, r1.party_uri, r1.location_uri, at(22))
    recv.pop("quantityList")
    recv["epcList"] = [pallet]
    recv["eventID"] = epcis.canonical_event_hash(recv)
    tracer.capture(recv, operator_id=r1.id)
    assert {l.lot_key: l.quantity for l in tracer.inventory(r1.id)} == {pallet: 30}
    tracer.capture(epcis.unpack(sscc, [(LOIN, 10), (BELLY, 20)], r1.location_uri, at(23)), operator_id=r1.id)
    assert {l.lot_key: l.quantity for l in tracer.inventory(r1.id)} == {LOIN.key: 10, BELLY.key: 20}
    # Trace forward from the pigs reaches the pallet and its holder.
    fwd = tracer.trace_forward(PIGS)
    assert pallet in fwd.lot_keys
