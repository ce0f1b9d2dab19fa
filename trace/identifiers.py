"""GS1 identifiers for food lots: GTIN, GLN, lot and serial numbers, EPC URIs, GS1 Digital Link.

Conventions
-----------
* A GTIN is accepted in any of its lengths (GTIN-8, -12 (UPC-A), -13, -14) and always stored and
  emitted as its 14-digit form (left-padded with zeros), e.g. ``036000291452`` -> ``00036000291452``.
* Lots (AI 10) and serials (AI 21) are 1-20 characters of the GS1 AI encodable character set 82.
* Products without a GTIN (e.g. Chinese meat traceability codes) are identified by a ``local_id``
  of the form ``scheme:value`` (``cn-meat:4301000123456789``) plus a lot.
* A serial-only SGTIN (``urn:epc:id:sgtin:...``) has no lot: its ProductId has ``lot == ""`` and a
  serial. Every other ProductId has a lot.
* Class and instance URIs in EPCIS events are canonical GS1 Digital Link URIs on
  ``https://id.gs1.org`` (EPCIS 2.0 accepts them wherever an EPC URI may appear; they need no
  GS1 company prefix length). Local products use our URN ``urn:evidence-ledger:local:...``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

from .errors import InvalidIdentifierError

__all__ = [
    "GS1_CANONICAL_BASE",
    "LOCAL_URN_PREFIX",
    "ProductId",
    "gs1_check_digit",
    "validate_gtin",
    "validate_gln",
    "validate_lot",
    "validate_serial",
    "validate_local_id",
    "location_uri",
    "party_uri",
    "parse_digital_link_uri",
]

GS1_CANONICAL_BASE = "https://id.gs1.org"
"""The canonical GS1 Digital Link domain (CBV 2.0 uses it for EPCIS identifiers)."""

LOCAL_URN_PREFIX = "urn:evidence-ledger:local:"
"""Class/instance URIs of products identified by a local (non-GS1) id:
``urn:evidence-ledger:local:<pct(local_id)>:10:<pct(lot)>[:21:<pct(serial)>]`` (``:`` inside the
parts is percent-encoded, so the URN splits unambiguously)."""

# GS1 General Specifications, figure 7.11-1: the 82 characters allowed in alphanumeric AIs.
_CSET82 = re.compile(r"^[!\"%&'()*+,\-./0-9:;<=>?A-Z_a-z]+$")
_LOCAL_ID = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:[^\s|]+$")
# TDS 2.x: characters of set 82 that must be %-escaped inside an EPC URI.
_EPC_ESCAPE = {'"': "%22", "%": "%25", "&": "%26", "/": "%2F", "<": "%3C", ">": "%3E", "?": "%3F"}


def gs1_check_digit(digits: str) -> int:
    """The GS1 mod-10 check digit for ``digits`` (the identifier *without* its check digit).

    Weights 3, 1, 3, 1, ... from the rightmost digit; the check digit brings the sum to a
    multiple of ten."""
    if not digits or not digits.isascii() or not digits.isdigit():
        raise InvalidIdentifierError(f"check digit needs a non-empty string of digits, got {digits!r}")
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(digits)))
    return (10 - total % 10) % 10


def _check(kind: str, value: str) -> None:
    expected = gs1_check_digit(value[:-1])
    if int(value[-1]) != expected:
        raise InvalidIdentifierError(
            f"{kind} {value} has check digit {value[-1]}, expected {expected} "
            f"(did you mean {value[:-1]}{expected}?)"
        )


def validate_gtin(gtin: str) -> str:
    """Validate a GTIN-8/12/13/14 (digits and check digit); return its 14-digit form."""
    if not isinstance(gtin, str):
        raise InvalidIdentifierError(f"GTIN must be a string of digits, got {type(gtin).__name__}")
    value = gtin.strip()
    if not value.isascii() or not value.isdigit() or len(value) not in (8, 12, 13, 14):
        raise InvalidIdentifierError(
            f"GTIN must be 8, 12, 13 or 14 digits, got {gtin!r} ({len(value)} characters)"
        )
    _check("GTIN", value)
    return value.zfill(14)


def validate_gln(gln: str) -> str:
    """Validate a GLN (13 digits with check digit); return it."""
    if not isinstance(gln, str):
        raise InvalidIdentifierError(f"GLN must be a string of 13 digits, got {type(gln).__name__}")
    value = gln.strip()
    if not value.isascii() or not value.isdigit() or len(value) != 13:
        raise InvalidIdentifierError(f"GLN must be 13 digits, got {gln!r} ({len(value)} characters)")
    _check("GLN", value)
    return value


def _cset82(kind: str, value: str, max_len: int) -> str:
    if not isinstance(value, str):
        raise InvalidIdentifierError(f"{kind} must be a string, got {type(value).__name__}")
    if not value:
        raise InvalidIdentifierError(f"{kind} must not be empty")
    if len(value) > max_len:
        raise InvalidIdentifierError(f"{kind} must be at most {max_len} characters, got {len(value)}: {value!r}")
    if not _CSET82.match(value):
        bad = sorted({c for c in value if not _CSET82.match(c)})
        raise InvalidIdentifierError(
            f"{kind} {value!r} has characters outside the GS1 character set 82 "
            f"(A-Z a-z 0-9 and !\"%&'()*+,-./:;<=>?_): {''.join(bad)!r}"
        )
    return value


def validate_lot(lot: str) -> str:
    """Validate a batch/lot number (GS1 AI 10): 1-20 characters of GS1 character set 82."""
    return _cset82("lot", lot, 20)


def validate_serial(serial: str) -> str:
    """Validate a serial number (GS1 AI 21): 1-20 characters of GS1 character set 82."""
    return _cset82("serial", serial, 20)


def validate_local_id(local_id: str) -> str:
    """Validate a local (non-GS1) product id ``scheme:value`` (no whitespace, no ``|``)."""
    if not isinstance(local_id, str) or not _LOCAL_ID.match(local_id) or len(local_id) > 200:
        raise InvalidIdentifierError(
            f"local id must look like 'scheme:value' (e.g. 'cn-meat:4301000123456789'), "
            f"at most 200 characters without spaces or '|', got {local_id!r}"
        )
    return local_id


def _is_uri(value: str) -> bool:
    return bool(re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*:\S+$", value))


def location_uri(gln_or_id: str) -> str:
    """A location (read point, business location, source/destination of type ``location``) as a
    URI: a 13-digit GLN becomes its Digital Link ``https://id.gs1.org/414/<gln>``; any other
    absolute URI (``urn:epc:id:sgln:...``, ``cn-uscc:...``) is kept as is."""
    if isinstance(gln_or_id, str) and gln_or_id.strip().isdigit():
        return f"{GS1_CANONICAL_BASE}/414/{validate_gln(gln_or_id)}"
    if isinstance(gln_or_id, str) and _is_uri(gln_or_id):
        return gln_or_id
    raise InvalidIdentifierError(
        f"location must be a 13-digit GLN or an absolute URI (e.g. urn:epc:id:sgln:..., "
        f"https://id.gs1.org/414/...), got {gln_or_id!r}"
    )


def party_uri(gln_or_id: str) -> str:
    """A party (source/destination of type ``owning_party``/``possessing_party``) as a URI: a
    13-digit GLN becomes ``https://id.gs1.org/417/<gln>`` (AI 417, party GLN); any other
    absolute URI is kept."""
    if isinstance(gln_or_id, str) and gln_or_id.strip().isdigit():
        return f"{GS1_CANONICAL_BASE}/417/{validate_gln(gln_or_id)}"
    if isinstance(gln_or_id, str) and _is_uri(gln_or_id):
        return gln_or_id
    raise InvalidIdentifierError(
        f"party must be a 13-digit GLN or an absolute URI (e.g. https://id.gs1.org/417/..., "
        f"cn-uscc:91430100...), got {gln_or_id!r}"
    )


def _dl(value: str) -> str:
    """Percent-encode an AI value for a Digital Link path: everything but RFC 3986 unreserved."""
    return quote(value, safe="")


def _epc_escape(value: str) -> str:
    return "".join(_EPC_ESCAPE.get(c, c) for c in value)


@dataclass(frozen=True)
class ProductId:
    """A traceable product lot (or serialised item): GTIN or local id, lot, optional serial."""

    gtin: str | None
    lot: str
    serial: str | None = None
    local_id: str | None = None

    def __post_init__(self) -> None:
        if self.gtin is not None:
            object.__setattr__(self, "gtin", validate_gtin(self.gtin))
            if self.local_id is not None:
                raise InvalidIdentifierError("a product has a GTIN or a local id, not both")
        elif self.local_id is None:
            raise InvalidIdentifierError("a product needs a GTIN or a local id (e.g. 'cn-meat:...')")
        else:
            validate_local_id(self.local_id)
        if self.serial is not None:
            validate_serial(self.serial)
        if self.lot != "" or self.serial is None:
            validate_lot(self.lot)

    # -- keys and URIs -------------------------------------------------------------------------

    @property
    def key(self) -> str:
        """Stable database key: ``gtin:<14 digits>|lot:<lot>[|serial:<s>]`` or
        ``local:<local id>|lot:<lot>[|serial:<s>]`` (serial-only SGTINs omit ``|lot:``)."""
        head = f"gtin:{self.gtin}" if self.gtin is not None else f"local:{self.local_id}"
        parts = [head]
        if self.lot:
            parts.append(f"lot:{self.lot}")
        if self.serial is not None:
            parts.append(f"serial:{self.serial}")
        return "|".join(parts)

    @property
    def lot_key(self) -> str:
        """The key of the lot this item belongs to (``key`` without the serial)."""
        return ProductId(self.gtin, self.lot, None, self.local_id).key if self.lot else self.key

    @classmethod
    def from_key(cls, key: str) -> ProductId:
        """Inverse of :attr:`key`."""
        fields: dict[str, str] = {}
        for part in key.split("|"):
            name, sep, value = part.partition(":")
            if not sep or name not in ("gtin", "local", "lot", "serial") or name in fields:
                raise InvalidIdentifierError(f"not a product key: {key!r}")
            fields[name] = value
        if ("gtin" in fields) == ("local" in fields):
            raise InvalidIdentifierError(f"not a product key (needs gtin: or local:): {key!r}")
        return cls(fields.get("gtin"), fields.get("lot", ""), fields.get("serial"), fields.get("local"))

    def _require_gtin(self, what: str) -> str:
        if self.gtin is None:
            raise InvalidIdentifierError(f"{what} needs a GTIN; {self.local_id} is a local id")
        return self.gtin

    def _split_gtin(self, company_prefix_length: int) -> tuple[str, str]:
        gtin = self._require_gtin("an EPC URI")
        if not 6 <= company_prefix_length <= 12:
            raise InvalidIdentifierError(
                f"GS1 company prefix length must be 6 to 12 digits, got {company_prefix_length}"
            )
        prefix = gtin[1 : 1 + company_prefix_length]
        item_ref = gtin[0] + gtin[1 + company_prefix_length : 13]
        return prefix, item_ref

    def to_epc_class(self, company_prefix_length: int = 7) -> str:
        """The EPC class URI ``urn:epc:class:lgtin:<company prefix>.<indicator+item ref>.<lot>``
        (TDS 2.x; the company prefix length is not derivable from the GTIN, default 7)."""
        if not self.lot:
            raise InvalidIdentifierError("an LGTIN needs a lot; this product has only a serial")
        prefix, item_ref = self._split_gtin(company_prefix_length)
        return f"urn:epc:class:lgtin:{prefix}.{item_ref}.{_epc_escape(self.lot)}"

    def to_epc_id(self, company_prefix_length: int = 7) -> str:
        """The SGTIN instance URI ``urn:epc:id:sgtin:<company prefix>.<item ref>.<serial>``."""
        if self.serial is None:
            raise InvalidIdentifierError("an SGTIN needs a serial number")
        prefix, item_ref = self._split_gtin(company_prefix_length)
        return f"urn:epc:id:sgtin:{prefix}.{item_ref}.{_epc_escape(self.serial)}"

    def to_digital_link(self, base: str = GS1_CANONICAL_BASE) -> str:
        """``{base}/01/{gtin14}/10/{lot}[/21/{serial}]``, values percent-encoded (GS1 Digital
        Link: all but RFC 3986 unreserved characters)."""
        gtin = self._require_gtin("a GS1 Digital Link")
        uri = f"{base.rstrip('/')}/01/{gtin}"
        if self.lot:
            uri += f"/10/{_dl(self.lot)}"
        if self.serial is not None:
            uri += f"/21/{_dl(self.serial)}"
        return uri

    def to_local_urn(self) -> str:
        """Our URN for a product with a local id (see :data:`LOCAL_URN_PREFIX`)."""
        if self.local_id is None:
            raise InvalidIdentifierError("only products with a local id have a local URN")
        uri = f"{LOCAL_URN_PREFIX}{_dl(self.local_id)}"
        if self.lot:
            uri += f":10:{_dl(self.lot)}"
        if self.serial is not None:
            uri += f":21:{_dl(self.serial)}"
        return uri

    def class_uri(self) -> str:
        """The lot-level class URI used in EPCIS quantity lists: canonical Digital Link
        (``https://id.gs1.org/01/../10/..``) or the local URN, without the serial."""
        if self.gtin is not None:
            uri = f"{GS1_CANONICAL_BASE}/01/{self.gtin}"
            return uri + (f"/10/{_dl(self.lot)}" if self.lot else "")
        uri = f"{LOCAL_URN_PREFIX}{_dl(self.local_id or '')}"
        return uri + (f":10:{_dl(self.lot)}" if self.lot else "")

    def instance_uri(self) -> str:
        """The instance URI of a serialised item (Digital Link with /21/, or the local URN)."""
        if self.serial is None:
            raise InvalidIdentifierError("only a serialised item has an instance URI")
        return self.to_digital_link() if self.gtin is not None else self.to_local_urn()

    # -- parsing -------------------------------------------------------------------------------

    @classmethod
    def from_epc(cls, uri: str) -> ProductId:
        """Parse ``urn:epc:id:sgtin:``, ``urn:epc:class:lgtin:``, a GS1 Digital Link URI
        (``https://id.gs1.org/01/.../10/...[/21/...]``, any domain) or our local URN.

        For EPC URNs the GTIN check digit is computed from the company prefix + item reference."""
        if not isinstance(uri, str):
            raise InvalidIdentifierError(f"EPC URI must be a string, got {type(uri).__name__}")
        text = uri.strip()
        lower = text.lower()
        if lower.startswith("urn:epc:id:sgtin:"):
            prefix, item_ref, serial = _epc_fields(text, "urn:epc:id:sgtin:")
            return cls(_gtin_from_epc(prefix, item_ref, text), "", serial=_epc_unescape(serial, "serial"))
        if lower.startswith("urn:epc:class:lgtin:"):
            prefix, item_ref, lot = _epc_fields(text, "urn:epc:class:lgtin:")
            return cls(_gtin_from_epc(prefix, item_ref, text), _epc_unescape(lot, "lot"))
        if lower.startswith(LOCAL_URN_PREFIX):
            return _parse_local_urn(text)
        if lower.startswith(("http://", "https://")):
            return parse_digital_link_uri(text)
        raise InvalidIdentifierError(
            f"not a product identifier: expected urn:epc:id:sgtin:, urn:epc:class:lgtin:, a GS1 "
            f"Digital Link (https://.../01/<gtin>/10/<lot>) or {LOCAL_URN_PREFIX}..., got {uri!r}"
        )

    @classmethod
    def parse(cls, text: str) -> ProductId:
        """Parse any of :attr:`key`, an EPC URI, a Digital Link or a local URN."""
        if text.startswith(("gtin:", "local:")):
            return cls.from_key(text)
        return cls.from_epc(text)

    def __str__(self) -> str:
        return self.key


def _epc_fields(uri: str, prefix: str) -> tuple[str, str, str]:
    body = uri[len(prefix):]
    parts = body.split(".", 2)
    if len(parts) != 3 or not parts[2]:
        raise InvalidIdentifierError(f"EPC URI must be {prefix}<company prefix>.<item ref>.<value>, got {uri!r}")
    return parts[0], parts[1], parts[2]


def _gtin_from_epc(prefix: str, item_ref: str, uri: str) -> str:
    if not (prefix.isascii() and prefix.isdigit() and item_ref.isascii() and item_ref.isdigit()):
        raise InvalidIdentifierError(f"EPC company prefix and item reference must be digits: {uri!r}")
    if len(prefix) + len(item_ref) != 13 or not 6 <= len(prefix) <= 12:
        raise InvalidIdentifierError(
            f"EPC company prefix ({len(prefix)} digits, 6-12 allowed) and item reference "
            f"({len(item_ref)} digits) must total 13 digits, got {uri!r}"
        )
    body = item_ref[0] + prefix + item_ref[1:]
    return body + str(gs1_check_digit(body))


def _epc_unescape(value: str, kind: str) -> str:
    text = unquote(value)
    return validate_lot(text) if kind == "lot" else validate_serial(text)


def _parse_local_urn(uri: str) -> ProductId:
    parts = uri[len(LOCAL_URN_PREFIX):].split(":")
    local_id = unquote(parts[0])
    fields: dict[str, str] = {}
    rest = parts[1:]
    if len(rest) % 2:
        raise InvalidIdentifierError(f"malformed local product URN {uri!r}")
    for ai, value in zip(rest[::2], rest[1::2]):
        if ai not in ("10", "21") or ai in fields:
            raise InvalidIdentifierError(f"malformed local product URN {uri!r}: unexpected {ai!r}")
        fields[ai] = unquote(value)
    return ProductId(None, fields.get("10", ""), fields.get("21"), local_id)


# GS1 Digital Link 1.x convenience alphas (deprecated but still seen on old labels).
_DL_ALPHA = {"gtin": "01", "lot": "10", "ser": "21", "cpv": "22"}


def parse_digital_link_uri(uri_or_path: str) -> ProductId:
    """Parse a GS1 Digital Link URI or path (``/01/<gtin>/10/<lot>[/21/<serial>]``) into a
    ProductId; any domain and path prefix; the query string (data attributes, linkType) is
    ignored. Raises :class:`InvalidIdentifierError` on unknown or out-of-order AIs, bad check
    digits, or a GTIN with neither lot nor serial."""
    if not isinstance(uri_or_path, str) or not uri_or_path.strip():
        raise InvalidIdentifierError(f"Digital Link must be a non-empty string, got {uri_or_path!r}")
    text = uri_or_path.strip()
    if "://" in text:
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise InvalidIdentifierError(f"Digital Link must be an http(s) URI, got {uri_or_path!r}")
        path = parts.path
    else:
        path = text.split("?", 1)[0].split("#", 1)[0]
    segments = [s for s in path.split("/") if s]
    start = None
    for i in range(len(segments) - 1):
        if _DL_ALPHA.get(segments[i], segments[i]) == "01":
            start = i
            break
    if start is None:
        raise InvalidIdentifierError(
            f"Digital Link has no GTIN (AI 01): expected .../01/<gtin>/10/<lot>, got {uri_or_path!r}"
        )
    rest = segments[start:]
    if len(rest) % 2:
        raise InvalidIdentifierError(
            f"Digital Link path must be AI/value pairs after /01/, got {'/'.join(rest)!r}"
        )
    order = ["01", "22", "10", "21"]
    seen: dict[str, str] = {}
    last = -1
    for ai_text, raw in zip(rest[::2], rest[1::2]):
        ai = _DL_ALPHA.get(ai_text, ai_text)
        if ai not in order:
            raise InvalidIdentifierError(
                f"Digital Link AI {ai_text!r} is not a qualifier of GTIN (01); allowed: 22, 10, 21"
            )
        if order.index(ai) <= last:
            raise InvalidIdentifierError(
                f"Digital Link AI {ai} is out of order or repeated; the order is /01/.../22/.../10/.../21/..."
            )
        last = order.index(ai)
        seen[ai] = unquote(raw)
    gtin = validate_gtin(seen["01"])
    lot = seen.get("10")
    serial = seen.get("21")
    if lot is None and serial is None:
        raise InvalidIdentifierError(
            f"Digital Link identifies GTIN {gtin} but no lot (AI 10) or serial (AI 21): {uri_or_path!r}"
        )
    return ProductId(gtin, validate_lot(lot) if lot is not None else "", serial)
