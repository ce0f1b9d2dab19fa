"""A tracer over a fresh database (SQLite and PostgreSQL), and a whole pork supply chain.

The chain: a farm commissions a lot of live pigs (300 kg) and ships it to the slaughterhouse,
which receives it, records the quarantine certificate, slaughters it into three cut lots (loin
60 kg, belly 50 kg, ham 80 kg), records a meat inspection certificate per cut, and ships to two
wholesalers; they ship on to three retailers and a restaurant.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from evidence_ledger.ledger.log import LogStore
from evidence_ledger.trace import db as trace_db
from evidence_ledger.trace import epcis
from evidence_ledger.trace.identifiers import ProductId, gs1_check_digit
from evidence_ledger.trace.service import TRACE_LOG, CapturedEvent, Operator, Tracer

T0 = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)


def _with_check(body13: str) -> str:
    return body13 + str(gs1_check_digit(body13))


def gln(body12: str) -> str:
    return body12 + str(gs1_check_digit(body12))


PIGS = ProductId(_with_check("0690123400001"), "PIG-2026-001")
LOIN = ProductId(_with_check("0690123400002"), "LOIN-0302")
BELLY = ProductId(_with_check("0690123400003"), "BELLY-0302")
HAM = ProductId(_with_check("0690123400004"), "HAM-0302")


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


@pytest.fixture
def store(engine) -> LogStore:  # type: ignore[no-untyped-def]
    trace_db.migrate(engine)
    s = LogStore(engine)
    s.ensure_log(TRACE_LOG, f"test.example/trace/{uuid.uuid4().hex[:8]}")
    return s


@pytest.fixture
def tracer(engine, store) -> Tracer:  # type: ignore[no-untyped-def]
    return Tracer(engine, store)


@dataclass
class Chain:
    tracer: Tracer
    ops: dict[str, Operator] = field(default_factory=dict)
    events: dict[str, CapturedEvent] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Operator:
        ops = self.__dict__.get("ops", {})
        if name in ops:
            return ops[name]
        raise AttributeError(name)

    def loc(self, op: Operator) -> str:
        return op.location_uri

    # builders bound to operators
    def commission(self, op: Operator, pid: ProductId, kg: float, t: datetime, **ilmd: Any) -> dict:
        return epcis.commission_lot(pid, kg, op.location_uri, t, ilmd=ilmd or None)

    def ship(self, src: Operator, dst: Operator, items: list[tuple[ProductId, float]], t: datetime,
             invoice: str | None = None) -> dict:
        return epcis.ship(items, src.party_uri, dst.party_uri, src.location_uri, t,
                          to_location=dst.location_uri,
                          biz_transactions=[("inv", f"urn:example:invoice:{invoice}")] if invoice else None)

    def receive(self, src: Operator, dst: Operator, items: list[tuple[ProductId, float]], t: datetime) -> dict:
        return epcis.receive(items, src.party_uri, dst.party_uri, dst.location_uri, t,
                             from_location=src.location_uri)

    def capture(self, name: str, event: dict, op: Operator) -> CapturedEvent:
        ce = self.tracer.capture(event, operator_id=op.id)
        self.events[name] = ce
        return ce


def build_chain(tracer: Tracer, *, through: str = "all") -> Chain:
    c = Chain(tracer)
    tr = tracer
    c.ops["farm"] = tr.register_operator("Green Hill Pig Farm", "FARM-001", "farm", gln("690123400010"),
                                         "Liuyang, Hunan")
    c.ops["abattoir"] = tr.register_operator("Changsha Meat Co. Slaughterhouse", "SLA-001", "slaughterhouse",
                                             gln("690123400020"), "Changsha slaughterhouse")
    c.ops["wa"] = tr.register_operator("Mawangdui Wholesale Market Stall 12", "WHO-001", "wholesaler",
                                       gln("690123400030"), "Mawangdui market")
    c.ops["wb"] = tr.register_operator("Hongxing Wholesale", "WHO-002", "wholesaler", None, "Hongxing market")
    c.ops["r1"] = tr.register_operator("Fresh Mart Furong", "RET-001", "retailer", gln("690123400050"))
    c.ops["r2"] = tr.register_operator("Fresh Mart Yuelu", "RET-002", "retailer", None, "Yuelu store")
    c.ops["r3"] = tr.register_operator("Xiang Supermarket", "RET-003", "retailer", gln("690123400070"))
    c.ops["rest"] = tr.register_operator("Huogongdian Restaurant", "RES-001", "restaurant", None, "Wuyi Road")
    farm, ab, wa, wb, r1, r2, r3, rest = (c.ops[k] for k in ("farm", "abattoir", "wa", "wb", "r1", "r2", "r3", "rest"))

    c.capture("commission", c.commission(farm, PIGS, 300, at(0), descriptionShort="Live pigs (3 head)"), farm)
    c.capture("ship_pigs", c.ship(farm, ab, [(PIGS, 300)], at(1), invoice="F-1"), farm)
    c.capture("recv_pigs", c.receive(farm, ab, [(PIGS, 300)], at(3)), ab)
    c.capture("quarantine", epcis.inspect(PIGS, {
        "type": "quarantine", "number": "HN-Q-2026-0001", "issuer": "Liuyang Animal Health Supervision",
        "issued_at": at(0.5), "result": "pass"}, ab.location_uri, at(3.5)), ab)
    c.capture("slaughter", epcis.slaughter([(PIGS, 300)], [(LOIN, 60), (BELLY, 50), (HAM, 80)], ab.location_uri,
                                           at(5), ilmd={"bestBeforeDate": "2026-03-09"}), ab)
    for name, pid in (("insp_loin", LOIN), ("insp_belly", BELLY), ("insp_ham", HAM)):
        c.capture(name, epcis.inspect(pid, {
            "type": "meat_inspection", "number": f"CS-MI-{pid.lot}", "issuer": "Changsha Meat Inspection Station",
            "issued_at": at(6), "result": "pass"}, ab.location_uri, at(6)), ab)
    if through == "slaughter":
        return c
    c.capture("ship_wa", c.ship(ab, wa, [(LOIN, 40), (BELLY, 50)], at(8), invoice="S-1"), ab)
    c.capture("ship_wb", c.ship(ab, wb, [(LOIN, 20), (HAM, 80)], at(8.5), invoice="S-2"), ab)
    c.capture("recv_wa", c.receive(ab, wa, [(LOIN, 40), (BELLY, 50)], at(10)), wa)
    c.capture("recv_wb", c.receive(ab, wb, [(LOIN, 20), (HAM, 80)], at(10.5)), wb)
    if through == "wholesale":
        return c
    # Next day: wholesalers to retailers and the restaurant.
    c.capture("ship_r1", c.ship(wa, r1, [(LOIN, 15)], at(24)), wa)
    c.capture("ship_r2", c.ship(wa, r2, [(LOIN, 10)], at(24.5)), wa)
    c.capture("ship_rest", c.ship(wa, rest, [(BELLY, 20)], at(25)), wa)
    c.capture("ship_r3", c.ship(wb, r3, [(HAM, 30), (LOIN, 20)], at(25.5)), wb)
    c.capture("recv_r1", c.receive(wa, r1, [(LOIN, 15)], at(27)), r1)
    c.capture("recv_r2", c.receive(wa, r2, [(LOIN, 10)], at(27.5)), r2)
    c.capture("recv_rest", c.receive(wa, rest, [(BELLY, 20)], at(28)), rest)
    c.capture("recv_r3", c.receive(wb, r3, [(HAM, 30), (LOIN, 20)], at(28.5)), r3)
    return c


@pytest.fixture
def chain(tracer: Tracer) -> Chain:
    return build_chain(tracer)


def day(hours: float) -> date:
    return at(hours).date()
