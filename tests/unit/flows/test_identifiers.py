"""USCC check characters against real codes, rejections, normalisation, and the invoice key."""

from __future__ import annotations

import hashlib

import pytest

from evidence_ledger.flows.errors import FlowsError, InvalidRecordError
from evidence_ledger.flows.identifiers import (
    invoice_key,
    make_uscc,
    uscc_check_char,
    validate_invoice_code,
    validate_invoice_number,
    validate_uscc,
)

# Published codes of real organisations (GB 32100-2015 check characters).
REAL_USCCS = [
    "91110000600037341L",
    "121200004013590816",
    "91310115MA1K3BTP2B",
    "9144030071526726XG",
    "91620105L015101280",
    "92340621MA2UK3PJXE",
]


@pytest.mark.parametrize("code", REAL_USCCS)
def test_real_codes_are_valid(code: str) -> None:
    assert validate_uscc(code) == code
    assert uscc_check_char(code[:17]) == code[17]
    assert make_uscc(code[:17]) == code


def test_a_wrong_check_character_is_rejected() -> None:
    with pytest.raises(InvalidRecordError) as e:
        validate_uscc("91110000600037341N")
    assert str(e.value) == "uscc: check character of '91110000600037341N' should be 'L', got 'N'"
    assert e.value.field == "uscc"
    assert isinstance(e.value, FlowsError) and isinstance(e.value, ValueError)


def test_forbidden_letters_are_rejected() -> None:
    with pytest.raises(InvalidRecordError) as e:
        validate_uscc("9111000060003IOZSV")
    assert "without I, O, S, V, Z" in str(e.value)
    assert "'IOSVZ'" in str(e.value)


@pytest.mark.parametrize("bad", ["91110000600037341", "91110000600037341LL", ""])
def test_wrong_lengths_are_rejected(bad: str) -> None:
    with pytest.raises(InvalidRecordError) as e:
        validate_uscc(bad, "seller_uscc")
    assert str(e.value).startswith("seller_uscc: expected an 18-character unified social credit code, got ")
    assert e.value.field == "seller_uscc"


def test_non_strings_are_rejected() -> None:
    with pytest.raises(InvalidRecordError) as e:
        validate_uscc(91110000600037341)  # type: ignore[arg-type]
    assert "got int" in str(e.value)


def test_lower_case_and_spaces_are_normalised() -> None:
    assert validate_uscc("91310115ma1k3btp2b") == "91310115MA1K3BTP2B"
    assert validate_uscc(" 9131 0115 MA1K 3BTP 2B ") == "91310115MA1K3BTP2B"


def test_check_char_needs_17_valid_characters() -> None:
    with pytest.raises(InvalidRecordError) as e:
        uscc_check_char("9131011")
    assert "expected 17 characters" in str(e.value)
    with pytest.raises(InvalidRecordError):
        uscc_check_char("91310115MA1K3BTPO")  # O is not in the alphabet


def test_invoice_key_known_answer() -> None:
    seller = "91310115MA1K3BTP2B"
    expected = hashlib.sha256(b"91310115MA1K3BTP2B|3100223130|12345678").hexdigest()
    assert invoice_key(seller, "3100223130", "12345678") == expected
    # Fully digital invoices have no code: the separator still keeps the fields apart.
    digital = hashlib.sha256(b"91310115MA1K3BTP2B||26312000000012345678").hexdigest()
    assert invoice_key(seller, "", "26312000000012345678") == digital
    assert invoice_key(seller, "", "26312000000012345678") != invoice_key("9144030071526726XG", "",
                                                                          "26312000000012345678")


def test_invoice_code_and_number() -> None:
    assert validate_invoice_code("") == ""
    assert validate_invoice_code("3100223130") == "3100223130"
    assert validate_invoice_code("031001900111") == "031001900111"
    with pytest.raises(InvalidRecordError) as e:
        validate_invoice_code("31002231")
    assert str(e.value) == "code: expected an invoice code of 10 or 12 digits (or empty), got '31002231'"
    with pytest.raises(InvalidRecordError, match="10 or 12 digits"):
        validate_invoice_code("31002231301")  # 11 digits
    assert validate_invoice_number("12345678") == "12345678"
    assert validate_invoice_number("26312000000012345678") == "26312000000012345678"
    with pytest.raises(InvalidRecordError) as e:
        validate_invoice_number("1234567")
    assert str(e.value) == "number: expected an invoice number of 8 to 20 digits, got '1234567'"
