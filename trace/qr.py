"""QR codes for product Digital Links (consumer provenance pages) — ``qrcode``, error correction M."""

from __future__ import annotations

import io

import qrcode
import qrcode.constants
import qrcode.image.svg

__all__ = ["qr_png", "qr_svg"]


def _qr(data: str, box_size: int, border: int) -> qrcode.QRCode:
    if not isinstance(data, str) or not data:
        raise ValueError("QR data must be a non-empty string")
    if box_size < 1 or border < 0:
        raise ValueError("box_size must be >= 1 and border >= 0")
    code = qrcode.QRCode(
        version=None, error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=box_size, border=border
    )
    code.add_data(data)
    code.make(fit=True)
    return code


def qr_png(data: str, box_size: int = 8, border: int = 4) -> bytes:
    """PNG bytes of a QR code (error correction M, 4-module quiet zone) encoding ``data``."""
    image = _qr(data, box_size, border).make_image()
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def qr_svg(data: str, box_size: int = 10, border: int = 4) -> str:
    """A standalone SVG document (one path, scalable) of a QR code encoding ``data``."""
    image = _qr(data, box_size, border).make_image(image_factory=qrcode.image.svg.SvgPathImage)
    return image.to_string(encoding="unicode")
