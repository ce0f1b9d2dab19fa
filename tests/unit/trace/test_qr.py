"""QR codes decode back (zxing-cpp) to exactly the Digital Link they encode."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET

import pytest
import zxingcpp
from PIL import Image

from evidence_ledger.trace.identifiers import ProductId
from evidence_ledger.trace.qr import qr_png, qr_svg

URIS = [
    ProductId("09506000134352", "LOT42").to_digital_link("https://id.gs1.org"),
    ProductId("09506000134352", "A/B%", "S1").to_digital_link("https://trace.example.org/p"),
    "https://trace.example.org/p/local/cn-meat:4301000123456789?lot=B1",
]


@pytest.mark.parametrize("uri", URIS)
def test_png_decodes_to_the_uri(uri: str) -> None:
    png = qr_png(uri)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    results = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    assert [r.text for r in results] == [uri]
    assert results[0].format == zxingcpp.BarcodeFormat.QRCode
    assert results[0].ec_level == "M"


def test_box_size_scales_the_image() -> None:
    small = Image.open(io.BytesIO(qr_png(URIS[0], box_size=2)))
    large = Image.open(io.BytesIO(qr_png(URIS[0], box_size=8)))
    assert large.size[0] == 4 * small.size[0]


def test_svg_is_a_standalone_svg() -> None:
    svg = qr_svg(URIS[0])
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg")
    assert "viewBox" in root.attrib
    assert svg.count("<path") >= 1


def test_svg_decodes(tmp_path) -> None:
    # Rasterise the SVG path squares by hand (no cairo needed) and decode.
    import re

    svg = qr_svg(URIS[0])
    size = int(re.search(r'viewBox="0 0 (\d+) (\d+)"', svg).group(1))
    scale = 8
    img = Image.new("L", (size * scale, size * scale), 255)
    px = img.load()
    for x, y in re.findall(r"M(\d+),(\d+)H", svg):
        for dx in range(scale):
            for dy in range(scale):
                px[int(x) * scale + dx, int(y) * scale + dy] = 0
    assert [r.text for r in zxingcpp.read_barcodes(img)] == [URIS[0]]


def test_rejects_empty() -> None:
    with pytest.raises(ValueError):
        qr_png("")
    with pytest.raises(ValueError):
        qr_svg("")
