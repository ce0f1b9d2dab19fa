"""GTIN/GLN/lot validation, ProductId keys, EPC URIs and Digital Link round trips."""

from __future__ import annotations

import pytest

from evidence_ledger.trace.errors import InvalidIdentifierError, TraceError
from evidence_ledger.trace.identifiers import (
    ProductId,
    gs1_check_digit,
    location_uri,
    party_uri,
    validate_gln,
    validate_gtin,
    validate_lot,
    validate_serial,
)


@pytest.mark.parametrize(
    ("gtin", "normalised"),
    [
        ("09506000134352", "09506000134352"),  # GTIN-14 (GS1 example)
        ("4006381333931", "04006381333931"),  # GTIN-13 / EAN-13
        ("036000291452", "00036000291452"),  # UPC-A (GTIN-12)
        ("96385074", "00000096385074"),  # GTIN-8 / EAN-8
        ("10614141073464", "10614141073464"),
    ],
)
def test_valid_gtins_normalise_to_14_digits(gtin: str, normalised: str) -> None:
    assert validate_gtin(gtin) == normalised


def test_check_digit() -> None:
    assert gs1_check_digit("0950600013435") == 2
    assert gs1_check_digit("400638133393") == 1
    assert gs1_check_digit("03600029145") == 2
    assert gs1_check_digit("0000000000000") == 0  # sum already a multiple of ten
    with pytest.raises(InvalidIdentifierError):
        gs1_check_digit("12a")


def test_bad_check_digit_names_the_expected_digit() -> None:
    with pytest.raises(InvalidIdentifierError, match=r"has check digit 3, expected 2") as info:
        validate_gtin("09506000134353")
    assert "09506000134352" in str(info.value)
    assert isinstance(info.value, TraceError)


@pytest.mark.parametrize("bad", ["", "123", "0950600013435a", "095060001343520", "１２３４５６７８"])
def test_malformed_gtins(bad: str) -> None:
    with pytest.raises(InvalidIdentifierError, match="8, 12, 13 or 14 digits"):
        validate_gtin(bad)


def test_gln() -> None:
    assert validate_gln("9506000134352") == "9506000134352"
    with pytest.raises(InvalidIdentifierError, match="expected 2"):
        validate_gln("9506000134350")
    with pytest.raises(InvalidIdentifierError, match="13 digits"):
        validate_gln("09506000134352")


def test_lot_and_serial_character_set_82() -> None:
    assert validate_lot("LOT-2024/05.A") == "LOT-2024/05.A"
    assert validate_lot("x" * 20)
    assert validate_serial("!\"%&'()*+,-./:;<=>?_")
    with pytest.raises(InvalidIdentifierError, match="at most 20"):
        validate_lot("x" * 21)
    with pytest.raises(InvalidIdentifierError, match="character set 82"):
        validate_lot("批次1")
    with pytest.raises(InvalidIdentifierError, match="character set 82"):
        validate_serial("A B")
    with pytest.raises(InvalidIdentifierError, match="empty"):
        validate_lot("")


def test_product_id_key_and_parse() -> None:
    pid = ProductId("9506000134352", "LOT42")  # GTIN-13 input is normalised
    assert pid.gtin == "09506000134352"
    assert pid.key == "gtin:09506000134352|lot:LOT42"
    assert ProductId.from_key(pid.key) == pid
    serial = ProductId("09506000134352", "LOT42", "S1")
    assert serial.key == "gtin:09506000134352|lot:LOT42|serial:S1"
    assert serial.lot_key == pid.key
    local = ProductId(None, "B20240501", local_id="cn-meat:4301000123456789")
    assert local.key == "local:cn-meat:4301000123456789|lot:B20240501"
    assert ProductId.from_key(local.key) == local
    assert ProductId.parse(local.key) == local
    assert str(pid) == pid.key
    assert hash(pid) == hash(ProductId("09506000134352", "LOT42"))


def test_product_id_rejects_bad_combinations() -> None:
    with pytest.raises(InvalidIdentifierError, match="GTIN or a local id"):
        ProductId(None, "L1")
    with pytest.raises(InvalidIdentifierError, match="not both"):
        ProductId("09506000134352", "L1", local_id="cn-meat:1")
    with pytest.raises(InvalidIdentifierError, match="scheme:value"):
        ProductId(None, "L1", local_id="no scheme")
    with pytest.raises(InvalidIdentifierError, match="expected 2"):
        ProductId("09506000134353", "L1")
    with pytest.raises(InvalidIdentifierError):
        ProductId.from_key("gtin:09506000134352|color:red")


def test_epc_class_and_id() -> None:
    pid = ProductId("09506000134352", "LOT42", "S/1")
    assert pid.to_epc_class() == "urn:epc:class:lgtin:9506000.013435.LOT42"
    assert pid.to_epc_class(company_prefix_length=9) == "urn:epc:class:lgtin:950600013.0435.LOT42"
    assert pid.to_epc_id() == "urn:epc:id:sgtin:9506000.013435.S%2F1"
    with pytest.raises(InvalidIdentifierError, match="6 to 12"):
        pid.to_epc_class(company_prefix_length=13)
    with pytest.raises(InvalidIdentifierError, match="needs a GTIN"):
        ProductId(None, "L", local_id="cn-meat:1").to_epc_class()


@pytest.mark.parametrize("cpl", [6, 7, 9, 12])
def test_epc_round_trips(cpl: int) -> None:
    pid = ProductId("10614141073464", "AB&C?1")
    assert ProductId.from_epc(pid.to_epc_class(cpl)) == pid
    item = ProductId("10614141073464", "", "2017%")
    assert ProductId.from_epc(item.to_epc_id(cpl)) == item


def test_from_epc_computes_the_gtin_check_digit() -> None:
    # TDS example: urn:epc:id:sgtin:0614141.107346.2017 is GTIN 10614141073464, serial 2017.
    pid = ProductId.from_epc("urn:epc:id:sgtin:0614141.107346.2017")
    assert (pid.gtin, pid.lot, pid.serial) == ("10614141073464", "", "2017")
    assert pid.key == "gtin:10614141073464|serial:2017"
    lot = ProductId.from_epc("urn:epc:class:lgtin:4012345.012345.998877")
    assert (lot.gtin, lot.lot) == ("04012345123456", "998877")


@pytest.mark.parametrize(
    "bad",
    [
        "urn:epc:id:sgtin:0614141.107346",  # no serial
        "urn:epc:id:sgtin:0614141.10734.2017",  # 12 digits
        "urn:epc:class:lgtin:06141x1.107346.L",
        "urn:epc:idpat:sgtin:4012345.066666.*",  # a pattern is not a product
        "urn:epc:id:sscc:0614141.1234567890",
        "not a uri",
    ],
)
def test_from_epc_rejects(bad: str) -> None:
    with pytest.raises(InvalidIdentifierError):
        ProductId.from_epc(bad)


def test_digital_link_round_trips() -> None:
    pid = ProductId("09506000134352", "LOT 42"[:3] + "/42", "S#?"[:1] + "%1")
    uri = pid.to_digital_link("https://trace.example.org/")
    assert uri == "https://trace.example.org/01/09506000134352/10/LOT%2F42/21/S%251"
    assert ProductId.from_epc(uri) == pid
    assert ProductId.parse(uri) == pid
    plain = ProductId("09506000134352", "LOT42")
    assert plain.to_digital_link("https://id.gs1.org") == "https://id.gs1.org/01/09506000134352/10/LOT42"
    assert ProductId.from_epc("https://id.gs1.org/01/09506000134352/10/LOT42") == plain
    assert ProductId.from_epc("https://id.gs1.org/01/70614141123451/21/2017").serial == "2017"


def test_local_urn_round_trip() -> None:
    pid = ProductId(None, "B:1", "7", local_id="cn-meat:4301000123456789")
    urn = pid.to_local_urn()
    assert urn == "urn:evidence-ledger:local:cn-meat%3A4301000123456789:10:B%3A1:21:7"
    assert ProductId.from_epc(urn) == pid
    assert pid.class_uri() == "urn:evidence-ledger:local:cn-meat%3A4301000123456789:10:B%3A1"
    assert pid.instance_uri() == urn


def test_location_and_party_uris() -> None:
    assert location_uri("9506000134352") == "https://id.gs1.org/414/9506000134352"
    assert party_uri("9506000134352") == "https://id.gs1.org/417/9506000134352"
    assert location_uri("urn:epc:id:sgln:0614141.07346.1234") == "urn:epc:id:sgln:0614141.07346.1234"
    assert party_uri("cn-uscc:91430100MA4L16JQ9B") == "cn-uscc:91430100MA4L16JQ9B"
    with pytest.raises(InvalidIdentifierError, match="expected"):
        location_uri("9506000134350")
    with pytest.raises(InvalidIdentifierError, match="GLN or an absolute URI"):
        party_uri("Changsha Meat Co")
