"""A FlowBook over a fresh database (SQLite and PostgreSQL), a settable clock, and small builders
of valid enterprises, contracts, payments and invoices."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pytest

from evidence_ledger.flows import db as flows_db
from evidence_ledger.flows.identifiers import make_uscc
from evidence_ledger.flows.records import Contract, Enterprise, HeadcountSnapshot, Invoice, Payment
from evidence_ledger.flows.service import CUSTODY_LOG, FLOWS_LOG, FlowBook
from evidence_ledger.ledger.log import LogStore

NOW = datetime(2026, 7, 1, 2, 0, tzinfo=UTC)  # 10:00 in China, 1 July 2026


@dataclass
class Clock:
    now: datetime = NOW

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


def uscc(n: int) -> str:
    """The n-th test enterprise's valid USCC (Shanghai, limited company)."""
    return make_uscc(f"91310000{n:09d}")


def enterprise(n: int, *, registered_on: date = date(2015, 3, 1)) -> Enterprise:
    return Enterprise(uscc(n), f"Enterprise {n} Co., Ltd.", registered_on, "310000", "manufacturing")


def contract(no: str, buyer: int, seller: int, amount_fen: int = 1_130_000, *,
             signed_on: date = date(2026, 1, 5), term: int | None = None) -> Contract:
    return Contract(no, uscc(buyer), uscc(seller), amount_fen, signed_on, "steel coils", term)


def invoice(number: int, seller: int, buyer: int, amount_fen: int = 1_000_000, tax_fen: int = 130_000, *,
            issued_on: date = date(2026, 2, 10), contract_no: str | None = None, key_hex: str = "") -> Invoice:
    return Invoice(key_hex, uscc(seller), uscc(buyer), "", f"{number:020d}", amount_fen, tax_fen, issued_on,
                   contract_no, "steel coils")


def payment(ref: str, payer: int, payee: int, amount_fen: int = 1_130_000, *, paid_on: date = date(2026, 3, 1),
            contract_no: str | None = None, invoice_keys: tuple[str, ...] = ()) -> Payment:
    return Payment(ref, uscc(payer), uscc(payee), amount_fen, paid_on, contract_no, invoice_keys)


def snapshot(n: int, period: str = "2026-02", employees: int = 40, insured: int = 38) -> HeadcountSnapshot:
    return HeadcountSnapshot(uscc(n), period, employees, insured)


@pytest.fixture
def store(engine) -> LogStore:  # type: ignore[no-untyped-def]
    flows_db.migrate(engine)
    s = LogStore(engine)
    tag = uuid.uuid4().hex[:8]
    s.ensure_log(FLOWS_LOG, f"test.example/flows/{tag}")
    s.ensure_log(CUSTODY_LOG, f"test.example/custody/{tag}")
    return s


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def book(engine, store, clock) -> FlowBook:  # type: ignore[no-untyped-def]
    return FlowBook(engine, store, clock=clock)


@pytest.fixture
def parties(book: FlowBook) -> list[Enterprise]:
    """Enterprises 1..5, registered."""
    return [book.register_enterprise(enterprise(n)) for n in range(1, 6)]
