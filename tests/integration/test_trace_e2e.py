"""Food traceability with real components: a server process on anvil, a meat chain captured
through the API, the QR code decoded and opened on a phone-sized headless Chromium, a recall
set on chain (LotStatus) and its banner checked on the screenshot."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from PIL import Image

from evidence_ledger.ledger.anvil import AnvilNode
from evidence_ledger.ledger.chain import connect, lot_key
from evidence_ledger.ledger.deployments import Deployments

from ..conftest import missing
from .conftest import free_port
from .server import LedgerServer
from .testsite import CHROMIUM

pytestmark = pytest.mark.timeout(300)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
CARCASS, LOIN = "09506000134352", "09506000134369"
T0 = datetime(2026, 11, 1, 6, 0, tzinfo=UTC)


def at(h: float) -> str:
    return (T0 + timedelta(hours=h)).isoformat()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, anvil_binary: Path) -> Iterator[dict]:
    if not CHROMIUM.exists():
        missing("chromium is not installed (make setup installs it)")
    tmp = tmp_path_factory.mktemp("trace-e2e")
    node = AnvilNode(anvil_binary, tmp / "anvil", port=free_port())
    node.up()
    port = free_port()
    srv = LedgerServer(tmp / "var", port, node.rpc_url, f"sqlite:///{tmp / 'var' / 'ledger.db'}",
                       extra_env={"LEDGER_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}"})
    srv.data_dir.mkdir(parents=True)
    srv.cli("deploy")
    srv.start()
    try:
        with srv.client() as admin:
            ops = {}
            for key, name, role in [("farm", "Liuyang Pig Farm", "farm"), ("abattoir", "Changsha Meat Co.", "slaughterhouse"),
                                    ("shop", "Furong Market Stall 3", "retailer")]:
                r = admin.post("/api/v1/trace/operators", json={"name": name, "licence": f"JY-{key}", "role": role,
                                                                "locationName": f"{name} site"})
                assert r.status_code == 201, r.text
                ops[key] = srv.client(r.json()["token"]), r.json()["id"]

        def form(who: str, kind: str, **body: object) -> dict:
            r = ops[who][0].post(f"/api/v1/trace/forms/{kind}", json=body)
            assert r.status_code == 201, r.text
            return r.json()

        carcass, loin = {"gtin": CARCASS, "lot": "PIG2026A"}, {"gtin": LOIN, "lot": "LOIN-11"}
        form("farm", "commission", time=at(0), items=[{**carcass, "kg": 110}], ilmd={"productName": "Ningxiang pork loin"})
        form("farm", "inspect", time=at(1), items=[{**carcass, "kg": 110}],
             certificate={"type": "quarantine", "number": "HN-Q-88812", "issuer": "Liuyang Animal Health Station",
                          "issued_at": at(1), "result": "pass"})
        form("farm", "ship", time=at(2), items=[{**carcass, "kg": 110}], counterpartyId=ops["abattoir"][1])
        form("abattoir", "receive", time=at(3), items=[{**carcass, "kg": 110}], counterpartyId=ops["farm"][1])
        form("abattoir", "slaughter", time=at(4), inputs=[{**carcass, "kg": 110}], outputs=[{**loin, "kg": 40}])
        form("abattoir", "inspect", time=at(5), items=[{**loin, "kg": 40}],
             certificate={"type": "meat_inspection", "number": "HN-M-LOIN-11", "issuer": "Changsha Meat Inspection",
                          "issued_at": at(5), "result": "pass"})
        form("abattoir", "ship", time=at(6), items=[{**loin, "kg": 10}], counterpartyId=ops["shop"][1])
        form("shop", "receive", time=at(7), items=[{**loin, "kg": 10}], counterpartyId=ops["abattoir"][1])
        with srv.client() as admin:
            assert admin.post("/api/v1/logs/trace/flush").status_code == 200
        yield {"srv": srv, "node": node, "tmp": tmp}
    finally:
        srv.stop()
        node.down()


def _shot(page, path: str) -> Image.Image:  # type: ignore[no-untyped-def]
    page.screenshot(path=path, full_page=True)
    return Image.open(path).convert("RGB")


def test_qr_to_consumer_page_then_recall_banner_and_lotstatus_on_chain(world: dict) -> None:
    import zxingcpp
    from playwright.sync_api import sync_playwright

    srv = world["srv"]
    png = httpx.get(f"{srv.url}/api/v1/trace/lots/{LOIN}/LOIN-11/qr.png").content
    (code,) = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    assert code.text == f"{srv.url}/01/{LOIN}/10/LOIN-11"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS, headless=True)
        try:
            phone = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=1)
            phone.goto(code.text)
            text = phone.inner_text("main")
            for expected in ("Ningxiang pork loin", "Liuyang Pig Farm", "Changsha Meat Co.", "HN-Q-88812",
                             "HN-M-LOIN-11", "Furong Market Stall 3"):
                assert expected in text, expected
            verified = phone.locator(".ledger.ok").count()
            assert verified == phone.locator("ol.path li").count() >= 6, text
            assert phone.locator("#recall-banner").count() == 0
            _shot(phone, "/tmp/consumer_page.png")
            with srv.client() as admin:
                r = admin.post("/api/v1/trace/recalls", json={"gtin": CARCASS, "lot": "PIG2026A",
                                                              "reason": "African swine fever suspected at the farm"})
                assert r.status_code == 201, r.text
            phone.goto(code.text)
            banner = phone.locator("#recall-banner")
            assert banner.is_visible() and "African swine fever" in banner.inner_text()
            assert "PIG2026A (GTIN 09506000134352)" in banner.inner_text()
            assert "Recalled" in phone.inner_text("ol.path") and "the market regulator" in phone.inner_text("ol.path")
            shot = _shot(phone, "/tmp/consumer_page_recalled.png")
            box = banner.bounding_box()
            pixel = shot.getpixel((int(box["x"] + box["width"] / 2), int(box["y"] + 1)))
            assert pixel[0] > 150 and pixel[1] < 80 and pixel[2] < 80, pixel  # the red border
        finally:
            browser.close()
    chain = connect(world["node"].rpc_url, None, Deployments.load(srv.data_dir / "deployments.json"))
    try:
        assert chain.is_recalled(lot_key(LOIN, "LOIN-11")) and chain.is_recalled(lot_key(CARCASS, "PIG2026A"))
    finally:
        chain.close()
