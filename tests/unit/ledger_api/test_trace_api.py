"""Food traceability through HTTP: a whole meat chain, rules, QR + Digital Link, recall, exports."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from PIL import Image

from evidence_ledger.trace.epcis import validate_document

from .conftest import Api

GTIN_CARCASS = "09506000134352"
GTIN_LOIN = "09506000134369"
GTIN_BELLY = "09506000134376"
T0 = datetime(2026, 11, 1, 6, 0, tzinfo=UTC)


def at(hours: float) -> str:
    return (T0 + timedelta(hours=hours)).isoformat()


@pytest.fixture
def chain(api: Api):  # type: ignore[no-untyped-def]
    c, reg = api.client, api.auth("officer")
    ops = {}
    for key, name, role in [("farm", "Liuyang Pig Farm", "farm"), ("abattoir", "Changsha Meat Co.", "slaughterhouse"),
                            ("w1", "Mawangdui Wholesale", "wholesaler"), ("w2", "Hongxing Wholesale", "wholesaler"),
                            ("r1", "Furong Market Stall 3", "retailer"), ("r2", "Yuhua Supermarket", "retailer"),
                            ("r3", "Kaifu Fresh", "retailer")]:
        r = c.post("/api/v1/trace/operators", json={"name": name, "licence": f"JY143010{len(ops):06d}", "role": role,
                                                    "locationName": f"{name} site"}, headers=reg)
        assert r.status_code == 201, r.text
        ops[key] = {**r.json(), "h": {"Authorization": f"Bearer {r.json()['token']}"}}

    def form(who: str, kind: str, **body):  # type: ignore[no-untyped-def]
        r = c.post(f"/api/v1/trace/forms/{kind}", json=body, headers=ops[who]["h"])
        return r

    def ok(r):  # type: ignore[no-untyped-def]
        assert r.status_code == 201, r.text
        return r.json()

    carcass = {"gtin": GTIN_CARCASS, "lot": "PIG2026A"}
    ok(form("farm", "commission", time=at(0), items=[{**carcass, "kg": 110}],
            ilmd={"productName": "Ningxiang pig", "species": "pig"}))
    ok(form("farm", "inspect", time=at(1), items=[{**carcass, "kg": 110}],
            certificate={"type": "quarantine", "number": "HN-Q-4301-88812", "issuer": "Liuyang Animal Health Station",
                         "issued_at": at(1), "result": "pass"}))
    ok(form("farm", "ship", time=at(2), items=[{**carcass, "kg": 110}], counterpartyId=ops["abattoir"]["id"]))
    ok(form("abattoir", "receive", time=at(3), items=[{**carcass, "kg": 110}], counterpartyId=ops["farm"]["id"]))
    ok(form("abattoir", "slaughter", time=at(4), inputs=[{**carcass, "kg": 110}],
            outputs=[{"gtin": GTIN_LOIN, "lot": "LOIN-11", "kg": 40}, {"gtin": GTIN_BELLY, "lot": "BELLY-11", "kg": 30}]))
    for lot in (("LOIN-11", GTIN_LOIN, 40), ("BELLY-11", GTIN_BELLY, 30)):
        ok(form("abattoir", "inspect", time=at(5), items=[{"gtin": lot[1], "lot": lot[0], "kg": lot[2]}],
                certificate={"type": "meat_inspection", "number": f"HN-M-{lot[0]}", "issuer": "Changsha Meat Inspection",
                             "issued_at": at(5), "result": "pass"}))
    loin, belly = {"gtin": GTIN_LOIN, "lot": "LOIN-11"}, {"gtin": GTIN_BELLY, "lot": "BELLY-11"}
    ok(form("abattoir", "ship", time=at(6), items=[{**loin, "kg": 40}], counterpartyId=ops["w1"]["id"]))
    ok(form("abattoir", "ship", time=at(6), items=[{**belly, "kg": 30}], counterpartyId=ops["w2"]["id"]))
    ok(form("w1", "receive", time=at(7), items=[{**loin, "kg": 40}], counterpartyId=ops["abattoir"]["id"]))
    ok(form("w2", "receive", time=at(7), items=[{**belly, "kg": 30}], counterpartyId=ops["abattoir"]["id"]))
    ok(form("w1", "ship", time=at(8), items=[{**loin, "kg": 15}], counterpartyId=ops["r1"]["id"]))
    ok(form("w1", "ship", time=at(8), items=[{**loin, "kg": 10}], counterpartyId=ops["r2"]["id"]))
    ok(form("w2", "ship", time=at(8), items=[{**belly, "kg": 12}], counterpartyId=ops["r3"]["id"]))
    ok(form("r1", "receive", time=at(9), items=[{**loin, "kg": 15}], counterpartyId=ops["w1"]["id"]))
    ok(form("r2", "receive", time=at(9), items=[{**loin, "kg": 10}], counterpartyId=ops["w1"]["id"]))
    ok(form("r3", "receive", time=at(9), items=[{**belly, "kg": 12}], counterpartyId=ops["w2"]["id"]))
    api.runtime.anchorer.flush("trace", timeout_s=20)
    return {"ops": ops, "form": form, "carcass": carcass, "loin": loin, "belly": belly}


def test_rules_reject_what_breaks_the_physical_world(api: Api, chain: dict) -> None:
    form, ops, loin = chain["form"], chain["ops"], chain["loin"]
    r = form("r1", "receive", time=at(10), items=[{**loin, "kg": 5}], counterpartyId=ops["w2"]["id"])
    assert r.status_code == 409 and r.json()["error"]["rule"] == "not_shipped", r.text
    r = form("w1", "ship", time=at(10), items=[{**loin, "kg": 16}], counterpartyId=ops["r1"]["id"])
    assert r.status_code == 409 and r.json()["error"]["rule"] == "over_shipped", r.text
    r = form("abattoir", "slaughter", time=at(10), inputs=[{**chain["carcass"], "kg": 1}],
             outputs=[{"gtin": GTIN_LOIN, "lot": "LOIN-12", "kg": 1}])
    assert r.status_code == 409 and r.json()["error"]["rule"] == "insufficient_stock", r.text  # already cut
    second = {"gtin": GTIN_CARCASS, "lot": "PIG2026B"}
    assert form("farm", "commission", time=at(10), items=[{**second, "kg": 100}]).status_code == 201
    assert form("farm", "ship", time=at(11), items=[{**second, "kg": 100}],
                counterpartyId=ops["abattoir"]["id"]).status_code == 201
    assert form("abattoir", "receive", time=at(12), items=[{**second, "kg": 100}],
                counterpartyId=ops["farm"]["id"]).status_code == 201
    r = form("abattoir", "slaughter", time=at(13), inputs=[{**second, "kg": 100}],
             outputs=[{"gtin": GTIN_LOIN, "lot": "LOIN-12", "kg": 60}, {"gtin": GTIN_BELLY, "lot": "BELLY-12", "kg": 50}])
    assert r.status_code == 409 and r.json()["error"]["rule"] == "mass_balance", r.text
    assert "110" in r.json()["error"]["message"] and "100" in r.json()["error"]["message"]
    r = form("r1", "ship", time=at(10), items=[{"gtin": "09506000134353", "lot": "X", "kg": 1}],
             counterpartyId=ops["r2"]["id"])
    assert r.status_code == 422 and "check digit" in r.json()["error"]["message"]
    r = api.client.post("/api/v1/trace/events", json={"type": "ObjectEvent"}, headers=ops["r1"]["h"])
    assert r.status_code == 422 and r.json()["error"]["code"] == "bad_event"
    assert api.client.post("/api/v1/trace/forms/commission", json={}, headers=api.auth("tax")).status_code == 403


def test_qr_code_resolves_to_the_consumer_page_and_linkset(api: Api, chain: dict) -> None:
    import zxingcpp

    c = api.client
    png = c.get(f"/api/v1/trace/lots/{GTIN_LOIN}/LOIN-11/qr.png")
    assert png.status_code == 200
    (code,) = zxingcpp.read_barcodes(Image.open(io.BytesIO(png.content)))
    assert code.text == f"http://ledger.test/01/{GTIN_LOIN}/10/LOIN-11"
    page = c.get(code.text.replace("http://ledger.test", ""))
    assert page.status_code == 200
    html = page.text
    for expected in ("Liuyang Pig Farm", "Changsha Meat Co.", "HN-Q-4301-88812", "HN-M-LOIN-11",
                     "Mawangdui Wholesale", "verified on the ledger"):
        assert expected in html, expected
    assert "Recalled" not in html
    js = c.get(f"/01/{GTIN_LOIN}/10/LOIN-11", headers={"Accept": "application/json"})
    assert js.headers["content-type"].startswith("application/linkset+json") and "linkset" in js.json()
    red = c.get(f"/01/{GTIN_LOIN}/10/LOIN-11?linkType=gs1:recallStatus", follow_redirects=False)
    assert red.status_code == 307 and red.headers["location"].endswith(f"/api/v1/trace/lots/{GTIN_LOIN}/LOIN-11")
    assert c.get(f"/01/{GTIN_LOIN}/10/NOPE-1").status_code == 404
    assert c.get("/01/09506000134353/10/LOIN-11").status_code == 422


def test_regulators_trace_back_forward_and_export(api: Api, chain: dict) -> None:
    c, reg = api.client, api.auth("officer")
    back = c.get(f"/api/v1/trace/lots/{GTIN_LOIN}/LOIN-11/trace/back", headers=reg).json()
    assert any(lot["key"].endswith("lot:PIG2026A") for lot in back["lots"])
    fwd = c.get(f"/api/v1/trace/lots/{GTIN_CARCASS}/PIG2026A/trace/forward", headers=reg).json()
    keys = {lot["key"] for lot in fwd["lots"]}
    assert any("LOIN-11" in k for k in keys) and any("BELLY-11" in k for k in keys)
    holders = {h["operator_name"] for h in fwd["holders"]}
    assert {"Furong Market Stall 3", "Yuhua Supermarket", "Kaifu Fresh"} <= holders
    doc = c.get(f"/api/v1/trace/lots/{GTIN_CARCASS}/PIG2026A/trace/forward?format=epcis", headers=reg).json()
    validate_document(doc)
    sheet = c.get(f"/api/v1/trace/lots/{GTIN_CARCASS}/PIG2026A/trace/forward?format=csv", headers=reg)
    rows = list(csv.DictReader(io.StringIO(sheet.text)))
    assert rows and len(rows[0]) >= 6
    assert c.get(f"/api/v1/trace/lots/{GTIN_LOIN}/LOIN-11/trace/back", headers=api.auth("tax")).status_code == 403
    own = c.get("/api/v1/trace/events", headers=chain["ops"]["r1"]["h"]).json()
    assert own and all(e["operator_id"] == chain["ops"]["r1"]["id"] for e in own)
    inv = c.get(f"/api/v1/trace/operators/{chain['ops']['w1']['id']}/inventory", headers=chain["ops"]["w1"]["h"]).json()
    assert [round(line["quantity"], 3) for line in inv] == [15.0]
    assert c.get(f"/api/v1/trace/operators/{chain['ops']['w1']['id']}/inventory",
                 headers=chain["ops"]["r1"]["h"]).status_code == 403


def test_recall_flags_descendants_shows_the_banner_and_blocks_sales(api: Api, chain: dict) -> None:
    c = api.client
    r = c.post("/api/v1/trace/recalls", json={"gtin": GTIN_CARCASS, "lot": "PIG2026A", "reason": "ASF suspicion"},
               headers=api.auth("officer"))
    assert r.status_code == 201, r.text
    assert any("LOIN-11" in k for k in r.json()["lots"]) and any("BELLY-11" in k for k in r.json()["lots"])
    page = c.get(f"/01/{GTIN_BELLY}/10/BELLY-11").text
    assert "Recalled" in page and "ASF suspicion" in page
    assert c.get(f"/api/v1/trace/lots/{GTIN_LOIN}/LOIN-11").json()["status"] == "recalled"
    r = chain["form"]("r1", "ship", time=at(12), items=[{**chain["loin"], "kg": 1}],
                      counterpartyId=chain["ops"]["r2"]["id"])
    assert r.status_code == 409 and r.json()["error"]["rule"] == "lot_recalled"
    from evidence_ledger.ledger.chain import lot_key

    chain_client = api.runtime.anchorer.chain()
    assert chain_client.is_recalled(lot_key(GTIN_LOIN, "LOIN-11"))
    assert chain_client.is_recalled(lot_key(GTIN_CARCASS, "PIG2026A"))
    assert c.post("/api/v1/trace/recalls", json={"gtin": GTIN_LOIN, "lot": "LOIN-11", "reason": "x"},
                  headers=chain["ops"]["r1"]["h"]).status_code == 403


def test_gs1_examples_are_accepted_by_import_and_rejected_as_own_capture(api: Api) -> None:
    import json
    from pathlib import Path

    examples = sorted((Path(__file__).resolve().parents[2] / "vectors" / "epcis2" / "examples").glob("*.jsonld"))
    assert len(examples) == 8
    c, reg = api.client, api.auth("officer")
    op = c.post("/api/v1/trace/operators", json={"name": "Importer test", "licence": "JY-IMP", "role": "wholesaler"},
                headers=reg).json()
    own = {"Authorization": f"Bearer {op['token']}"}
    receipt = json.loads((examples[0].parent / "Example_9.6.2-ObjectEvent.jsonld").read_text())
    r = c.post("/api/v1/trace/events", json=receipt, headers=own)  # as its own capture: not its receipt
    assert r.status_code == 403 and "destination" in r.json()["error"]["message"], r.text
    assert c.post("/api/v1/trace/imports", json=receipt, headers=own).status_code == 403  # operators cannot import
    total = 0
    for path in examples:
        doc = json.loads(path.read_text())
        r = c.post("/api/v1/trace/imports", json=doc, headers=reg)
        assert r.status_code == 201, (path.name, r.text)
        total += r.json()["imported"]
        again = c.post("/api/v1/trace/imports", json=doc, headers=reg)
        assert again.status_code == 409 and again.json()["error"]["rule"] == "duplicate_event"
    assert total == 12


def test_every_step_of_the_page_is_checked_against_the_anchored_checkpoint(
        api: Api, chain: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    # A narrow proof top (2 ** 2 subtrees) so that every proof mixes database nodes and the
    # in-memory top; the log grows and is anchored again between pages; a record altered in the
    # database fails its step, and only that step.
    from sqlalchemy import text

    from evidence_ledger.ledger import log as log_module

    monkeypatch.setattr(log_module, "_TOP_WIDTH_BITS", 2)
    c, loin = api.client, chain["loin"]
    view = c.get(f"/api/v1/trace/lots/{GTIN_LOIN}/LOIN-11/provenance").json()["view"]
    first_size = api.runtime.store.tree_size("trace")
    assert view["steps"] and all(s["verified"] and s["tree_size"] == first_size for s in view["steps"])
    r = chain["form"]("r1", "ship", time=at(10), items=[{**loin, "kg": 5}], counterpartyId=chain["ops"]["r2"]["id"])
    assert r.status_code == 201, r.text
    view = c.get(f"/api/v1/trace/lots/{GTIN_LOIN}/LOIN-11/provenance").json()["view"]
    assert [s["ledger_note"] for s in view["steps"] if not s["verified"]] == ["awaiting anchoring"]
    api.runtime.anchorer.flush("trace", timeout_s=20)
    view = c.get(f"/api/v1/trace/lots/{GTIN_LOIN}/LOIN-11/provenance").json()["view"]
    assert all(s["verified"] for s in view["steps"])
    assert view["steps"][-1]["tree_size"] == first_size + 1
    # A new app (empty verification cache) re-checks every step; the event record the page is
    # built from altered in the database (one changed digit), then a leaf's salt altered.
    belly = c.get(f"/api/v1/trace/lots/{GTIN_BELLY}/BELLY-11/provenance").json()
    victim, other = belly["steps"][-1]["log_index"], belly["steps"][0]["log_index"]
    with api.runtime.store.engine.begin() as conn:
        record = conn.execute(text("SELECT record FROM trace_events WHERE log_index = :i"), {"i": victim}).scalar_one()
        tampered = record.replace('"eventTime":"2', '"eventTime":"1', 1)
        assert tampered != record
        conn.execute(text("UPDATE trace_events SET record = :r WHERE log_index = :i"), {"r": tampered, "i": victim})
    api.client.app.state.trace_verified.clear()
    steps = c.get(f"/api/v1/trace/lots/{GTIN_BELLY}/BELLY-11/provenance").json()["view"]["steps"]
    order = [s["log_index"] for s in belly["steps"]]  # the view lists the same steps in the same order
    failed = [s for s in steps if not s["verified"]]
    assert [i for i, s in zip(order, steps, strict=True) if not s["verified"]] == [victim]
    assert failed[0]["ledger_note"].startswith("proof failed: the stored record no longer hashes")
    assert len(steps) == len(belly["steps"]) > 3
    with api.runtime.store.engine.begin() as conn:
        conn.execute(text("UPDATE log_entries SET salt = :s WHERE idx = :i AND log_id = "
                          "(SELECT id FROM logs WHERE name = 'trace')"), {"s": b"\x00" * 32, "i": other})
    api.client.app.state.trace_verified.clear()
    steps = c.get(f"/api/v1/trace/lots/{GTIN_BELLY}/BELLY-11/provenance").json()["view"]["steps"]
    assert sorted(i for i, s in zip(order, steps, strict=True) if not s["verified"]) == sorted([victim, other])


def test_trace_benchmark_keeps_its_database_and_measures_only_the_page_again(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from evidence_ledger.ledger_api.bench_trace import run_trace_benchmark

    kept = tmp_path / "db"
    first = run_trace_benchmark(events=1200, out_dir=tmp_path / "out", page_samples=4, db=kept, only="page")
    assert (kept / "bench-meta.json").exists() and (tmp_path / "out" / "trace-page.json").exists()
    assert first["page"]["samples"] == 4 and first["page"]["pages_with_unverified_steps"] == 0
    again = run_trace_benchmark(events=1200, out_dir=tmp_path / "out", page_samples=4, db=kept, only="page",
                                page_seed=7)
    assert again["capture"]["from_kept_db"] == str(kept)
    assert again["capture"]["events"] == first["capture"]["events"] == first["data"]["events"]
    assert again["page_seed"] == 7 and again["page"]["pages_with_unverified_steps"] == 0
    with pytest.raises(ValueError, match=r"holds events=1200, seed=20261121; expected a capture of events=1200, seed=5"):
        run_trace_benchmark(events=1200, out_dir=tmp_path / "out", page_samples=4, db=kept, only="page", seed=5)
    with pytest.raises(ValueError, match=r"only is None or 'page'; got 'capture'"):
        run_trace_benchmark(events=1200, out_dir=tmp_path / "out", db=kept, only="capture")
