"""Canonical record bytes (RFC 8785 JCS) and the leaf commitment format.

Commitment format (stable: changing it breaks every existing proof)
-------------------------------------------------------------------
A log leaf commits to a record without containing it::

    canonical     = JCS(record)                       # RFC 8785 bytes, UTF-8
    record_digest = SHA-256(canonical)                 # 32 bytes
    salt          = 32 random bytes (os.urandom), kept off-chain with the record
    entry         = salt || record_digest              # exactly 64 bytes: the Merkle leaf entry
    leaf hash     = SHA-256(0x00 || entry)             # RFC 6962 leaf hash (see merkle.leaf_hash)

The salt stops anyone holding only public data (roots, proofs, a leaf hash) from confirming a guess
of a low-entropy record; the digest lets a verifier holding the salt and the record (or just its
digest) recompute the leaf.  Both parts are fixed-width, so the entry is unambiguous.
"""

from __future__ import annotations

import json
import math
import os
from hashlib import sha256
from typing import Any

import rfc8785

from .errors import CanonicalizationError

__all__ = [
    "SALT_BYTES",
    "DIGEST_BYTES",
    "canonicalize",
    "new_salt",
    "record_digest",
    "leaf_entry",
    "commitment_entry",
    "MAX_DEPTH",
]

SALT_BYTES = 32
DIGEST_BYTES = 32


def _locate(value: Any, path: str = "$") -> str | None:
    """Find the JSON path of the first value JCS cannot encode (only used to word errors)."""
    if value is None or isinstance(value, (bool, str)):
        return None
    if isinstance(value, int):
        return path if abs(value) > 2**53 - 1 else None
    if isinstance(value, float):
        return path if not math.isfinite(value) else None
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found = _locate(item, f"{path}[{i}]")
            if found:
                return found
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{path} (key {key!r})"
            found = _locate(item, f"{path}.{key}")
            if found:
                return found
        return None
    return path


_dumps = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False
).encode
_INT_MAX = 2**53 - 1
MAX_DEPTH = 100
"""Most arrays/objects that may enclose one another (bounded independently of the recursion limit)."""


def _plain(value: Any, depth: int = 0) -> bool:
    """Walk ``value`` fully; True if it only holds None/bool/str/in-range int/list/tuple/dict
    with BMP str keys (the fast-path types).  Raises if nesting exceeds :data:`MAX_DEPTH`."""
    t = type(value)
    if t is str or value is None or t is bool:
        return True
    if t is int:
        return -_INT_MAX <= value <= _INT_MAX
    if depth >= MAX_DEPTH and isinstance(value, (dict, list, tuple)):
        raise CanonicalizationError(
            f"cannot canonicalise record: nested too deeply (more than {MAX_DEPTH} levels)"
        )
    plain = True
    if t is dict:
        for key, item in value.items():
            if type(key) is not str or not (key.isascii() or max(key, default="") < "\U00010000"):
                plain = False
            t = type(item)
            if t is str or (t is int and -_INT_MAX <= item <= _INT_MAX) or item is None or t is bool:
                continue
            if not _plain(item, depth + 1):
                plain = False
        return plain
    if t is list or t is tuple:
        for item in value:
            t = type(item)
            if t is str or (t is int and -_INT_MAX <= item <= _INT_MAX) or item is None or t is bool:
                continue
            if not _plain(item, depth + 1):
                plain = False
        return plain
    if isinstance(value, (dict, list, tuple)):  # subclasses: still bound the depth
        items = value.values() if isinstance(value, dict) else value
        for item in items:
            _plain(item, depth + 1)
    return False


def canonicalize(record: Any) -> bytes:
    """RFC 8785 canonical JSON bytes of ``record`` (dict/list/str/int/float/bool/None).

    Raises :class:`CanonicalizationError` for values JCS cannot represent: NaN or infinite floats,
    integers beyond +-(2**53 - 1), non-string object keys, lone surrogates, other Python types,
    nesting deeper than :data:`MAX_DEPTH`.
    """
    # Fast path: for records without floats (and with BMP-only keys, exact builtin types and
    # integers in the I-JSON range) the C JSON encoder produces exactly the RFC 8785 bytes:
    # same escaping, same separators, and code-point key order equals UTF-16 order for BMP keys.
    # Anything else takes the reference implementation.
    if _plain(record):
        try:
            return _dumps(record).encode("utf-8")
        except (UnicodeEncodeError, RecursionError, ValueError, TypeError):
            pass
    try:
        return rfc8785.dumps(record)
    except rfc8785.FloatDomainError as exc:
        where = _locate(record) or "$"
        raise CanonicalizationError(
            f"cannot canonicalise record: {where} is a float that JSON cannot represent ({exc})"
        ) from None
    except rfc8785.IntegerDomainError as exc:
        where = _locate(record) or "$"
        raise CanonicalizationError(
            f"cannot canonicalise record: {where} is an integer outside the I-JSON range "
            f"+-(2**53 - 1); encode it as a string ({exc})"
        ) from None
    except rfc8785.CanonicalizationError as exc:
        where = _locate(record)
        suffix = f" at {where}" if where else ""
        raise CanonicalizationError(f"cannot canonicalise record{suffix}: {exc}") from None
    except UnicodeError:
        raise CanonicalizationError(
            "cannot canonicalise record: a string or key contains lone surrogates (not valid UTF-8)"
        ) from None
    except RecursionError:
        raise CanonicalizationError("cannot canonicalise record: nested too deeply") from None


def new_salt() -> bytes:
    """A fresh random 32-byte salt."""
    return os.urandom(SALT_BYTES)


def record_digest(canonical: bytes) -> bytes:
    """SHA-256 of the canonical record bytes."""
    return sha256(canonical).digest()


def leaf_entry(salt: bytes, record_digest: bytes) -> bytes:
    """The Merkle leaf entry: ``salt (32 bytes) || record_digest (32 bytes)``."""
    if isinstance(salt, (bytearray, memoryview)):
        salt = bytes(salt)
    if isinstance(record_digest, (bytearray, memoryview)):
        record_digest = bytes(record_digest)
    if not isinstance(salt, bytes) or len(salt) != SALT_BYTES:
        raise CanonicalizationError(
            f"salt must be {SALT_BYTES} bytes, got {_describe(salt)}"
        )
    if not isinstance(record_digest, bytes) or len(record_digest) != DIGEST_BYTES:
        raise CanonicalizationError(
            f"record digest must be {DIGEST_BYTES} bytes, got {_describe(record_digest)}"
        )
    return salt + record_digest


def commitment_entry(salt: bytes, canonical: bytes) -> bytes:
    """Leaf entry for canonical record bytes: ``leaf_entry(salt, record_digest(canonical))``."""
    return leaf_entry(salt, sha256(canonical).digest())


def _describe(value: object) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"{len(value)} bytes"
    return type(value).__name__
