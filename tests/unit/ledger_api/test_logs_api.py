"""The log endpoints through HTTP, with the in-process chain: roles, limits, proofs, bundles."""

from __future__ import annotations

import base64
import copy

import pytest

from evidence_ledger.ledger import merkle
from evidence_ledger.ledger.bundle import verify_bundle

from .conftest import Api


def b64d(s: str) -> bytes:
    return base64.b64decode(s)


def test_health_and_openapi(api: Api) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok"}
    ready = api.client.get("/readyz").json()
    assert ready["status"] == "ok" and ready["database"] == "ok" and ready["sequencer"] is True
    assert api.client.get("/docs").status_code == 200
    paths = api.client.get("/openapi.json").json()["paths"]
    assert "/api/v1/logs/{log}/entries/{index}/bundle" in paths


def test_append_anchor_bundle_verify_round_trip(api: Api) -> None:
    c = api.client
    r = c.post("/api/v1/logs/evidence/entries", json={"record": {"case": "A-1", "sha256": "00" * 32}},
               headers=api.auth("officer"))
    assert r.status_code == 201, r.text
    index = r.json()["index"]
    b = c.get(f"/api/v1/logs/evidence/entries/{index}/bundle?waitS=10&includeRecord=true",
              headers=api.auth("officer"))
    assert b.status_code == 200, b.text
    bundle = b.json()
    report = verify_bundle(bundle, chain=api.runtime.anchorer.chain())
    assert report.chain_checked and report.leaf_index == index
    v = c.post("/api/v1/verify", json={"bundle": bundle}).json()
    assert v["valid"] is True and v["chainChecked"] is True
    bad = copy.deepcopy(bundle)
    bad["record"]["canonical"] = bad["record"]["canonical"].replace("A-1", "A-2")
    v = c.post("/api/v1/verify", json={"bundle": bad}).json()
    assert v["valid"] is False and v["field"] == "record" and "the record hashes to" in v["message"]
    cps = c.get("/api/v1/logs/evidence/checkpoints").json()
    assert cps[0]["anchor"]["txHash"] == bundle["anchor"]["txHash"]
    assert c.get(f"/api/v1/logs/evidence/checkpoints/{cps[0]['treeSize']}").json()["note"] == cps[0]["note"]


def test_bulk_append_and_public_proofs(api: Api) -> None:
    c = api.client
    r = c.post("/api/v1/logs/trace/entries/bulk", json={"records": [{"lot": i} for i in range(20)]},
               headers=api.auth("operator"))
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["firstIndex"], body["count"], body["treeSize"]) == (0, 20, 20)
    p = c.get("/api/v1/logs/trace/entries/7/proof?treeSize=13").json()
    merkle.verify_inclusion(b64d(p["leafHash"]), 7, 13, [b64d(h) for h in p["hashes"]], b64d(p["rootHash"]))
    k = c.get("/api/v1/logs/trace/consistency?first=5&second=20").json()
    merkle.verify_consistency(5, 20, [b64d(h) for h in k["hashes"]], b64d(k["firstRoot"]), b64d(k["secondRoot"]))


def test_flush_anchors_now(api: Api) -> None:
    c = api.client
    c.post("/api/v1/logs/evidence/entries", json={"record": {"urgent": True}}, headers=api.auth("officer"))
    r = c.post("/api/v1/logs/evidence/flush", headers=api.auth("officer"))
    assert r.status_code == 200, r.text
    assert r.json()[0]["anchor"] is not None and r.json()[0]["treeSize"] == 1


@pytest.mark.parametrize(("method", "path", "body"), [
    ("post", "/api/v1/logs/evidence/entries", {"record": {"a": 1}}),
    ("post", "/api/v1/logs/evidence/entries/bulk", {"records": [{"a": 1}]}),
    ("get", "/api/v1/logs/evidence/entries/0", None),
    ("get", "/api/v1/logs/evidence/entries/0/bundle", None),
    ("post", "/api/v1/logs/evidence/flush", None),
    ("get", "/api/v1/tokens", None),
])
def test_missing_or_bad_token_is_401(api: Api, method: str, path: str, body: dict | None) -> None:
    r = getattr(api.client, method)(path, **({"json": body} if body else {}))
    assert r.status_code == 401 and "Bearer" in r.json()["error"]["message"]
    r = getattr(api.client, method)(path, headers={"Authorization": "Bearer el_0000_nope"},
                                    **({"json": body} if body else {}))
    assert r.status_code == 401 and r.json()["error"]["message"] == "unknown token"


@pytest.mark.parametrize(("log", "allowed"), [
    ("evidence", {"admin", "officer"}),
    ("trace", {"admin", "operator", "officer"}),
    ("flows", {"admin"}),
    ("custody", {"admin"}),
])
def test_append_role_matrix(api: Api, log: str, allowed: set[str]) -> None:
    for role in api.tokens:
        r = api.client.post(f"/api/v1/logs/{log}/entries", json={"record": {"by": role}}, headers=api.auth(role))
        if role in allowed:
            assert r.status_code == 201, (role, r.text)
        else:
            assert r.status_code == 403, (role, r.text)
            assert "needs one of the roles" in r.json()["error"]["message"]


def test_record_reads_are_restricted_but_court_may_read(api: Api) -> None:
    api.client.post("/api/v1/logs/evidence/entries", json={"record": {"pii": "x"}}, headers=api.auth("officer"))
    assert api.client.get("/api/v1/logs/evidence/entries/0", headers=api.auth("tax")).status_code == 403
    r = api.client.get("/api/v1/logs/evidence/entries/0", headers=api.auth("court"))
    assert r.status_code == 200 and r.json()["record"] == {"pii": "x"}


def test_bad_input_is_a_clear_4xx(api: Api) -> None:
    c, h = api.client, api.auth("admin")
    r = c.post("/api/v1/logs/nope/entries", json={"record": {}}, headers=h)
    assert r.status_code == 404 and "no log named 'nope'" in r.json()["error"]["message"]
    r = c.post("/api/v1/logs/evidence/entries", json={"record": {"x": "y" * 3000}}, headers=h)
    assert r.status_code == 413 and "limit is 2048 bytes" in r.json()["error"]["message"]
    r = c.post("/api/v1/logs/evidence/entries", content=b"x" * (300 * 1024),
               headers={**h, "content-type": "application/json"})
    assert r.status_code == 413 and "exceeds the limit" in r.json()["error"]["message"]
    r = c.post("/api/v1/logs/evidence/entries", json={"rec": {}}, headers=h)
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
    r = c.post("/api/v1/logs/evidence/entries", content=b"{not json", headers={**h, "content-type": "application/json"})
    assert r.status_code == 422
    r = c.post("/api/v1/logs/evidence/entries/bulk", json={"records": [{"i": i} for i in range(51)]}, headers=h)
    assert r.status_code == 400 and "at most 50 records; got 51" in r.json()["error"]["message"]
    assert c.get("/api/v1/logs/evidence/entries/0/proof").status_code == 400
    r = c.get("/api/v1/logs/evidence/consistency?first=3&second=2")
    assert r.status_code == 400
    r = c.get("/api/v1/logs/evidence/entries/9/bundle", headers=h)
    assert r.status_code == 404
    r = c.post("/api/v1/verify", json={"bundle": {"type": "nope"}})
    assert r.status_code == 200 and r.json()["valid"] is False and r.json()["field"]
    r = c.post("/api/v1/tokens", json={"name": "x", "roles": ["wizard"]}, headers=h)
    assert r.status_code == 400 and "unknown roles ['wizard']" in r.json()["error"]["message"]
    assert c.delete("/api/v1/tokens/ffff", headers=h).status_code == 404


def test_tokens_are_admin_only_and_revocable(api: Api) -> None:
    c = api.client
    assert c.get("/api/v1/tokens", headers=api.auth("officer")).status_code == 403
    r = c.post("/api/v1/tokens", json={"name": "alice", "roles": ["officer"]}, headers=api.auth("admin"))
    assert r.status_code == 201
    token, token_id = r.json()["token"], r.json()["tokenId"]
    listed = c.get("/api/v1/tokens", headers=api.auth("admin")).json()
    assert all("token" not in t for t in listed)
    h = {"Authorization": f"Bearer {token}"}
    assert c.post("/api/v1/logs/evidence/entries", json={"record": {}}, headers=h).status_code == 201
    assert c.delete(f"/api/v1/tokens/{token_id}", headers=api.auth("admin")).status_code == 204
    r = c.post("/api/v1/logs/evidence/entries", json={"record": {}}, headers=h)
    assert r.status_code == 401 and r.json()["error"]["message"] == "token revoked"
