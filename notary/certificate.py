"""Notarization certificates: an A4 PDF that says what was notarized, by whom, and where it is
anchored, with a QR code to the public verification page.

The certificate is a convenience, not the proof: the proof is the record, its signature and the
proof bundle. The certificate prints every value a verifier needs to find and check them.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any
from xml.sax.saxutils import escape

import qrcode
from qrcode.constants import ERROR_CORRECT_M
from reportlab.lib import colors
from reportlab.lib.enums import TA_LEFT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.platypus import (
    Image,
    KeepTogether,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from .service import Evidence

__all__ = ["render_certificate"]

_CJK_FONT = "STSong-Light"  # Adobe CID font built into reportlab: Chinese names without font files
_ACCENT = colors.HexColor("#12355b")
_MUTED = colors.HexColor("#5b6470")
_RULE = colors.HexColor("#c9d1db")
_BAND = colors.HexColor("#eef2f7")
_PAGE_W, _PAGE_H = A4
_MARGIN = 18 * mm
_LABEL_W = 42 * mm
_WIN_ANSI_EXTRA = "—–…‘’“”•€™"  # beyond Latin-1 but in the standard fonts' encoding


def _cjk_font() -> str:
    if _CJK_FONT not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(UnicodeCIDFont(_CJK_FONT))
    return _CJK_FONT


def _styles() -> dict[str, ParagraphStyle]:
    return {
        "title": ParagraphStyle("title", fontName="Helvetica-Bold", fontSize=17, leading=21,
                                textColor=_ACCENT, spaceAfter=1 * mm),
        "subtitle": ParagraphStyle("subtitle", fontName="Helvetica", fontSize=9, leading=12, textColor=_MUTED),
        "section": ParagraphStyle("section", fontName="Helvetica-Bold", fontSize=10.5, leading=13,
                                  textColor=_ACCENT, spaceBefore=4 * mm, spaceAfter=1.5 * mm),
        "label": ParagraphStyle("label", fontName="Helvetica", fontSize=8, leading=10.5, textColor=_MUTED),
        "value": ParagraphStyle("value", fontName="Helvetica", fontSize=9, leading=11.5, alignment=TA_LEFT),
        "mono": ParagraphStyle("mono", fontName="Courier", fontSize=8.2, leading=10.5, splitLongWords=1),
        "small": ParagraphStyle("small", fontName="Helvetica", fontSize=7.5, leading=9.5, textColor=_MUTED),
        "status": ParagraphStyle("status", fontName="Helvetica-Bold", fontSize=9.5, leading=12),
    }


def _text(value: Any, style: ParagraphStyle) -> Paragraph:
    text = "" if value is None else str(value)
    if any(ord(c) > 0xFF and c not in _WIN_ANSI_EXTRA for c in text):  # e.g. Chinese: the CID font
        style = ParagraphStyle(style.name + "-cjk", parent=style, fontName=_cjk_font())
    return Paragraph(escape(text), style)


def _when(value: str | datetime | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _size(n: int) -> str:
    size, unit = float(n), "bytes"
    for u in ("KiB", "MiB", "GiB"):
        if size < 1024:
            break
        size /= 1024
        unit = u
    return f"{n:,} bytes" if unit == "bytes" else f"{size:.1f} {unit} ({n:,} bytes)"


def _qr_png(url: str) -> bytes:
    qr = qrcode.QRCode(error_correction=ERROR_CORRECT_M, box_size=10, border=4)
    qr.add_data(url)
    qr.make(fit=True)
    out = io.BytesIO()
    qr.make_image(fill_color="black", back_color="white").save(out, format="PNG")
    return out.getvalue()


def _thumbnail(png: bytes, max_w: float, max_h: float) -> Image | None:
    try:
        from PIL import Image as PILImage

        with PILImage.open(io.BytesIO(png)) as im:
            im.load()
            w, h = im.size
            # A full-page screenshot can be very tall: show its top (what a reader sees first).
            crop_h = min(h, int(w * 1.4))
            shown = im.crop((0, 0, w, crop_h)).convert("RGB")
            shown.thumbnail((1000, 1400))
            buf = io.BytesIO()
            shown.save(buf, format="PNG")
            scale = min(max_w / w, max_h / crop_h)
            img = Image(io.BytesIO(buf.getvalue()), width=w * scale, height=crop_h * scale)
            img.hAlign = "LEFT"
            return img
    except Exception:  # noqa: BLE001 - a broken thumbnail must not prevent the certificate
        return None


def _rows(rows: list[tuple[str, Any, str]], st: dict[str, ParagraphStyle], width: float) -> Table:
    data = [[_text(label, st["label"]), _text(value, st[kind])] for label, value, kind in rows]
    table = Table(data, colWidths=[_LABEL_W, width - _LABEL_W], hAlign="LEFT")
    table.setStyle(TableStyle([
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("LEFTPADDING", (0, 0), (-1, -1), 0),
        ("RIGHTPADDING", (0, 0), (-1, -1), 3),
        ("TOPPADDING", (0, 0), (-1, -1), 1.6),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 1.6),
        ("LINEBELOW", (0, 0), (-1, -2), 0.25, _RULE),
    ]))
    return table


def _section(title: str, body: Any, st: dict[str, ParagraphStyle]) -> KeepTogether:
    return KeepTogether([_text(title, st["section"]), body])


def render_certificate(evidence: Evidence, bundle: dict[str, Any] | None, verify_url: str, *,
                       screenshot_png: bytes | None = None, issuer: str = "Evidence Ledger",
                       issued_at: datetime | None = None) -> bytes:
    """The certificate of ``evidence`` as PDF bytes.

    ``bundle`` (the proof bundle of its record) supplies the anchoring section; without it the
    certificate says the record awaits anchoring. ``verify_url`` is encoded in the QR code
    (e.g. ``<base>/verify?evidence=<id>``). ``screenshot_png``: for a web capture, its
    screenshot part, shown as a thumbnail."""
    st = _styles()
    rec = evidence.record
    width = _PAGE_W - 2 * _MARGIN
    issued_at = issued_at or datetime.now(UTC)
    story: list[Any] = []

    # Header band: title and key facts on the left, the QR code on the right.
    qr_size = 42 * mm
    left_w = width - qr_size - 6 * mm
    kind = "Web page capture" if evidence.kind == "web" else "File"
    head = [
        _text("Certificate of Notarized Electronic Evidence", st["title"]),
        _text(f"Issued by {issuer} on {_when(issued_at)}", st["subtitle"]),
        Spacer(1, 3 * mm),
        _rows([
            ("Evidence ID", evidence.id, "mono"),
            ("Kind", kind, "value"),
            ("Case", f"{rec['case']['reference']}", "value"),
            ("Agency", f"{rec['agency']['name']} ({rec['agency']['code']})", "value"),
        ], st, left_w),
    ]
    qr = [Image(io.BytesIO(_qr_png(verify_url)), width=qr_size, height=qr_size),
          _text("Scan to verify", ParagraphStyle("qrcap", parent=st["small"], alignment=1))]
    header = Table([[head, qr]], colWidths=[left_w + 6 * mm, qr_size])
    header.setStyle(TableStyle([
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("LEFTPADDING", (0, 0), (-1, -1), 0), ("RIGHTPADDING", (0, 0), (-1, -1), 0),
        ("LINEBELOW", (0, 0), (-1, 0), 1.2, _ACCENT),
        ("BOTTOMPADDING", (0, 0), (-1, 0), 3 * mm),
    ]))
    story.append(header)

    status = evidence.status
    if status != "active":
        if status == "corrected":
            note = f"CORRECTED — superseded by evidence {evidence.corrected_by}"
        else:
            note = (f"WITHDRAWN on {_when(evidence.withdrawn_at)} — reason: {evidence.withdrawal_reason}")
        banner = Table([[_text(note, st["status"])]], colWidths=[width])
        banner.setStyle(TableStyle([("BACKGROUND", (0, 0), (-1, -1), colors.HexColor("#fde8e8")),
                                    ("BOX", (0, 0), (-1, -1), 0.8, colors.HexColor("#b42318")),
                                    ("LEFTPADDING", (0, 0), (-1, -1), 6)]))
        story += [Spacer(1, 3 * mm), banner]

    # What was notarized.
    content = rec["content"]
    what: list[tuple[str, Any, str]] = []
    if evidence.kind == "web":
        cap = rec.get("capture", {})
        what += [("URL", cap.get("url"), "mono")]
        if cap.get("finalUrl") and cap.get("finalUrl") != cap.get("url"):
            what += [("Final URL", cap.get("finalUrl"), "mono")]
        what += [("HTTP status", cap.get("httpStatus"), "value")]
    else:
        what += [("File name", content.get("filename") or "—", "value")]
    what += [
        ("Media type", content["mediaType"], "value"),
        ("Size", _size(int(content["sizeBytes"])), "value"),
        ("SHA-256", content["sha256"], "mono"),
        ("IPFS CID", content["cid"], "mono"),
        ("Captured at", _when(rec.get("capturedAt")), "value"),
        ("Notarized at", _when(rec.get("notarizedAt")), "value"),
    ]
    for k in ("device", "location", "description"):
        if rec.get("metadata", {}).get(k):
            what.append((k.capitalize(), rec["metadata"][k], "value"))
    if evidence.supersedes:
        sup = rec.get("supersedes") or {}
        what.append(("Corrects", f"{evidence.supersedes} (log index {sup.get('logIndex')}): {sup.get('reason')}", "value"))
    story.append(_section("What was notarized", _rows(what, st, width), st))

    if evidence.kind == "web":
        parts = [(f"{p['name']} · {_size(int(p['sizeBytes'])).split(' (')[0]}", p["sha256"], "mono")
                 for p in rec.get("capture", {}).get("parts", [])]
        if rec.get("capture", {}).get("manifestSha256"):
            parts.append(("Manifest SHA-256", rec["capture"]["manifestSha256"], "mono"))
        if parts:
            story.append(_section("Parts of the capture (each stored and verifiable on its own)",
                                  _rows(parts, st, width), st))

    # Signer.
    officer = rec["officer"]
    signer = _rows([
        ("Officer", f"{officer['name']} ({officer['role']})", "value"),
        ("Officer ID", officer["id"], "mono"),
        ("Signing key ID", officer["keyId"], "mono"),
        ("Algorithm", f"{rec.get('signature', {}).get('alg', 'Ed25519')} over the RFC 8785 canonical "
                      "record", "value"),
        ("Agency", f"{rec['agency']['name']} ({rec['agency']['code']})", "value"),
        ("Agency ID on chain", rec["agency"].get("authorityId"), "mono"),
    ], st, width)
    story.append(_section("Signed by", signer, st))

    # Anchoring.
    if bundle is not None:
        anchor, log = bundle["anchor"], bundle["log"]
        rows = [
            ("Anchored at (block time)", _when(anchor["blockTime"].replace("Z", "+00:00")), "value"),
            ("Chain ID", anchor["chainId"], "value"),
            ("Contract", anchor["contract"], "mono"),
            ("Transaction", anchor["txHash"], "mono"),
            ("Block number", f"{anchor['blockNumber']:,}", "value"),
            ("Block hash", anchor["blockHash"], "mono"),
            ("Log", f"{log['name']} — {log['origin']}", "value"),
            ("Log index", f"{bundle['leaf']['index']:,}", "value"),
            ("Tree size", f"{bundle['inclusionProof']['treeSize']:,}", "value"),
        ]
        story.append(_section("Anchoring", _rows(rows, st, width), st))
    else:
        story.append(_section("Anchoring", _rows([
            ("Status", "Awaiting anchoring: the record is in the evidence log (index "
                       f"{evidence.log_index:,}); its checkpoint is anchored within seconds.", "value"),
        ], st, width), st))

    if evidence.kind == "web" and screenshot_png:
        thumb = _thumbnail(screenshot_png, 62 * mm, 85 * mm)
        if thumb is not None:
            framed = Table([[thumb]], hAlign="LEFT")
            framed.setStyle(TableStyle([("BOX", (0, 0), (-1, -1), 0.6, _RULE),
                                        ("LEFTPADDING", (0, 0), (-1, -1), 2), ("RIGHTPADDING", (0, 0), (-1, -1), 2),
                                        ("TOPPADDING", (0, 0), (-1, -1), 2), ("BOTTOMPADDING", (0, 0), (-1, -1), 2)]))
            story.append(_section("Screenshot (top of the captured page, reduced)", framed, st))

    how = ("How to verify: open the address in the QR code, or drop the file and its proof bundle on "
           "the verification page. The verifier recomputes the SHA-256, checks the officer's Ed25519 "
           "signature, the Merkle inclusion proof to the signed checkpoint, and reads the anchor "
           "transaction from the chain named above; it also asks the on-chain Authority registry "
           "whether the signing key was authorised at the anchoring time. No trust in the operator "
           "is needed.")
    story += [Spacer(1, 5 * mm), _text(how, st["small"]), Spacer(1, 1.5 * mm),
              _text(f"Verification address: {verify_url}", st["small"])]

    def footer(canvas: Any, doc: Any) -> None:
        canvas.saveState()
        canvas.setStrokeColor(_RULE)
        canvas.line(_MARGIN, 12 * mm, _PAGE_W - _MARGIN, 12 * mm)
        canvas.setFont("Helvetica", 7)
        canvas.setFillColor(_MUTED)
        canvas.drawString(_MARGIN, 8.5 * mm, f"Evidence {evidence.id} · SHA-256 {evidence.sha256_hex[:16]}…")
        canvas.drawRightString(_PAGE_W - _MARGIN, 8.5 * mm, f"Page {doc.page}")
        canvas.restoreState()

    out = io.BytesIO()
    doc = SimpleDocTemplate(out, pagesize=A4, leftMargin=_MARGIN, rightMargin=_MARGIN,
                            topMargin=_MARGIN, bottomMargin=18 * mm,
                            title=f"Notarization certificate {evidence.id}", author=issuer,
                            subject=f"SHA-256 {evidence.sha256_hex}")
    doc.build(story, onFirstPage=footer, onLaterPages=footer)
    return out.getvalue()
