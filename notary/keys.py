"""Officers' Ed25519 signing keys and the signatures over evidence records.

Signature format (stable: changing it invalidates every signed record)
----------------------------------------------------------------------
The signed bytes are the RFC 8785 canonical JSON of the record *without* its ``signature``
member. The signature is attached as::

    "signature": {"alg": "Ed25519", "keyId": hex(sha256(raw public key)), "value": base64(sig)}

``keyId`` is the id the ``Authority`` contract computes on chain, so a verifier holding the
32-byte public key derives it without asking anyone.

Keys held by the server (custody "server") are encrypted at rest with AES-256-GCM under a
key-encryption key (KEK) that the caller loads from a 0600 file; the associated data binds the
ciphertext to the officer's id, so a ciphertext copied to another officer's row does not
decrypt. Stored form: ``0x01 || nonce (12 bytes) || ciphertext || tag (16 bytes)``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from evidence_ledger.ledger import canonical
from evidence_ledger.ledger.errors import CanonicalizationError

from .errors import KeyStorageError, SignatureError

__all__ = [
    "ALG",
    "KEK_BYTES",
    "decrypt_private_key",
    "encrypt_private_key",
    "generate_private_key",
    "key_id",
    "load_or_create_kek",
    "private_key_from_raw",
    "public_key_bytes",
    "sign_record",
    "signing_payload",
    "verify_record_signature",
]

ALG = "Ed25519"
KEK_BYTES = 32
_ENC_VERSION = b"\x01"
_NONCE_BYTES = 12
_AD_PREFIX = b"evidence-ledger/officer-key/v1:"


# -- keys ---------------------------------------------------------------------------------------

def generate_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def private_key_from_raw(raw: bytes) -> Ed25519PrivateKey:
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 private key is 32 bytes, got {len(raw)}")
    return Ed25519PrivateKey.from_private_bytes(raw)


def public_key_bytes(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    """The raw 32-byte public key."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public_key: bytes) -> bytes:
    """sha256 of the raw public key (as ``Authority.computeKeyId``)."""
    _check_public_key(public_key)
    return hashlib.sha256(public_key).digest()


def _check_public_key(public_key: bytes) -> Ed25519PublicKey:
    if not isinstance(public_key, bytes | bytearray) or len(public_key) != 32:
        raise SignatureError(f"an Ed25519 public key is 32 raw bytes, got {_describe(public_key)}")
    try:
        return Ed25519PublicKey.from_public_bytes(bytes(public_key))
    except ValueError as e:
        raise SignatureError(f"not an Ed25519 public key: {e}") from e


# -- encryption at rest ---------------------------------------------------------------------------

def _aesgcm(kek: bytes) -> AESGCM:
    if not isinstance(kek, bytes) or len(kek) != KEK_BYTES:
        raise ValueError(f"the key-encryption key must be {KEK_BYTES} bytes")  # never echo it
    return AESGCM(kek)


def encrypt_private_key(key: Ed25519PrivateKey, kek: bytes, officer_id: str) -> bytes:
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                            serialization.NoEncryption())
    nonce = os.urandom(_NONCE_BYTES)
    return _ENC_VERSION + nonce + _aesgcm(kek).encrypt(nonce, raw, _AD_PREFIX + officer_id.encode())


def decrypt_private_key(blob: bytes, kek: bytes, officer_id: str) -> Ed25519PrivateKey:
    if len(blob) < 1 + _NONCE_BYTES + 16 or blob[:1] != _ENC_VERSION:
        raise KeyStorageError(f"the stored key of officer {officer_id} is not in a known format")
    nonce, body = blob[1:1 + _NONCE_BYTES], blob[1 + _NONCE_BYTES:]
    try:
        raw = _aesgcm(kek).decrypt(nonce, body, _AD_PREFIX + officer_id.encode())
    except InvalidTag:
        raise KeyStorageError(
            f"the stored key of officer {officer_id} does not decrypt: wrong key-encryption key, "
            "or the ciphertext was altered or belongs to another officer") from None
    return private_key_from_raw(raw)


def load_or_create_kek(path: Path) -> bytes:
    """Read the key-encryption key from ``path`` (created with mode 0600 if missing)."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(KEK_BYTES))
    data = path.read_bytes()
    if len(data) != KEK_BYTES:
        raise KeyStorageError(f"{path}: a key-encryption key file holds exactly {KEK_BYTES} bytes")
    if path.stat().st_mode & 0o077:
        raise KeyStorageError(f"{path}: the key-encryption key file must not be readable by others (chmod 600)")
    return data


# -- signatures -----------------------------------------------------------------------------------

def signing_payload(record: dict[str, Any]) -> bytes:
    """The bytes an officer signs: RFC 8785 JSON of the record without ``signature``."""
    if not isinstance(record, dict):
        raise SignatureError(f"a record is a JSON object, got {type(record).__name__}")
    body = {k: v for k, v in record.items() if k != "signature"}
    try:
        return canonical.canonicalize(body)
    except CanonicalizationError as e:
        raise SignatureError(f"the record cannot be canonicalised: {e}") from e


def sign_record(record: dict[str, Any], private_key: Ed25519PrivateKey) -> dict[str, Any]:
    """A copy of ``record`` with its ``signature`` (any previous one is replaced)."""
    signature = private_key.sign(signing_payload(record))
    signed = {k: v for k, v in record.items() if k != "signature"}
    signed["signature"] = {"alg": ALG, "keyId": key_id(public_key_bytes(private_key)).hex(),
                           "value": base64.b64encode(signature).decode()}
    return signed


def verify_record_signature(record: dict[str, Any], public_key: bytes) -> None:
    """Raise ``SignatureError`` naming what failed: missing, malformed, another key, or invalid."""
    verifier = _check_public_key(public_key)
    if not isinstance(record, dict):
        raise SignatureError(f"a record is a JSON object, got {type(record).__name__}")
    sig = record.get("signature")
    if sig is None:
        raise SignatureError("signature: the record is not signed")
    if not isinstance(sig, dict):
        raise SignatureError(f"signature: expected an object, got {type(sig).__name__}")
    if sig.get("alg") != ALG:
        raise SignatureError(f"signature.alg: expected {ALG!r}, got {sig.get('alg')!r}")
    expected_id = key_id(bytes(public_key)).hex()
    if sig.get("keyId") != expected_id:
        raise SignatureError(f"signature.keyId: the record names key {sig.get('keyId')!r}, "
                             f"the signer's key is {expected_id}")
    value = sig.get("value")
    try:
        raw = base64.b64decode(value, validate=True) if isinstance(value, str) else None
    except (binascii.Error, ValueError):
        raw = None
    if raw is None or len(raw) != 64:
        raise SignatureError("signature.value: not a base64 Ed25519 signature (64 bytes)")
    try:
        verifier.verify(raw, signing_payload(record))
    except InvalidSignature:
        raise SignatureError(
            f"signature.value: does not verify with key {expected_id[:16]}...: the record was "
            "altered after signing, or signed by another key") from None


def _describe(value: object) -> str:
    if isinstance(value, bytes | bytearray):
        return f"{len(value)} bytes"
    return type(value).__name__
