"""Certificates: the PDF renders, its QR code decodes to the verification URL, its text holds the hashes."""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
from pathlib import Path

import pytest

from evidence_ledger.notary.certificate import render_certificate

from ...conftest import missing
from .conftest import World
from .test_service import PHOTO, fake_capture, notarize_photo, setup_case


def _tools() -> None:
    for tool in ("pdftoppm", "pdftotext"):
        if shutil.which(tool) is None:
            missing(f"{tool} (poppler-utils) is not installed")


def _png_pages(pdf: bytes, tmp_path: Path) -> list[Path]:
    (tmp_path / "c.pdf").write_bytes(pdf)
    subprocess.run(["pdftoppm", "-png", "-r", "80", str(tmp_path / "c.pdf"), str(tmp_path / "page")],
                   check=True, timeout=60)
    return sorted(tmp_path.glob("page*.png"))


def _text(pdf: bytes, tmp_path: Path) -> str:
    (tmp_path / "t.pdf").write_bytes(pdf)
    return subprocess.run(["pdftotext", "-layout", str(tmp_path / "t.pdf"), "-"], check=True,
                          capture_output=True, text=True, timeout=60).stdout


def _qr_texts(png: Path) -> list[str]:
    import zxingcpp
    from PIL import Image

    with Image.open(png) as im:
        return [r.text for r in zxingcpp.read_barcodes(im)]


def _screenshot() -> bytes:
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (1280, 2400), "white")
    d = ImageDraw.Draw(im)
    d.rectangle((0, 0, 1280, 90), fill="#e4393c")
    d.text((40, 30), "shop.example  |  Live sale", fill="white")
    d.rectangle((60, 160, 620, 720), fill="#d9c7a7", outline="#555555", width=4)
    d.text((680, 180), "Designer handbag - 99 yuan (list price 12,000)", fill="black")
    d.rectangle((680, 260, 980, 330), fill="#ff8800")
    d.text((720, 285), "BUY NOW", fill="white")
    out = io.BytesIO()
    im.save(out, format="PNG")
    return out.getvalue()


def test_file_certificate(world: World, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _tools()
    _, officer, case = setup_case(world)
    ev = notarize_photo(world, officer, case)
    world.anchor()
    bundle = world.bundle("evidence", ev.log_index)
    url = f"https://ledger.example.gov.cn/verify?evidence={ev.id}"
    pdf = render_certificate(ev, bundle, url)
    assert pdf.startswith(b"%PDF-")
    pages = _png_pages(pdf, tmp_path)
    assert len(pages) == 1
    assert _qr_texts(pages[0]) == [url]
    text = _text(pdf, tmp_path)
    for needle in (hashlib.sha256(PHOTO).hexdigest(), ev.cid, bundle["anchor"]["txHash"],
                   bundle["anchor"]["contract"], officer.key_id_hex, "handbag.jpg", case.reference,
                   "Shenzhen Market Supervision Bureau"):
        assert needle in text, needle


def test_web_capture_certificate_with_screenshot(world: World, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    _tools()
    from evidence_ledger.notary import capture as capture_module

    monkeypatch.setattr(capture_module, "verify_wacz", lambda archive: {})
    agency, officer, case = setup_case(world)
    shot = _screenshot()
    cap = fake_capture(shot)
    ev = world.notary.notarize_capture(officer.id, case.id, cap)
    world.anchor()
    bundle = world.bundle("evidence", ev.log_index)
    url = f"https://ledger.example.gov.cn/verify?evidence={ev.id}"
    pdf = render_certificate(ev, bundle, url, screenshot_png=shot)
    pages = _png_pages(pdf, tmp_path)
    assert _qr_texts(pages[0]) == [url]
    text = _text(pdf, tmp_path)
    assert ev.sha256_hex in text and cap.url in text
    assert all(p.sha256.hex() in text for p in cap.parts)
    shutil.copy(pages[0], "/tmp/certificate_example.png")


def test_unanchored_and_withdrawn_certificate(world: World, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _tools()
    _, officer, case = setup_case(world)
    ev = notarize_photo(world, officer, case)
    ev = world.notary.withdraw(ev.id, officer.id, "wrong case file")
    pdf = render_certificate(ev, None, "https://v.example/verify?evidence=" + ev.id)
    text = _text(pdf, tmp_path)
    assert "WITHDRAWN" in text and "Awaiting anchoring" in text and ev.sha256_hex in text
    pytest.importorskip("zxingcpp")
