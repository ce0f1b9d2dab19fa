"""GS1 Digital Link parsing, paths and the resolver linkset (RFC 9264)."""

from __future__ import annotations

import json

import pytest

from evidence_ledger.trace.digital_link import (
    LINKSET_MEDIA_TYPE,
    digital_link,
    digital_link_path,
    linkset,
    parse_digital_link,
)
from evidence_ledger.trace.errors import InvalidIdentifierError
from evidence_ledger.trace.identifiers import ProductId

PID = ProductId("09506000134352", "LOT42")


def test_path_and_uri() -> None:
    assert digital_link_path(PID) == "/01/09506000134352/10/LOT42"
    assert digital_link_path(ProductId("09506000134352", "A/B", "7")) == "/01/09506000134352/10/A%2FB/21/7"
    assert digital_link(PID, "https://trace.example.org/p") == "https://trace.example.org/p/01/09506000134352/10/LOT42"


@pytest.mark.parametrize(
    "text",
    [
        "https://id.gs1.org/01/09506000134352/10/LOT42",
        "http://example.com/01/09506000134352/10/LOT42",
        "https://example.com/some/prefix/01/09506000134352/10/LOT42?17=250101&linkType=gs1:pip",
        "/01/09506000134352/10/LOT42",
        "01/09506000134352/10/LOT42",
        "https://id.gs1.org/01/9506000134352/10/LOT42",  # GTIN-13 in the path is normalised
        "https://example.com/gtin/09506000134352/lot/LOT42",  # DL 1.1 convenience alphas
        "https://id.gs1.org/01/09506000134352/22/2A/10/LOT42",  # CPV qualifier tolerated
    ],
)
def test_parse_accepts(text: str) -> None:
    assert parse_digital_link(text) == PID


def test_parse_serial_and_encoding() -> None:
    pid = parse_digital_link("https://id.gs1.org/01/09506000134352/10/A%2FB/21/S%251")
    assert (pid.lot, pid.serial) == ("A/B", "S%1")
    assert parse_digital_link(pid.to_digital_link("https://x.example")) == pid
    only_serial = parse_digital_link("https://id.gs1.org/01/70614141123451/21/2017")
    assert only_serial.lot == "" and only_serial.serial == "2017"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("https://id.gs1.org/01/09506000134353/10/LOT42", "expected 2"),
        ("https://id.gs1.org/01/09506000134352", "no lot"),
        ("https://id.gs1.org/414/9506000134352", "no GTIN"),
        ("https://id.gs1.org/01/09506000134352/17/250101", "not a qualifier"),
        ("https://id.gs1.org/01/09506000134352/21/S/10/L", "out of order"),
        ("https://id.gs1.org/01/09506000134352/10", "AI/value pairs"),
        ("https://id.gs1.org/01/09506000134352/10/%E6%89%B9", "character set 82"),
        ("ftp://id.gs1.org/01/09506000134352/10/LOT42", "http"),
        ("", "non-empty"),
    ],
)
def test_parse_rejects(text: str, message: str) -> None:
    with pytest.raises(InvalidIdentifierError, match=message):
        parse_digital_link(text)


def test_linkset_shape() -> None:
    links = {
        "gs1:pip": "https://trace.example.org/p/01/09506000134352/10/LOT42",
        "gs1:recallStatus": "https://trace.example.org/api/v1/trace/lots/gtin:09506000134352%7Clot:LOT42/status",
        "gs1:traceability": "https://trace.example.org/api/v1/trace/provenance?id=x",
        "gs1:certificationInfo": "https://trace.example.org/certs/1",
    }
    doc = linkset(PID, "https://trace.example.org", links)
    assert LINKSET_MEDIA_TYPE == "application/linkset+json"
    json.dumps(doc)  # serialisable
    assert list(doc) == ["linkset"] and len(doc["linkset"]) == 1
    entry = doc["linkset"][0]
    assert entry["anchor"] == "https://trace.example.org/01/09506000134352/10/LOT42"
    assert entry["https://gs1.org/voc/defaultLink"] == [
        {"href": links["gs1:pip"], "title": "Product information page"}
    ]
    for curie, href in links.items():
        targets = entry["https://gs1.org/voc/" + curie[4:]]
        assert [t["href"] for t in targets] == [href]
        assert all(isinstance(t["title"], str) and t["title"] for t in targets)
    # every member other than the anchor is an array of target objects with an href (RFC 9264 §4.2)
    for rel, targets in entry.items():
        if rel != "anchor":
            assert isinstance(targets, list) and all("href" in t for t in targets)


def test_linkset_default_and_errors() -> None:
    doc = linkset(PID, "https://r.example", {"gs1:traceability": "https://r.example/t"}, titles={"gs1:traceability": "溯源"},
                  language="zh-CN")
    entry = doc["linkset"][0]
    assert entry["https://gs1.org/voc/defaultLink"][0] == {"href": "https://r.example/t", "title": "溯源", "hreflang": ["zh-CN"]}
    doc = linkset(PID, "https://r.example", {"gs1:pip": "https://r.example/p", "gs1:recallStatus": "https://r.example/r"},
                  default="gs1:recallStatus")
    assert doc["linkset"][0]["https://gs1.org/voc/defaultLink"][0]["href"] == "https://r.example/r"
    with pytest.raises(InvalidIdentifierError, match="at least one"):
        linkset(PID, "https://r.example", {})
    with pytest.raises(InvalidIdentifierError, match="not among"):
        linkset(PID, "https://r.example", {"gs1:pip": "https://r.example/p"}, default="gs1:epcis")
    with pytest.raises(InvalidIdentifierError, match="link type"):
        linkset(PID, "https://r.example", {"pip": "https://r.example/p"})
    with pytest.raises(InvalidIdentifierError, match="http"):
        linkset(PID, "https://r.example", {"gs1:pip": "javascript:alert(1)"})
    with pytest.raises(InvalidIdentifierError, match="GTIN"):
        linkset(ProductId(None, "L", local_id="cn-meat:1"), "https://r.example", {"gs1:pip": "https://r.example/p"})
