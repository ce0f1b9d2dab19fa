"""The notary service: agencies, officers, cases, evidence, corrections, custody and verification.

How evidence is notarized
-------------------------
1. The content is streamed into the blob store (bounded by ``max_bytes``; content-addressed, so a
   failed notarization leaves nothing that matters behind).
2. An evidence record (JSON, see :func:`Notary.prepare_file_record`) is built from the server's
   own data: case, agency, officer and key id, the blob's SHA-256, CID and size, metadata, times.
3. The record is signed by the officer's Ed25519 key (:mod:`.keys`). Two custody models:

   * ``server``: the server keeps the key encrypted and signs (``notarize_file``,
     ``notarize_capture``, ``correct``, ``withdraw`` do all steps in one call);
   * ``client``: the officer's device holds the key. Step one, ``prepare_*_record`` stores the
     content and returns the unsigned record; the device signs it locally
     (``keys.sign_record``); step two, ``submit_signed_record`` checks it field by field against
     what the server would have built, checks the signature and notarizes it. The record carries
     its own ``notarizedAt``; a submission later than ``prepare_ttl_s`` after it is refused.

4. The canonical signed record is appended to the ``evidence`` log (that append is the commit
   point: it is durable and will be anchored), then the evidence row is written in one database
   transaction, and a ``notarize`` custody event is appended to the ``custody`` log. Everything
   that can be checked is checked *before* the append, so the row insert after it fails only if
   the database itself fails; the error then names the log index, whose stored record is
   complete and can be re-indexed.

Corrections and withdrawals are new signed records that reference the old one (``supersedes`` /
``withdrawalOf`` with its evidence id and log index); the old row's ``status`` changes, nothing
is deleted.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
import zipfile
import zlib
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, Protocol

from sqlalchemy import Engine, insert, or_, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from evidence_ledger.ledger import canonical
from evidence_ledger.ledger.blobs import BlobRef, BlobStore
from evidence_ledger.ledger.bundle import verify_bundle
from evidence_ledger.ledger.errors import (
    BlobNotFoundError,
    BlobTooLargeError,
    ChainError,
    ContractRevertError,
    EntryNotFoundError,
    LedgerError,
    NotAnchoredError,
    RecordTooLargeError,
    VerificationError,
)
from evidence_ledger.ledger.log import LogStore

from . import keys, tables
from .errors import (
    ArchiveIntegrityError,
    AuthorityError,
    ConflictError,
    EvidenceStateError,
    InvalidEvidenceError,
    InvalidRequestError,
    NotaryError,
    NotFoundError,
    PermissionDeniedError,
    SignatureError,
    UploadTooLargeError,
)

__all__ = [
    "AGENCY_KINDS",
    "CUSTODY_ACTIONS",
    "EVIDENCE_LOG",
    "CUSTODY_LOG",
    "REVOCATION_REASONS",
    "ROLES",
    "Agency",
    "AuthorityClient",
    "Case",
    "CustodyEvent",
    "Evidence",
    "EvidencePart",
    "Notary",
    "Officer",
    "TimelineItem",
    "Verdict",
]

EVIDENCE_LOG = "evidence"
CUSTODY_LOG = "custody"

EVIDENCE_TYPE = "evidence-ledger/evidence/v1"
WITHDRAWAL_TYPE = "evidence-ledger/withdrawal/v1"
CUSTODY_TYPE = "evidence-ledger/custody/v1"

#: Agency kinds and their ``Authority.AgencyKind`` values (ADR 0004).
AGENCY_KINDS = {"market_regulation": 0, "tax": 1, "human_resources": 2, "public_security": 3, "court": 4}
#: Officer roles and their ``Authority.Role`` values (Anchorer, 3, is the log's, not a person's).
ROLES = {"officer": 0, "inspector": 1, "auditor": 2, "admin": 4}
#: Revocation reasons and their ``Authority.RevocationReason`` values.
REVOCATION_REASONS = {"unspecified": 0, "key_compromise": 1, "affiliation_changed": 2,
                      "superseded": 3, "cessation_of_operation": 4}
CUSTODY_ACTIONS = ("view", "download", "export", "correction", "withdrawal", "notarize")
METADATA_FIELDS = ("device", "location", "description")

WACZ_MEDIA_TYPE = "application/wacz+zip"
DEFAULT_MAX_UPLOAD_BYTES = 2 * 1024**3
_UINT64_MAX = 2**64 - 1
_HEX32 = re.compile(r"^[0-9a-f]{32}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class AuthorityClient(Protocol):
    """What the notary needs of the on-chain ``Authority`` (``ledger.chain.Web3Chain`` has it).

    The client's account must be the Authority owner and the admin of the agencies it registers
    (the service registers itself as admin; see ``Web3Chain`` for other arrangements)."""

    def register_agency(self, agency_id: bytes, kind: int, name: str, admin: str | None = None) -> str: ...
    def register_key(self, agency_id: bytes, public_key: bytes, member_id: bytes, role: int,
                     valid_from: int = 0, valid_until: int = _UINT64_MAX) -> bytes: ...
    def revoke_key(self, key_id: bytes, reason: int = 0) -> str: ...
    def was_authorized(self, key_id: bytes, role: int, at_time: int) -> bool: ...


# -- domain records -----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Agency:
    id: str
    code: str
    name: str
    kind: str
    authority_id: bytes  # bytes32 id in the Authority contract
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Officer:
    id: str
    agency_id: str
    name: str
    role: str
    public_key: bytes  # raw Ed25519, 32 bytes
    key_id: bytes  # sha256(public_key)
    custody: str  # "server" | "client"
    created_at: datetime
    revoked_at: datetime | None = None
    revocation_reason: str | None = None

    @property
    def key_id_hex(self) -> str:
        return self.key_id.hex()

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True, slots=True)
class Case:
    id: str
    reference: str
    title: str
    agency_id: str
    created_by: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class EvidencePart:
    name: str
    media_type: str
    sha256: bytes
    cid: str
    size_bytes: int


@dataclass(frozen=True, slots=True)
class Evidence:
    id: str
    case_id: str
    kind: str  # "web" | "file"
    log_index: int  # in the "evidence" log
    sha256: bytes  # of the main blob (for a web capture: its WACZ archive)
    cid: str
    size_bytes: int
    media_type: str
    filename: str | None
    record_json: str  # the canonical signed record, exactly as logged
    officer_id: str
    captured_at: datetime | None
    notarized_at: datetime
    supersedes: str | None
    reason: str | None  # why it corrects the one it supersedes
    status: str  # "active" | "corrected" | "withdrawn"
    parts: tuple[EvidencePart, ...] = ()
    corrected_by: str | None = None
    withdrawal_log_index: int | None = None
    withdrawal_record_json: str | None = None  # the canonical signed withdrawal record
    withdrawn_at: datetime | None = None
    withdrawn_by: str | None = None
    withdrawal_reason: str | None = None

    @property
    def sha256_hex(self) -> str:
        return self.sha256.hex()

    @property
    def record(self) -> dict[str, Any]:
        return json.loads(self.record_json)


@dataclass(frozen=True, slots=True)
class CustodyEvent:
    id: str
    evidence_id: str
    actor: str
    action: str
    reason: str | None
    at: datetime
    log_index: int  # in the "custody" log


@dataclass(frozen=True, slots=True)
class TimelineItem:
    at: datetime
    kind: str  # case_created | notarized | corrected | withdrawn | custody
    evidence_id: str | None
    actor: str
    detail: str


@dataclass(frozen=True, slots=True)
class Verdict:
    """The answer to "is this file / bundle what was notarized?".

    ``ok`` is about integrity and authenticity: the file is the notarized content (or a part of
    it), the bundle proves the record's inclusion (and, with a chain, its anchor), the signature
    verifies, and (with an authority) the key was authorised at anchoring time. A corrected or
    withdrawn item can still be ``ok``; ``status`` and the fields below say so.
    ``reasons`` name what did not match; ``notes`` say what could not be checked."""

    ok: bool
    evidence_id: str | None = None
    kind: str | None = None
    case_reference: str | None = None
    agency_name: str | None = None
    officer_id: str | None = None
    officer_name: str | None = None
    key_id_hex: str | None = None
    matched: str | None = None  # "content" or "part:<name>"
    file_sha256_hex: str | None = None
    content_sha256_hex: str | None = None
    log_index: int | None = None
    captured_at: datetime | None = None
    notarized_at: datetime | None = None
    anchored_at: datetime | None = None
    chain_checked: bool = False
    signature_ok: bool | None = None
    authorized: bool | None = None  # None: not checked
    status: str | None = None
    corrected_by: str | None = None
    withdrawn_at: datetime | None = None
    withdrawal_reason: str | None = None
    checks: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


# -- helpers ------------------------------------------------------------------------------------

def _now() -> datetime:
    return datetime.now(UTC)


def _new_id() -> str:
    return uuid.uuid4().hex


def _aware(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def _iso(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    return dt.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _parse_iso(value: Any, field: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidEvidenceError(f"{field}: expected an ISO 8601 time, got {type(value).__name__}")
    try:
        dt = datetime.fromisoformat(value)
    except ValueError as e:
        raise InvalidEvidenceError(f"{field}: not an ISO 8601 time: {value!r}") from e
    if dt.tzinfo is None:
        raise InvalidEvidenceError(f"{field}: the time must carry its UTC offset: {value!r}")
    return dt.astimezone(UTC)


def _check_time(value: datetime | None, field: str) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise InvalidEvidenceError(f"{field}: must be timezone-aware (UTC), got a naive datetime")
    return value.astimezone(UTC)


def _short(h: str) -> str:
    return h[:16] + "..."


def _differs(expected: Any, got: Any, path: str) -> str | None:
    """The JSON path of the first difference between two JSON values (None if equal)."""
    if isinstance(expected, dict) and isinstance(got, dict):
        for k in sorted(set(expected) | set(got)):
            if k not in got:
                return f"{path}.{k} (missing)"
            if k not in expected:
                return f"{path}.{k} (unexpected)"
            found = _differs(expected[k], got[k], f"{path}.{k}")
            if found:
                return found
        return None
    if isinstance(expected, list) and isinstance(got, list):
        if len(expected) != len(got):
            return f"{path} (length {len(got)}, expected {len(expected)})"
        for i, (a, b) in enumerate(zip(expected, got, strict=True)):
            found = _differs(a, b, f"{path}[{i}]")
            if found:
                return found
        return None
    if type(expected) is not type(got) or expected != got:
        return path
    return None


def _unsigned(record: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != "signature"}


# -- the service --------------------------------------------------------------------------------

class Notary:
    """Evidence notarization over one database, log store and blob store.

    ``kek`` is the 32-byte key-encryption key for server-held officer keys (the caller reads it
    from a 0600 file, e.g. with :func:`.keys.load_or_create_kek`). ``authority`` returns the
    on-chain Authority client (or ``None``: no on-chain key registry). ``trusted_log_keys`` pins
    the log verifier keys that bundles must be signed with.
    """

    def __init__(self, engine: Engine, store: LogStore, blobs: BlobStore, kek: bytes,
                 authority: Callable[[], AuthorityClient] | None = None, *,
                 trusted_log_keys: Sequence[str] = (),
                 max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
                 prepare_ttl_s: float = 3600.0,
                 clock: Callable[[], datetime] = _now) -> None:
        if not isinstance(kek, bytes) or len(kek) != keys.KEK_BYTES:
            raise ValueError(f"the key-encryption key must be {keys.KEK_BYTES} bytes")
        self.engine = engine
        self.store = store
        self.blobs = blobs
        self._kek = kek
        self._authority = authority
        self.trusted_log_keys = tuple(trusted_log_keys)
        self.max_upload_bytes = max_upload_bytes
        self.prepare_ttl_s = prepare_ttl_s
        self._clock = clock

    def __repr__(self) -> str:  # never show the key-encryption key
        return f"Notary(engine={self.engine.url!r}, authority={'yes' if self._authority else 'no'})"

    @property
    def has_authority(self) -> bool:
        return self._authority is not None

    # -- agencies and officers --------------------------------------------------------------

    @staticmethod
    def authority_id_for(code: str) -> bytes:
        """The agency's id in the Authority contract."""
        return hashlib.sha256(b"evidence-ledger/agency/" + code.encode()).digest()

    def register_agency(self, code: str, name: str, kind: str) -> Agency:
        """Register an agency here and (with an authority) on chain, the service as its admin."""
        code, name = code.strip(), name.strip()
        if not code or not name:
            raise InvalidRequestError("an agency needs a code and a name")
        if kind not in AGENCY_KINDS:
            raise InvalidRequestError(f"unknown agency kind {kind!r} (one of {', '.join(AGENCY_KINDS)})")
        if self._find_agency_by_code(code) is not None:
            raise ConflictError(f"an agency with code {code!r} is already registered")
        agency = Agency(_new_id(), code, name, kind, self.authority_id_for(code), self._clock())
        if self._authority is not None:
            try:
                self._authority().register_agency(agency.authority_id, AGENCY_KINDS[kind], name)
            except ContractRevertError as e:
                if e.error_name != "AgencyAlreadyRegistered":  # a chain that outlived the database
                    raise AuthorityError(f"registering agency {code!r} on chain failed: {e}") from e
            except ChainError as e:
                raise AuthorityError(f"registering agency {code!r} on chain failed: {e}") from e
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(tables.agencies).values(
                    id=agency.id, code=code, name=name, kind=kind,
                    authority_id=agency.authority_id, created_at=agency.created_at))
        except IntegrityError as e:
            raise ConflictError(f"an agency with code {code!r} is already registered") from e
        return agency

    def agency(self, agency_id: str) -> Agency:
        with self.engine.connect() as conn:
            row = conn.execute(select(tables.agencies).where(tables.agencies.c.id == agency_id)).first()
        if row is None:
            raise NotFoundError(f"no agency {agency_id!r}")
        return _agency(row)

    def agencies(self) -> list[Agency]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(tables.agencies).order_by(tables.agencies.c.created_at)).all()
        return [_agency(r) for r in rows]

    def _find_agency_by_code(self, code: str) -> Agency | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(tables.agencies).where(tables.agencies.c.code == code)).first()
        return None if row is None else _agency(row)

    def register_officer(self, agency_id: str, name: str, role: str = "officer",
                         public_key: bytes | None = None, *,
                         valid_until: datetime | None = None) -> Officer:
        """Register an officer and their signing key.

        ``public_key`` ``None``: the server generates the key and keeps it encrypted (custody
        "server"); otherwise the officer's device holds the private key (custody "client").
        With an authority, the key is registered on chain with the role, valid from now until
        ``valid_until`` (default: no expiry)."""
        agency = self.agency(agency_id)
        name = name.strip()
        if not name:
            raise InvalidRequestError("an officer needs a name")
        if role not in ROLES:
            raise InvalidRequestError(f"unknown role {role!r} (one of {', '.join(ROLES)})")
        valid_until = _check_time(valid_until, "valid_until")
        officer_id = _new_id()
        if public_key is None:
            private = keys.generate_private_key()
            public_key = keys.public_key_bytes(private)
            custody, encrypted = "server", keys.encrypt_private_key(private, self._kek, officer_id)
        else:
            try:
                keys.key_id(bytes(public_key))  # validates the key
            except SignatureError as e:
                raise InvalidRequestError(f"public_key: {e}") from e
            public_key, custody, encrypted = bytes(public_key), "client", None
        key_id = keys.key_id(public_key)
        if self._officer_by_key(key_id) is not None:
            raise ConflictError(f"key {key_id.hex()} is already registered to an officer")
        officer = Officer(officer_id, agency.id, name, role, public_key, key_id, custody, self._clock())
        registered = False
        if self._authority is not None:
            until = _UINT64_MAX if valid_until is None else int(valid_until.timestamp())
            try:
                self._authority().register_key(agency.authority_id, public_key, _member_id(officer_id),
                                               ROLES[role], 0, until)
                registered = True
            except ChainError as e:
                raise AuthorityError(f"registering the key of {name!r} on chain failed: {e}") from e
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(tables.officers).values(
                    id=officer.id, agency_id=agency.id, name=name, role=role, public_key=public_key,
                    key_id=key_id, custody=custody, encrypted_private_key=encrypted,
                    created_at=officer.created_at))
        except SQLAlchemyError as e:
            if registered:  # do not leave a usable key on chain for an officer that does not exist
                try:
                    self._authority().revoke_key(key_id, REVOCATION_REASONS["unspecified"])  # type: ignore[misc]
                except ChainError:
                    pass
            if isinstance(e, IntegrityError):
                raise ConflictError(f"key {key_id.hex()} is already registered") from e
            raise
        return officer

    def officer(self, officer_id: str) -> Officer:
        with self.engine.connect() as conn:
            row = conn.execute(select(tables.officers).where(tables.officers.c.id == officer_id)).first()
        if row is None:
            raise NotFoundError(f"no officer {officer_id!r}")
        return _officer(row)

    def officers(self, agency_id: str) -> list[Officer]:
        o = tables.officers.c
        with self.engine.connect() as conn:
            rows = conn.execute(select(tables.officers).where(o.agency_id == agency_id)
                                .order_by(o.created_at)).all()
        return [_officer(r) for r in rows]

    def _officer_by_key(self, key_id: bytes) -> Officer | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(tables.officers).where(tables.officers.c.key_id == key_id)).first()
        return None if row is None else _officer(row)

    def revoke_officer(self, officer_id: str, reason: str = "unspecified") -> Officer:
        """Revoke the officer's key from now on (on chain too); records signed before stay valid."""
        officer = self.officer(officer_id)
        if reason not in REVOCATION_REASONS:
            raise InvalidRequestError(
                f"unknown revocation reason {reason!r} (one of {', '.join(REVOCATION_REASONS)})")
        if officer.revoked_at is not None:
            raise EvidenceStateError(f"officer {officer_id} was already revoked at {_iso(officer.revoked_at)}")
        if self._authority is not None:
            try:
                self._authority().revoke_key(officer.key_id, REVOCATION_REASONS[reason])
            except ContractRevertError as e:
                if e.error_name != "KeyAlreadyRevoked":
                    raise AuthorityError(f"revoking key {officer.key_id_hex} on chain failed: {e}") from e
            except ChainError as e:
                raise AuthorityError(f"revoking key {officer.key_id_hex} on chain failed: {e}") from e
        at = self._clock()
        with self.engine.begin() as conn:
            conn.execute(update(tables.officers).where(tables.officers.c.id == officer_id)
                         .values(revoked_at=at, revocation_reason=reason))
        return self.officer(officer_id)

    def _signing_key(self, officer_id: str):  # type: ignore[no-untyped-def]
        with self.engine.connect() as conn:
            row = conn.execute(select(tables.officers.c.custody, tables.officers.c.encrypted_private_key)
                               .where(tables.officers.c.id == officer_id)).first()
        if row is None:
            raise NotFoundError(f"no officer {officer_id!r}")
        if row.custody != "server" or row.encrypted_private_key is None:
            raise PermissionDeniedError(
                f"officer {officer_id} holds their own key: prepare the record "
                "(prepare_*_record), sign it on the device and submit it (submit_signed_record)")
        return keys.decrypt_private_key(bytes(row.encrypted_private_key), self._kek, officer_id)

    # -- cases ---------------------------------------------------------------------------------

    def create_case(self, reference: str, title: str, agency_id: str, actor: str) -> Case:
        reference, title = reference.strip(), title.strip()
        if not reference or not title:
            raise InvalidRequestError("a case needs a reference and a title")
        self.agency(agency_id)
        case = Case(_new_id(), reference, title, agency_id, actor, self._clock())
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(tables.cases).values(
                    id=case.id, reference=reference, title=title, agency_id=agency_id,
                    created_by=actor, created_at=case.created_at))
        except IntegrityError as e:
            raise ConflictError(f"a case with reference {reference!r} already exists") from e
        return case

    def case(self, case_id: str) -> Case:
        with self.engine.connect() as conn:
            row = conn.execute(select(tables.cases).where(tables.cases.c.id == case_id)).first()
        if row is None:
            raise NotFoundError(f"no case {case_id!r}")
        return _case(row)

    def case_by_reference(self, reference: str) -> Case:
        with self.engine.connect() as conn:
            row = conn.execute(select(tables.cases).where(tables.cases.c.reference == reference)).first()
        if row is None:
            raise NotFoundError(f"no case with reference {reference!r}")
        return _case(row)

    def cases(self, agency_id: str | None = None, *, limit: int = 200) -> list[Case]:
        """Newest first; ``agency_id`` limits them to one agency (an officer sees only theirs)."""
        c = tables.cases.c
        stmt = select(tables.cases).order_by(c.created_at.desc()).limit(limit)
        if agency_id is not None:
            stmt = stmt.where(c.agency_id == agency_id)
        with self.engine.connect() as conn:
            return [_case(r) for r in conn.execute(stmt)]

    def case_evidence(self, case_id: str) -> list[Evidence]:
        e = tables.evidence.c
        with self.engine.connect() as conn:
            ids = conn.execute(select(e.id).where(e.case_id == case_id).order_by(e.log_index)).scalars().all()
        return [self.evidence(i) for i in ids]

    def case_timeline(self, case_id: str) -> list[TimelineItem]:
        """Case creation, notarizations, corrections, withdrawals and accesses, in time order."""
        case = self.case(case_id)
        items = [TimelineItem(case.created_at, "case_created", None, case.created_by,
                              f"case {case.reference} opened: {case.title}")]
        names: dict[str, str] = {}

        def who(officer_id: str) -> str:
            if officer_id not in names:
                o = self.officer(officer_id)
                names[officer_id] = f"{o.name} ({o.role})"
            return names[officer_id]

        for ev in self.case_evidence(case_id):
            what = ev.filename or ev.record.get("capture", {}).get("url") or ev.sha256_hex
            if ev.supersedes:
                items.append(TimelineItem(ev.notarized_at, "corrected", ev.id, who(ev.officer_id),
                                          f"{what} corrects {ev.supersedes}: {ev.reason}"))
            else:
                items.append(TimelineItem(ev.notarized_at, "notarized", ev.id, who(ev.officer_id),
                                          f"{what} notarized (sha256 {_short(ev.sha256_hex)})"))
            if ev.withdrawn_at is not None:
                items.append(TimelineItem(ev.withdrawn_at, "withdrawn", ev.id,
                                          who(ev.withdrawn_by) if ev.withdrawn_by else "",
                                          f"{what} withdrawn: {ev.withdrawal_reason}"))
            for c in self.custody(ev.id):
                if c.action in ("view", "download", "export"):
                    items.append(TimelineItem(c.at, "custody", ev.id, c.actor,
                                              f"{c.action}" + (f": {c.reason}" if c.reason else "")))
        return sorted(items, key=lambda i: i.at)

    # -- building records -------------------------------------------------------------------

    def _context(self, officer_id: str, case_id: str) -> tuple[Officer, Case, Agency]:
        officer = self.officer(officer_id)
        case = self.case(case_id)
        if officer.revoked_at is not None:
            raise PermissionDeniedError(
                f"officer {officer.name} ({officer_id}) was revoked at {_iso(officer.revoked_at)} "
                f"({officer.revocation_reason}) and can no longer notarize")
        if officer.agency_id != case.agency_id:
            raise PermissionDeniedError(
                f"officer {officer_id} belongs to agency {officer.agency_id}, case {case.reference} "
                f"to agency {case.agency_id}")
        return officer, case, self.agency(case.agency_id)

    def _put(self, chunks: Iterable[bytes], max_bytes: int | None) -> BlobRef:
        limit = self.max_upload_bytes if max_bytes is None else min(max_bytes, self.max_upload_bytes)
        try:
            return self.blobs.put(chunks, max_bytes=limit)
        except BlobTooLargeError as e:
            raise UploadTooLargeError(limit) from e

    def _stat(self, sha256_hex: Any, field: str) -> BlobRef:
        if not isinstance(sha256_hex, str) or not _HEX64.match(sha256_hex):
            raise InvalidEvidenceError(f"{field}: expected 64 lowercase hex digits")
        try:
            return self.blobs.stat(bytes.fromhex(sha256_hex))
        except BlobNotFoundError as e:
            raise InvalidEvidenceError(f"{field}: no stored content with sha256 {sha256_hex} "
                                       "(upload it with prepare_*_record first)") from e

    @staticmethod
    def _build_record(*, evidence_id: str, kind: str, case: Case, agency: Agency, officer: Officer,
                      content: BlobRef, media_type: str, filename: str | None,
                      metadata: Mapping[str, str], captured_at: datetime | None,
                      notarized_at: datetime, supersedes: Evidence | None, reason: str | None,
                      capture: dict[str, Any] | None) -> dict[str, Any]:
        record: dict[str, Any] = {
            "type": EVIDENCE_TYPE,
            "evidenceId": evidence_id,
            "kind": kind,
            "case": {"id": case.id, "reference": case.reference},
            "agency": {"id": agency.id, "code": agency.code, "name": agency.name,
                       "authorityId": agency.authority_id.hex()},
            "officer": {"id": officer.id, "name": officer.name, "role": officer.role,
                        "keyId": officer.key_id_hex},
            "content": {"sha256": content.sha256.hex(), "cid": content.cid,
                        "sizeBytes": content.size_bytes, "mediaType": media_type, "filename": filename},
            "metadata": {k: metadata[k] for k in METADATA_FIELDS if metadata.get(k) is not None},
            "capturedAt": _iso(captured_at),
            "notarizedAt": _iso(notarized_at),
            "supersedes": None if supersedes is None else {
                "evidenceId": supersedes.id, "logIndex": supersedes.log_index, "reason": reason},
        }
        if capture is not None:
            record["capture"] = capture
        return record

    def _file_record(self, officer_id: str, case_id: str, content: BlobRef, *, filename: str | None,
                     media_type: str, captured_at: datetime | None, metadata: Mapping[str, str | None],
                     supersedes: Evidence | None = None, reason: str | None = None,
                     capture: dict[str, Any] | None = None) -> dict[str, Any]:
        officer, case, agency = self._context(officer_id, case_id)
        if not media_type or "/" not in media_type:
            raise InvalidEvidenceError(f"media_type: expected a media type like image/jpeg, got {media_type!r}")
        for k, v in metadata.items():
            if v is not None and not isinstance(v, str):
                raise InvalidEvidenceError(f"{k}: expected text, got {type(v).__name__}")
        return self._build_record(
            evidence_id=_new_id(), kind="web" if capture is not None else "file", case=case,
            agency=agency, officer=officer, content=content, media_type=media_type,
            filename=filename, metadata={k: v for k, v in metadata.items() if v is not None},
            captured_at=_check_time(captured_at, "captured_at"), notarized_at=self._clock(),
            supersedes=supersedes, reason=reason, capture=capture)

    def prepare_file_record(self, officer_id: str, case_id: str, chunks: Iterable[bytes], *,
                            filename: str | None, media_type: str,
                            captured_at: datetime | None = None, device: str | None = None,
                            location: str | None = None, description: str | None = None,
                            max_bytes: int | None = None) -> dict[str, Any]:
        """Step one of client-side signing (and of every notarization): store the content
        (bounded) and return the unsigned evidence record."""
        self._context(officer_id, case_id)  # refuse before reading a large upload
        content = self._put(chunks, max_bytes)
        return self._file_record(officer_id, case_id, content, filename=filename, media_type=media_type,
                                 captured_at=captured_at,
                                 metadata={"device": device, "location": location, "description": description})

    def prepare_capture_record(self, officer_id: str, case_id: str, capture: Any) -> dict[str, Any]:
        """The unsigned record of a web capture (``notary.capture.WebCapture``): the WACZ archive
        is the main blob; every part is stored as its own blob and listed in the record."""
        self._context(officer_id, case_id)
        parts = list(capture.parts)
        for part in parts:
            if hashlib.sha256(part.data).digest() != bytes(part.sha256):
                raise ArchiveIntegrityError(part.name, "its bytes do not hash to the recorded sha256")
        try:
            from .capture import verify_wacz  # the capture module ships with its own dependencies
        except ImportError:  # pragma: no cover - capture not installed: the part digests were checked
            verify_wacz = None
        if verify_wacz is not None:
            verify_wacz(capture.archive)
        archive = self.blobs.put_bytes(capture.archive)
        listed = []
        for part in parts:
            ref = self.blobs.put_bytes(part.data)
            listed.append({"name": part.name, "mediaType": part.media_type, "sha256": ref.sha256.hex(),
                           "cid": ref.cid, "sizeBytes": ref.size_bytes})
        capture_section = {
            "url": capture.url, "finalUrl": capture.final_url, "httpStatus": int(capture.status),
            "parts": listed,
            "manifestSha256": _manifest_sha256(capture).hex(),
        }
        return self._file_record(officer_id, case_id, archive, filename=None, media_type=WACZ_MEDIA_TYPE,
                                 captured_at=capture.captured_at, metadata={}, capture=capture_section)

    def prepare_correction_record(self, evidence_id: str, officer_id: str, reason: str,
                                  chunks: Iterable[bytes] | None = None, *,
                                  filename: str | None = None, media_type: str | None = None,
                                  captured_at: datetime | None = None, device: str | None = None,
                                  location: str | None = None, description: str | None = None,
                                  max_bytes: int | None = None) -> dict[str, Any]:
        """The unsigned record that corrects ``evidence_id``: new content (``chunks``) or the
        same content with new metadata; arguments left ``None`` keep the old values."""
        old = self._correctable(evidence_id, reason)
        self._context(officer_id, old.case_id)
        prev = old.record
        if chunks is not None:
            content = self._put(chunks, max_bytes)
            capture = None
        else:
            content = BlobRef(old.sha256, old.cid, old.size_bytes)
            capture = prev.get("capture")
        meta = dict(prev.get("metadata", {}))
        for k, v in (("device", device), ("location", location), ("description", description)):
            if v is not None:
                meta[k] = v
        return self._file_record(
            officer_id, old.case_id, content,
            filename=filename if filename is not None else old.filename,
            media_type=media_type or old.media_type,
            captured_at=captured_at if captured_at is not None else old.captured_at,
            metadata=meta, supersedes=old, reason=reason, capture=capture)

    def prepare_withdrawal_record(self, evidence_id: str, officer_id: str, reason: str) -> dict[str, Any]:
        old = self._correctable(evidence_id, reason)
        officer, case, agency = self._context(officer_id, old.case_id)
        return {
            "type": WITHDRAWAL_TYPE,
            "withdrawalOf": {"evidenceId": old.id, "logIndex": old.log_index,
                             "sha256": old.sha256_hex},
            "case": {"id": case.id, "reference": case.reference},
            "agency": {"id": agency.id, "code": agency.code, "name": agency.name,
                       "authorityId": agency.authority_id.hex()},
            "officer": {"id": officer.id, "name": officer.name, "role": officer.role,
                        "keyId": officer.key_id_hex},
            "reason": reason,
            "withdrawnAt": _iso(self._clock()),
        }

    def _correctable(self, evidence_id: str, reason: str) -> Evidence:
        if not isinstance(reason, str) or not reason.strip():
            raise InvalidRequestError("a correction or withdrawal needs a reason")
        old = self.evidence(evidence_id)
        if old.status != "active":
            by = f" by {old.corrected_by}" if old.corrected_by else ""
            raise EvidenceStateError(f"evidence {evidence_id} is {old.status}{by}; only active evidence "
                                     "can be corrected or withdrawn")
        return old

    # -- notarizing ----------------------------------------------------------------------------

    def notarize_file(self, officer_id: str, case_id: str, chunks: Iterable[bytes], *,
                      filename: str | None, media_type: str, captured_at: datetime | None = None,
                      device: str | None = None, location: str | None = None,
                      description: str | None = None, max_bytes: int | None = None) -> Evidence:
        """Store, sign with the officer's server-held key, log and record a file in one call."""
        self._signing_key(officer_id)  # fail before reading the upload if the server cannot sign
        record = self.prepare_file_record(
            officer_id, case_id, chunks, filename=filename, media_type=media_type,
            captured_at=captured_at, device=device, location=location, description=description,
            max_bytes=max_bytes)
        return self.submit_signed_record(keys.sign_record(record, self._signing_key(officer_id)))

    def notarize_capture(self, officer_id: str, case_id: str, capture: Any) -> Evidence:
        self._signing_key(officer_id)
        record = self.prepare_capture_record(officer_id, case_id, capture)
        return self.submit_signed_record(keys.sign_record(record, self._signing_key(officer_id)))

    def correct(self, evidence_id: str, officer_id: str, reason: str,
                chunks: Iterable[bytes] | None = None, **changes: Any) -> Evidence:
        """A new signed record superseding ``evidence_id`` (which becomes ``corrected``)."""
        self._signing_key(officer_id)
        record = self.prepare_correction_record(evidence_id, officer_id, reason, chunks, **changes)
        return self.submit_signed_record(keys.sign_record(record, self._signing_key(officer_id)))

    def withdraw(self, evidence_id: str, officer_id: str, reason: str) -> Evidence:
        """A signed withdrawal record; the evidence becomes ``withdrawn`` (kept, not deleted)."""
        self._signing_key(officer_id)
        record = self.prepare_withdrawal_record(evidence_id, officer_id, reason)
        return self.submit_signed_record(keys.sign_record(record, self._signing_key(officer_id)))

    def submit_signed_record(self, record: dict[str, Any]) -> Evidence:
        """Step two: check a signed record (from ``prepare_*_record``) against the server's data
        and its signature, then log it and store it. Returns the new evidence (for a withdrawal:
        the withdrawn evidence)."""
        if not isinstance(record, dict):
            raise InvalidEvidenceError(f"a record is a JSON object, got {type(record).__name__}")
        kind = record.get("type")
        if kind == EVIDENCE_TYPE:
            officer, expected, parts = self._expected_evidence(record)
        elif kind == WITHDRAWAL_TYPE:
            officer, expected, parts = self._expected_withdrawal(record), None, ()
        else:
            raise InvalidEvidenceError(f"type: expected {EVIDENCE_TYPE!r} or {WITHDRAWAL_TYPE!r}, got {kind!r}")
        if expected is not None:
            where = _differs(expected, _unsigned(record), "record")
            if where:
                raise InvalidEvidenceError(f"{where}: does not match what the server holds for this evidence")
        try:
            keys.verify_record_signature(record, officer.public_key)
        except SignatureError as e:
            raise SignatureError(f"officer {officer.id}: {e}") from e
        try:
            self.store.prepare(record)  # size and canonical form, before anything is written
        except RecordTooLargeError as e:
            raise InvalidEvidenceError(f"record: {e}") from e
        if kind == WITHDRAWAL_TYPE:
            return self._commit_withdrawal(record, officer)
        return self._commit_evidence(record, officer, parts)

    def _expected_evidence(self, record: dict[str, Any]) -> tuple[Officer, dict[str, Any], tuple[EvidencePart, ...]]:
        evidence_id = record.get("evidenceId")
        if not isinstance(evidence_id, str) or not _HEX32.match(evidence_id):
            raise InvalidEvidenceError("record.evidenceId: expected 32 lowercase hex digits")
        if self._evidence_row(evidence_id) is not None:
            raise ConflictError(f"evidence {evidence_id} is already notarized")
        officer_id = (record.get("officer") or {}).get("id")
        case_id = (record.get("case") or {}).get("id")
        if not isinstance(officer_id, str) or not isinstance(case_id, str):
            raise InvalidEvidenceError("record.officer.id and record.case.id are required")
        officer, case, agency = self._context(officer_id, case_id)
        body = record.get("content") or {}
        content = self._stat(body.get("sha256"), "record.content.sha256")
        notarized_at = _parse_iso(record.get("notarizedAt"), "record.notarizedAt")
        if notarized_at is None:
            raise InvalidEvidenceError("record.notarizedAt: required")
        now = self._clock()
        if notarized_at > now + timedelta(seconds=60):
            raise InvalidEvidenceError("record.notarizedAt: is in the future")
        if now - notarized_at > timedelta(seconds=self.prepare_ttl_s):
            raise InvalidEvidenceError(
                f"record.notarizedAt: the record was prepared more than {self.prepare_ttl_s:g} s ago; "
                "prepare it again")
        supersedes, reason = None, None
        if record.get("supersedes") is not None:
            sup = record["supersedes"]
            if not isinstance(sup, dict):
                raise InvalidEvidenceError("record.supersedes: expected an object")
            reason = sup.get("reason")
            supersedes = self._correctable(str(sup.get("evidenceId")), reason if isinstance(reason, str) else "")
            if supersedes.case_id != case.id:
                raise InvalidEvidenceError("record.supersedes: the corrected evidence belongs to another case")
        metadata = record.get("metadata")
        if (not isinstance(metadata, dict) or set(metadata) - set(METADATA_FIELDS)
                or not all(isinstance(v, str) for v in metadata.values())):
            raise InvalidEvidenceError(f"record.metadata: an object with some of {', '.join(METADATA_FIELDS)}")
        capture = record.get("capture")
        parts: tuple[EvidencePart, ...] = ()
        expected_capture = None
        if record.get("kind") == "web":
            if not isinstance(capture, dict) or not isinstance(capture.get("parts"), list):
                raise InvalidEvidenceError("record.capture: a web capture lists its parts")
            listed = []
            for i, p in enumerate(capture["parts"]):
                if not isinstance(p, dict):
                    raise InvalidEvidenceError(f"record.capture.parts[{i}]: expected an object")
                ref = self._stat(p.get("sha256"), f"record.capture.parts[{i}].sha256")
                listed.append({"name": p.get("name"), "mediaType": p.get("mediaType"),
                               "sha256": ref.sha256.hex(), "cid": ref.cid, "sizeBytes": ref.size_bytes})
                parts += (EvidencePart(str(p.get("name")), str(p.get("mediaType")), ref.sha256, ref.cid,
                                       ref.size_bytes),)
            expected_capture = {"url": capture.get("url"), "finalUrl": capture.get("finalUrl"),
                                "httpStatus": capture.get("httpStatus"), "parts": listed,
                                "manifestSha256": capture.get("manifestSha256")}
            if not isinstance(capture.get("url"), str) or not isinstance(capture.get("httpStatus"), int):
                raise InvalidEvidenceError("record.capture: url and httpStatus are required")
        media_type = body.get("mediaType")
        if not isinstance(media_type, str) or "/" not in media_type:
            raise InvalidEvidenceError("record.content.mediaType: expected a media type")
        filename = body.get("filename")
        if filename is not None and not isinstance(filename, str):
            raise InvalidEvidenceError("record.content.filename: expected text or null")
        expected = self._build_record(
            evidence_id=evidence_id, kind="web" if expected_capture is not None else "file", case=case,
            agency=agency, officer=officer, content=content, media_type=media_type, filename=filename,
            metadata=metadata, captured_at=_parse_iso(record.get("capturedAt"), "record.capturedAt"),
            notarized_at=notarized_at, supersedes=supersedes, reason=reason, capture=expected_capture)
        # Times round-trip through ISO text: compare the record's own spelling.
        expected["capturedAt"], expected["notarizedAt"] = record.get("capturedAt"), record.get("notarizedAt")
        return officer, expected, parts

    def _expected_withdrawal(self, record: dict[str, Any]) -> Officer:
        of = record.get("withdrawalOf") or {}
        officer_id = (record.get("officer") or {}).get("id")
        reason = record.get("reason")
        old = self._correctable(str(of.get("evidenceId")), reason if isinstance(reason, str) else "")
        officer, case, agency = self._context(str(officer_id), old.case_id)
        at = _parse_iso(record.get("withdrawnAt"), "record.withdrawnAt")
        if at is None or abs((self._clock() - at).total_seconds()) > self.prepare_ttl_s:
            raise InvalidEvidenceError("record.withdrawnAt: missing, or too far from now; prepare it again")
        expected = {
            "type": WITHDRAWAL_TYPE,
            "withdrawalOf": {"evidenceId": old.id, "logIndex": old.log_index, "sha256": old.sha256_hex},
            "case": {"id": case.id, "reference": case.reference},
            "agency": {"id": agency.id, "code": agency.code, "name": agency.name,
                       "authorityId": agency.authority_id.hex()},
            "officer": {"id": officer.id, "name": officer.name, "role": officer.role,
                        "keyId": officer.key_id_hex},
            "reason": reason,
            "withdrawnAt": record.get("withdrawnAt"),
        }
        where = _differs(expected, _unsigned(record), "record")
        if where:
            raise InvalidEvidenceError(f"{where}: does not match what the server holds for this evidence")
        return officer

    def _commit_evidence(self, record: dict[str, Any], officer: Officer,
                         parts: tuple[EvidencePart, ...]) -> Evidence:
        entry = self.store.append(EVIDENCE_LOG, record)
        content = record["content"]
        sup = record.get("supersedes")
        try:
            with self.engine.begin() as conn:
                if sup is not None:
                    res = conn.execute(update(tables.evidence).where(
                        tables.evidence.c.id == sup["evidenceId"], tables.evidence.c.status == "active")
                        .values(status="corrected"))
                    if res.rowcount != 1:
                        raise EvidenceStateError(f"evidence {sup['evidenceId']} is no longer active")
                conn.execute(insert(tables.evidence).values(
                    id=record["evidenceId"], case_id=record["case"]["id"], kind=record["kind"],
                    log_index=entry.index, sha256=bytes.fromhex(content["sha256"]), cid=content["cid"],
                    size_bytes=content["sizeBytes"], media_type=content["mediaType"],
                    filename=content["filename"], record=entry.record_canonical.decode(),  # type: ignore[union-attr]
                    officer_id=officer.id,
                    captured_at=_parse_iso(record["capturedAt"], "capturedAt"),
                    notarized_at=_parse_iso(record["notarizedAt"], "notarizedAt"),
                    supersedes=None if sup is None else sup["evidenceId"],
                    reason=None if sup is None else sup["reason"], status="active"))
                if parts:
                    conn.execute(insert(tables.evidence_parts), [
                        dict(evidence_id=record["evidenceId"], position=i, name=p.name,
                             media_type=p.media_type, sha256=p.sha256, cid=p.cid, size_bytes=p.size_bytes)
                        for i, p in enumerate(parts)])
        except (SQLAlchemyError, EvidenceStateError) as e:
            raise NotaryError(
                f"evidence record {record['evidenceId']} was logged at index {entry.index} of the "
                f"{EVIDENCE_LOG!r} log but could not be stored ({e}); nothing else was changed") from e
        action = "correction" if sup is not None else "notarize"
        self.record_custody(record["evidenceId"], f"officer:{officer.id}", action,
                            sup["reason"] if sup is not None else None)
        return self.evidence(record["evidenceId"])

    def _commit_withdrawal(self, record: dict[str, Any], officer: Officer) -> Evidence:
        entry = self.store.append(EVIDENCE_LOG, record)
        evidence_id = record["withdrawalOf"]["evidenceId"]
        try:
            with self.engine.begin() as conn:
                res = conn.execute(update(tables.evidence).where(
                    tables.evidence.c.id == evidence_id, tables.evidence.c.status == "active").values(
                    status="withdrawn", withdrawal_log_index=entry.index,
                    withdrawal_record=entry.record_canonical.decode(),  # type: ignore[union-attr]
                    withdrawn_at=_parse_iso(record["withdrawnAt"], "withdrawnAt"),
                    withdrawn_by=officer.id, withdrawal_reason=record["reason"]))
                if res.rowcount != 1:
                    raise EvidenceStateError(f"evidence {evidence_id} is no longer active")
        except (SQLAlchemyError, EvidenceStateError) as e:
            raise NotaryError(
                f"withdrawal of {evidence_id} was logged at index {entry.index} of the "
                f"{EVIDENCE_LOG!r} log but could not be stored ({e})") from e
        self.record_custody(evidence_id, f"officer:{officer.id}", "withdrawal", record["reason"])
        return self.evidence(evidence_id)

    # -- reading evidence ---------------------------------------------------------------------

    def _evidence_row(self, evidence_id: str):  # type: ignore[no-untyped-def]
        with self.engine.connect() as conn:
            return conn.execute(select(tables.evidence).where(tables.evidence.c.id == evidence_id)).first()

    def evidence(self, evidence_id: str) -> Evidence:
        row = self._evidence_row(evidence_id)
        if row is None:
            raise NotFoundError(f"no evidence {evidence_id!r}")
        p, e = tables.evidence_parts.c, tables.evidence.c
        with self.engine.connect() as conn:
            parts = conn.execute(select(tables.evidence_parts).where(p.evidence_id == evidence_id)
                                 .order_by(p.position)).all()
            corrected_by = conn.execute(select(e.id).where(e.supersedes == evidence_id)).scalar()
        return _evidence(row, parts, corrected_by)

    def evidence_at(self, log_index: int) -> Evidence:
        """The evidence whose record (or withdrawal record) is entry ``log_index`` of the log."""
        e = tables.evidence.c
        with self.engine.connect() as conn:
            found = conn.execute(select(e.id).where(
                or_(e.log_index == log_index, e.withdrawal_log_index == log_index))).scalar()
        if found is None:
            raise NotFoundError(f"no evidence at index {log_index} of the {EVIDENCE_LOG!r} log")
        return self.evidence(found)

    def find_by_sha256(self, sha256: bytes) -> list[tuple[Evidence, str]]:
        """Evidence whose content, or one of whose parts, has this SHA-256: (evidence, matched)."""
        e, p = tables.evidence.c, tables.evidence_parts.c
        with self.engine.connect() as conn:
            main = conn.execute(select(e.id).where(e.sha256 == sha256).order_by(e.log_index)).scalars().all()
            parts = conn.execute(select(p.evidence_id, p.name).where(p.sha256 == sha256)).all()
        found = [(self.evidence(i), "content") for i in main]
        found += [(self.evidence(i), f"part:{name}") for i, name in parts]
        return found

    def open_evidence(self, evidence_id: str, actor: str, reason: str | None,
                      action: str = "download", part: str | None = None) -> Iterator[bytes]:
        """The content (or one part) as verified chunks; the access is recorded in the custody
        log first, so even an interrupted read leaves its trace."""
        if action not in ("view", "download", "export"):
            raise InvalidRequestError(f"reading evidence is a view, download or export, not {action!r}")
        ev = self.evidence(evidence_id)
        sha = ev.sha256
        if part is not None:
            match = [p for p in ev.parts if p.name == part]
            if not match:
                raise NotFoundError(f"evidence {evidence_id} has no part {part!r}")
            sha = match[0].sha256
        self.record_custody(evidence_id, actor, action, reason)
        return self.blobs.open(sha)

    # -- custody -------------------------------------------------------------------------------

    def record_custody(self, evidence_id: str, actor: str, action: str, reason: str | None) -> CustodyEvent:
        """Append {who, what, when, why, evidence id and log index} to the custody log and keep it."""
        if action not in CUSTODY_ACTIONS:
            raise InvalidRequestError(f"unknown custody action {action!r} (one of {', '.join(CUSTODY_ACTIONS)})")
        if not actor:
            raise InvalidRequestError("a custody event needs an actor")
        ev = self.evidence(evidence_id)
        event_id, at = _new_id(), self._clock()
        record = {"type": CUSTODY_TYPE, "eventId": event_id, "evidenceId": evidence_id,
                  "evidenceLogIndex": ev.log_index, "who": actor, "what": action,
                  "when": _iso(at), "why": reason}
        entry = self.store.append(CUSTODY_LOG, record)
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(tables.custody_events).values(
                    id=event_id, evidence_id=evidence_id, actor=actor, action=action, reason=reason,
                    at=at, log_index=entry.index))
        except SQLAlchemyError as e:
            raise NotaryError(f"custody event was logged at index {entry.index} of the {CUSTODY_LOG!r} "
                              f"log but could not be stored: {e}") from e
        return CustodyEvent(event_id, evidence_id, actor, action, reason, at, entry.index)

    def custody(self, evidence_id: str) -> list[CustodyEvent]:
        c = tables.custody_events.c
        with self.engine.connect() as conn:
            rows = conn.execute(select(tables.custody_events).where(c.evidence_id == evidence_id)
                                .order_by(c.log_index)).all()
        return [CustodyEvent(r.id, r.evidence_id, r.actor, r.action, r.reason, _aware(r.at), int(r.log_index))
                for r in rows]  # type: ignore[arg-type]

    # -- verification ---------------------------------------------------------------------------

    def verify(self, *, data_chunks: Iterable[bytes] | None = None, sha256: bytes | None = None,
               bundle: dict[str, Any] | str | bytes | None = None, chain: Any = None,
               bundle_source: Callable[[int], dict[str, Any]] | None = None) -> Verdict:
        """Verify a file (its bytes or its SHA-256), a proof bundle, or both.

        A file alone: find the evidence by content or part hash; with ``bundle_source`` (log index
        -> bundle) its proof is verified too. A bundle alone: verify it (``chain`` checks the
        anchor on chain), then find the evidence at its leaf. Both: also check the file is the
        content, or a part, of the record the bundle commits to. The officer's signature is
        re-checked; with an authority, so is the key's authorisation at anchoring time."""
        reasons: list[str] = []
        checks: list[str] = []
        notes: list[str] = []
        file_sha: bytes | None = None
        spool: IO[bytes] | None = None
        if data_chunks is not None:
            # Kept (memory, then disk) so an altered archive can be explained part by part.
            spool = tempfile.SpooledTemporaryFile(max_size=8 << 20)
            h = hashlib.sha256()
            for chunk in data_chunks:
                h.update(chunk)
                spool.write(chunk)
            file_sha = h.digest()
            if sha256 is not None and bytes(sha256) != file_sha:
                reasons.append(f"file: its sha256 {_short(file_sha.hex())} is not the given {_short(bytes(sha256).hex())}")
        elif sha256 is not None:
            file_sha = bytes(sha256)
        if file_sha is None and bundle is None:
            raise InvalidRequestError("verify needs a file, a sha256 or a proof bundle")

        ev: Evidence | None = None
        matched: str | None = None
        record: dict[str, Any] | None = None
        report = None
        bundle_index: int | None = None

        if bundle is not None:
            report, record, bundle_index = self._check_bundle(bundle, chain, reasons, checks, notes)
            if bundle_index is not None:
                try:
                    ev = self.evidence_at(bundle_index)
                except NotFoundError:
                    notes.append(f"the bundle's record (log index {bundle_index}) is not evidence held here")
                else:
                    self._check_logged_digest(bundle_index, report, reasons, checks)
            if record is None and ev is not None:
                record = ev.record if ev.log_index == bundle_index else json.loads(ev.withdrawal_record_json or "null")
            if record is not None and record.get("type") == WITHDRAWAL_TYPE:
                notes.append("the bundle proves a withdrawal record")
                if ev is not None:
                    record = ev.record
            if file_sha is not None:
                if record is None:
                    reasons.append("file: the bundle holds no record and the record is not held here, "
                                   "so the file cannot be matched")
                else:
                    matched = _match(record, file_sha)
                    if matched is None:
                        reasons.append(f"file: sha256 {_short(file_sha.hex())} is not the notarized "
                                       f"{_short(str(record.get('content', {}).get('sha256')))}"
                                       + (" nor any part of the capture" if record.get("capture") else ""))
                    else:
                        checks.append(f"file: matches the record's {matched}")
        elif file_sha is not None:
            found = self.find_by_sha256(file_sha)
            if not found:
                reasons.append(f"file: sha256 {_short(file_sha.hex())} is not the content of any notarized evidence")
            else:
                ev, matched = next(((e, m) for e, m in reversed(found) if e.status == "active"), found[-1])
                if len(found) > 1:
                    notes.append(f"{len(found)} notarized records hold this file; showing {ev.id}")
                checks.append(f"file: matches the {matched} of evidence {ev.id}")
                record = ev.record
                self._check_logged_digest(ev.log_index, None, reasons, checks)
                if bundle_source is not None:
                    try:
                        b = bundle_source(ev.log_index)
                    except NotAnchoredError as e:
                        notes.append(f"not anchored yet: {e}")
                    else:
                        report, _, _ = self._check_bundle(b, chain, reasons, checks, notes)
                        if report is not None and report.leaf_index != ev.log_index:
                            reasons.append(f"bundle: proves leaf {report.leaf_index}, not the evidence's {ev.log_index}")

        anchored_at = report.anchored_at if report is not None else None
        officer: Officer | None = None
        signature_ok: bool | None = None
        authorized: bool | None = None
        if record is not None:
            officer_id = (record.get("officer") or {}).get("id")
            try:
                officer = self.officer(str(officer_id))
            except NotFoundError:
                notes.append(f"signer {officer_id} is not known here: the signature was not checked")
            else:
                try:
                    keys.verify_record_signature(record, officer.public_key)
                    signature_ok = True
                    checks.append(f"signature: by officer {officer.name}, key {_short(officer.key_id_hex)}")
                except SignatureError as e:
                    signature_ok = False
                    reasons.append(f"signature: {e}")
                authorized = self._check_authorized(officer, anchored_at, record, reasons, checks, notes)
        if ev is None and record is None and not reasons:
            reasons.append("nothing to verify against")
        if spool is not None:
            if matched is None and file_sha is not None:
                reasons += self._explain_archive(spool, record)
            spool.close()

        return Verdict(
            ok=not reasons,
            evidence_id=ev.id if ev else (record or {}).get("evidenceId"),
            kind=ev.kind if ev else (record or {}).get("kind"),
            case_reference=(record or {}).get("case", {}).get("reference"),
            agency_name=(record or {}).get("agency", {}).get("name"),
            officer_id=officer.id if officer else (record or {}).get("officer", {}).get("id"),
            officer_name=officer.name if officer else (record or {}).get("officer", {}).get("name"),
            key_id_hex=(record or {}).get("officer", {}).get("keyId"),
            matched=matched,
            file_sha256_hex=file_sha.hex() if file_sha else None,
            content_sha256_hex=(record or {}).get("content", {}).get("sha256"),
            log_index=ev.log_index if ev else bundle_index,
            captured_at=_parse_iso((record or {}).get("capturedAt"), "capturedAt") if record else None,
            notarized_at=_parse_iso((record or {}).get("notarizedAt"), "notarizedAt") if record else None,
            anchored_at=anchored_at,
            chain_checked=bool(report is not None and report.chain_checked),
            signature_ok=signature_ok, authorized=authorized,
            status=ev.status if ev else None,
            corrected_by=ev.corrected_by if ev else None,
            withdrawn_at=ev.withdrawn_at if ev else None,
            withdrawal_reason=ev.withdrawal_reason if ev else None,
            checks=tuple(checks), reasons=tuple(reasons), notes=tuple(notes))

    def _explain_archive(self, provided: IO[bytes], record: dict[str, Any] | None) -> list[str]:
        """For a zip that is not the notarized file: name each member that differs from the
        notarized archive (found from the record, or from any member that is still intact)."""
        provided.seek(0)
        if not zipfile.is_zipfile(provided):
            return []
        provided.seek(0)
        try:
            with zipfile.ZipFile(provided) as z:
                members = {i.filename: _zip_member_sha256(z, i.filename) for i in z.infolist() if not i.is_dir()}
        except (zipfile.BadZipFile, OSError, EOFError) as e:
            return [f"archive: not a readable zip ({e})"]
        original_sha = None
        if record is not None and record.get("capture"):
            original_sha = bytes.fromhex(record["content"]["sha256"])
        else:
            for sha in filter(None, members.values()):
                hits = [e for e, _ in self.find_by_sha256(sha) if e.kind == "web"]
                if hits:
                    original_sha = hits[-1].sha256
                    break
        if original_sha is None or not self.blobs.exists(original_sha):
            return []
        with tempfile.SpooledTemporaryFile(max_size=8 << 20) as original:
            for chunk in self.blobs.open(original_sha):
                original.write(chunk)
            original.seek(0)
            with zipfile.ZipFile(original) as z:
                notarized = {i.filename: _zip_member_sha256(z, i.filename) for i in z.infolist() if not i.is_dir()}
        out = []
        for name, sha in notarized.items():
            if name not in members:
                out.append(f"archive part {name}: missing from the file")
            elif members[name] is None:
                out.append(f"archive part {name}: altered (its zip CRC-32 no longer matches)")
            elif members[name] != sha:
                out.append(f"archive part {name}: sha256 {_short(members[name].hex())} is not the notarized "
                           f"{_short(sha.hex())}")
        out += [f"archive part {name}: not in the notarized archive" for name in members if name not in notarized]
        return out

    def _check_bundle(self, bundle: Any, chain: Any, reasons: list[str], checks: list[str],
                      notes: list[str]) -> tuple[Any, dict[str, Any] | None, int | None]:
        try:
            report = verify_bundle(bundle, chain=chain, trusted_keys=self.trusted_log_keys)
        except VerificationError as e:
            reasons.append(f"bundle: {e}")
            return None, None, None
        except LedgerError as e:
            reasons.append(f"bundle: {e}")
            return None, None, None
        checks.extend(f"bundle: {c.name}: {c.detail}" for c in report.checks)
        if not report.chain_checked:
            notes.append("the anchor was not checked on chain (no chain given)")
        if report.log_name != EVIDENCE_LOG:
            reasons.append(f"bundle: log.name: proves an entry of the {report.log_name!r} log, not {EVIDENCE_LOG!r}")
            return report, None, None
        doc = bundle if isinstance(bundle, dict) else json.loads(bundle)
        record = None
        text = doc.get("record", {}).get("canonical")
        if text is not None:
            record = json.loads(text)  # verify_bundle checked it hashes to the committed digest
        return report, record, report.leaf_index

    def _check_logged_digest(self, index: int, report: Any, reasons: list[str], checks: list[str]) -> None:
        """The record held here is the one logged at ``index`` (and the one the bundle commits to)."""
        try:
            entry = self.store.entry(EVIDENCE_LOG, index)
        except EntryNotFoundError:
            reasons.append(f"log: no entry {index} in the {EVIDENCE_LOG!r} log")
            return
        ev = self.evidence_at(index)
        held = ev.record_json if ev.log_index == index else ev.withdrawal_record_json
        if held is None or canonical.record_digest(canonical.canonicalize(json.loads(held))) != entry.record_digest:
            reasons.append(f"record: the record held for evidence {ev.id} does not hash to log entry {index}")
        elif report is not None and report.record_digest != entry.record_digest:
            reasons.append(f"bundle: record.digest is not the digest of log entry {index}")
        else:
            checks.append(f"record: the record held here is entry {index} of the {EVIDENCE_LOG!r} log")

    def _check_authorized(self, officer: Officer, anchored_at: datetime | None, record: dict[str, Any],
                          reasons: list[str], checks: list[str], notes: list[str]) -> bool | None:
        if self._authority is None:
            return None
        at = anchored_at
        if at is None:
            # The chain judges keys by block time; the only time both sides agree on is the anchor's.
            notes.append("not anchored (or no bundle): the key's on-chain authorisation, judged at "
                         "the anchoring time, was not checked")
            return None
        try:
            ok = self._authority().was_authorized(officer.key_id, ROLES[officer.role], int(at.timestamp()))
        except ChainError as e:
            notes.append(f"authority: cannot ask the chain: {e}")
            return None
        if ok:
            checks.append(f"authority: key {_short(officer.key_id_hex)} held role {officer.role} at {_iso(at)}")
        else:
            reasons.append(f"authority: key {_short(officer.key_id_hex)} was not authorised for role "
                           f"{officer.role} at {_iso(at)} (unknown, revoked, expired or agency inactive)")
        return ok


def check_file_against_record(record: dict[str, Any], path: Path) -> tuple[str | None, list[str]]:
    """Offline: is the file at ``path`` the record's content, or one of its capture parts?

    Returns (what matched, reasons it did not). For a capture archive that is not the notarized
    one, each part the record lists is compared with the archive's member of that name, so the
    reasons name the altered part."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while data := f.read(1 << 20):
            h.update(data)
    matched = _match(record, h.digest())
    if matched is not None:
        return matched, []
    reasons = [f"file: sha256 {_short(h.hexdigest())} is not the notarized "
               f"{_short(str((record.get('content') or {}).get('sha256')))}"]
    parts = (record.get("capture") or {}).get("parts", [])
    if parts and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            for p in parts:
                name = p.get("name")
                if name not in names:
                    reasons.append(f"archive part {name}: missing from the file")
                    continue
                got = _zip_member_sha256(z, name)
                if got is None:
                    reasons.append(f"archive part {name}: altered (its zip CRC-32 no longer matches)")
                elif got.hex() != p.get("sha256"):
                    reasons.append(f"archive part {name}: sha256 {_short(got.hex())} is not the notarized "
                                   f"{_short(str(p.get('sha256')))}")
    return None, reasons


def _zip_member_sha256(z: zipfile.ZipFile, name: str) -> bytes | None:
    """The member's SHA-256, or None when zip itself says it was altered (CRC-32, bad data)."""
    h = hashlib.sha256()
    try:
        with z.open(name) as f:
            while data := f.read(1 << 20):
                h.update(data)
    except (zipfile.BadZipFile, zlib.error, EOFError):
        return None
    return h.digest()


def _match(record: dict[str, Any], file_sha: bytes) -> str | None:
    if (record.get("content") or {}).get("sha256") == file_sha.hex():
        return "content"
    for p in (record.get("capture") or {}).get("parts", []):
        if p.get("sha256") == file_sha.hex():
            return f"part:{p.get('name')}"
    return None


def _manifest_sha256(capture: Any) -> bytes:
    """The digest of the capture manifest as archived (its part), else of its canonical JSON."""
    for part in capture.parts:
        if part.name.endswith("manifest.json"):
            return bytes(part.sha256)
    return hashlib.sha256(canonical.canonicalize(capture.manifest)).digest()


def _member_id(officer_id: str) -> bytes:
    """Opaque on-chain holder id: no personal data on chain."""
    return hashlib.sha256(b"evidence-ledger/officer/" + officer_id.encode()).digest()


def _agency(r: Any) -> Agency:
    return Agency(r.id, r.code, r.name, r.kind, bytes(r.authority_id), _aware(r.created_at))  # type: ignore[arg-type]


def _officer(r: Any) -> Officer:
    return Officer(r.id, r.agency_id, r.name, r.role, bytes(r.public_key), bytes(r.key_id), r.custody,
                   _aware(r.created_at), _aware(r.revoked_at), r.revocation_reason)  # type: ignore[arg-type]


def _case(r: Any) -> Case:
    return Case(r.id, r.reference, r.title, r.agency_id, r.created_by, _aware(r.created_at))  # type: ignore[arg-type]


def _evidence(r: Any, parts: Sequence[Any], corrected_by: str | None) -> Evidence:
    return Evidence(
        id=r.id, case_id=r.case_id, kind=r.kind, log_index=int(r.log_index), sha256=bytes(r.sha256),
        cid=r.cid, size_bytes=int(r.size_bytes), media_type=r.media_type, filename=r.filename,
        record_json=r.record, officer_id=r.officer_id, captured_at=_aware(r.captured_at),
        notarized_at=_aware(r.notarized_at), supersedes=r.supersedes, reason=r.reason,  # type: ignore[arg-type]
        status=r.status,
        parts=tuple(EvidencePart(p.name, p.media_type, bytes(p.sha256), p.cid, int(p.size_bytes)) for p in parts),
        corrected_by=corrected_by,
        withdrawal_log_index=None if r.withdrawal_log_index is None else int(r.withdrawal_log_index),
        withdrawal_record_json=r.withdrawal_record,
        withdrawn_at=_aware(r.withdrawn_at), withdrawn_by=r.withdrawn_by, withdrawal_reason=r.withdrawal_reason)
