"""Verifiable random inspections ("double random, one public"): commit to a seed, draw, reveal.

The operator picks a secret seed, records its commitment on the ledger together with the digest of
the population (every enterprise with its grade, the inspectors, the ratios and how many inspectors
go to each enterprise), then draws, then reveals the seed. Anyone can then check that the seed
matches the commitment and recompute the draw: nobody was picked or spared by hand, and the
population could not be changed after the commitment.

Byte encodings (version 1), for reimplementation. ``H`` is SHA-256; ``||`` concatenation; USCCs
are the 18 ASCII characters; the seed is exactly 32 bytes; inspector ids are UTF-8.

- commitment  = hex(H(b"evidence-ledger/flows/draw/v1/commit\\x00" || seed))
- draw seed   = H(b"evidence-ledger/flows/draw/v1/beacon\\x00" || seed || beacon), where the
  beacon is the 32-byte hash of the chain block that anchored the commitment; without a beacon
  the draw seed is the seed itself. The beacon is what stops grinding: the operator knows the seed
  before committing and could try seeds until one spares a friend, but cannot know the hash of the
  block that will later anchor the commitment. Everything below uses the draw seed.
- ticket(u)   = H(b"evidence-ledger/flows/draw/v1/ticket\\x00" || seed || uscc); read as a
  256-bit big-endian integer T, the enterprise is selected when T < ratio(grade) x 2**256, computed
  exactly with the ratio's IEEE-754 double value (a ratio of 1 selects every one: grade D).
- inspector score(u, i) = H(b"evidence-ledger/flows/draw/v1/inspector\\x00" || seed || uscc ||
  inspector); a selected enterprise gets the ``per_enterprise`` inspectors with the smallest scores
  (compared as bytes), listed smallest first.
- population digest = hex(H(b"evidence-ledger/flows/draw/v1/population\\x00"
  || for each (uscc, grade) sorted by uscc: uscc || grade || b"\\n"
  || b"\\x00" || for each inspector sorted by its UTF-8 bytes: uint32_be(len) || utf8
  || b"\\x00" || for each grade sorted: grade || float64_be(ratio)
  || b"\\x00" || uint32_be(per_enterprise)))

Grades are single ASCII capital letters. Selections are sorted by USCC, so the draw does not
depend on the order the population or the inspectors were given in (fixed-width USCCs and the
last-position inspector id keep every hash input unambiguous).
"""

from __future__ import annotations

import hashlib
import secrets
import struct
from collections.abc import Mapping, Sequence
from fractions import Fraction

from .errors import DrawStateError, InvalidRecordError
from .grading import INSPECTION_RATIOS
from .identifiers import validate_uscc
from .records import DrawSelection

__all__ = [
    "SEED_BYTES",
    "new_seed",
    "seed_commitment",
    "check_reveal",
    "population_digest",
    "draw",
    "draw_seed",
    "verify_draw",
]

SEED_BYTES = 32
_COMMIT = b"evidence-ledger/flows/draw/v1/commit\x00"
_TICKET = b"evidence-ledger/flows/draw/v1/ticket\x00"
_INSPECTOR = b"evidence-ledger/flows/draw/v1/inspector\x00"
_POPULATION = b"evidence-ledger/flows/draw/v1/population\x00"
_BEACON = b"evidence-ledger/flows/draw/v1/beacon\x00"
_TWO_256 = 1 << 256


def new_seed() -> bytes:
    """32 bytes from the operating system's CSPRNG."""
    return secrets.token_bytes(SEED_BYTES)


def _seed(seed: bytes) -> bytes:
    if not isinstance(seed, bytes | bytearray) or len(seed) != SEED_BYTES:
        got = f"{len(seed)} bytes" if isinstance(seed, bytes | bytearray) else type(seed).__name__
        raise InvalidRecordError(f"expected a {SEED_BYTES}-byte seed, got {got}", "seed")
    return bytes(seed)


def seed_commitment(seed: bytes) -> str:
    """The hex commitment recorded before the draw."""
    return hashlib.sha256(_COMMIT + _seed(seed)).hexdigest()


def check_reveal(commitment_hex: str, seed: bytes) -> None:
    """:class:`DrawStateError` unless ``seed`` is the one committed to."""
    got = seed_commitment(seed)
    if got != commitment_hex.lower():
        raise DrawStateError(f"the revealed seed commits to {got}, but the recorded commitment is {commitment_hex}")


def _population(population: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    seen: set[str] = set()
    out: list[tuple[str, str]] = []
    for pos, item in enumerate(population):
        if not isinstance(item, tuple | list) or len(item) != 2:
            raise InvalidRecordError(f"expected (uscc, grade), got {item!r}", f"population[{pos}]")
        u = validate_uscc(item[0], f"population[{pos}].uscc")
        g = item[1]
        if not isinstance(g, str) or len(g) != 1 or not "A" <= g <= "Z":
            raise InvalidRecordError(f"expected a grade letter A-Z, got {g!r}", f"population[{pos}].grade")
        if u in seen:
            raise InvalidRecordError(f"expected each enterprise once, got {u} again", f"population[{pos}].uscc")
        seen.add(u)
        out.append((u, g))
    out.sort()
    return out


def _inspectors(inspectors: Sequence[str], per_enterprise: int) -> list[bytes]:
    if isinstance(inspectors, str):
        raise InvalidRecordError("expected a list of inspector ids, got a string", "inspectors")
    enc: list[bytes] = []
    for pos, i in enumerate(inspectors):
        if not isinstance(i, str) or not i:
            raise InvalidRecordError(f"expected a non-empty inspector id, got {i!r}", f"inspectors[{pos}]")
        enc.append(i.encode("utf-8"))
    if len(set(enc)) != len(enc):
        raise InvalidRecordError("expected each inspector once, got duplicates", "inspectors")
    if isinstance(per_enterprise, bool) or not isinstance(per_enterprise, int) or per_enterprise < 1:
        raise InvalidRecordError(f"expected at least 1 inspector per enterprise, got {per_enterprise!r}",
                                 "per_enterprise")
    if per_enterprise > len(enc):
        raise InvalidRecordError(f"expected at least {per_enterprise} inspectors, got {len(enc)}", "inspectors")
    enc.sort()
    return enc


def _ratios(ratios: Mapping[str, float], grades: set[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for g, r in ratios.items():
        if not isinstance(g, str) or len(g) != 1 or not "A" <= g <= "Z":
            raise InvalidRecordError(f"expected a grade letter A-Z, got {g!r}", "ratios")
        if isinstance(r, bool) or not isinstance(r, int | float) or not 0 <= r <= 1:
            raise InvalidRecordError(f"expected a ratio between 0 and 1, got {r!r}", f"ratios.{g}")
        out[g] = float(r)
    missing = sorted(grades - out.keys())
    if missing:
        raise InvalidRecordError(f"expected a ratio for every grade drawn from, missing {', '.join(missing)}", "ratios")
    return out


def draw_seed(seed: bytes, beacon_hex: str | None) -> bytes:
    """The seed the tickets are drawn with: the committed seed mixed with the anchoring block's hash."""
    s = _seed(seed)
    if beacon_hex is None:
        return s
    try:
        beacon = bytes.fromhex(beacon_hex.removeprefix("0x"))
    except (ValueError, AttributeError) as e:
        raise InvalidRecordError(f"expected a 32-byte block hash in hex, got {beacon_hex!r}", "beacon") from e
    if len(beacon) != 32:
        raise InvalidRecordError(f"expected a 32-byte block hash in hex, got {len(beacon)} bytes", "beacon")
    return hashlib.sha256(_BEACON + s + beacon).digest()


def population_digest(population: Sequence[tuple[str, str]], inspectors: Sequence[str],
                      ratios: Mapping[str, float], per_enterprise: int) -> str:
    """Hex digest of everything the draw depends on but the seed (see the module docstring)."""
    pop = _population(population)
    insp = _inspectors(inspectors, per_enterprise)
    rat = _ratios(ratios, {g for _, g in pop})
    return _digest(pop, insp, rat, per_enterprise)


def _digest(pop: list[tuple[str, str]], insp: list[bytes], rat: dict[str, float], per_enterprise: int) -> str:
    h = hashlib.sha256(_POPULATION)
    h.update("".join(f"{u}{g}\n" for u, g in pop).encode("ascii"))
    h.update(b"\x00")
    for i in insp:
        h.update(struct.pack(">I", len(i)) + i)
    h.update(b"\x00")
    for g in sorted(rat):
        h.update(g.encode("ascii") + struct.pack(">d", rat[g]))
    h.update(b"\x00" + struct.pack(">I", per_enterprise))
    return h.hexdigest()


def draw(seed: bytes, population: Sequence[tuple[str, str]], inspectors: Sequence[str], *,
         ratios: Mapping[str, float] = INSPECTION_RATIOS, per_enterprise: int = 2,
         beacon_hex: str | None = None) -> tuple[DrawSelection, ...]:
    """The enterprises drawn for inspection and their inspectors, sorted by USCC."""
    s = draw_seed(seed, beacon_hex)
    pop = _population(population)
    insp = _inspectors(inspectors, per_enterprise)
    rat = _ratios(ratios, {g for _, g in pop})
    return _draw(s, pop, insp, rat, per_enterprise)


def _draw(seed: bytes, pop: list[tuple[str, str]], insp: list[bytes], rat: dict[str, float],
          per_enterprise: int) -> tuple[DrawSelection, ...]:
    # Exact thresholds: Fraction(float) is the double's exact binary value.
    limit = {g: Fraction(r) * _TWO_256 for g, r in rat.items()}
    ticket_base = hashlib.sha256(_TICKET + seed)
    insp_base = hashlib.sha256(_INSPECTOR + seed)
    out: list[DrawSelection] = []
    for u, g in pop:
        ub = u.encode("ascii")
        h = ticket_base.copy()
        h.update(ub)
        digest = h.digest()
        if int.from_bytes(digest, "big") < limit[g]:
            base = insp_base.copy()
            base.update(ub)
            scored = []
            for i in insp:
                hi = base.copy()
                hi.update(i)
                scored.append((hi.digest(), i))
            scored.sort()
            chosen = tuple(i.decode("utf-8") for _, i in scored[:per_enterprise])
            out.append(DrawSelection(uscc=u, grade=g, ticket_hex=digest.hex(), inspectors=chosen))
    return tuple(out)


def verify_draw(commitment_hex: str, seed_hex: str, population: Sequence[tuple[str, str]],
                inspectors: Sequence[str], ratios: Mapping[str, float], per_enterprise: int,
                selections: Sequence[DrawSelection], *, population_hex: str | None = None,
                beacon_hex: str | None = None) -> list[str]:
    """What is wrong with a published draw; ``[]`` when it checks out: the seed matches the
    commitment, the population matches ``population_hex`` (when given: the digest recorded with
    the commitment) and recomputing the draw (with ``beacon_hex``, the anchoring block's hash,
    when the draw used one) gives exactly ``selections``."""
    problems: list[str] = []
    try:
        seed = bytes.fromhex(seed_hex)
        _seed(seed)
    except (ValueError, TypeError, InvalidRecordError):
        return [f"seed: expected {SEED_BYTES * 2} hex digits, got {seed_hex!r}"]
    got = seed_commitment(seed)
    if got != str(commitment_hex).lower():
        problems.append(f"commitment: the seed commits to {got}, the recorded commitment is {commitment_hex}")
    try:
        pop = _population(population)
        insp = _inspectors(inspectors, per_enterprise)
        rat = _ratios(ratios, {g for _, g in pop})
    except InvalidRecordError as e:
        return problems + [f"population: {e}"]
    if population_hex is not None:
        digest = _digest(pop, insp, rat, per_enterprise)
        if digest != population_hex.lower():
            problems.append(f"population: digest {digest} differs from the recorded {population_hex}")
    try:
        mixed = draw_seed(seed, beacon_hex)
    except InvalidRecordError as e:
        return problems + [f"beacon: {e}"]
    expected = {s.uscc: s for s in _draw(mixed, pop, insp, rat, per_enterprise)}
    published: dict[str, DrawSelection] = {}
    for s in selections:
        if s.uscc in published:
            problems.append(f"selection {s.uscc}: listed twice")
        published[s.uscc] = s
    for u in sorted(expected.keys() - published.keys()):
        problems.append(f"selection {u}: drawn (ticket {expected[u].ticket_hex}) but missing from the published draw")
    for u in sorted(published.keys() - expected.keys()):
        problems.append(f"selection {u}: published but not drawn by the seed")
    for u in sorted(expected.keys() & published.keys()):
        e, p = expected[u], published[u]
        for name in ("grade", "ticket_hex", "inspectors"):
            if getattr(e, name) != getattr(p, name):
                problems.append(f"selection {u}: {name} should be {getattr(e, name)!r}, published {getattr(p, name)!r}")
    return problems
