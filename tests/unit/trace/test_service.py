"""The tracer end to end: the whole chain, stock, the daily ledger, corrections, bulk capture."""

from __future__ import annotations

from datetime import timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from evidence_ledger.ledger import canonical
from evidence_ledger.trace import db, epcis, tables
from evidence_ledger.trace.errors import (
    InvalidEventError,
    NotFoundError,
    PermissionDeniedError,
    RuleViolationError,
)
from evidence_ledger.trace.identifiers import ProductId
from evidence_ledger.trace.service import TRACE_LOG, Tracer

from .conftest import BELLY, HAM, LOIN, PIGS, Chain, at, build_chain, day


def stock(tracer: Tracer, op) -> dict[str, float]:  # type: ignore[no-untyped-def]
    return {line.lot_key: line.quantity for line in tracer.inventory(op.id)}


def test_migrations_build_exactly_the_declared_schema(engine) -> None:  # type: ignore[no-untyped-def]
    db.migrate(engine)
    db.migrate(engine)  # idempotent
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={
            "include_name": lambda name, type_, parent: type_ != "table" or name in tables.metadata.tables})
        assert compare_metadata(ctx, tables.metadata) == []
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version_trace").scalar() == "t0002"
    assert set(tables.metadata.tables) <= set(inspect(engine).get_table_names())


def test_t0002_adds_the_consumer_page_indexes_to_an_existing_database(engine) -> None:  # type: ignore[no-untyped-def]
    # A database captured at t0001 (the rows exist) gains the indexes; the holders and steps they
    # serve are the same, and SQLite's planner uses them (no scan of every shipment, no table
    # page per step).
    from alembic import command
    from alembic.config import Config

    from evidence_ledger.ledger.log import LogStore

    cfg = Config()
    cfg.set_main_option("script_location", str(db.MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes.update(connection=conn, version_table=db.VERSION_TABLE)
        command.upgrade(cfg, "t0001")
    assert "ix_trace_shipments_lot_status" not in {i["name"] for i in inspect(engine).get_indexes("trace_shipments")}
    store = LogStore(engine)
    store.ensure_log(TRACE_LOG, "test.example/trace/t0002")
    chain = build_chain(Tracer(engine, store), through="slaughter")
    ab, wa = chain.ops["abattoir"], chain.ops["wa"]
    chain.capture("ship_wa", chain.ship(ab, wa, [(LOIN, 40)], at(8), invoice="S-1"), ab)
    before = chain.tracer.lot(LOIN).holders
    steps_before = chain.tracer.provenance(LOIN).steps
    assert any(h.in_transit for h in before)
    db.migrate(engine)
    assert "ix_trace_shipments_lot_status" in {i["name"] for i in inspect(engine).get_indexes("trace_shipments")}
    assert {i["name"] for i in inspect(engine).get_indexes("trace_event_lots")} == {"ix_trace_event_lots_lot_cover"}
    after = Tracer(engine, store)
    assert after.lot(LOIN).holders == before
    assert after.provenance(LOIN).steps == steps_before
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            plan = " ".join(str(r[-1]) for r in conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN SELECT destination_operator_id FROM trace_shipments "
                "WHERE lot_key IN (?, ?) AND status = 'open'", (LOIN.key, HAM.key)))
            assert "ix_trace_shipments_lot_status" in plan
            plan = " ".join(str(r[-1]) for r in conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN SELECT log_index, role, quantity, uom FROM trace_event_lots "
                "WHERE lot_key IN (?, ?)", (LOIN.key, HAM.key)))
            assert "COVERING INDEX ix_trace_event_lots_lot_cover" in plan


def test_operators(tracer: Tracer) -> None:
    farm = tracer.register_operator("Farm", "L-1", "farm", "6901234000108", "Liuyang")
    shop = tracer.register_operator("Shop", "L-2", "retailer")
    assert farm.location_uri == "https://id.gs1.org/414/6901234000108"
    assert farm.party_uri == "https://id.gs1.org/417/6901234000108"
    assert shop.location_uri.startswith("urn:evidence-ledger:operator:") and shop.gln is None
    assert tracer.operator(farm.id) == farm
    assert {o.id for o in tracer.operators()} == {farm.id, shop.id}
    with pytest.raises(RuleViolationError) as e:
        tracer.register_operator("Other", "L-1", "farm")
    assert e.value.rule == "operator_exists"
    with pytest.raises(InvalidEventError):
        tracer.register_operator("X", "L-3", "butcher")
    with pytest.raises(NotFoundError):
        tracer.operator("0" * 32)


def test_whole_chain_holdings_and_log(chain: Chain, store) -> None:  # type: ignore[no-untyped-def]
    tr, o = chain.tracer, chain.ops
    assert stock(tr, o["farm"]) == {}
    assert stock(tr, o["abattoir"]) == {}
    assert stock(tr, o["wa"]) == {LOIN.key: 15, BELLY.key: 30}
    assert stock(tr, o["wb"]) == {HAM.key: 50}
    assert stock(tr, o["r1"]) == {LOIN.key: 15}
    assert stock(tr, o["r2"]) == {LOIN.key: 10}
    assert stock(tr, o["r3"]) == {HAM.key: 30, LOIN.key: 20}
    assert stock(tr, o["rest"]) == {BELLY.key: 20}
    loin = tr.lot(LOIN)
    assert loin.status == "active" and loin.on_hand == 60 and loin.in_transit == 0 and loin.uom == "KGM"
    assert loin.best_before is not None and loin.best_before.isoformat() == "2026-03-09"
    assert {h.operator_name for h in loin.holders} == {"Fresh Mart Furong", "Fresh Mart Yuelu",
                                                       "Mawangdui Wholesale Market Stall 12", "Xiang Supermarket"}
    assert tr.lot(PIGS).on_hand == 0
    # Every event is a leaf of the "trace" log: its committed digest is the digest of its record.
    assert store.tree_size(TRACE_LOG) == len(chain.events)
    for ce in chain.events.values():
        entry = store.entry(TRACE_LOG, ce.log_index)
        assert entry.record_digest == canonical.record_digest(ce.record.encode())
        assert entry.record_digest == canonical.record_digest(canonical.canonicalize(ce.event))
    ship = chain.events["ship_r1"]
    assert ship.source_name == "Mawangdui Wholesale Market Stall 12" and ship.destination_name == "Fresh Mart Furong"
    assert ship.lots[0].lot_key == LOIN.key and ship.lots[0].quantity == 15


def test_in_transit_goods_are_held_by_nobody_but_listed(tracer: Tracer) -> None:
    c = build_chain(tracer, through="slaughter")
    ab, wa = c.ops["abattoir"], c.ops["wa"]
    c.capture("ship", c.ship(ab, wa, [(LOIN, 40)], at(8)), ab)
    lot = tracer.lot(LOIN)
    assert lot.on_hand == 20 and lot.in_transit == 40
    assert [(h.operator_id, h.quantity) for h in lot.holders if h.in_transit] == [(wa.id, 40)]
    # Partial receipts close the shipment step by step.
    c.capture("r1", c.receive(ab, wa, [(LOIN, 25)], at(9)), wa)
    c.capture("r2", c.receive(ab, wa, [(LOIN, 15)], at(9.5)), wa)
    assert tracer.lot(LOIN).in_transit == 0 and stock(tracer, wa) == {LOIN.key: 40}


def test_inventory_at_a_date_and_daily_ledger(chain: Chain) -> None:
    tr, o = chain.tracer, chain.ops
    wa = o["wa"]
    assert {l.lot_key: l.quantity for l in tr.inventory(wa.id, at=day(10))} == {LOIN.key: 40, BELLY.key: 50}
    assert {l.lot_key: l.quantity for l in tr.inventory(wa.id, at=day(0) - timedelta(days=1))} == {}
    # Day 1 at the wholesaler: received 40 loin + 50 belly.
    lines = {l.lot_key: l for l in tr.daily_ledger(wa.id, day(0))}
    assert (lines[LOIN.key].opening, lines[LOIN.key].incoming, lines[LOIN.key].outgoing,
            lines[LOIN.key].closing) == (0, 40, 0, 40)
    assert lines[LOIN.key].suppliers == ("Changsha Meat Co. Slaughterhouse",)
    # Day 2: shipped 15 + 10 loin and 20 belly.
    lines = {l.lot_key: l for l in tr.daily_ledger(wa.id, day(24))}
    assert (lines[LOIN.key].opening, lines[LOIN.key].incoming, lines[LOIN.key].outgoing,
            lines[LOIN.key].closing) == (40, 0, 25, 15)
    assert lines[LOIN.key].customers == ("Fresh Mart Furong", "Fresh Mart Yuelu")
    assert (lines[BELLY.key].opening, lines[BELLY.key].outgoing, lines[BELLY.key].closing) == (50, 20, 30)
    assert lines[BELLY.key].customers == ("Huogongdian Restaurant",)
    # The slaughterhouse: pigs in and consumed, cuts produced and shipped on day 1.
    ab = {l.lot_key: l for l in tr.daily_ledger(o["abattoir"].id, day(0))}
    assert (ab[PIGS.key].incoming, ab[PIGS.key].outgoing, ab[PIGS.key].closing) == (300, 300, 0)
    assert (ab[LOIN.key].incoming, ab[LOIN.key].outgoing, ab[LOIN.key].closing) == (60, 60, 0)
    assert (ab[HAM.key].incoming, ab[HAM.key].outgoing, ab[HAM.key].closing) == (80, 80, 0)
    # A later quiet day still shows the stock carried.
    quiet = {l.lot_key: l for l in tr.daily_ledger(wa.id, day(72))}
    assert (quiet[LOIN.key].opening, quiet[LOIN.key].incoming, quiet[LOIN.key].outgoing,
            quiet[LOIN.key].closing) == (15, 0, 0, 15)


def test_sales_and_expiry_warnings(chain: Chain) -> None:
    tr, r1 = chain.tracer, chain.ops["r1"]
    sale = epcis.to_epcis(epcis.parse_event(epcis.ship([(LOIN, 4)], r1.party_uri, r1.party_uri, r1.location_uri,
                                                       at(30))))
    sale.update(bizStep="retail_selling", disposition="retail_sold")
    for k in ("sourceList", "destinationList", "eventID"):
        sale.pop(k)
    sale["bizLocation"] = {"id": r1.location_uri}
    tr.capture(sale, operator_id=r1.id)
    assert stock(tr, r1) == {LOIN.key: 11}
    # Best before 2026-03-09; the default warning window is 3 days.
    assert tr.expiry_warnings(r1.id, day(0)) == []
    [w] = tr.expiry_warnings(r1.id, day(0) + timedelta(days=5))
    assert (w.lot_key, w.kind, w.days_left, w.quantity, w.expired) == (LOIN.key, "best_before", 2, 11, False)
    [w] = tr.expiry_warnings(r1.id, day(0) + timedelta(days=8))
    assert w.expired and w.days_left == -1


def test_error_declaration_reverses_a_shipment(chain: Chain, store) -> None:  # type: ignore[no-untyped-def]
    tr, o = chain.tracer, chain.ops
    wa, r1 = o["wa"], o["r1"]
    wrong = chain.capture("wrong", chain.ship(wa, r1, [(BELLY, 25)], at(40)), wa)
    assert stock(tr, wa)[BELLY.key] == 5
    size = store.tree_size(TRACE_LOG)
    decl = epcis.error_declaration(wrong.event_id, "incorrect_data", [], at(41), original=wrong.event)
    with pytest.raises(PermissionDeniedError):  # only the recording operator may declare it
        tr.capture(decl, operator_id=r1.id)
    ce = tr.capture(decl, operator_id=wa.id)
    assert ce.kind == "error_declaration" and ce.event_id == wrong.event_id
    assert store.tree_size(TRACE_LOG) == size + 1
    original = tr.event(wrong.log_index)
    assert original.status == "erroneous" and original.declared_by == ce.log_index  # kept, not deleted
    assert stock(tr, wa)[BELLY.key] == 30
    assert all(not h.in_transit for h in tr.lot(BELLY).holders)
    with pytest.raises(RuleViolationError) as e:  # the cancelled shipment cannot be received
        tr.capture(chain.receive(wa, r1, [(BELLY, 25)], at(42)), operator_id=r1.id)
    assert e.value.rule == "not_shipped"
    with pytest.raises(RuleViolationError) as e:
        tr.capture(decl, operator_id=wa.id)
    assert e.value.rule == "already_declared"
    # The daily ledger nets the reversal against the shipment: only the restaurant's 20 went out.
    [line] = [l for l in tr.daily_ledger(wa.id, day(40)) if l.lot_key == BELLY.key]
    assert (line.opening, line.outgoing, line.closing) == (50, 20, 30)
    assert line.customers == ("Huogongdian Restaurant", "Fresh Mart Furong")
    # Both the event and its declaration are found by lot.
    found = [e for e in tr.query_events(product=BELLY) if e.event_id == wrong.event_id]
    assert {e.kind for e in found} == {"event", "error_declaration"}


def test_error_declaration_of_a_received_shipment_needs_the_receipt_declared_first(chain: Chain) -> None:
    tr, o = chain.tracer, chain.ops
    wa, r1 = o["wa"], o["r1"]
    ship, recv = chain.events["ship_r1"], chain.events["recv_r1"]
    with pytest.raises(RuleViolationError) as e:
        tr.capture(epcis.error_declaration(ship.event_id, "incorrect_data", [], at(40), original=ship.event),
                   operator_id=wa.id)
    assert e.value.rule == "correction_blocked" and "receipt" in str(e.value)
    tr.capture(epcis.error_declaration(recv.event_id, "did_not_occur", [], at(40), original=recv.event),
               operator_id=r1.id)
    assert stock(tr, r1) == {}
    assert [h.quantity for h in tr.lot(LOIN).holders if h.in_transit and h.operator_id == r1.id] == [15]
    tr.capture(epcis.error_declaration(ship.event_id, "incorrect_data", [], at(41), original=ship.event),
               operator_id=wa.id)
    assert stock(tr, wa)[LOIN.key] == 30


def test_error_declaration_of_a_transformation_restores_the_inputs(tracer: Tracer) -> None:
    c = build_chain(tracer, through="slaughter")
    ab = c.ops["abattoir"]
    slaughter = c.events["slaughter"]
    ce = tracer.capture(epcis.error_declaration(slaughter.event_id, "did_not_occur", [], at(7),
                                                original=slaughter.event), operator_id=ab.id)
    assert ce.kind == "error_declaration"
    assert stock(tracer, ab) == {PIGS.key: 300}
    assert tracer.trace_forward(PIGS).lot_keys == (PIGS.key,)  # the lineage edges no longer count
    assert tracer.provenance(LOIN).certificates[0].kind == "meat_inspection"


def test_capture_many_is_ordered_and_all_or_nothing(tracer: Tracer, store) -> None:  # type: ignore[no-untyped-def]
    c = build_chain(tracer, through="slaughter")
    ab, wa, wb = c.ops["abattoir"], c.ops["wa"], c.ops["wb"]
    size = store.tree_size(TRACE_LOG)
    ok = [(c.ship(ab, wa, [(LOIN, 40)], at(8)), ab.id), (c.receive(ab, wa, [(LOIN, 40)], at(9)), wa.id)]
    bad = ok + [(c.ship(wa, wb, [(LOIN, 41)], at(10)), wa.id)]
    with pytest.raises(RuleViolationError) as e:
        tracer.capture_many(bad)
    assert e.value.rule == "over_shipped" and any("event 2 of the batch" in n for n in e.value.__notes__)
    assert store.tree_size(TRACE_LOG) == size and stock(tracer, wa) == {}
    captured = tracer.capture_many(ok)
    assert [x.log_index for x in captured] == [size, size + 1]
    assert stock(tracer, wa) == {LOIN.key: 40}
    assert tracer.capture_many([]) == []


def test_query_events(chain: Chain) -> None:
    tr, o = chain.tracer, chain.ops
    mine = tr.query_events(operator_id=o["wa"].id)
    assert [e.biz_step for e in mine] == ["receiving", "shipping", "shipping", "shipping"]
    assert all(a.event_time <= b.event_time for a, b in zip(mine, mine[1:]))
    day2 = tr.query_events(since=at(20), until=at(26))
    assert {e.biz_step for e in day2} == {"shipping"} and len(day2) == 4
    loin_day1 = tr.query_events(product=LOIN, until=at(20))
    assert [e.biz_step for e in loin_day1] == ["commissioning", "inspecting", "shipping", "shipping",
                                                "receiving", "receiving"]
    assert tr.query_events(product=ProductId("06901234000047", "NOPE")) == []
    with pytest.raises(InvalidEventError):
        tr.query_events(since=at(0).replace(tzinfo=None))


def test_invalid_events_are_rejected_with_their_path(chain: Chain) -> None:
    tr, farm = chain.tracer, chain.ops["farm"]
    event = chain.commission(farm, ProductId("06901234000054", "X-1"), 10, at(50))
    del event["eventTime"]
    with pytest.raises(InvalidEventError) as e:
        tr.capture(event, operator_id=farm.id)
    assert "eventTime" in str(e.value)
    with pytest.raises(NotFoundError):
        tr.capture(chain.commission(farm, ProductId("06901234000054", "X-1"), 10, at(50)), operator_id="f" * 32)


def test_local_ids_and_operators_without_gln(tracer: Tracer) -> None:
    shop = tracer.register_operator("Street butcher", "CN-SP-7", "retailer", None, "Stall 3")
    pid = ProductId(None, "B-77", local_id="cn-meat:4301000123456789")
    ce = tracer.capture(epcis.commission_lot(pid, 12.5, shop.location_uri, at(0)), operator_id=shop.id)
    assert ce.lots[0].lot_key == pid.key
    assert stock(tracer, shop) == {pid.key: 12.5}
