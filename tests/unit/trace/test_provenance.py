"""Provenance for the consumer page, trace back and forward for regulators, and recalls."""

from __future__ import annotations

import pytest

from evidence_ledger.trace.errors import NotFoundError, RuleViolationError, TraceError
from evidence_ledger.trace.identifiers import ProductId
from evidence_ledger.trace.service import TRACE_LOG, Tracer

from .conftest import BELLY, HAM, LOIN, PIGS, Chain, at, build_chain


def test_provenance_of_a_retail_cut(chain: Chain, store) -> None:  # type: ignore[no-untyped-def]
    tr, o = chain.tracer, chain.ops
    p = tr.provenance(LOIN)
    assert p.product == LOIN and p.lot.key == LOIN.key and p.recall is None
    assert p.origin is not None and p.origin.operator.id == o["farm"].id and p.origin.lot_key == PIGS.key
    assert p.origin.log_index == chain.events["commission"].log_index and p.origin.at == at(0)
    assert p.slaughterhouse is not None and p.slaughterhouse.operator.id == o["abattoir"].id
    assert p.slaughterhouse.log_index == chain.events["slaughter"].log_index
    assert [(c.kind, c.lot_key, c.number) for c in p.certificates] == [
        ("quarantine", PIGS.key, "HN-Q-2026-0001"), ("meat_inspection", LOIN.key, "CS-MI-LOIN-0302")]
    assert p.ancestors == (LOIN.key, PIGS.key)
    # Every hand it passed through, in time order, each with its log index.
    hands = [(s.biz_step, s.operator_name) for s in p.steps]
    assert hands[:5] == [("commissioning", "Green Hill Pig Farm"), ("shipping", "Green Hill Pig Farm"),
                         ("receiving", "Changsha Meat Co. Slaughterhouse"),
                         ("inspecting", "Changsha Meat Co. Slaughterhouse"),
                         ("commissioning", "Changsha Meat Co. Slaughterhouse")]
    assert ("receiving", "Fresh Mart Furong") in hands and ("receiving", "Xiang Supermarket") in hands
    assert all(a.event_time <= b.event_time for a, b in zip(p.steps, p.steps[1:]))
    # Steps of sibling cuts (belly, ham) are not part of the loin's story.
    assert all(s.lot_key in (LOIN.key, PIGS.key) for s in p.steps)
    for s in p.steps:
        assert store.entry(TRACE_LOG, s.log_index).record_digest  # verified on the ledger
    assert {s.operator_role for s in p.steps} == {"farm", "slaughterhouse", "wholesaler", "retailer"}
    with pytest.raises(NotFoundError):
        tr.provenance(ProductId("06901234000092", "NOPE"))


def test_trace_back_to_the_farm(chain: Chain) -> None:
    back = chain.tracer.trace_back(HAM)
    assert back.direction == "back" and set(back.lot_keys) == {HAM.key, PIGS.key}
    assert [(e.parent_key, e.child_key, e.kind) for e in back.edges] == [(PIGS.key, HAM.key, "transformation")]
    assert back.lots[0].key == PIGS.key and back.lots[0].origin_operator_id == chain.ops["farm"].id
    assert chain.events["commission"].log_index in {e.log_index for e in back.events}
    assert chain.events["ship_wa"].log_index not in {e.log_index for e in back.events}  # no ham in it


def test_trace_forward_from_the_carcass_to_every_holder(chain: Chain) -> None:
    o = chain.ops
    fwd = chain.tracer.trace_forward(PIGS)
    assert set(fwd.lot_keys) == {PIGS.key, LOIN.key, BELLY.key, HAM.key}
    assert {(h.operator_id, h.lot_key, h.quantity) for h in fwd.holders} == {
        (o["wa"].id, LOIN.key, 15), (o["wa"].id, BELLY.key, 30), (o["wb"].id, HAM.key, 50),
        (o["r1"].id, LOIN.key, 15), (o["r2"].id, LOIN.key, 10), (o["r3"].id, LOIN.key, 20),
        (o["r3"].id, HAM.key, 30), (o["rest"].id, BELLY.key, 20)}
    assert len(fwd.events) == len(chain.events)  # every event touched the pigs or a cut
    # By date range: only the second day.
    day2 = chain.tracer.trace_forward(PIGS, since=at(20))
    assert {e.biz_step for e in day2.events} == {"shipping", "receiving"} and len(day2.events) == 8
    # Forward from a cut: itself only.
    assert chain.tracer.trace_forward(LOIN).lot_keys == (LOIN.key,)


def test_recall_flags_every_descendant_and_lists_holders(engine, store) -> None:  # type: ignore[no-untyped-def]
    calls = []
    tracer = Tracer(engine, store, on_recall=lambda lots, reason, root: calls.append((lots, reason, root)))
    c = build_chain(tracer)
    o = c.ops
    c.capture("ship_late", c.ship(o["wa"], o["r2"], [(BELLY, 5)], at(30)), o["wa"])  # in transit at recall
    size = store.tree_size(TRACE_LOG)
    res = tracer.recall(PIGS, "African swine fever in the herd", regulator="Hunan AMR")
    assert set(res.lots) == {PIGS.key, LOIN.key, BELLY.key, HAM.key} and res.root == PIGS.key
    assert res.already_recalled == ()
    holders = {(h.operator_name, h.lot_key, h.in_transit) for h in res.holders}
    assert ("Fresh Mart Yuelu", BELLY.key, True) in holders
    assert {h.operator_id for h in res.holders} == {o[k].id for k in ("wa", "wb", "r1", "r2", "r3", "rest")}
    # One recall event per lot, appended to the log by the regulator.
    assert store.tree_size(TRACE_LOG) == size + 4 and len(res.events) == 4
    assert all(e.actor == "regulator:Hunan AMR" and e.disposition == "recalled" for e in res.events)
    for k in res.lots:
        lot = tracer.lot(k)
        assert lot.status == "recalled" and lot.recall_root == PIGS.key
    [(pairs, reason, root)] = calls
    assert sorted(pairs) == sorted((p.gtin, p.lot) for p in (PIGS, LOIN, BELLY, HAM))
    assert root == PIGS.key and reason.startswith("African")
    p = tracer.provenance(LOIN)
    assert p.recall is not None and p.recall.root_key == PIGS.key and p.recall.regulator == "Hunan AMR"
    # Later events on recalled lots are rejected; the goods in transit cannot be received.
    with pytest.raises(RuleViolationError) as e:
        tracer.capture(c.receive(o["wa"], o["r2"], [(BELLY, 5)], at(31)), operator_id=o["r2"].id)
    assert e.value.rule == "lot_recalled"
    with pytest.raises(RuleViolationError) as e:
        tracer.capture(c.ship(o["r3"], o["rest"], [(HAM, 1)], at(31)), operator_id=o["r3"].id)
    assert e.value.rule == "lot_recalled"
    with pytest.raises(RuleViolationError) as e:
        tracer.recall(LOIN, "again", regulator="Hunan AMR")
    assert e.value.rule == "already_recalled"


def test_recall_of_a_cut_leaves_siblings_alone_and_keeps_earlier_roots(chain: Chain) -> None:
    tr = chain.tracer
    res = tr.recall(LOIN, "Listeria", regulator="Changsha AMR")
    assert res.lots == (LOIN.key,)
    assert tr.lot(BELLY).status == "active" and tr.lot(PIGS).status == "active"
    res2 = tr.recall(PIGS, "ASF", regulator="Hunan AMR")
    assert set(res2.lots) == {PIGS.key, BELLY.key, HAM.key} and res2.already_recalled == (LOIN.key,)
    assert tr.lot(LOIN).recall_root == LOIN.key
    with pytest.raises(NotFoundError):
        tr.recall(ProductId("06901234000092", "NOPE"), "x", regulator="y")


def test_on_recall_failure_is_reported_but_the_recall_stands(engine, store) -> None:  # type: ignore[no-untyped-def]
    def broken(*_a):  # type: ignore[no-untyped-def]
        raise RuntimeError("chain down")

    tracer = Tracer(engine, store, on_recall=broken)
    build_chain(tracer, through="slaughter")
    with pytest.raises(TraceError, match="chain down"):
        tracer.recall(HAM, "x", regulator="AMR")
    assert tracer.lot(HAM).status == "recalled"
