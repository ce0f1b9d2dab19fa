"""Commit-reveal inspection draws: a known-answer vector (checked against an independent
reimplementation of the documented encodings), order independence, and what verification catches."""

from __future__ import annotations

import hashlib
import random
import struct
from dataclasses import replace

import pytest

from evidence_ledger.flows.draw import (
    check_reveal,
    draw,
    draw_seed,
    new_seed,
    population_digest,
    seed_commitment,
    verify_draw,
)
from evidence_ledger.flows.errors import DrawStateError, InvalidRecordError
from evidence_ledger.flows.grading import INSPECTION_RATIOS
from evidence_ledger.flows.identifiers import make_uscc
from evidence_ledger.flows.records import DrawSelection

SEED = bytes(range(32))
POPULATION = [(make_uscc(f"91320583{n:09d}"), g) for n, g in zip(range(1, 13), "AABBCCDDABCA", strict=True)]
INSPECTORS = ["inspector-li", "inspector-wang", "inspector-zhang", "inspector-chen", "inspector-liu"]
HALF = {"A": 0.5, "B": 0.5, "C": 0.5, "D": 1.0}

# Computed once with this implementation; the independent recomputation below confirms them.
COMMITMENT = "75c0f8a34e42234c34af00ef06efeb530cd5ecda62bac46793e322337c876bca"
DIGEST_DEFAULT_RATIOS = "ab5443e24556326d7159df5dc7d940b772bedf6e1837efbf3cd866270e3a3a38"
DIGEST_HALF = "ac23b7807e1a0a91996828228fdea5523811ba939f17b5e9f00020175c200e2b"
EXPECTED_DEFAULT = (
    DrawSelection("91320583000000005G", "C", "23b622545c9f9db2ecb1be5a42fa425d3bad11429d0fd738cb2535131f8edc8f",
                  ("inspector-chen", "inspector-li")),
    DrawSelection("91320583000000007N", "D", "7736623ad4edeb914daff49a76843fce180fd66b7aa3c460fa443b7bef58dd02",
                  ("inspector-li", "inspector-wang")),
    DrawSelection("91320583000000008R", "D", "33e458d14e2e8ce559f51d973b58808bb29e7d72898fc35d6bd6b2b7ef70fc0c",
                  ("inspector-liu", "inspector-li")),
)
EXPECTED_HALF_USCCS = ["91320583000000004D", "91320583000000005G", "91320583000000006K", "91320583000000007N",
                       "91320583000000008R", "91320583000000009W", "913205830000000115", "913205830000000128"]


def independent_draw(seed: bytes, population: list[tuple[str, str]], inspectors: list[str],
                     ratios: dict[str, float], per_enterprise: int) -> list[tuple[str, str, str, tuple[str, ...]]]:
    """The module docstring's encodings, written out again with hashlib alone."""
    out = []
    for uscc, grade in sorted(population):
        digest = hashlib.sha256(b"evidence-ledger/flows/draw/v1/ticket\x00" + seed + uscc.encode()).digest()
        # T < ratio x 2^256, exactly: compare T x 2^k < m x 2^256 with ratio = m / 2^k (IEEE-754 double).
        m, k = ratios[grade].as_integer_ratio()
        if int.from_bytes(digest, "big") * k < m * 2**256:
            scores = sorted((hashlib.sha256(b"evidence-ledger/flows/draw/v1/inspector\x00" + seed + uscc.encode()
                                            + i.encode()).digest(), i) for i in inspectors)
            out.append((uscc, grade, digest.hex(), tuple(i for _, i in scores[:per_enterprise])))
    return out


def independent_digest(population: list[tuple[str, str]], inspectors: list[str], ratios: dict[str, float],
                       per_enterprise: int) -> str:
    body = b"evidence-ledger/flows/draw/v1/population\x00"
    body += b"".join(f"{u}{g}\n".encode() for u, g in sorted(population)) + b"\x00"
    body += b"".join(len(i.encode()).to_bytes(4, "big") + i.encode() for i in sorted(inspectors)) + b"\x00"
    body += b"".join(g.encode() + struct.pack(">d", ratios[g]) for g in sorted(ratios)) + b"\x00"
    body += per_enterprise.to_bytes(4, "big")
    return hashlib.sha256(body).hexdigest()


def as_tuples(sel: tuple[DrawSelection, ...]) -> list[tuple[str, str, str, tuple[str, ...]]]:
    return [(s.uscc, s.grade, s.ticket_hex, s.inspectors) for s in sel]


def test_known_answer_commitment_and_digest() -> None:
    assert seed_commitment(SEED) == COMMITMENT
    assert COMMITMENT == hashlib.sha256(b"evidence-ledger/flows/draw/v1/commit\x00" + SEED).hexdigest()
    assert population_digest(POPULATION, INSPECTORS, INSPECTION_RATIOS, 2) == DIGEST_DEFAULT_RATIOS
    assert population_digest(POPULATION, INSPECTORS, HALF, 2) == DIGEST_HALF
    assert independent_digest(POPULATION, INSPECTORS, dict(INSPECTION_RATIOS), 2) == DIGEST_DEFAULT_RATIOS
    assert independent_digest(POPULATION, INSPECTORS, HALF, 2) == DIGEST_HALF


def test_known_answer_draw() -> None:
    got = draw(SEED, POPULATION, INSPECTORS)
    assert got == EXPECTED_DEFAULT
    assert as_tuples(got) == independent_draw(SEED, POPULATION, INSPECTORS, dict(INSPECTION_RATIOS), 2)
    half = draw(SEED, POPULATION, INSPECTORS, ratios=HALF, per_enterprise=3)
    assert [s.uscc for s in half] == EXPECTED_HALF_USCCS
    assert as_tuples(half) == independent_draw(SEED, POPULATION, INSPECTORS, HALF, 3)
    assert all(len(s.inspectors) == 3 for s in half)


def test_independent_of_input_order() -> None:
    rng = random.Random(1)
    pop, insp = list(POPULATION), list(INSPECTORS)
    for _ in range(5):
        rng.shuffle(pop)
        rng.shuffle(insp)
        assert draw(SEED, pop, insp) == EXPECTED_DEFAULT
        assert population_digest(pop, insp, INSPECTION_RATIOS, 2) == DIGEST_DEFAULT_RATIOS


def test_every_d_is_drawn_and_ratios_hold_roughly() -> None:
    seed = hashlib.sha256(b"another seed").digest()
    pop = [(make_uscc(f"91120000{n:09d}"), "D" if n < 100 else "A") for n in range(4100)]
    sel = draw(seed, pop, INSPECTORS)
    drawn = {s.uscc for s in sel}
    assert {u for u, g in pop if g == "D"} <= drawn
    a_drawn = sum(1 for s in sel if s.grade == "A")
    assert 80 <= a_drawn <= 160  # 3% of 4,000 is 120
    assert draw(seed, pop, INSPECTORS, ratios={"A": 0.0, "D": 1.0}) == tuple(s for s in sel if s.grade == "D")
    assert len(as_tuples(sel)) == len(independent_draw(seed, pop, INSPECTORS, dict(INSPECTION_RATIOS), 2))


def test_a_different_seed_draws_differently() -> None:
    other = draw(bytes(32), POPULATION, INSPECTORS, ratios=HALF)
    assert other != draw(SEED, POPULATION, INSPECTORS, ratios=HALF)


def test_new_seed_is_fresh() -> None:
    a, b = new_seed(), new_seed()
    assert len(a) == 32 and a != b


def test_verify_draw_accepts_the_real_draw() -> None:
    sel = draw(SEED, POPULATION, INSPECTORS)
    assert verify_draw(COMMITMENT, SEED.hex(), POPULATION, INSPECTORS, INSPECTION_RATIOS, 2, sel,
                       population_hex=DIGEST_DEFAULT_RATIOS) == []
    assert verify_draw(COMMITMENT.upper(), SEED.hex(), list(reversed(POPULATION)), INSPECTORS,
                       INSPECTION_RATIOS, 2, list(reversed(sel))) == []


def test_verify_draw_catches_a_tampered_seed() -> None:
    sel = draw(SEED, POPULATION, INSPECTORS)
    other = bytes([1]) + SEED[1:]
    problems = verify_draw(COMMITMENT, other.hex(), POPULATION, INSPECTORS, INSPECTION_RATIOS, 2,
                           draw(other, POPULATION, INSPECTORS))
    assert problems == [f"commitment: the seed commits to {seed_commitment(other)}, the recorded commitment "
                        f"is {COMMITMENT}"]
    assert verify_draw(COMMITMENT, "zz", POPULATION, INSPECTORS, INSPECTION_RATIOS, 2, sel) == [
        "seed: expected 64 hex digits, got 'zz'"]
    assert verify_draw(COMMITMENT, SEED.hex()[:-2], POPULATION, INSPECTORS, INSPECTION_RATIOS, 2, sel) == [
        f"seed: expected 64 hex digits, got {SEED.hex()[:-2]!r}"]


def test_verify_draw_catches_a_swapped_selection() -> None:
    sel = list(draw(SEED, POPULATION, INSPECTORS))
    sel[1] = replace(sel[1], inspectors=("inspector-zhang", "inspector-wang"))
    assert verify_draw(COMMITMENT, SEED.hex(), POPULATION, INSPECTORS, INSPECTION_RATIOS, 2, sel) == [
        "selection 91320583000000007N: inspectors should be ('inspector-li', 'inspector-wang'), "
        "published ('inspector-zhang', 'inspector-wang')"]
    # An enterprise spared by hand, another picked by hand in its place.
    spared = [s for s in draw(SEED, POPULATION, INSPECTORS) if s.uscc != "91320583000000005G"]
    picked = DrawSelection("91320583000000006K", "C", "00" * 32, ("inspector-li", "inspector-wang"))
    problems = verify_draw(COMMITMENT, SEED.hex(), POPULATION, INSPECTORS, INSPECTION_RATIOS, 2, [*spared, picked])
    assert problems == [
        "selection 91320583000000005G: drawn (ticket 23b622545c9f9db2ecb1be5a42fa425d3bad11429d0fd738cb2535131f8edc8f)"
        " but missing from the published draw",
        "selection 91320583000000006K: published but not drawn by the seed",
    ]


def test_verify_draw_catches_an_added_enterprise() -> None:
    sel = draw(SEED, POPULATION, INSPECTORS)
    added = [*POPULATION, (make_uscc("91320583000000099"), "D")]
    problems = verify_draw(COMMITMENT, SEED.hex(), added, INSPECTORS, INSPECTION_RATIOS, 2, sel,
                           population_hex=DIGEST_DEFAULT_RATIOS)
    digest = population_digest(added, INSPECTORS, INSPECTION_RATIOS, 2)
    assert problems == [
        f"population: digest {digest} differs from the recorded {DIGEST_DEFAULT_RATIOS}",
        f"selection {added[-1][0]}: drawn (ticket {draw(SEED, added, INSPECTORS)[-1].ticket_hex}) but missing "
        f"from the published draw",
    ]
    # A regraded enterprise changes the digest too.
    regraded = [(u, "A" if g == "D" else g) for u, g in POPULATION]
    assert verify_draw(COMMITMENT, SEED.hex(), regraded, INSPECTORS, INSPECTION_RATIOS, 2, sel,
                       population_hex=DIGEST_DEFAULT_RATIOS)[0].startswith("population: digest ")


def test_check_reveal() -> None:
    check_reveal(COMMITMENT, SEED)
    with pytest.raises(DrawStateError) as e:
        check_reveal(COMMITMENT, bytes(32))
    assert str(e.value) == (f"the revealed seed commits to {seed_commitment(bytes(32))}, but the recorded "
                            f"commitment is {COMMITMENT}")


@pytest.mark.parametrize(("call", "message"), [
    (lambda: seed_commitment(b"short"), "seed: expected a 32-byte seed, got 5 bytes"),
    (lambda: draw("00" * 32, POPULATION, INSPECTORS),  # type: ignore[arg-type]
     "seed: expected a 32-byte seed, got str"),
    (lambda: draw(SEED, [*POPULATION, POPULATION[0]], INSPECTORS),
     f"population[12].uscc: expected each enterprise once, got {POPULATION[0][0]} again"),
    (lambda: draw(SEED, [("91320583000000005H", "A")], INSPECTORS),
     "population[0].uscc: check character of '91320583000000005H' should be 'G', got 'H'"),
    (lambda: draw(SEED, [(POPULATION[0][0], "AA")], INSPECTORS),
     "population[0].grade: expected a grade letter A-Z, got 'AA'"),
    (lambda: draw(SEED, [(POPULATION[0][0], "E")], INSPECTORS), "ratios: expected a ratio for every grade drawn "
     "from, missing E"),
    (lambda: draw(SEED, POPULATION, ["a", "a"]), "inspectors: expected each inspector once, got duplicates"),
    (lambda: draw(SEED, POPULATION, ["a"]), "inspectors: expected at least 2 inspectors, got 1"),
    (lambda: draw(SEED, POPULATION, INSPECTORS, per_enterprise=0),
     "per_enterprise: expected at least 1 inspector per enterprise, got 0"),
    (lambda: draw(SEED, POPULATION, "inspector-li"), "inspectors: expected a list of inspector ids, got a string"),
    (lambda: draw(SEED, POPULATION, INSPECTORS, ratios={**HALF, "A": 1.5}),
     "ratios.A: expected a ratio between 0 and 1, got 1.5"),
])
def test_bad_input(call, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidRecordError) as e:
        call()
    assert str(e.value) == message


def test_verify_draw_reports_a_malformed_population() -> None:
    sel = draw(SEED, POPULATION, INSPECTORS)
    assert verify_draw(COMMITMENT, SEED.hex(), POPULATION, ["x"], INSPECTION_RATIOS, 2, sel) == [
        "population: inspectors: expected at least 2 inspectors, got 1"]


BEACON = "ab" * 32  # a block hash


def test_beacon_is_mixed_into_the_seed() -> None:
    mixed = hashlib.sha256(b"evidence-ledger/flows/draw/v1/beacon\x00" + SEED + bytes.fromhex(BEACON)).digest()
    assert draw_seed(SEED, BEACON) == mixed == draw_seed(SEED, "0x" + BEACON.upper())
    assert draw_seed(SEED, None) == SEED
    got = draw(SEED, POPULATION, INSPECTORS, ratios=HALF, beacon_hex=BEACON)
    assert as_tuples(got) == independent_draw(mixed, POPULATION, INSPECTORS, HALF, 2)
    assert got != draw(SEED, POPULATION, INSPECTORS, ratios=HALF)
    assert verify_draw(COMMITMENT, SEED.hex(), POPULATION, INSPECTORS, HALF, 2, got, beacon_hex=BEACON) == []
    wrong = verify_draw(COMMITMENT, SEED.hex(), POPULATION, INSPECTORS, HALF, 2, got, beacon_hex="cd" * 32)
    assert wrong and all(p.startswith("selection ") for p in wrong)
    assert verify_draw(COMMITMENT, SEED.hex(), POPULATION, INSPECTORS, HALF, 2, got, beacon_hex="ab") == [
        "beacon: beacon: expected a 32-byte block hash in hex, got 1 bytes"]
    with pytest.raises(InvalidRecordError, match="expected a 32-byte block hash in hex, got 'zz'"):
        draw_seed(SEED, "zz")
