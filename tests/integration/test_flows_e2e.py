"""Transaction flows with real components: `ledger serve` on anvil, a synthetic economy ingested
and analysed over HTTP, a finding's cited records waited on until anchored and each bundle
verified offline (pinned log key) and against the chain, and one inspection draw recomputed."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import httpx
import pytest

from evidence_ledger.flows import draw as draw_rules
from evidence_ledger.flows.records import Contract, Enterprise, HeadcountSnapshot, Invoice, Payment
from evidence_ledger.flows.synthetic import generate_economy
from evidence_ledger.ledger.anvil import AnvilNode
from evidence_ledger.ledger.bundle import verify_bundle
from evidence_ledger.ledger.chain import connect
from evidence_ledger.ledger.deployments import Deployments
from evidence_ledger.ledger.errors import VerificationError

from .conftest import free_port
from .server import LedgerServer

pytestmark = pytest.mark.timeout(300)
KINDS = {Enterprise: "enterprise", HeadcountSnapshot: "snapshot", Contract: "contract", Payment: "payment",
         Invoice: "invoice"}


def as_json(rec: object) -> dict:
    d: dict = {"kind": KINDS[type(rec)]}
    for f in dataclasses.fields(rec):  # type: ignore[arg-type]
        if f.name == "log_index":
            continue
        head, *rest = f.name.split("_")
        v = getattr(rec, f.name)
        d[head + "".join(p.title() for p in rest)] = (
            v.isoformat() if isinstance(v, date) else list(v) if isinstance(v, tuple) else v)
    return d


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, anvil_binary: Path) -> Iterator[dict]:
    tmp = tmp_path_factory.mktemp("flows-e2e")
    node = AnvilNode(anvil_binary, tmp / "anvil", port=free_port())
    node.up()
    srv = LedgerServer(tmp / "var", free_port(), node.rpc_url, f"sqlite:///{tmp / 'var' / 'ledger.db'}")
    srv.data_dir.mkdir(parents=True)
    srv.cli("deploy")
    srv.start()
    try:
        eco = generate_economy(enterprises=60, invoices=400, seed=3)
        records = [*eco.enterprises, *eco.snapshots, *eco.contracts, *eco.invoices, *eco.payments]
        with srv.client() as admin:
            r = admin.post("/api/v1/flows/bulk", json={"records": [as_json(x) for x in records]})
            assert r.status_code == 200 and r.json()["accepted"] == len(records), r.text[:2000]
            first = min(i.issued_on for i in eco.invoices)
            period = f"{first.year}-Q{(first.month - 1) // 3 + 1}"
            r = admin.post("/api/v1/flows/analyses", json={"period": period})
            assert r.status_code == 201, r.text
            key = admin.get("/api/v1/logs/flows").json()["verifierKey"]
        yield {"srv": srv, "node": node, "eco": eco, "period": period, "flows_key": key}
    finally:
        srv.stop()
        node.down()


def test_a_findings_records_verify_offline_and_on_chain(world: dict) -> None:
    srv, eco = world["srv"], world["eco"]
    tax_token = _token(srv, "tax")
    with srv.client(tax_token) as tax:
        findings = tax.get(f"/api/v1/flows/findings?period={world['period']}&limit=1000").json()
        planted = {(rule, u) for rule, us in eco.planted.items() for u in us}
        assert planted <= {(f["rule"], f["uscc"]) for f in findings}
        f = next(f for f in findings if f["rule"] in eco.planted and len(f["records"]) >= 2)
        deadline = time.monotonic() + 60
        while True:  # the anchorer batches every 0.5 s here; a real chain takes a block or two
            d = tax.get(f"/api/v1/flows/findings/{f['id']}?waitS=10").json()
            pending = [c for c in d["cited"] if c["visible"] and not c["anchored"]]
            if d["anchored"] and not pending:
                break
            assert time.monotonic() < deadline, d
            time.sleep(1)
    chain = connect(world["node"].rpc_url, None, Deployments.load(srv.data_dir / "deployments.json"))
    checked = 0
    for c in [{"kind": "finding", "bundle": d["bundle"], "logIndex": f["logIndex"]}, *d["cited"]]:
        if not c.get("bundle"):
            assert c["kind"] == "snapshot" and not c["visible"], c  # tax does not see employment data
            continue
        offline = verify_bundle(json.dumps(c["bundle"]), trusted_keys=[world["flows_key"]])
        assert offline.key_pinned and not offline.chain_checked and offline.leaf_index == c["logIndex"]
        on_chain = verify_bundle(c["bundle"], trusted_keys=[world["flows_key"]], chain=chain)
        assert on_chain.chain_checked and on_chain.log_name == "flows"
        record = json.loads(c["bundle"]["record"]["canonical"])
        assert record["type"] == f"evidence-ledger/flows/{c['kind']}/v1"
        checked += 1
        # One changed amount no longer matches the commitment.
        if "amountFen" in record:
            forged = {**record, "amountFen": record["amountFen"] + 1}
            with pytest.raises(VerificationError, match="the record hashes to"):
                verify_bundle(c["bundle"], record=forged)
    assert checked >= 3
    # The same bundle verifies with the `ledger verify` command line, as a citizen would run it.
    path = srv.data_dir.parent / "finding-bundle.json"
    path.write_text(json.dumps(d["bundle"]))
    out = srv.cli("verify", str(path), "--rpc", world["node"].rpc_url, "--key", world["flows_key"], "--json")
    assert json.loads(out.stdout)["valid"] is True


def test_an_inspection_draw_is_committed_before_and_recomputable_after(world: dict) -> None:
    srv = world["srv"]
    market = _token(srv, "market")
    with srv.client(market) as m:
        r = m.post("/api/v1/flows/draws", json={"period": world["period"], "inspectors": ["Li Wei", "Zhang Min",
                                                                                          "Wang Fang"]})
        assert r.status_code == 201, r.text
        d = r.json()
        rev = m.post(f"/api/v1/flows/draws/{d['id']}/reveal")
        assert rev.status_code == 200, rev.text
    pub = httpx.get(f"{srv.url}/api/v1/flows/draws/{d['id']}").json()  # public, no token
    assert httpx.get(f"{srv.url}/api/v1/flows/draws/{d['id']}/verify").json()["problems"] == []
    population = [tuple(p) for p in pub["population"]]
    assert draw_rules.verify_draw(pub["commitmentHex"], pub["seedHex"], population, pub["inspectors"],
                                  pub["ratios"], pub["perEnterprise"],
                                  draw_rules.draw(bytes.fromhex(pub["seedHex"]), population, pub["inspectors"],
                                                  ratios=pub["ratios"], per_enterprise=pub["perEnterprise"],
                                                  beacon_hex=pub["beaconBlockHashHex"]),
                                  beacon_hex=pub["beaconBlockHashHex"]) == []
    # The beacon is a real block of the chain, asked of the node itself.
    block = httpx.post(world["node"].rpc_url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_getBlockByNumber",
                                                    "params": [hex(pub["beaconBlockNumber"]), False]}).json()
    assert block["result"]["hash"] == "0x" + pub["beaconBlockHashHex"]
    # The commitment was on the ledger (anchored) before the seed was revealed.
    with srv.client() as admin:
        b = admin.get(f"/api/v1/logs/flows/entries/{pub['commitLogIndex']}/bundle?includeRecord=true&waitS=20")
        assert b.status_code == 200, b.text
    committed = json.loads(b.json()["record"]["canonical"])
    assert pub["commitmentHex"] in json.dumps(committed) and pub["populationHex"] in json.dumps(committed)
    assert pub["seedHex"] not in json.dumps(committed)
    assert pub["commitLogIndex"] < pub["revealLogIndex"]
    verify_bundle(b.json(), trusted_keys=[world["flows_key"]])
    page = httpx.get(f"{srv.url}/flows/draws/{d['id']}")
    assert page.status_code == 200 and "Recomputed: the draw checks out" in page.text


def _token(srv: LedgerServer, role: str) -> str:
    with srv.client() as admin:
        r = admin.post("/api/v1/tokens", json={"name": f"e2e-{role}", "roles": [role]})
        assert r.status_code == 201, r.text
        return r.json()["token"]
