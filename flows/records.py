"""The flows vocabulary: enterprises, headcount snapshots, contracts, payments, invoices, and what
the analysis says about them (reconciliation issues, rule findings, grades, inspection draws).

Amounts are integers in fen (1/100 yuan) so sums are exact; dates are ``datetime.date`` (the
business day, China Standard Time); ``log_index`` is the record's leaf in the ``flows`` log (None
until recorded). Enterprises are keyed by their 18-character unified social credit code (USCC).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

FLOWS_LOG = "flows"


@dataclass(frozen=True, slots=True)
class Enterprise:
    uscc: str
    name: str
    registered_on: date
    region: str | None = None  # administrative division code (the USCC's characters 3-8)
    industry: str | None = None
    log_index: int | None = None


@dataclass(frozen=True, slots=True)
class HeadcountSnapshot:
    """Employment and social-insurance headcount reported for a month (human resources' data)."""

    uscc: str
    period: str  # "YYYY-MM"
    employees: int
    insured: int  # people with social insurance paid by the enterprise
    log_index: int | None = None


@dataclass(frozen=True, slots=True)
class Contract:
    contract_no: str  # unique per buyer and seller
    buyer_uscc: str
    seller_uscc: str
    amount_fen: int  # the contract's total value, tax included
    signed_on: date
    subject: str  # what is supplied: goods or services
    payment_term_days: int | None = None  # None: the platform's default term
    log_index: int | None = None


@dataclass(frozen=True, slots=True)
class Payment:
    payment_ref: str  # the bank's transaction reference, unique
    payer_uscc: str
    payee_uscc: str
    amount_fen: int
    paid_on: date
    contract_no: str | None = None  # what the payer says it pays
    invoice_keys: tuple[str, ...] = ()  # invoice key_hex values it settles
    log_index: int | None = None


@dataclass(frozen=True, slots=True)
class Invoice:
    """A VAT invoice. ``key_hex`` (SHA-256 of seller USCC, code and number; see
    :func:`evidence_ledger.flows.identifiers.invoice_key`) identifies it, as India's IRN does."""

    key_hex: str
    seller_uscc: str
    buyer_uscc: str
    code: str  # invoice code ("" for fully digital invoices, whose number carries everything)
    number: str
    amount_fen: int  # net of tax
    tax_fen: int
    issued_on: date
    contract_no: str | None = None
    goods: str = ""  # description of the goods or services invoiced
    log_index: int | None = None

    @property
    def total_fen(self) -> int:
        return self.amount_fen + self.tax_fen


@dataclass(frozen=True, slots=True)
class RecordRef:
    """A record a finding cites: its kind (enterprise | snapshot | contract | payment | invoice),
    its key (USCC, contract_no, payment_ref, invoice key_hex, "uscc/period") and log index."""

    kind: str
    key: str
    log_index: int | None


@dataclass(frozen=True, slots=True)
class Finding:
    """One rule hit, explainable on its own: which rule, about whom, which records, which
    thresholds were applied and which values were measured against them."""

    rule: str  # e.g. no_contract, third_party_payment, circular_invoicing, contagion, no_headcount
    uscc: str  # the enterprise the finding is about
    reason: str  # one sentence a person can read
    records: tuple[RecordRef, ...]
    thresholds: tuple[tuple[str, float | int | str], ...] = ()
    measured: tuple[tuple[str, float | int | str], ...] = ()
    severity: str = "warning"  # info | warning | serious
    id: str | None = None  # set when stored (32-char hex)
    period: str | None = None  # the analysis period it was found in
    log_index: int | None = None  # the finding itself, appended to the flows log


@dataclass(frozen=True, slots=True)
class GradeInputs:
    """What a grade is computed from, stored with it so anyone can recompute it."""

    uscc: str
    period: str
    invoices_out: int
    invoices_in: int
    amount_out_fen: int
    amount_in_fen: int
    rule_hits: tuple[tuple[str, int], ...]  # (rule, count), sorted by rule


@dataclass(frozen=True, slots=True)
class Grade:
    uscc: str
    period: str
    grade: str  # A | B | C | D
    score: int
    inspection_ratio: float  # the share of enterprises of this grade drawn for inspection
    inputs: GradeInputs
    log_index: int | None = None


@dataclass(frozen=True, slots=True)
class DrawSelection:
    uscc: str
    grade: str
    ticket_hex: str  # SHA-256 derived ticket; selected when below the grade's ratio
    inspectors: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Draw:
    id: str
    period: str
    commitment_hex: str  # SHA-256 of the seed, on the ledger before the draw
    population_hex: str  # digest of the (uscc, grade) list and the inspector list drawn from
    commit_log_index: int
    committed_at: datetime
    seed_hex: str | None = None  # revealed after
    reveal_log_index: int | None = None
    revealed_at: datetime | None = None
    selections: tuple[DrawSelection, ...] = field(default=())
    # The block that anchored the commitment (its hash is mixed into the seed; see flows/draw.py).
    beacon_block_number: int | None = None
    beacon_block_hash_hex: str | None = None


@dataclass(frozen=True, slots=True)
class Referral:
    """Findings a tax or market-regulation officer refers to public security as a case."""

    id: str
    uscc: str
    finding_ids: tuple[str, ...]
    referred_by: str  # token subject or name of the referring officer
    note: str
    referred_at: datetime
    log_index: int | None = None


@dataclass(frozen=True, slots=True)
class IngestRejection:
    position: int  # index in the submitted batch
    error: str  # the error class name, e.g. DuplicateRecordError
    message: str


@dataclass(frozen=True, slots=True)
class IngestReport:
    accepted: int
    rejected: tuple[IngestRejection, ...]
    first_log_index: int | None  # the accepted records occupy first..last in submission order
    last_log_index: int | None


@dataclass(frozen=True, slots=True)
class AnalysisRun:
    """One analysis of a period: reconciliation, screening and grading, all stored and logged."""

    period: str
    start: date
    end: date  # inclusive
    as_of: date  # the day overdue payments are judged at
    invoices: int
    findings_by_rule: tuple[tuple[str, int], ...]
    grades_by_grade: tuple[tuple[str, int], ...]
    log_index: int | None = None  # the run's summary record in the flows log


@dataclass(frozen=True, slots=True)
class Access:
    """One read of flows data by an agency (or an enterprise), as recorded in the ``custody`` log."""

    id: str  # 32-char hex
    actor: str  # who read, e.g. a token subject "tax:alice"
    action: str  # what they did, e.g. "view", "list", "export"
    subject: str  # what was read, e.g. "invoice:<key_hex>", "enterprise:<uscc>"
    reason: str | None
    at: datetime
    log_index: int  # in the "custody" log
