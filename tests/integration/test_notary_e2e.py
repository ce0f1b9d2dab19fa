"""Evidence notarization end to end with real components, as `make run` runs them.

A local HTTPS site (its own CA, made by the test) is captured through the API with real headless
Chromium, notarized and anchored on a real anvil; its bundle verifies with `ledger verify` against
the chain, its certificate's QR code leads to the verification page, and changing one byte of the
archive makes verification fail naming the part. Then headless Chromium drives the verification
page (a file dropped, a verdict shown) and the case page, checked on screenshots.
"""

from __future__ import annotations

import io
import json
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from evidence_ledger.ledger.anvil import AnvilNode
from evidence_ledger.notary.capture import PART_SCREENSHOT, verify_wacz
from evidence_ledger.notary.errors import ArchiveIntegrityError

from ..conftest import missing
from .conftest import free_port
from .server import LedgerServer
from .testsite import CHROMIUM, Site

pytestmark = pytest.mark.timeout(300)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
GREEN, RED = (15, 123, 63), (180, 35, 24)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    if not CHROMIUM.exists():
        missing("chromium is not installed (make setup installs it)")
    s = Site(tmp_path_factory.mktemp("site"))
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, site: Site, anvil_binary: Path) -> Iterator[dict]:
    tmp = tmp_path_factory.mktemp("e2e")
    node = AnvilNode(anvil_binary, tmp / "anvil", port=free_port())
    node.up()
    (tmp / "ca.pem").write_bytes(site.ca_pem)
    port = free_port()
    srv = LedgerServer(tmp / "var", port, node.rpc_url, f"sqlite:///{tmp / 'var' / 'ledger.db'}", extra_env={
        "LEDGER_CAPTURE_ALLOW_NETWORKS": '["127.0.0.1/32"]', "LEDGER_CAPTURE_EXTRA_CA_FILE": str(tmp / "ca.pem"),
        "LEDGER_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}"})
    srv.data_dir.mkdir(parents=True)
    srv.cli("deploy")
    srv.start()
    try:
        with srv.client() as admin:
            agency = admin.post("/api/v1/agencies", json={"code": "SAMR-SZ", "kind": "market_regulation",
                                                          "name": "Shenzhen Market Supervision Bureau"}).json()
            officer = admin.post("/api/v1/officers", json={"agencyId": agency["id"], "name": "Li Wei"}).json()
        c = srv.client(officer["token"])
        case = c.post("/api/v1/cases", json={"reference": "SZ-2026-0042", "title": "Fake handbag listing"}).json()
        r = c.post(f"/api/v1/cases/{case['id']}/captures", json={"url": site.url("/page")}, timeout=120)
        assert r.status_code == 201, r.text
        ev = r.json()
        bundle = c.get(f"/api/v1/evidence/{ev['id']}/bundle", params={"waitS": 15}).json()
        wacz = c.get(f"/api/v1/evidence/{ev['id']}/content", params={"reason": "e2e check"}).content
        yield {"srv": srv, "node": node, "tmp": tmp, "c": c, "case": case, "ev": ev, "bundle": bundle,
               "wacz": wacz, "officer": officer}
    finally:
        srv.stop()
        node.down()


def tamper(wacz: bytes, member: str) -> bytes:
    """Flip one byte inside a stored member, keeping the zip structure."""
    with zipfile.ZipFile(io.BytesIO(wacz)) as z:
        info = z.getinfo(member)
    data = bytearray(wacz)
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + info.compress_size // 2] ^= 0x01
    return bytes(data)


def test_captured_page_is_notarized_with_every_part(world: dict) -> None:
    ev = world["ev"]
    names = {p["name"] for p in ev["parts"]}
    assert {"capture/screenshot.png", "capture/dom.html", "capture/manifest.json"} <= names
    assert ev["kind"] == "web" and ev["media_type"] == "application/wacz+zip"
    assert ev["record"]["capture"]["url"].endswith("/page") and ev["record"]["signature"]["alg"] == "Ed25519"
    assert verify_wacz(world["wacz"])["valid"]


def test_bundle_and_file_verify_with_the_cli_against_anvil(world: dict) -> None:
    tmp, srv = world["tmp"], world["srv"]
    (tmp / "bundle.json").write_text(json.dumps(world["bundle"]))
    (tmp / "capture.wacz").write_bytes(world["wacz"])
    ok = srv.cli("verify", str(tmp / "bundle.json"), "--file", str(tmp / "capture.wacz"), "--rpc", world["node"].rpc_url)
    assert "VALID" in ok.stdout and "file: is the notarized content" in ok.stdout, ok.stdout
    (tmp / "tampered.wacz").write_bytes(tamper(world["wacz"], "capture/screenshot.png"))
    bad = srv.cli("verify", str(tmp / "bundle.json"), "--file", str(tmp / "tampered.wacz"),
                  "--rpc", world["node"].rpc_url, check=False)
    assert bad.returncode == 1 and "archive part capture/screenshot.png" in bad.stderr, bad.stderr


def test_one_changed_byte_is_named_by_the_api_and_the_archive_check(world: dict) -> None:
    for member in ("capture/screenshot.png", "archive/data.warc.gz"):
        tampered = tamper(world["wacz"], member)
        with pytest.raises(ArchiveIntegrityError) as e:
            verify_wacz(tampered)
        assert e.value.part == member
        v = httpx.post(world["srv"].url + "/api/v1/evidence/verify", files={"file": ("x.wacz", tampered)},
                       timeout=30).json()
        assert not v["ok"] and any(f"archive part {member}" in r for r in v["reasons"]), v
    v = httpx.post(world["srv"].url + "/api/v1/evidence/verify",
                   files={"file": ("x.wacz", world["wacz"]), "bundle": ("b.json", json.dumps(world["bundle"]))},
                   timeout=30).json()
    assert v["ok"] and v["chain_checked"] and v["authorized"] is True and v["matched"] == "content", v


def test_certificate_qr_leads_to_the_verification_page(world: dict) -> None:
    import zxingcpp

    pdf = world["c"].get(f"/api/v1/evidence/{world['ev']['id']}/certificate.pdf").content
    (world["tmp"] / "cert.pdf").write_bytes(pdf)
    subprocess.run(["pdftoppm", "-png", "-r", "110", "-f", "1", "-l", "1", str(world["tmp"] / "cert.pdf"),
                    str(world["tmp"] / "cert")], check=True)
    png = next(world["tmp"].glob("cert-*.png"))
    Path("/tmp/e2e_certificate.png").write_bytes(png.read_bytes())
    codes = [c.text for c in zxingcpp.read_barcodes(Image.open(png))]
    assert codes == [f"{world['srv'].url}/verify?evidence={world['ev']['id']}"]
    text = subprocess.run(["pdftotext", str(world["tmp"] / "cert.pdf"), "-"], capture_output=True, text=True).stdout
    assert world["ev"]["sha256"] in text and world["bundle"]["anchor"]["txHash"] in text.replace("\n", "")


def _border_colour(shot: Image.Image, box: dict) -> tuple[int, int, int]:
    return shot.getpixel((int(box["x"]) + 1, int(box["y"] + box["height"] / 2)))[:3]


def _close(a: tuple[int, int, int], b: tuple[int, int, int]) -> bool:
    return all(abs(x - y) <= 40 for x, y in zip(a, b))


def test_browser_verification_page_and_case_page(world: dict) -> None:
    import zxingcpp
    from playwright.sync_api import sync_playwright

    srv = world["srv"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 420, "height": 900})  # a phone
            for payload, expect_ok in ((world["wacz"], True), (tamper(world["wacz"], PART_SCREENSHOT), False)):
                page.goto(srv.url + f"/verify?evidence={world['ev']['id']}")
                dt = page.evaluate_handle(
                    "b => { const dt = new DataTransfer(); dt.items.add(new File([new Uint8Array(b)], 'capture.wacz'));"
                    " return dt; }", list(payload))
                page.dispatch_event("#drop-file", "drop", {"dataTransfer": dt})
                assert page.eval_on_selector("#file", "i => i.files.length") == 1
                page.click("#verify-button")
                page.wait_for_selector("#verdict")
                text = page.inner_text("#verdict")
                name = "verify_ok" if expect_ok else "verify_tampered"
                path = Path(f"/tmp/{name}.png")
                page.screenshot(path=str(path), full_page=True)
                shot = Image.open(path).convert("RGB")
                box = page.locator("#verdict").bounding_box()
                if expect_ok:
                    assert "Verified" in text and "Li Wei" in text and "SZ-2026-0042" in text, text
                    assert _close(_border_colour(shot, box), GREEN)
                else:
                    assert "Not verified" in text and "archive part capture/screenshot.png" in text, text
                    assert _close(_border_colour(shot, box), RED)
            page.goto(srv.url + "/login?next=/cases")
            page.fill("#token", world["officer"]["token"])
            page.click("button[type=submit]")
            page.wait_for_url("**/cases")
            page.click(f"text={world['case']['reference']}")
            page.wait_for_url(f"**/cases/{world['case']['id']}")
            page.wait_for_selector("#evidence")
            assert page.eval_on_selector("img.qr", "i => i.complete && i.naturalWidth > 0")
            page.screenshot(path="/tmp/case_page.png", full_page=True)
            codes = [c.text for c in zxingcpp.read_barcodes(Image.open("/tmp/case_page.png"))]
            assert f"{srv.url}/cases/{world['case']['id']}" in codes
            timeline = page.inner_text("#timeline")
            assert "notarized" in timeline and "download: e2e check" in timeline, timeline
        finally:
            browser.close()


def test_cli_bulk_import_with_server_and_device_keys(world: dict, tmp_path: Path) -> None:
    srv, case = world["srv"], world["case"]
    folder = tmp_path / "seized-phone"
    (folder / "DCIM").mkdir(parents=True)
    (folder / "DCIM" / "IMG_0001.jpg").write_bytes(b"\xff\xd8 photo one")
    (folder / "DCIM" / "IMG_0002.jpg").write_bytes(b"\xff\xd8 photo two" * 50_000)
    (folder / "chat-export.txt").write_text("seller: 100% genuine")
    env = dict(srv.env)
    srv.env.update({"LEDGER_API_URL": srv.url, "LEDGER_API_TOKEN": world["officer"]["token"]})
    try:
        out = srv.cli("notarize", "files", str(folder), "--case", case["id"], "--location", "Stall 14", "--json")
        rows = [json.loads(line) for line in out.stdout.splitlines()]
        assert sorted(Path(r["file"]).name for r in rows) == ["IMG_0001.jpg", "IMG_0002.jpg", "chat-export.txt"]
        assert all("evidence" in r for r in rows)
        # An officer who keeps the key: generated here, registered by its public key, signed here.
        pub = srv.cli("officer", "keygen", "--out", str(tmp_path / "officer.pem")).stdout.strip()
        assert oct((tmp_path / "officer.pem").stat().st_mode & 0o777) == "0o600"
        with srv.client() as admin:
            agency_id = world["c"].get(f"/api/v1/cases/{case['id']}").json()["agency_id"]
            me = admin.post("/api/v1/officers", json={"agencyId": agency_id, "name": "Zhang Min", "publicKey": pub}).json()
        assert me["custody"] == "client"
        srv.env["LEDGER_API_TOKEN"] = me["token"]
        out = srv.cli("notarize", "files", str(folder / "chat-export.txt"), "--case", case["id"],
                      "--key", str(tmp_path / "officer.pem"), "--json")
        (row,) = [json.loads(line) for line in out.stdout.splitlines()]
        ev = world["c"].get(f"/api/v1/evidence/{row['evidence']}").json()
        assert ev["record"]["signature"]["keyId"] == me["key_id"] and ev["officer_id"] == me["id"]
        srv.cli("officer", "keygen", "--out", str(tmp_path / "other.pem"))
        bad = srv.cli("notarize", "files", str(folder / "chat-export.txt"), "--case", case["id"],
                      "--key", str(tmp_path / "other.pem"), check=False)
        assert bad.returncode == 1 and "0 notarized, 1 failed" in bad.stdout
        assert "signature" in bad.stdout.lower()
    finally:
        srv.env.clear()
        srv.env.update(env)
