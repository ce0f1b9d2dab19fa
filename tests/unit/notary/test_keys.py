"""Officer keys: the signature format (known answer), failures by name, encryption at rest."""

from __future__ import annotations

import base64
import hashlib
import os
import stat

import pytest

from evidence_ledger.notary import keys
from evidence_ledger.notary.errors import KeyStorageError, SignatureError

SEED = bytes(range(32))
PUBLIC_HEX = "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8"
RECORD = {
    "type": "evidence-ledger/evidence/v1",
    "evidenceId": "00112233445566778899aabbccddeeff",
    "content": {"sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "sizeBytes": 0},
    "officer": {"name": "李警官", "keyId": "x"},
    "notarizedAt": "2026-01-02T03:04:05.000000Z",
}
PAYLOAD = ('{"content":{"sha256":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",'
           '"sizeBytes":0},"evidenceId":"00112233445566778899aabbccddeeff",'
           '"notarizedAt":"2026-01-02T03:04:05.000000Z","officer":{"keyId":"x","name":"李警官"},'
           '"type":"evidence-ledger/evidence/v1"}').encode()
SIGNATURE_B64 = "gYqG6TRiNWuSNgYWhnTteLBNxDAyBl8X86q9VbLj2yks+votmH72m+0mYbWv5W5CbsydL17sRhZqPE9RJoBkBQ=="


def test_known_answer() -> None:
    key = keys.private_key_from_raw(SEED)
    public = keys.public_key_bytes(key)
    assert public.hex() == PUBLIC_HEX
    assert keys.signing_payload(RECORD) == PAYLOAD  # RFC 8785: sorted keys, UTF-8, no spaces
    signed = keys.sign_record(RECORD, key)
    assert signed["signature"] == {"alg": "Ed25519", "keyId": hashlib.sha256(public).hexdigest(),
                                   "value": SIGNATURE_B64}
    assert "signature" not in RECORD  # the input is not modified
    keys.verify_record_signature(signed, public)
    # The payload ignores the signature member, so re-signing gives the same bytes.
    assert keys.sign_record(signed, key) == signed
    # Independently: plain Ed25519 over the payload.
    key.public_key().verify(base64.b64decode(SIGNATURE_B64), PAYLOAD)


def test_failures_name_what_failed() -> None:
    key = keys.private_key_from_raw(SEED)
    public = keys.public_key_bytes(key)
    signed = keys.sign_record(RECORD, key)
    with pytest.raises(SignatureError, match="^signature: the record is not signed"):
        keys.verify_record_signature(RECORD, public)
    with pytest.raises(SignatureError, match=r"^signature\.value: does not verify"):
        keys.verify_record_signature({**signed, "evidenceId": "ff" * 16}, public)
    other = keys.public_key_bytes(keys.generate_private_key())
    with pytest.raises(SignatureError, match=r"^signature\.keyId"):
        keys.verify_record_signature(signed, other)
    with pytest.raises(SignatureError, match=r"^signature\.alg"):
        keys.verify_record_signature({**signed, "signature": {**signed["signature"], "alg": "ES256"}}, public)
    with pytest.raises(SignatureError, match=r"^signature\.value: not a base64"):
        keys.verify_record_signature({**signed, "signature": {**signed["signature"], "value": "%%"}}, public)
    with pytest.raises(SignatureError, match="32 raw bytes"):
        keys.verify_record_signature(signed, b"short")


def test_private_keys_are_encrypted_and_bound_to_the_officer(tmp_path) -> None:  # type: ignore[no-untyped-def]
    key = keys.generate_private_key()
    kek = os.urandom(32)
    blob = keys.encrypt_private_key(key, kek, "officer-a")
    raw = keys.private_key_from_raw
    assert blob[:1] == b"\x01" and len(blob) == 1 + 12 + 32 + 16
    assert keys.public_key_bytes(keys.decrypt_private_key(blob, kek, "officer-a")) == keys.public_key_bytes(key)
    with pytest.raises(KeyStorageError, match="another officer"):
        keys.decrypt_private_key(blob, kek, "officer-b")
    with pytest.raises(KeyStorageError, match="wrong key-encryption key"):
        keys.decrypt_private_key(blob, os.urandom(32), "officer-a")
    with pytest.raises(ValueError, match="32 bytes") as e:
        keys.encrypt_private_key(key, b"short", "officer-a")
    assert "short" not in str(e.value)
    assert raw(SEED)  # raw loading works

    path = tmp_path / "keys" / "notary.kek"
    kek1 = keys.load_or_create_kek(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(kek1) == 32
    assert keys.load_or_create_kek(path) == kek1
    path.chmod(0o644)
    with pytest.raises(KeyStorageError, match="chmod 600"):
        keys.load_or_create_kek(path)
