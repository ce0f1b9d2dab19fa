"""The notary service end to end: officers and keys, notarization, corrections, custody, verification."""

from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from evidence_ledger.ledger.bundle import verify_bundle
from evidence_ledger.notary import keys, tables
from evidence_ledger.notary.errors import (
    ArchiveIntegrityError,
    EvidenceStateError,
    InvalidEvidenceError,
    PermissionDeniedError,
    SignatureError,
    UploadTooLargeError,
)

from evidence_ledger.notary.service import Notary

from .conftest import World, make_world

PHOTO = b"\xff\xd8\xff\xe0" + b"JPEG photo of a counterfeit handbag" * 3000  # ~100 KB, several chunks


def chunks(data: bytes, size: int = 7000):  # type: ignore[no-untyped-def]
    for i in range(0, len(data), size):
        yield data[i:i + size]


def setup_case(w: World, *, client_key: bytes | None = None):  # type: ignore[no-untyped-def]
    code = f"91440300-{uuid.uuid4().hex[:8]}"
    agency = w.notary.register_agency(code, "Shenzhen Market Supervision Bureau", "market_regulation")
    officer = w.notary.register_officer(agency.id, "Li Wei", "officer", client_key)
    case = w.notary.create_case(f"SZ-2026-{uuid.uuid4().hex[:6]}", "Counterfeit handbags on a live stream",
                                agency.id, actor=f"officer:{officer.id}")
    return agency, officer, case


def notarize_photo(w: World, officer, case, data: bytes = PHOTO):  # type: ignore[no-untyped-def]
    return w.notary.notarize_file(
        officer.id, case.id, chunks(data), filename="handbag.jpg", media_type="image/jpeg",
        captured_at=datetime(2026, 3, 1, 9, 30, tzinfo=UTC), device="Huawei P60, IMEI 86...",
        location="22.54N 114.06E", description="Stall 14, Luohu market", max_bytes=1 << 20)


def count(w: World, table) -> int:  # type: ignore[no-untyped-def]
    with w.notary.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


# -- officers, keys, signing --------------------------------------------------------------------

def test_server_key_is_encrypted_and_registered_on_chain(world: World) -> None:
    agency, officer, case = setup_case(world)
    assert officer.custody == "server" and officer.key_id == hashlib.sha256(officer.public_key).digest()
    with world.notary.engine.connect() as conn:
        stored = conn.execute(select(tables.officers.c.encrypted_private_key)).scalar_one()
    assert stored and len(stored) == 1 + 12 + 32 + 16
    on_chain = world.chain.get_key(officer.key_id)
    assert on_chain.agency_id == agency.authority_id and on_chain.role == 0
    assert on_chain.member_id != officer.id.encode()  # opaque: no personal data on chain
    assert world.chain.get_agency(agency.authority_id).admin == world.chain.address
    assert world.kek.hex() not in repr(world.notary) and str(world.kek) not in repr(world.notary)


def test_file_notarization_end_to_end_with_bundle(world: World) -> None:
    _, officer, case = setup_case(world)
    ev = notarize_photo(world, officer, case)
    assert ev.status == "active" and ev.kind == "file" and ev.size_bytes == len(PHOTO)
    assert ev.sha256 == hashlib.sha256(PHOTO).digest()
    assert world.blobs.get_bytes(ev.sha256) == PHOTO
    rec = ev.record
    assert rec["content"]["sha256"] == ev.sha256_hex and rec["content"]["cid"] == ev.cid
    assert rec["officer"]["keyId"] == officer.key_id_hex and rec["case"]["reference"] == case.reference
    keys.verify_record_signature(rec, officer.public_key)
    entry = world.store.entry("evidence", ev.log_index)
    assert entry.record_canonical.decode() == ev.record_json

    world.anchor()
    bundle = world.bundle("evidence", ev.log_index)
    report = verify_bundle(bundle, chain=world.chain, record=rec)
    assert report.leaf_index == ev.log_index

    v = world.notary.verify(data_chunks=chunks(PHOTO), bundle_source=world.bundle_source, chain=world.chain)
    assert v.ok, v.reasons
    assert (v.evidence_id, v.matched, v.case_reference) == (ev.id, "content", case.reference)
    assert v.agency_name == "Shenzhen Market Supervision Bureau" and v.officer_name == "Li Wei"
    assert v.signature_ok and v.chain_checked and v.authorized is True
    assert v.anchored_at is not None and v.captured_at == datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


def test_client_key_two_step_signing(world: World) -> None:
    device_key = keys.generate_private_key()
    _, officer, case = setup_case(world, client_key=keys.public_key_bytes(device_key))
    assert officer.custody == "client"
    with pytest.raises(PermissionDeniedError, match="holds their own key"):
        notarize_photo(world, officer, case)
    assert count(world, tables.evidence) == 0

    unsigned = world.notary.prepare_file_record(officer.id, case.id, chunks(PHOTO), filename="a.jpg",
                                                media_type="image/jpeg", device="phone")
    assert "signature" not in unsigned
    # On the device: sign the exact record received (e.g. as JSON over HTTP).
    signed = keys.sign_record(json.loads(json.dumps(unsigned)), device_key)
    ev = world.notary.submit_signed_record(signed)
    assert ev.id == unsigned["evidenceId"] and ev.officer_id == officer.id
    assert world.notary.verify(sha256=hashlib.sha256(PHOTO).digest()).ok
    with pytest.raises(Exception, match="already notarized"):
        world.notary.submit_signed_record(signed)


def test_wrong_signature_or_altered_record_is_rejected(world: World) -> None:
    device_key = keys.generate_private_key()
    _, officer, case = setup_case(world, client_key=keys.public_key_bytes(device_key))
    unsigned = world.notary.prepare_file_record(officer.id, case.id, [PHOTO], filename="a.jpg",
                                                media_type="image/jpeg")
    with pytest.raises(SignatureError, match="not signed"):
        world.notary.submit_signed_record(unsigned)
    with pytest.raises(SignatureError, match=r"signature\.keyId"):
        world.notary.submit_signed_record(keys.sign_record(unsigned, keys.generate_private_key()))
    signed = keys.sign_record(unsigned, device_key)
    tampered = copy.deepcopy(signed)
    tampered["metadata"]["description"] = "added after signing"
    with pytest.raises(SignatureError, match=r"signature\.value: does not verify"):
        world.notary.submit_signed_record(tampered)
    # A record the server did not prepare that way: named by path, even if signed.
    lying = keys.sign_record({**unsigned, "content": {**unsigned["content"], "sizeBytes": 1}}, device_key)
    with pytest.raises(InvalidEvidenceError, match=r"record\.content\.sizeBytes"):
        world.notary.submit_signed_record(lying)
    stale = keys.sign_record({**unsigned, "notarizedAt": "2020-01-01T00:00:00.000000Z"}, device_key)
    with pytest.raises(InvalidEvidenceError, match="prepared more than"):
        world.notary.submit_signed_record(stale)
    assert count(world, tables.evidence) == 0 and world.store.tree_size("evidence") == 0


def test_revoked_officer_cannot_notarize_and_is_revoked_on_chain(world: World) -> None:
    _, officer, case = setup_case(world)
    ev = notarize_photo(world, officer, case)
    world.anchor()
    revoked = world.notary.revoke_officer(officer.id, "key_compromise")
    assert revoked.revoked_at is not None and revoked.revocation_reason == "key_compromise"
    key = world.chain.get_key(officer.key_id)
    assert key.revoked_at > 0 and key.revocation_reason == 1
    with pytest.raises(PermissionDeniedError, match="revoked"):
        notarize_photo(world, officer, case, PHOTO + b"more")
    assert count(world, tables.evidence) == 1
    # What was signed and anchored before the revocation stays authorised at its anchoring time.
    v = world.notary.verify(data_chunks=[PHOTO], bundle_source=world.bundle_source, chain=world.chain)
    assert v.ok and v.authorized is True and v.evidence_id == ev.id


def test_oversized_upload_leaves_nothing(world: World) -> None:
    _, officer, case = setup_case(world)
    big = os.urandom(300_000)
    with pytest.raises(UploadTooLargeError) as e:
        world.notary.notarize_file(officer.id, case.id, chunks(big), filename="big.bin",
                                   media_type="application/octet-stream", captured_at=None,
                                   device=None, location=None, description=None, max_bytes=200_000)
    assert e.value.limit_bytes == 200_000
    assert count(world, tables.evidence) == 0 and count(world, tables.custody_events) == 0
    assert world.store.tree_size("evidence") == 0
    assert not world.blobs.exists(hashlib.sha256(big).digest())
    assert list((world.blobs.root / "tmp").iterdir()) == []


def test_other_agency_and_bad_input(world: World) -> None:
    _, officer, case = setup_case(world)
    other = world.notary.register_agency(f"X-{uuid.uuid4().hex[:6]}", "Kunshan Tax Bureau", "tax")
    stranger = world.notary.register_officer(other.id, "Wang Fang")
    with pytest.raises(PermissionDeniedError, match="belongs to agency"):
        notarize_photo(world, stranger, case)
    with pytest.raises(InvalidEvidenceError, match="timezone-aware"):
        world.notary.notarize_file(officer.id, case.id, [b"x"], filename="x", media_type="text/plain",
                                   captured_at=datetime(2026, 1, 1))


# -- corrections and withdrawals -------------------------------------------------------------------

def test_correction_and_withdrawal_are_reported_by_verify(world: World) -> None:
    _, officer, case = setup_case(world)
    first = notarize_photo(world, officer, case)
    fixed_photo = PHOTO + b" (uncropped original)"
    second = world.notary.correct(first.id, officer.id, "the first upload was a cropped copy",
                                  chunks(fixed_photo), filename="handbag-original.jpg")
    assert second.supersedes == first.id and second.record["supersedes"] == {
        "evidenceId": first.id, "logIndex": first.log_index, "reason": "the first upload was a cropped copy"}
    old = world.notary.evidence(first.id)
    assert old.status == "corrected" and old.corrected_by == second.id
    assert world.blobs.exists(first.sha256)  # nothing deleted
    with pytest.raises(EvidenceStateError, match="corrected"):
        world.notary.withdraw(first.id, officer.id, "again")

    v = world.notary.verify(data_chunks=[PHOTO])
    assert v.ok and v.status == "corrected" and v.corrected_by == second.id

    # Metadata-only correction keeps the content.
    third = world.notary.correct(second.id, officer.id, "wrong location", location="22.55N 114.10E")
    assert third.sha256 == second.sha256 and third.record["metadata"]["location"] == "22.55N 114.10E"
    assert third.record["metadata"]["device"] == "Huawei P60, IMEI 86..."

    withdrawn = world.notary.withdraw(third.id, officer.id, "seized goods were returned; court order 17")
    assert withdrawn.status == "withdrawn" and withdrawn.withdrawal_reason.startswith("seized goods")
    entry = world.store.entry("evidence", withdrawn.withdrawal_log_index)
    wrec = json.loads(entry.record_canonical)
    assert wrec["withdrawalOf"] == {"evidenceId": third.id, "logIndex": third.log_index,
                                    "sha256": third.sha256_hex}
    keys.verify_record_signature(wrec, officer.public_key)
    world.anchor()
    v = world.notary.verify(data_chunks=[fixed_photo], bundle_source=world.bundle_source, chain=world.chain)
    assert v.ok and v.status == "withdrawn" and v.evidence_id == third.id
    assert v.withdrawal_reason == "seized goods were returned; court order 17"

    kinds = [i.kind for i in world.notary.case_timeline(case.id)]
    assert kinds == ["case_created", "notarized", "corrected", "corrected", "withdrawn"]
    assert [c.action for c in world.notary.custody(third.id)] == ["correction", "withdrawal"]
    assert count(world, tables.evidence) == 3


def test_client_key_correction_two_step(world: World) -> None:
    device_key = keys.generate_private_key()
    _, officer, case = setup_case(world, client_key=keys.public_key_bytes(device_key))
    first = world.notary.submit_signed_record(keys.sign_record(world.notary.prepare_file_record(
        officer.id, case.id, [b"v1"], filename="note.txt", media_type="text/plain"), device_key))
    rec = world.notary.prepare_correction_record(first.id, officer.id, "typo", [b"v2"])
    second = world.notary.submit_signed_record(keys.sign_record(rec, device_key))
    assert world.notary.evidence(first.id).status == "corrected" and second.supersedes == first.id
    wrec = world.notary.prepare_withdrawal_record(second.id, officer.id, "duplicate")
    assert world.notary.submit_signed_record(keys.sign_record(wrec, device_key)).status == "withdrawn"


# -- custody ------------------------------------------------------------------------------------

def test_custody_events_are_logged_and_provable(world: World) -> None:
    _, officer, case = setup_case(world)
    ev = notarize_photo(world, officer, case)
    data = b"".join(world.notary.open_evidence(ev.id, "judge:zhang", "hearing 2026-04-02"))
    assert data == PHOTO
    world.notary.record_custody(ev.id, "clerk:chen", "export", "copy for the defence")
    events = world.notary.custody(ev.id)
    assert [(e.actor, e.action) for e in events] == [
        (f"officer:{officer.id}", "notarize"), ("judge:zhang", "download"), ("clerk:chen", "export")]
    world.anchor()
    for e in events:
        bundle = world.bundle("custody", e.log_index)
        report = verify_bundle(bundle, chain=world.chain)
        logged = json.loads(bundle["record"]["canonical"])
        assert report.log_name == "custody"
        assert logged["evidenceId"] == ev.id and logged["evidenceLogIndex"] == ev.log_index
        assert (logged["who"], logged["what"], logged["why"]) == (e.actor, e.action, e.reason)
        assert datetime.fromisoformat(logged["when"]) == e.at
    timeline = world.notary.case_timeline(case.id)
    assert [i.kind for i in timeline] == ["case_created", "notarized", "custody", "custody"]
    assert timeline == sorted(timeline, key=lambda i: i.at)


# -- verification --------------------------------------------------------------------------------

def test_verify_by_file_bundle_and_both_with_mismatches(world: World) -> None:
    _, officer, case = setup_case(world)
    ev = notarize_photo(world, officer, case)
    other = notarize_photo(world, officer, case, b"another photo")
    world.anchor()
    bundle = world.bundle("evidence", ev.log_index)

    unknown = world.notary.verify(data_chunks=[b"never notarized"])
    assert not unknown.ok and unknown.reasons[0].startswith("file: sha256 ")
    assert "is not the content of any notarized evidence" in unknown.reasons[0]

    by_bundle = world.notary.verify(bundle=bundle, chain=world.chain)
    assert by_bundle.ok and by_bundle.evidence_id == ev.id and by_bundle.chain_checked
    assert by_bundle.anchored_at is not None and by_bundle.authorized is True

    both = world.notary.verify(data_chunks=chunks(PHOTO), bundle=json.dumps(bundle), chain=world.chain)
    assert both.ok and both.matched == "content"

    wrong_file = world.notary.verify(data_chunks=[b"another photo"], bundle=bundle, chain=world.chain)
    assert not wrong_file.ok
    assert wrong_file.reasons == (
        f"file: sha256 {hashlib.sha256(b'another photo').hexdigest()[:16]}... is not the notarized "
        f"{ev.sha256_hex[:16]}...",)
    assert other.id != wrong_file.evidence_id

    altered = copy.deepcopy(bundle)
    altered["anchor"]["blockNumber"] += 1
    v = world.notary.verify(bundle=altered, chain=world.chain)
    assert not v.ok and v.reasons[0].startswith("bundle: anchor.blockNumber: the chain says")

    record = json.loads(bundle["record"]["canonical"])
    record["content"]["sha256"] = "00" * 32
    forged = {**bundle, "record": {**bundle["record"], "canonical": json.dumps(record)}}
    v = world.notary.verify(bundle=forged)
    assert not v.ok and v.reasons[0].startswith("bundle: record: the record hashes to")

    # Without a bundle source the file still verifies, with a note that nothing was anchored-checked.
    plain = world.notary.verify(sha256=ev.sha256)
    assert plain.ok and plain.anchored_at is None


def test_verify_reports_an_unauthorised_signer(engine, tmp_path, chain) -> None:  # type: ignore[no-untyped-def]
    # Registered here without an authority, so the key is unknown on chain; then verified with one.
    plain = make_world(engine, tmp_path, chain, with_authority=False)
    _, officer, case = setup_case(plain)
    ev = notarize_photo(plain, officer, case)
    plain.anchor()
    with_authority = Notary(plain.notary.engine, plain.store, plain.blobs, plain.kek, lambda: chain)
    v = with_authority.verify(data_chunks=[PHOTO], bundle_source=plain.bundle_source, chain=chain)
    assert not v.ok and v.authorized is False and v.signature_ok
    assert v.reasons[0].startswith(f"authority: key {officer.key_id_hex[:16]}... was not authorised")
    assert v.evidence_id == ev.id


# -- web captures --------------------------------------------------------------------------------

def fake_capture(screenshot: bytes = b"\x89PNG fake screenshot"):  # type: ignore[no-untyped-def]
    from evidence_ledger.notary.capture import CapturedPart, WebCapture

    parts = [("capture/screenshot.png", "image/png", screenshot),
             ("capture/dom.html", "text/html", b"<html><body>Handbag 99 yuan</body></html>"),
             ("capture/manifest.json", "application/json", b'{"url": "https://shop.example/item/1"}')]
    archive = io.BytesIO()
    import zipfile
    with zipfile.ZipFile(archive, "w") as zf:
        for name, _, data in parts:
            zf.writestr(name, data)
    return WebCapture(
        url="https://shop.example/item/1", final_url="https://shop.example/item/1?ref=x", status=200,
        captured_at=datetime.now(UTC) - timedelta(seconds=5),
        parts=tuple(CapturedPart(n, m, d, hashlib.sha256(d).digest()) for n, m, d in parts),
        manifest={"url": "https://shop.example/item/1"}, archive=archive.getvalue())


def test_web_capture_parts_are_each_verifiable(world: World, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from evidence_ledger.notary import capture as capture_module

    _, officer, case = setup_case(world)
    cap = fake_capture()
    with pytest.raises(ArchiveIntegrityError):  # the real WACZ check runs: this zip is no WACZ
        world.notary.notarize_capture(officer.id, case.id, cap)
    assert count(world, tables.evidence) == 0
    monkeypatch.setattr(capture_module, "verify_wacz", lambda archive: {})

    bad = fake_capture()
    bad = type(bad)(**{**bad.__dict__, "parts": (bad.parts[0].__class__(
        bad.parts[0].name, "image/png", b"other bytes", bad.parts[0].sha256),) + bad.parts[1:]})
    with pytest.raises(ArchiveIntegrityError) as e:
        world.notary.notarize_capture(officer.id, case.id, bad)
    assert e.value.part == "capture/screenshot.png"

    ev = world.notary.notarize_capture(officer.id, case.id, cap)
    assert ev.kind == "web" and ev.sha256 == hashlib.sha256(cap.archive).digest()
    assert [p.name for p in ev.parts] == [p.name for p in cap.parts]
    rec = ev.record
    assert rec["capture"]["url"] == cap.url and rec["capture"]["httpStatus"] == 200
    assert rec["capture"]["manifestSha256"] == cap.parts[2].sha256.hex()
    world.anchor()
    shot = world.notary.verify(data_chunks=[cap.parts[0].data], bundle_source=world.bundle_source,
                               chain=world.chain)
    assert shot.ok and shot.matched == "part:capture/screenshot.png" and shot.evidence_id == ev.id
    both = world.notary.verify(data_chunks=[cap.parts[1].data], bundle=world.bundle("evidence", ev.log_index))
    assert both.ok and both.matched == "part:capture/dom.html"
    wrong = world.notary.verify(data_chunks=[b"x"], bundle=world.bundle("evidence", ev.log_index))
    assert not wrong.ok and wrong.reasons[0].endswith("nor any part of the capture")
    assert b"".join(world.notary.open_evidence(ev.id, "auditor:1", None, "view",
                                               part="capture/screenshot.png")) == cap.parts[0].data


def test_cases_are_listed_newest_first_and_per_agency(world) -> None:  # type: ignore[no-untyped-def]
    n = world.notary
    first = n.register_agency("SAMR-LIST", "Shenzhen Market Supervision Bureau", "market_regulation")
    other = n.register_agency("TAX-SZ-LIST", "Shenzhen Tax Bureau", "tax")
    mine = n.create_case("LIST-1", "first", first.id, "test")
    theirs = n.create_case("LIST-2", "second", other.id, "test")
    assert [c.id for c in n.cases(other.id)] == [theirs.id]
    assert [c.id for c in n.cases(first.id)] == [mine.id]
    listed = [c.id for c in n.cases()]
    assert listed.index(theirs.id) < listed.index(mine.id)
