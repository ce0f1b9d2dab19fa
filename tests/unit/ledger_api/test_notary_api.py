"""Evidence notarization through HTTP and the pages: roles, uploads, bundles, certificates, verdicts."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from .conftest import Api


@pytest.fixture
def office(api: Api):  # type: ignore[no-untyped-def]
    c, admin = api.client, api.auth("admin")
    agency = c.post("/api/v1/agencies", json={"code": "SAMR-SZ", "name": "Shenzhen Market Supervision Bureau",
                                             "kind": "market_regulation"}, headers=admin)
    assert agency.status_code == 201, agency.text
    officer = c.post("/api/v1/officers", json={"agencyId": agency.json()["id"], "name": "Li Wei"}, headers=admin)
    assert officer.status_code == 201, officer.text
    h = {"Authorization": f"Bearer {officer.json()['token']}"}
    case = c.post("/api/v1/cases", json={"reference": "SZ-2026-0042", "title": "Fake handbags"}, headers=h)
    assert case.status_code == 201, case.text
    return {"agency": agency.json(), "officer": officer.json(), "h": h, "case": case.json()}


def upload(api: Api, office: dict, data: bytes = b"\x89PNG fake photo bytes", **fields: str):  # type: ignore[no-untyped-def]
    return api.client.post(f"/api/v1/cases/{office['case']['id']}/files", headers=office["h"],
                           files={"file": ("stall-14.jpg", data, "image/jpeg")}, data=fields)


def test_file_notarized_anchored_and_verified_by_file_and_bundle(api: Api, office: dict) -> None:
    c = api.client
    r = upload(api, office, location="22.54N 114.06E", description="Stall 14", capturedAt="2026-03-01T09:30:00Z")
    assert r.status_code == 201, r.text
    ev = r.json()
    assert ev["record"]["metadata"]["location"] == "22.54N 114.06E" and ev["record"]["signature"]["alg"] == "Ed25519"
    b = c.get(f"/api/v1/evidence/{ev['id']}/bundle?waitS=10", headers=office["h"])
    assert b.status_code == 200, b.text
    v = c.post("/api/v1/evidence/verify", files={"file": ("x", b"\x89PNG fake photo bytes")}).json()
    assert v["ok"] and v["evidence_id"] == ev["id"] and v["matched"] == "content" and v["signature_ok"]
    v = c.post("/api/v1/evidence/verify", files={"file": ("x", b"\x89PNG fake photo bytes"),
                                                 "bundle": ("b.json", json.dumps(b.json()))}).json()
    assert v["ok"] and v["chain_checked"] and v["authorized"] is True, v
    v = c.post("/api/v1/evidence/verify", files={"file": ("x", b"\x89PNG fake photo bytez"),
                                                 "bundle": ("b.json", json.dumps(b.json()))}).json()
    assert not v["ok"] and any("file" in reason for reason in v["reasons"]), v
    raw = c.post(f"/api/v1/cases/{office['case']['id']}/files?filename=note.txt&description=raw",
                 content=b"raw body upload", headers={**office["h"], "content-type": "text/plain"})
    assert raw.status_code == 201 and raw.json()["filename"] == "note.txt" and raw.json()["media_type"] == "text/plain"


def test_reads_are_custody_events_and_content_round_trips(api: Api, office: dict) -> None:
    c, h = api.client, office["h"]
    ev = upload(api, office, b"evidence bytes").json()
    assert c.get(f"/api/v1/evidence/{ev['id']}?reason=review", headers=h).status_code == 200
    got = c.get(f"/api/v1/evidence/{ev['id']}/content?reason=court%20filing", headers=h)
    assert got.content == b"evidence bytes" and "attachment" in got.headers["content-disposition"]
    actions = [(e["action"], e["reason"]) for e in c.get(f"/api/v1/evidence/{ev['id']}/custody", headers=h).json()]
    assert ("view", "review") in actions and ("download", "court filing") in actions


def test_certificate_and_case_qr(api: Api, office: dict) -> None:
    import zxingcpp

    c, h = api.client, office["h"]
    ev = upload(api, office).json()
    pdf = c.get(f"/api/v1/evidence/{ev['id']}/certificate.pdf?waitS=10", headers=h)
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF") and pdf.headers["content-type"] == "application/pdf"
    png = c.get(f"/api/v1/cases/{office['case']['id']}/qr.png", headers=h)
    decoded = zxingcpp.read_barcodes(Image.open(io.BytesIO(png.content)))
    assert [d.text for d in decoded] == [f"http://ledger.test/cases/{office['case']['id']}"]
    svg = c.get(f"/api/v1/cases/{office['case']['id']}/qr.svg", headers=h)
    assert svg.headers["content-type"] == "image/svg+xml" and "<svg" in svg.text
    assert c.get(f"/api/v1/cases/{office['case']['id']}/qr.gif", headers=h).status_code == 404


def test_correction_and_withdrawal_are_new_records_and_verify_reports_them(api: Api, office: dict) -> None:
    c, h = api.client, office["h"]
    ev = upload(api, office, b"photo v1").json()
    fix = c.post(f"/api/v1/evidence/{ev['id']}/corrections", json={"reason": "wrong stall", "location": "Stall 15"},
                 headers=h)
    assert fix.status_code == 201, fix.text
    assert fix.json()["supersedes"] == ev["id"]
    old = c.get(f"/api/v1/evidence/{ev['id']}", headers=h).json()
    assert old["status"] == "corrected" and old["corrected_by"] == fix.json()["id"]
    # The same bytes now belong to the correction: verify names it, not the superseded record.
    v = c.post("/api/v1/evidence/verify", files={"file": ("x", b"photo v1")}).json()
    assert v["ok"] and v["evidence_id"] == fix.json()["id"] and v["status"] == "active", v
    gone = c.post(f"/api/v1/evidence/{fix.json()['id']}/withdrawal", json={"reason": "duplicate"}, headers=h)
    assert gone.status_code == 200 and gone.json()["status"] == "withdrawn"
    v = c.post("/api/v1/evidence/verify", files={"file": ("x", b"photo v1")}).json()
    assert v["evidence_id"] == fix.json()["id"] and v["status"] == "withdrawn", v
    assert v["withdrawal_reason"] == "duplicate"
    again = c.post(f"/api/v1/evidence/{fix.json()['id']}/withdrawal", json={"reason": "twice"}, headers=h)
    assert again.status_code == 409


def test_roles_and_agencies_are_enforced(api: Api, office: dict) -> None:
    c = api.client
    ev = upload(api, office).json()
    case_id = office["case"]["id"]
    assert c.post("/api/v1/cases", json={"reference": "X", "title": "y"}, headers=api.auth("tax")).status_code == 403
    assert c.post("/api/v1/agencies", json={"code": "A", "name": "B", "kind": "tax"},
                  headers=office["h"]).status_code == 403
    assert c.get(f"/api/v1/cases/{case_id}").status_code == 401
    assert c.get(f"/api/v1/cases/{case_id}", headers=api.auth("court")).status_code == 200
    assert c.get(f"/api/v1/evidence/{ev['id']}", headers=api.auth("police")).status_code == 403
    other = c.post("/api/v1/agencies", json={"code": "SAMR-GZ", "name": "Guangzhou", "kind": "market_regulation"},
                   headers=api.auth("admin")).json()
    stranger = c.post("/api/v1/officers", json={"agencyId": other["id"], "name": "Wang"}, headers=api.auth("admin")).json()
    hs = {"Authorization": f"Bearer {stranger['token']}"}
    r = c.get(f"/api/v1/cases/{case_id}", headers=hs)
    assert r.status_code == 403 and "another agency" in r.json()["error"]["message"]
    assert c.post(f"/api/v1/cases/{case_id}/files", headers=hs, files={"file": ("a", b"b")}).status_code == 403
    assert c.post(f"/api/v1/officers/{office['officer']['id']}/revoke", json={"reason": "key_compromise"},
                  headers=api.auth("admin")).status_code == 200
    r = upload(api, office)
    assert r.status_code == 403 and "revoked" in r.json()["error"]["message"]


def test_bad_uploads_are_clear_errors_and_leave_nothing(api: Api, office: dict) -> None:
    c, h = api.client, office["h"]
    case_id = office["case"]["id"]
    before = api.runtime.store.tree_size("evidence")
    r = upload(api, office, b"x" * (1024 * 1024 + 10))
    assert r.status_code == 413 and "limit of 1048576 bytes" in r.json()["error"]["message"]
    r = c.post(f"/api/v1/cases/{case_id}/files", headers=h, data={"description": "no file"},
               files={"other": ("a", b"b")})
    assert r.status_code == 400 and "form field 'file'" in r.json()["error"]["message"]
    r = upload(api, office, capturedAt="yesterday")
    assert r.status_code == 400 and "ISO 8601" in r.json()["error"]["message"]
    assert c.post("/api/v1/cases/nope/files", headers=h, files={"file": ("a", b"b")}).status_code == 404
    assert api.runtime.store.tree_size("evidence") == before
    r = c.post("/api/v1/evidence/verify", data={"x": "y"})
    assert r.status_code == 400 and "send a file, a proof bundle, or both" in r.json()["error"]["message"]
    r = c.post("/api/v1/evidence/verify", files={"bundle": ("b.json", b"{nope")})
    assert r.status_code == 400 and "not JSON" in r.json()["error"]["message"]
    r = c.post(f"/api/v1/cases/{case_id}/captures", json={"url": "http://10.0.0.1/admin"}, headers=h)
    assert r.status_code == 422 and r.json()["error"]["code"] == "capture_destination_refused"
    r = c.post(f"/api/v1/cases/{case_id}/captures", json={"url": "ftp://example.org/x"}, headers=h)
    assert r.status_code == 422


def test_pages_sign_in_case_and_verify(api: Api, office: dict) -> None:
    c = api.client
    ev = upload(api, office, b"page bytes").json()
    assert c.get("/cases", follow_redirects=False).status_code == 303
    bad = c.post("/login", data={"token": "el_x_y", "next": "/cases"})
    assert bad.status_code == 401 and "Sign-in failed" in bad.text
    r = c.post("/login", data={"token": office["officer"]["token"], "next": "https://evil.example/"},
               follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/cases"
    assert "httponly" in r.headers["set-cookie"].lower() and "samesite=strict" in r.headers["set-cookie"].lower()
    page = c.get("/cases")
    assert "SZ-2026-0042" in page.text
    case_page = c.get(f"/cases/{office['case']['id']}")
    assert "qr.svg" in case_page.text and "stall-14.jpg" in case_page.text
    evp = c.get(f"/evidence/{ev['id']}")
    assert ev["sha256"] in evp.text
    c.cookies.clear()
    v = c.post("/verify", files={"file": ("x", b"page bytes")})
    assert v.status_code == 200 and "Verified" in v.text and "Li Wei" in v.text
    v = c.post("/verify", files={"file": ("x", b"other bytes")})
    assert "Not verified" in v.text
