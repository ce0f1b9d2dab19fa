"""Identifiers: the unified social credit code (GB 32100-2015) and the invoice key.

A USCC is 18 characters from ``0-9A-Z`` without I, O, S, V and Z: registration authority (1),
entity type (1), administrative division (6), organisation code (9), check character (1). The check
character makes the weighted sum (weights 3^i mod 31) of all 18 values a multiple of 31. Spaces
and lower case are tolerated on input and normalised away.

The invoice key is what deduplicates invoices, as India's GST portal hashes supplier GSTIN,
financial year, document type and number into the IRN: SHA-256 over the seller's USCC, the
invoice code and the invoice number, joined by ``|``, as lowercase hex.
"""

from __future__ import annotations

import hashlib
import re

from .errors import InvalidRecordError

USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_WEIGHTS = tuple(pow(3, i, 31) for i in range(17))
_VALUES = {c: i for i, c in enumerate(USCC_ALPHABET)}
_INVOICE_CODE = re.compile(r"^(?:[0-9]{10}|[0-9]{12})$")
_INVOICE_NUMBER = re.compile(r"^[0-9]{8,20}$")


def uscc_check_char(first17: str) -> str:
    """The check character for the first 17 characters of a USCC."""
    if len(first17) != 17 or any(c not in _VALUES for c in first17):
        raise InvalidRecordError(
            f"expected 17 characters from {USCC_ALPHABET!r}, got {first17!r}", "uscc")
    total = sum(_VALUES[c] * w for c, w in zip(first17, USCC_WEIGHTS, strict=True))
    return USCC_ALPHABET[(31 - total % 31) % 31]


def validate_uscc(value: str, field: str = "uscc") -> str:
    """The normalised USCC, or :class:`InvalidRecordError` saying what is wrong with it."""
    if not isinstance(value, str):
        raise InvalidRecordError(f"expected an 18-character unified social credit code, got {type(value).__name__}",
                                 field)
    code = value.replace(" ", "").upper()
    if len(code) != 18:
        raise InvalidRecordError(
            f"expected an 18-character unified social credit code, got {len(code)} characters ({value!r})", field)
    bad = sorted({c for c in code if c not in _VALUES})
    if bad:
        raise InvalidRecordError(
            f"a unified social credit code uses 0-9 and A-Z without I, O, S, V, Z; {value!r} has {''.join(bad)!r}",
            field)
    expected = uscc_check_char(code[:17])
    if code[17] != expected:
        raise InvalidRecordError(
            f"check character of {code!r} should be {expected!r}, got {code[17]!r}", field)
    return code


def make_uscc(first17: str) -> str:
    """A valid USCC: ``first17`` followed by its check character (synthetic data and tests)."""
    return first17 + uscc_check_char(first17)


def validate_invoice_code(code: str, field: str = "code") -> str:
    """An invoice code is 10 or 12 digits; fully digital invoices have none (``""``)."""
    if code == "":
        return code
    if not isinstance(code, str) or not _INVOICE_CODE.match(code):
        raise InvalidRecordError(f"expected an invoice code of 10 or 12 digits (or empty), got {code!r}", field)
    return code


def validate_invoice_number(number: str, field: str = "number") -> str:
    """An invoice number is 8 digits (with a code) or 20 digits (fully digital invoices)."""
    if not isinstance(number, str) or not _INVOICE_NUMBER.match(number):
        raise InvalidRecordError(f"expected an invoice number of 8 to 20 digits, got {number!r}", field)
    return number


def invoice_key(seller_uscc: str, code: str, number: str) -> str:
    """The invoice's deduplication key (lowercase hex SHA-256 of ``seller|code|number``)."""
    return hashlib.sha256(f"{seller_uscc}|{code}|{number}".encode()).hexdigest()
