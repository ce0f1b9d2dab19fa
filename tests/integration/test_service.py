"""The service as `make run` runs it: real processes, a real anvil, SQLite and PostgreSQL.

Crash safety: the server is killed with SIGKILL while records stream in; every acknowledged
record must survive, the log must only have grown (a consistency proof verifies) and anchoring
must resume. Then the same with anvil killed under the running server.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from pathlib import Path

import httpx
import pytest

from evidence_ledger.ledger import merkle
from evidence_ledger.ledger.anvil import AnvilNode

from .conftest import free_port
from .server import LedgerServer


def b64d(s: str) -> bytes:
    return base64.b64decode(s)


@pytest.fixture
def server(tmp_path: Path, fresh_anvil: AnvilNode, db_url: str):  # type: ignore[no-untyped-def]
    fresh_anvil.up()
    srv = LedgerServer(tmp_path / "var", free_port(), fresh_anvil.rpc_url, db_url)
    srv.data_dir.mkdir(parents=True)
    out = srv.cli("deploy")
    assert "LedgerAnchor: 0x" in out.stdout and "Authority: 0x" in out.stdout and "LotStatus: 0x" in out.stdout
    srv.start()
    yield srv
    srv.stop()


def officer(srv: LedgerServer) -> httpx.Client:
    with srv.client() as admin:
        r = admin.post("/api/v1/tokens", json={"name": "officer", "roles": ["officer"]})
        assert r.status_code == 201, r.text
    return srv.client(r.json()["token"])


def wait_ready(srv: LedgerServer, status: str, timeout_s: float = 30) -> dict:
    deadline = time.monotonic() + timeout_s
    body: dict = {}
    while time.monotonic() < deadline:
        body = httpx.get(srv.url + "/readyz", timeout=5).json()
        if body["status"] == status:
            return body
        time.sleep(0.2)
    raise AssertionError(f"/readyz never said {status}: {body}")


def test_append_is_anchored_within_seconds_and_verifies_with_the_cli(server: LedgerServer, tmp_path: Path,
                                                                     fresh_anvil: AnvilNode) -> None:
    c = officer(server)
    record = {"case": "SZ-2026-0001", "url": "https://shop.example/item/1", "sha256": "ab" * 32}
    t0 = time.monotonic()
    r = c.post("/api/v1/logs/evidence/entries", json={"record": record})
    assert r.status_code == 201, r.text
    b = c.get(f"/api/v1/logs/evidence/entries/{r.json()['index']}/bundle", params={"waitS": 10})
    assert b.status_code == 200, b.text
    assert time.monotonic() - t0 < 5
    bundle_path, record_path = tmp_path / "bundle.json", tmp_path / "record.json"
    bundle_path.write_text(json.dumps(b.json()))
    record_path.write_text(json.dumps(record))
    ok = server.cli("verify", str(bundle_path), "--record", str(record_path), "--rpc", fresh_anvil.rpc_url)
    assert "VALID" in ok.stdout and "anchor:" in ok.stdout, ok.stdout
    record_path.write_text(json.dumps({**record, "sha256": "cd" * 32}))
    bad = server.cli("verify", str(bundle_path), "--record", str(record_path), "--rpc", fresh_anvil.rpc_url,
                     check=False)
    assert bad.returncode == 1 and "INVALID record: the record hashes to" in bad.stderr
    tampered = b.json()
    tampered["anchor"]["blockHash"] = "0x" + "00" * 32
    bundle_path.write_text(json.dumps(tampered))
    bad = server.cli("verify", str(bundle_path), "--rpc", fresh_anvil.rpc_url, "--json", check=False)
    assert bad.returncode == 1 and json.loads(bad.stdout)["field"] == "anchor.blockHash"


def test_restart_refuses_a_chain_whose_code_does_not_match(server: LedgerServer) -> None:
    server.stop()
    path = server.data_dir / "deployments.json"
    doc = json.loads(path.read_text())
    chains = doc["chains"] if "chains" in doc else doc
    (chain,) = chains.values()
    chain["LedgerAnchor"]["address"], chain["Authority"]["address"] = (
        chain["Authority"]["address"], chain["LedgerAnchor"]["address"])
    path.write_text(json.dumps(doc))
    out = server.cli("serve", check=False, timeout=60)
    assert out.returncode != 0
    assert "does not match" in out.stderr, out.stderr


def test_sigkill_mid_stream_loses_no_acknowledged_record(server: LedgerServer) -> None:
    c = officer(server)
    acked: dict[int, str] = {}
    stop = threading.Event()

    def stream() -> None:
        n = 0
        while not stop.is_set():
            try:
                r = c.post("/api/v1/logs/evidence/entries", json={"record": {"n": n}}, timeout=5)
            except httpx.HTTPError:
                return  # the server died mid-request: that record was never acknowledged
            if r.status_code == 201:
                acked[r.json()["index"]] = r.json()["recordDigest"]
            n += 1

    threads = [threading.Thread(target=stream) for _ in range(3)]
    for t in threads:
        t.start()
    # An anchored checkpoint before the crash (the newest one may still be awaiting its receipt).
    deadline = time.monotonic() + 15
    anchored: list[dict] = []
    while not anchored and time.monotonic() < deadline:
        time.sleep(0.25)
        anchored = [cp for cp in c.get("/api/v1/logs/evidence/checkpoints").json() if cp["anchor"] is not None]
    assert anchored, "anchoring ran before the crash"
    time.sleep(0.5)
    server.kill9()
    stop.set()
    for t in threads:
        t.join()
    assert len(acked) > 20

    server.start()
    c = officer(server)
    for index, digest in acked.items():
        got = c.get(f"/api/v1/logs/evidence/entries/{index}").json()
        assert got["recordDigest"] == digest
    c.post("/api/v1/logs/evidence/entries", json={"record": {"after": "restart"}})
    flushed = c.post("/api/v1/logs/evidence/flush")
    assert flushed.status_code == 200, flushed.text
    new = flushed.json()[0]
    assert new["anchor"] is not None and new["treeSize"] > max(acked)
    old = anchored[0]
    proof = c.get("/api/v1/logs/evidence/consistency",
                  params={"first": old["treeSize"], "second": new["treeSize"]}).json()
    merkle.verify_consistency(old["treeSize"], new["treeSize"], [b64d(h) for h in proof["hashes"]],
                              b64d(old["rootHash"]), b64d(new["rootHash"]))
    bundle = c.get(f"/api/v1/logs/evidence/entries/{max(acked)}/bundle").json()
    v = httpx.post(server.url + "/api/v1/verify", json={"bundle": bundle}).json()
    assert v["valid"] and v["chainChecked"], v


def test_anvil_killed_and_restarted_under_the_server(server: LedgerServer, fresh_anvil: AnvilNode) -> None:
    c = officer(server)
    first = c.post("/api/v1/logs/evidence/entries", json={"record": {"before": 1}}).json()
    assert c.get(f"/api/v1/logs/evidence/entries/{first['index']}/bundle", params={"waitS": 10}).status_code == 200
    fresh_anvil.kill9()
    during = [c.post("/api/v1/logs/evidence/entries", json={"record": {"during": i}}) for i in range(10)]
    assert all(r.status_code == 201 for r in during), "appends go on while the chain is down"
    ready = wait_ready(server, "degraded")
    assert ready["chain"]["status"] == "unavailable" and ready["pendingLeaves"]["evidence"] >= 10
    fresh_anvil.up()
    wait_ready(server, "ok", timeout_s=60)
    last = during[-1].json()["index"]
    b = c.get(f"/api/v1/logs/evidence/entries/{last}/bundle", params={"waitS": 30})
    assert b.status_code == 200, b.text
    v = httpx.post(server.url + "/api/v1/verify", json={"bundle": b.json()}).json()
    assert v["valid"] and v["chainChecked"], v
    b0 = c.get(f"/api/v1/logs/evidence/entries/{first['index']}/bundle").json()
    v0 = httpx.post(server.url + "/api/v1/verify", json={"bundle": b0}).json()
    assert v0["valid"], v0


def test_rpc_chain_with_the_key_in_an_encrypted_keystore(tmp_path: Path, fresh_anvil: AnvilNode) -> None:
    from eth_account import Account

    from evidence_ledger.ledger.anvil import ANVIL_DEV_PRIVATE_KEY

    fresh_anvil.up()
    keystore = tmp_path / "anchorer.json"
    keystore.write_text(json.dumps(Account.encrypt(ANVIL_DEV_PRIVATE_KEY, "pass phrase", kdf="scrypt", iterations=2)))
    srv = LedgerServer(tmp_path / "var", free_port(), fresh_anvil.rpc_url, f"sqlite:///{tmp_path / 'var' / 'l.db'}",
                       extra_env={"LEDGER_CHAIN": "rpc", "LEDGER_KEYSTORE_PATH": str(keystore),
                                  "LEDGER_KEYSTORE_PASSWORD": "pass phrase"})
    srv.data_dir.mkdir(parents=True)
    srv.cli("deploy")
    srv.start()
    try:
        c = officer(srv)
        e = c.post("/api/v1/logs/evidence/entries", json={"record": {"via": "rpc"}}).json()
        b = c.get(f"/api/v1/logs/evidence/entries/{e['index']}/bundle", params={"waitS": 10})
        assert b.status_code == 200, b.text
        assert httpx.post(srv.url + "/api/v1/verify", json={"bundle": b.json()}).json()["valid"]
        assert "pass phrase" not in srv.log_tail()
    finally:
        srv.stop()
    srv.env["LEDGER_KEYSTORE_PASSWORD"] = "wrong"
    r = srv.cli("serve", check=False)
    assert r.returncode == 1 and "keystore" in r.stderr.lower()
