"""RFC 8785 canonicalisation and the leaf commitment format."""

from __future__ import annotations

import decimal
import hashlib
import json
import random

import pytest
import rfc8785

from evidence_ledger.ledger.canonical import (
    MAX_DEPTH,
    SALT_BYTES,
    canonicalize,
    commitment_entry,
    leaf_entry,
    new_salt,
    record_digest,
)
from evidence_ledger.ledger.errors import CanonicalizationError
from evidence_ledger.ledger.merkle import leaf_hash

RFC8785_INPUT = r"""{
  "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}"""
RFC8785_OUTPUT = (
    '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
    '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
)


def test_rfc8785_sample() -> None:
    assert canonicalize(json.loads(RFC8785_INPUT)) == RFC8785_OUTPUT.encode("utf-8")
    assert RFC8785_OUTPUT == (
        r'{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        r'"string":"€$\u000f\nA' + "'" + r'B\"\\\\\"/"}'
    )


def test_rfc8785_key_order_is_utf16() -> None:
    # RFC 8785 section 3.2.3 sorting example.
    record = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    out = canonicalize(record).decode("utf-8")
    keys = list(json.loads(out))
    assert keys == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]
    assert out.startswith('{"\\r":"Carriage Return","1":"One","\u0080":"Control"')


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.0, "0"),
        (-0.0, "0"),
        (1.0, "1"),
        (-1.5, "-1.5"),
        (1e21, "1e+21"),
        (1e20, "100000000000000000000"),
        (1e-7, "1e-7"),
        (0.000001, "0.000001"),
        (5e-324, "5e-324"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (9007199254740992.0, "9007199254740992"),
        (2**53 - 1, "9007199254740991"),
        (-(2**53 - 1), "-9007199254740991"),
        (True, "true"),
        (None, "null"),
        ("\u2028\x7f\x1f", '"\u2028\x7f\\u001f"'),
    ],
)
def test_scalars(value, expected: str) -> None:
    assert canonicalize(value) == expected.encode("utf-8")


@pytest.mark.parametrize(
    ("record", "match"),
    [
        ({"a": float("nan")}, r"\$\.a is a float"),
        ({"a": [1, float("inf")]}, r"\$\.a\[1\] is a float"),
        ({"a": -float("inf")}, "float"),
        ({1: "x"}, "keys must be strings"),
        ({"n": 2**53}, r"\$\.n is an integer outside"),
        ({"s": {1, 2}}, "unsupported type"),
        ({"b": b"bytes"}, "unsupported type"),
        ({"d": decimal.Decimal("1.5")}, "unsupported type"),
        ({"s": "\ud800"}, "UTF-8"),
        ({"\ud800": 1}, "UTF-8"),
    ],
)
def test_errors(record, match: str) -> None:
    with pytest.raises(CanonicalizationError, match=match):
        canonicalize(record)


def test_nesting_is_bounded_independently_of_recursion_limit() -> None:
    def nest(levels: int, leaf) -> list:
        value = leaf
        for _ in range(levels):
            value = [value]
        return value

    assert canonicalize(nest(MAX_DEPTH, 1)) == b"[" * MAX_DEPTH + b"1" + b"]" * MAX_DEPTH
    assert canonicalize(nest(MAX_DEPTH, 1.5)).count(b"[") == MAX_DEPTH  # slow path too
    for leaf in (1, 1.5, []):
        with pytest.raises(CanonicalizationError, match="nested too deeply"):
            canonicalize(nest(MAX_DEPTH + 1, leaf))
    with pytest.raises(CanonicalizationError, match="nested too deeply"):
        canonicalize(nest(100_000, 1))
    cyclic: list = [1]
    cyclic.append(cyclic)
    with pytest.raises(CanonicalizationError, match="nested too deeply"):
        canonicalize({"a": cyclic})


def _random_string(rnd: random.Random) -> str:
    pools = [
        "abcXYZ019 _-",
        "\x00\x01\x08\t\n\x0b\x0c\r\x1f\"\\/\x7f",
        "éöüß€中文字",
        "\u2028\u2029\ue000\ufb33\uffff",
        "\U0001f600\U00010000",
    ]
    return "".join(rnd.choice(rnd.choice(pools)) for _ in range(rnd.randrange(0, 8)))


def _random_value(rnd: random.Random, depth: int = 0):
    kind = rnd.randrange(9 if depth < 4 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rnd.choice([True, False])
    if kind == 2:
        return rnd.choice([0, 1, -1, 2**53 - 1, -(2**53 - 1), rnd.randrange(-10**12, 10**12)])
    if kind == 3:
        return rnd.choice([0.5, -2.25, 1e21, 1e-7, 123.456, rnd.random() * 10 ** rnd.randrange(-30, 30)])
    if kind in (4, 5):
        return _random_string(rnd)
    if kind == 6:
        return [_random_value(rnd, depth + 1) for _ in range(rnd.randrange(0, 5))]
    if kind == 7:
        return tuple(_random_value(rnd, depth + 1) for _ in range(rnd.randrange(0, 3)))
    return {_random_string(rnd): _random_value(rnd, depth + 1) for _ in range(rnd.randrange(0, 6))}


def test_fast_path_equals_reference_implementation() -> None:
    """canonicalize takes a C-encoder fast path for float-free records; it must agree with rfc8785."""
    rnd = random.Random(8785)
    for _ in range(3000):
        value = _random_value(rnd)
        try:
            want = rfc8785.dumps(value)
        except rfc8785.CanonicalizationError:
            with pytest.raises(CanonicalizationError):
                canonicalize(value)
            continue
        assert canonicalize(value) == want, value


def test_typical_record_is_deterministic() -> None:
    a = {"id": "ev-1", "officer": "张三", "size": 10, "tags": ["ad", "shop"], "geo": {"lon": "114.05", "lat": "22.54"}}
    b = {"tags": ["ad", "shop"], "geo": {"lat": "22.54", "lon": "114.05"}, "size": 10, "officer": "张三", "id": "ev-1"}
    assert canonicalize(a) == canonicalize(b)
    assert canonicalize(a) == (
        '{"geo":{"lat":"22.54","lon":"114.05"},"id":"ev-1","officer":"张三","size":10,"tags":["ad","shop"]}'
    ).encode("utf-8")


# --- commitment format --------------------------------------------------------------------------


def test_commitment_known_answer() -> None:
    salt = bytes(range(32))
    canonical = canonicalize({"b": [1, "x", None], "a": True})
    assert canonical == b'{"a":true,"b":[1,"x",null]}'
    digest = record_digest(canonical)
    assert digest == hashlib.sha256(canonical).digest()
    assert digest.hex() == "a144dac9657f9c4b949d89c845477e0004415445d58f2ef674a44a8fc0ac0dec"
    entry = leaf_entry(salt, digest)
    assert entry == salt + digest and len(entry) == 64
    assert commitment_entry(salt, canonical) == entry
    assert leaf_hash(entry).hex() == "3cd184213bf83793ef7083a7b60223216f4865f9410e114c30a2dd95cc8b9524"
    assert leaf_hash(entry) == hashlib.sha256(b"\x00" + salt + digest).digest()


def test_leaf_entry_validation() -> None:
    good = b"\x00" * 32
    for salt, digest in ((b"", good), (b"\x00" * 31, good), (good, b"\x00" * 33), ("x" * 32, good), (good, None)):
        with pytest.raises(CanonicalizationError, match="must be 32 bytes"):
            leaf_entry(salt, digest)  # type: ignore[arg-type]
    assert leaf_entry(bytearray(32), good) == bytes(64)


def test_new_salt() -> None:
    a, b = new_salt(), new_salt()
    assert SALT_BYTES == 32
    assert len(a) == len(b) == 32
    assert a != b
