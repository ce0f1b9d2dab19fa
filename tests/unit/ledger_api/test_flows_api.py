"""Transaction flows through HTTP: records in and out, clear 4xx for bad input, a synthetic economy
with planted fraud ingested and analysed through the API, findings with verifiable proof bundles,
the custody trail of agencies' reads, and a public commit-reveal inspection draw."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
from fastapi.testclient import TestClient

from evidence_ledger.flows import draw as draw_rules
from evidence_ledger.flows.identifiers import invoice_key, make_uscc
from evidence_ledger.flows.records import Contract, Enterprise, HeadcountSnapshot, Invoice, Payment
from evidence_ledger.flows.synthetic import Economy, generate_economy
from evidence_ledger.ledger.bundle import verify_bundle
from evidence_ledger.ledger_api.app import create_app
from evidence_ledger.ledger_api.settings import Settings

from .conftest import Api

KINDS = {Enterprise: "enterprise", HeadcountSnapshot: "snapshot", Contract: "contract", Payment: "payment",
         Invoice: "invoice"}
BULK = 500  # records per /bulk request in these tests (the app's limit below)
AGENCY_ROLES = ("tax", "hr", "police", "market")


# -- helpers shared with test_flows_roles.py ---------------------------------------------------------

def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def as_json(rec: Any, *, kind: bool = True) -> dict[str, Any]:
    """A flows record as the API takes it: camelCase, ISO dates, integer fen; typed for /bulk."""
    d: dict[str, Any] = {"kind": KINDS[type(rec)]} if kind else {}
    for f in dataclasses.fields(rec):
        if f.name == "log_index":
            continue
        v = getattr(rec, f.name)
        d[camel(f.name)] = v.isoformat() if isinstance(v, date) else list(v) if isinstance(v, tuple) else v
    return d


def economy_records(eco: Economy) -> list[Any]:
    """Parties first, invoices before the payments that settle them."""
    return [*eco.enterprises, *eco.snapshots, *eco.contracts, *eco.invoices, *eco.payments]


def period_of(eco: Economy) -> str:
    first = min(i.issued_on for i in eco.invoices)
    last = max(i.issued_on for i in eco.invoices)
    quarter = (first.month - 1) // 3 + 1
    assert (last.year, (last.month - 1) // 3 + 1) == (first.year, quarter), "the economy spans one quarter"
    return f"{first.year}-Q{quarter}"


def make_client(url: str, data_dir: Any) -> TestClient:
    settings = Settings(_env_file=None, data_dir=data_dir, database_url=url, chain="memory",
                        anchor_interval_s=0.2, max_bulk_records=BULK, max_record_bytes=64 * 1024,
                        max_body_bytes=4 * 1024 * 1024, public_base_url="http://ledger.test")
    return TestClient(create_app(settings))


class FlowsApi(Api):
    """Tokens for every role, market regulation included; enterprise tokens are issued per test."""

    def __init__(self, client: TestClient) -> None:
        super().__init__(client)
        self.tokens["market"], _ = self.runtime.tokens.create("test-market", {"market"})

    def get(self, path: str, role: str | None = None, **kw: Any) -> Any:
        return self.client.get(path, headers=self.auth(role) if role else {}, **kw)

    def post(self, path: str, role: str | None, body: Any = None) -> Any:
        return self.client.post(path, json=body, headers=self.auth(role) if role else {})

    def enterprise_token(self, uscc: str) -> str:
        r = self.post(f"/api/v1/flows/enterprises/{uscc}/tokens", "market")
        assert r.status_code == 201, r.text
        self.tokens[f"enterprise:{uscc}"] = r.json()["token"]
        return f"enterprise:{uscc}"

    def ingest(self, records: list[Any], role: str = "admin") -> list[dict]:
        reports = []
        for i in range(0, len(records), BULK):
            r = self.post("/api/v1/flows/bulk", role, {"records": [as_json(x) for x in records[i:i + BULK]]})
            assert r.status_code == 200, r.text
            reports.append(r.json())
        return reports

    def accesses(self, subject: str | None = None) -> list[dict]:
        q = f"?limit=1000&subject={subject}" if subject else "?limit=1000"
        r = self.get(f"/api/v1/flows/accesses{q}", "admin")  # admin reads are not agency reads
        assert r.status_code == 200, r.text
        return r.json()

    def all_findings(self, role: str = "admin", **filters: str) -> list[dict]:
        out: list[dict] = []
        while True:
            q = "&".join(f"{k}={v}" for k, v in {**filters, "limit": 1000, "offset": len(out)}.items())
            r = self.get(f"/api/v1/flows/findings?{q}", role)
            assert r.status_code == 200, r.text
            out += r.json()
            if len(r.json()) < 1000:
                return out


@pytest.fixture
def fapi(tmp_path, db_url: str) -> Iterator[FlowsApi]:  # type: ignore[no-untyped-def]
    with make_client(db_url, tmp_path / "var") as client:
        yield FlowsApi(client)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def economy_api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """One app per database with a small synthetic economy ingested through /bulk and analysed
    through /analyses; the tests below read it (each one checks only what it changes itself)."""
    tmp = tmp_path_factory.mktemp(f"flows-economy-{request.param}")
    url = module_db_url(request, tmp)
    eco = generate_economy(enterprises=60, invoices=800, seed=7)
    with make_client(url, tmp / "var") as client:
        api = FlowsApi(client)
        reports = api.ingest(economy_records(eco))
        period = period_of(eco)
        r = api.post("/api/v1/flows/analyses", "tax", {"period": period})
        assert r.status_code == 201, r.text
        yield {"api": api, "eco": eco, "period": period, "run": r.json(), "reports": reports}


def module_db_url(request: pytest.FixtureRequest, tmp: Any) -> str:
    """The ``db_url`` fixture's two databases, for module-scoped apps."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp / 'ledger.db'}"
    from ...conftest import _reset_pg

    url = request.getfixturevalue("pg_server_url")
    _reset_pg(url)
    return url


# -- small worlds by hand -----------------------------------------------------------------------------

SELLER = make_uscc("91330100MA2AB0001")
BUYER = make_uscc("91330100MA2AB0002")
PAYER = make_uscc("91330100MA2AB0003")


def register_three(fapi: FlowsApi) -> None:
    for code, name in ((SELLER, "Kunshan Precision Parts"), (BUYER, "Suzhou Assembly Works"),
                       (PAYER, "Shanghai Trading Co.")):
        r = fapi.post("/api/v1/flows/enterprises", "market",
                      {"uscc": code, "name": name, "registeredOn": "2020-03-01", "industry": "manufacturing"})
        assert r.status_code == 201, r.text
        assert r.json()["uscc"] == code and isinstance(r.json()["logIndex"], int)


def invoice_body(number: str = "00000001", **over: Any) -> dict[str, Any]:
    return {"sellerUscc": SELLER, "buyerUscc": BUYER, "code": "3200261130", "number": number,
            "amountFen": 8_850_000, "taxFen": 1_150_500, "issuedOn": "2026-07-20", "contractNo": "KS-2026-001",
            "goods": "precision bearings", **over}


def test_records_in_and_out_with_roles_views(fapi: FlowsApi) -> None:
    register_three(fapi)
    ent = fapi.get(f"/api/v1/flows/enterprises/{SELLER}", "tax")
    assert ent.status_code == 200 and ent.json()["name"] == "Kunshan Precision Parts"
    assert ent.json()["registeredOn"] == "2020-03-01"
    r = fapi.post(f"/api/v1/flows/enterprises/{SELLER}/headcount", "hr",
                  {"period": "2026-07", "employees": 120, "insured": 118})
    assert r.status_code == 201 and r.json() == {"uscc": SELLER, "period": "2026-07", "employees": 120,
                                                   "insured": 118, "logIndex": r.json()["logIndex"]}
    assert fapi.get(f"/api/v1/flows/enterprises/{SELLER}/headcount", "hr").json()[0]["insured"] == 118
    assert fapi.get(f"/api/v1/flows/enterprises/{SELLER}/headcount", "tax").status_code == 403  # not tax's remit
    contract = {"contractNo": "KS-2026-001", "buyerUscc": BUYER, "sellerUscc": SELLER, "amountFen": 10_000_500,
                "signedOn": "2026-07-01", "subject": "precision bearings", "paymentTermDays": 60}
    r = fapi.post("/api/v1/flows/contracts", "tax", contract)
    assert r.status_code == 201 and r.json()["amountFen"] == 10_000_500, r.text
    inv = fapi.post("/api/v1/flows/invoices", "tax", invoice_body())
    assert inv.status_code == 201, inv.text
    key = inv.json()["keyHex"]
    assert key == invoice_key(SELLER, "3200261130", "00000001") and inv.json()["totalFen"] == 10_000_500
    pay = fapi.post("/api/v1/flows/payments", "tax",
                    {"paymentRef": "ICBC-20260801-0001", "payerUscc": BUYER, "payeeUscc": SELLER,
                     "amountFen": 10_000_500, "paidOn": "2026-08-01", "contractNo": "KS-2026-001",
                     "invoiceKeys": [key]})
    assert pay.status_code == 201 and pay.json()["invoiceKeys"] == [key], pay.text

    got = fapi.get(f"/api/v1/flows/invoices/{key}", "tax").json()
    assert got["sellerUscc"] == SELLER and got["amountFen"] == 8_850_000 and got["logIndex"] == inv.json()["logIndex"]
    assert [i["keyHex"] for i in fapi.get(f"/api/v1/flows/invoices?uscc={SELLER}&direction=out", "market").json()] == [key]
    assert fapi.get(f"/api/v1/flows/invoices?uscc={SELLER}&direction=in", "market").json() == []
    assert fapi.get(f"/api/v1/flows/invoices?uscc={BUYER}&direction=in&since=2026-07-20&until=2026-07-20",
                    "tax").json()[0]["keyHex"] == key
    assert fapi.get(f"/api/v1/flows/invoices?uscc={BUYER}&since=2026-07-21", "tax").json() == []
    assert fapi.get(f"/api/v1/flows/contracts?uscc={BUYER}", "tax").json()[0]["contractNo"] == "KS-2026-001"
    assert fapi.get(f"/api/v1/flows/payments?uscc={SELLER}", "tax").json()[0]["paymentRef"] == "ICBC-20260801-0001"
    assert len(fapi.get("/api/v1/flows/enterprises", "hr").json()) == 3

    # An enterprise records and reads only what it is a party to.
    own = fapi.enterprise_token(SELLER)
    r = fapi.post("/api/v1/flows/invoices", own, invoice_body("00000002"))
    assert r.status_code == 201, r.text
    r = fapi.post("/api/v1/flows/invoices", own, invoice_body("00000003", sellerUscc=BUYER, buyerUscc=SELLER))
    assert r.status_code == 403 and "its seller" in r.json()["error"]["message"]
    mine = fapi.get("/api/v1/flows/invoices", own).json()
    assert {i["number"] for i in mine} == {"00000001", "00000002"}
    assert fapi.get(f"/api/v1/flows/invoices?uscc={BUYER}", own).status_code == 403
    assert fapi.get(f"/api/v1/flows/invoices/{key}", own).status_code == 200
    other = fapi.enterprise_token(PAYER)
    assert fapi.get(f"/api/v1/flows/invoices/{key}", other).status_code == 403
    assert fapi.get(f"/api/v1/flows/invoices/{'0' * 64}", other).status_code == 403  # unknown looks the same
    assert fapi.get(f"/api/v1/flows/enterprises/{SELLER}", own).status_code == 200
    assert fapi.get(f"/api/v1/flows/enterprises/{SELLER}", other).status_code == 403
    # Enterprises never write through the raw log API; market regulation reads the flows log.
    assert fapi.post("/api/v1/logs/flows/entries", own, {"record": {"x": 1}}).status_code == 403
    assert fapi.get(f"/api/v1/logs/flows/entries/{inv.json()['logIndex']}", "market").status_code == 200


def test_bad_input_is_a_clear_4xx_never_500(fapi: FlowsApi) -> None:
    register_three(fapi)
    bad = SELLER[:17] + ("0" if SELLER[17] != "0" else "1")
    r = fapi.post("/api/v1/flows/enterprises", "market", {"uscc": bad, "name": "X", "registeredOn": "2020-01-01"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "bad_record", r.text
    msg = r.json()["error"]["message"]
    assert r.json()["error"]["field"] == "uscc" and f"should be {SELLER[17]!r}, got {bad[17]!r}" in msg

    r = fapi.post("/api/v1/flows/invoices", "tax", invoice_body(amountFen=-5))
    assert r.status_code == 422, r.text
    assert "amountFen" in r.json()["error"]["message"] and "greater than or equal to 0" in r.json()["error"]["message"]
    assert "got -5" in r.json()["error"]["message"]
    r = fapi.post("/api/v1/flows/invoices", "tax", invoice_body(amountFen=12.5))
    assert r.status_code == 422 and "amountFen" in r.json()["error"]["message"] and "got 12.5" in r.text
    r = fapi.post("/api/v1/flows/invoices", "tax", invoice_body(taxFen=9_000_000))
    assert r.status_code == 422 and r.json()["error"]["code"] == "bad_record", r.text
    assert r.json()["error"]["field"] == "taxFen" and r.json()["error"]["message"].startswith("taxFen: ")
    assert "9000000" in r.json()["error"]["message"] and "8850000" in r.json()["error"]["message"]
    r = fapi.post("/api/v1/flows/invoices", "tax", {**invoice_body(), "discount": 1})
    assert r.status_code == 422 and "discount" in r.json()["error"]["message"]

    stranger = make_uscc("91110000MA0XY0123")
    r = fapi.post("/api/v1/flows/invoices", "tax", invoice_body(buyerUscc=stranger))
    assert r.status_code == 404 and stranger in r.json()["error"]["message"], r.text
    assert fapi.get(f"/api/v1/flows/enterprises/{stranger}", "tax").status_code == 404

    first = fapi.post("/api/v1/flows/invoices", "tax", invoice_body())
    assert first.status_code == 201
    dup = fapi.post("/api/v1/flows/invoices", "tax", invoice_body(amountFen=9_999_999))  # same key, other amount
    assert dup.status_code == 409, dup.text
    err = dup.json()["error"]
    assert err["code"] == "duplicate" and err["logIndex"] == first.json()["logIndex"]
    assert err["keyHex"] == first.json()["keyHex"]

    r = fapi.post("/api/v1/flows/bulk", "tax", {"records": [
        {"kind": "invoice", **invoice_body("00000010")},
        {"kind": "invoice", **invoice_body()},  # the duplicate of the first one above
        {"kind": "invoice", **invoice_body("00000011", buyerUscc=stranger)},
        {"kind": "invoice", **invoice_body("00000012")}]})
    assert r.status_code == 200, r.text
    rep = r.json()
    assert rep["accepted"] == 2 and [(x["position"], x["error"]) for x in rep["rejected"]] == [
        (1, "DuplicateRecordError"), (2, "NotFoundError")]
    assert rep["lastLogIndex"] > rep["firstLogIndex"]
    r = fapi.post("/api/v1/flows/bulk", "tax", {"records": [{"kind": "receipt", "number": "1"}]})
    assert r.status_code == 422 and "receipt" in r.text
    r = fapi.post("/api/v1/flows/bulk", "tax", {"records": [{"kind": "invoice", **invoice_body(str(10**8 + i))}
                                                            for i in range(BULK + 1)]})
    assert r.status_code == 400 and f"at most {BULK} records per request, got {BULK + 1}" in r.json()["error"]["message"]
    r = fapi.post("/api/v1/flows/bulk", "tax", {"records": [
        {"kind": "enterprise", "uscc": stranger, "name": "X", "registeredOn": "2020-01-01"}]})
    assert r.status_code == 403 and "records[0]" in r.json()["error"]["message"]  # registration is market's

    for path in ("/api/v1/flows/findings/nope", "/api/v1/flows/draws/nope", "/api/v1/flows/draws/nope/verify",
                 f"/api/v1/flows/grades/{SELLER}/2026-Q3"):
        r = fapi.get(path, "admin")
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", (path, r.text)
    r = fapi.post("/api/v1/flows/analyses", "tax", {"period": "2026-13"})
    assert r.status_code == 422 and "2026-13" in r.json()["error"]["message"], r.text
    r = fapi.post("/api/v1/flows/referrals", "tax", {"findingIds": ["nope"], "note": "x"})
    assert r.status_code == 404, r.text
    r = fapi.get("/api/v1/flows/invoices?direction=sideways", "tax")
    assert r.status_code == 422 and "sideways" in r.json()["error"]["message"]


# -- the synthetic economy ----------------------------------------------------------------------------

def test_every_planted_case_is_found_with_its_rule_and_no_clean_enterprise_is(economy_api: dict) -> None:
    api, eco = economy_api["api"], economy_api["eco"]
    assert all(not rep["rejected"] for rep in economy_api["reports"]), economy_api["reports"]
    assert sum(rep["accepted"] for rep in economy_api["reports"]) == len(economy_records(eco))
    run = economy_api["run"]
    assert run["period"] == economy_api["period"] and run["invoices"] == len(eco.invoices)
    findings = api.all_findings(period=economy_api["period"])
    assert sum(run["findingsByRule"].values()) == len(findings)
    hits = {(f["rule"], f["uscc"]) for f in findings}
    planted = {(rule, u) for rule, usccs in eco.planted.items() for u in usccs}
    assert planted and planted <= hits, sorted(planted - hits)
    flagged_clean = {f["uscc"] for f in findings} & eco.clean
    assert not flagged_clean, sorted(flagged_clean)
    for f in findings:
        assert f["reason"] and f["records"] and isinstance(f["logIndex"], int), f
    grades = api.get(f"/api/v1/flows/grades?period={economy_api['period']}", "tax").json()
    assert len(grades) == len(eco.enterprises) and sum(run["gradesByGrade"].values()) == len(grades)
    assert all(g["grade"] in "AB" for g in grades if g["uscc"] in eco.clean)
    one = next(g for g in grades if g["uscc"] in eco.planted[next(iter(eco.planted))])
    detail = api.get(f"/api/v1/flows/grades/{one['uscc']}/{economy_api['period']}", "market").json()
    assert detail["inputs"]["uscc"] == one["uscc"] and detail["inputs"]["ruleHits"]
    assert isinstance(detail["logIndex"], int) and detail["grade"] in "BCD"


def test_a_findings_cited_records_come_with_bundles_that_verify(economy_api: dict) -> None:
    api, eco, period = economy_api["api"], economy_api["eco"], economy_api["period"]
    chain = api.runtime.anchorer.chain()
    findings = api.all_findings(period=period)
    f = next(f for f in findings if any(r["kind"] == "invoice" for r in f["records"]))
    detail = api.get(f"/api/v1/flows/findings/{f['id']}?waitS=10", "tax")
    assert detail.status_code == 200, detail.text
    d = detail.json()
    assert d["anchored"] and verify_bundle(d["bundle"], chain=chain).leaf_index == f["logIndex"]
    assert len(d["cited"]) == len(f["records"])
    for c in d["cited"]:
        if c["kind"] == "snapshot":  # employment data: tax may not see it, not even its digest
            assert c["visible"] is False and c["bundle"] is None and "withheld" in c["note"]
            continue
        assert c["visible"] and c["anchored"], c
        report = verify_bundle(c["bundle"], chain=chain, trusted_keys=[api.runtime.verifier_keys["flows"]])
        assert report.leaf_index == c["logIndex"] and report.chain_checked and report.key_pinned
        record = json.loads(c["bundle"]["record"]["canonical"])
        assert record["type"] == f"evidence-ledger/flows/{c['kind']}/v1"
    # The shell company's finding cites its headcount: market regulation sees it, tax does not.
    shells = [x for x in findings if any(r["kind"] == "snapshot" for r in x["records"])]
    assert shells and {x["uscc"] for x in shells} <= set().union(*eco.planted.values())
    m = api.get(f"/api/v1/flows/findings/{shells[0]['id']}?waitS=10", "market").json()
    t = api.get(f"/api/v1/flows/findings/{shells[0]['id']}?waitS=10", "tax").json()
    snap_m = [c for c in m["cited"] if c["kind"] == "snapshot"]
    snap_t = [c for c in t["cited"] if c["kind"] == "snapshot"]
    assert snap_m and all(c["visible"] and c["bundle"] for c in snap_m)
    assert snap_t and all(not c["visible"] and c["bundle"] is None for c in snap_t)
    rec = json.loads(snap_m[0]["bundle"]["record"]["canonical"])
    assert rec["uscc"] == shells[0]["uscc"] and rec["insured"] == 0

    # An enterprise sees its own finding, and only the cited records it is a party to: in a cycle
    # A -> B -> C -> A, the invoice between the two others is withheld from A.
    cycle = next(x for x in findings if x["rule"] == "circular_invoicing")
    me = cycle["uscc"]
    own = api.enterprise_token(me)
    mine = api.get(f"/api/v1/flows/findings/{cycle['id']}?waitS=10", own)
    assert mine.status_code == 200, mine.text
    invoices = {i.key_hex: i for i in eco.invoices}
    for c in mine.json()["cited"]:
        inv = invoices[c["key"]]
        party = me in (inv.seller_uscc, inv.buyer_uscc)
        assert c["visible"] is party and (c["bundle"] is not None) is party, (me, c)
    assert [c["visible"] for c in mine.json()["cited"]].count(False) == 1
    other = api.enterprise_token(sorted(eco.clean)[0])
    assert api.get(f"/api/v1/flows/findings/{cycle['id']}", other).status_code == 403


def test_referral_opens_a_case_to_police_and_every_agency_read_is_in_custody(economy_api: dict) -> None:
    api, eco, period = economy_api["api"], economy_api["eco"], economy_api["period"]
    findings = api.all_findings(period=period)
    rule = sorted(eco.planted)[0]
    target = sorted(eco.planted[rule])[0]
    theirs = [f for f in findings if f["uscc"] == target]
    others = sorted({f["uscc"] for f in findings} - {target})
    clean = sorted(eco.clean)[0]

    # Police sees nothing until a case is referred.
    assert api.get("/api/v1/flows/findings", "police").json() == []
    before = len(api.accesses())
    assert api.get(f"/api/v1/flows/enterprises/{target}", "police").status_code == 403
    assert api.get(f"/api/v1/flows/findings?uscc={target}", "police").status_code == 403
    r = api.post("/api/v1/flows/referrals", "tax", {"findingIds": [f["id"] for f in theirs],
                                                    "note": "suspected fraudulent invoicing; please investigate"})
    assert r.status_code == 201 and r.json()["uscc"] == target, r.text
    mixed = api.post("/api/v1/flows/referrals", "tax", {"findingIds": [theirs[0]["id"], next(
        f["id"] for f in findings if f["uscc"] != target)], "note": "two enterprises"})
    assert mixed.status_code == 422, mixed.text

    reads = [  # (role, path) each an agency read
        ("police", f"/api/v1/flows/enterprises/{target}"),
        ("police", f"/api/v1/flows/findings?uscc={target}"),
        ("police", "/api/v1/flows/findings"),
        ("police", f"/api/v1/flows/findings/{theirs[0]['id']}"),
        ("police", "/api/v1/flows/referrals"),
        ("tax", f"/api/v1/flows/enterprises/{target}"),
        ("tax", f"/api/v1/flows/invoices?uscc={target}"),
        ("tax", f"/api/v1/flows/grades/{target}/{period}"),
        ("hr", f"/api/v1/flows/enterprises/{target}/headcount"),
        ("market", f"/api/v1/flows/contracts?uscc={target}"),
        ("market", f"/api/v1/flows/payments?uscc={target}"),
    ]
    for role, path in reads:
        r = api.get(path, role)
        assert r.status_code == 200, (role, path, r.text)
    police_findings = api.get("/api/v1/flows/findings?limit=1000", "police").json()
    assert {f["uscc"] for f in police_findings} == {target}
    assert api.get(f"/api/v1/flows/enterprises/{clean}", "police").status_code == 403
    if others:
        assert api.get(f"/api/v1/flows/findings?uscc={others[0]}", "police").status_code == 403
    # Not agency reads: admin, an enterprise reading its own, the public reading draws.
    own = api.enterprise_token(target)
    assert api.get(f"/api/v1/flows/findings?uscc={target}", own).status_code == 200
    assert api.get(f"/api/v1/flows/enterprises/{target}", "admin").status_code == 200

    after = api.accesses()
    # Exactly one entry per successful agency read: the list above plus police's unfiltered findings
    # list; refusals, writes, admin reads and the enterprise's own read leave none.
    assert len(after) - before == len(reads) + 1, [(a["actor"], a["action"]) for a in after]
    mine = api.accesses(subject=f"enterprise:{target}")
    assert {a["actor"] for a in mine} >= {"police:test-police", "tax:test-tax", "hr:test-hr", "market:test-market"}
    for a in mine:
        assert a["subject"] == f"enterprise:{target}" and isinstance(a["logIndex"], int) and a["at"]
    entry = api.get(f"/api/v1/logs/custody/entries/{mine[0]['logIndex']}", "admin").json()
    assert entry["record"]["type"] == "evidence-ledger/flows-access/v1"
    why = api.client.get(f"/api/v1/flows/enterprises/{target}",
                         headers={**api.auth("tax"), "X-Access-Reason": "audit SZ-2026-17"})
    assert why.status_code == 200
    assert [a["reason"] for a in api.accesses(subject=f"enterprise:{target}")].count("audit SZ-2026-17") == 1
    # Market regulation reads the trail too, and that read is itself recorded.
    n = len(api.accesses())
    assert api.get(f"/api/v1/flows/accesses?subject={target}", "market").status_code == 200
    assert len(api.accesses()) == n + 1
    assert api.get("/api/v1/flows/accesses", "tax").status_code == 403


def test_draw_commit_reveal_verify_and_public_page(economy_api: dict) -> None:
    api, eco, period = economy_api["api"], economy_api["eco"], economy_api["period"]
    before = len(api.accesses())
    r = api.post("/api/v1/flows/draws", "market", {"period": period, "inspectors": ["Li Wei", "Zhang Min",
                                                                                    "Wang Fang", "Chen Jie"],
                                                   "perEnterprise": 2})
    assert r.status_code == 201, r.text
    d = r.json()
    assert d["seedHex"] is None and d["selections"] == [] and len(d["commitmentHex"]) == 64
    pub = api.get(f"/api/v1/flows/draws/{d['id']}").json()  # public: no token
    assert pub["seedHex"] is None and len(pub["population"]) == len(eco.enterprises)
    assert sorted(pub["inspectors"]) == ["Chen Jie", "Li Wei", "Wang Fang", "Zhang Min"]
    pre = api.get(f"/api/v1/flows/draws/{d['id']}/verify").json()
    assert pre["revealed"] is False and not pre["valid"] and len(pre["problems"]) == 1
    assert "not revealed" in pre["problems"][0]
    assert api.post(f"/api/v1/flows/draws/{d['id']}/reveal", "tax").status_code == 403
    rev = api.post(f"/api/v1/flows/draws/{d['id']}/reveal", "market")
    assert rev.status_code == 200, rev.text
    seed = rev.json()["seedHex"]
    assert seed and rev.json()["revealLogIndex"] > d["commitLogIndex"]
    again = api.post(f"/api/v1/flows/draws/{d['id']}/reveal", "market")
    assert again.status_code == 409 and again.json()["error"]["code"] == "draw_state"

    verdict = api.get(f"/api/v1/flows/draws/{d['id']}/verify").json()
    assert verdict == {"drawId": d["id"], "revealed": True, "valid": True, "problems": []}
    pub = api.get(f"/api/v1/flows/draws/{d['id']}").json()
    # The beacon is the block that anchored the commitment, as the anchor book recorded it.
    anchor = api.client.app.state.runtime.anchorer.book.covering(
        "flows", api.client.app.state.runtime.anchorer.chain_id, d["commitLogIndex"])
    assert (pub["beaconBlockNumber"], pub["beaconBlockHashHex"]) == (
        anchor.block_number, anchor.block_hash_hex.removeprefix("0x"))
    # Recompute it here as anyone would, from the public data alone.
    picked = draw_rules.draw(bytes.fromhex(pub["seedHex"]), [tuple(p) for p in pub["population"]],
                             pub["inspectors"], ratios=pub["ratios"], per_enterprise=pub["perEnterprise"],
                             beacon_hex=pub["beaconBlockHashHex"])
    assert [(s.uscc, s.grade, list(s.inspectors)) for s in picked] == [
        (s["uscc"], s["grade"], s["inspectors"]) for s in pub["selections"]]
    grades = {u: g for u, g in pub["population"]}
    assert {s["uscc"] for s in pub["selections"]} >= {u for u, g in grades.items() if g == "D"}
    # A tampered selection is caught by the same check the server runs.
    forged = [dataclasses.replace(s, inspectors=tuple(reversed(s.inspectors))) for s in picked]
    if picked:
        bad = draw_rules.verify_draw(pub["commitmentHex"], pub["seedHex"], [tuple(p) for p in pub["population"]],
                                     pub["inspectors"], pub["ratios"], pub["perEnterprise"],
                                     [dataclasses.replace(forged[0], uscc=sorted(eco.clean)[0]), *forged[1:]],
                                     beacon_hex=pub["beaconBlockHashHex"])
        assert bad
        # Without the beacon the same seed draws differently: the seed alone does not decide.
        unmixed = draw_rules.draw(bytes.fromhex(pub["seedHex"]), [tuple(p) for p in pub["population"]],
                                  pub["inspectors"], ratios=pub["ratios"], per_enterprise=pub["perEnterprise"])
        assert [s.ticket_hex for s in unmixed] != [s.ticket_hex for s in picked]

    page = api.client.get(f"/flows/draws/{d['id']}")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for expected in (d["commitmentHex"], seed, "Recomputed: the draw checks out", d["populationHex"]):
        assert expected in page.text
    for s in pub["selections"]:
        assert s["uscc"] in page.text
    listing = api.client.get("/flows/draws")
    assert listing.status_code == 200 and f'href="/flows/draws/{d["id"]}"' in listing.text
    assert f"revealed</td>\n      <td>{len(pub['selections'])}</td>" in listing.text
    assert 'href="/flows/draws">Inspections</a>' in listing.text
    empty = api.client.get("/flows/draws?period=2020-01")
    assert empty.status_code == 200 and "No draws for 2020-01 yet." in empty.text
    assert len(api.accesses()) == before  # public draw reads are not agency reads
    assert api.get("/api/v1/flows/draws").json()[0]["id"] == d["id"]
    # A beacon swapped in the database is caught: it is not the commitment's anchor on the ledger.
    from sqlalchemy import text

    with api.client.app.state.runtime.engine.begin() as conn:
        conn.execute(text("UPDATE flows_draws SET beacon_block_hash_hex = :h WHERE id = :i"),
                     {"h": "ee" * 32, "i": d["id"]})
    forged = api.get(f"/api/v1/flows/draws/{d['id']}/verify").json()
    assert forged["valid"] is False
    assert any(p.startswith(f"beacon: block {pub['beaconBlockNumber']} ({'ee' * 32}) is not the confirmed anchor")
               for p in forged["problems"]), forged["problems"]


def test_enterprise_page_shows_each_role_its_remit(economy_api: dict) -> None:
    api, eco, period = economy_api["api"], economy_api["eco"], economy_api["period"]
    rule = sorted(eco.planted)[-1]
    target = sorted(eco.planted[rule])[0]
    path = f"/flows/enterprises/{target}?period={period}"
    anon = api.client.get(path, follow_redirects=False)
    assert anon.status_code == 303 and anon.headers["location"].startswith("/login?next=")
    tax = api.get(path, "tax")
    assert tax.status_code == 200 and 'id="findings"' in tax.text and 'id="grade"' in tax.text
    assert rule in tax.text and 'id="headcount"' not in tax.text
    hr = api.get(path, "hr")
    assert hr.status_code == 200 and 'id="headcount"' in hr.text and 'id="findings"' not in hr.text
    market = api.get(path, "market")
    assert all(f'id="{x}"' in market.text for x in ("findings", "grade", "headcount"))
    assert api.get(path, "officer").status_code == 403
    n = len(api.accesses(subject=f"enterprise:{target}"))
    api.get(path, "tax")
    assert len(api.accesses(subject=f"enterprise:{target}")) == n + 1
