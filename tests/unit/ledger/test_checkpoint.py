"""C2SP signed notes and tlog-checkpoints with Ed25519."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from evidence_ledger.ledger.checkpoint import (
    Checkpoint,
    NoteSigner,
    NoteVerifier,
    generate_signing_key,
    load_or_create_key_file,
    load_private_key_pem,
    open_checkpoint,
    open_note,
    private_key_to_pem,
)
from evidence_ledger.ledger.errors import CheckpointError

# golang.org/x/mod/sumdb/note test vectors.
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
GO_SIG_LINE = (
    "\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
GO_NOTE = GO_TEXT + "\n" + GO_SIG_LINE

ROOT = bytes.fromhex("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")


@pytest.fixture
def signer() -> NoteSigner:
    return NoteSigner("example.org/log/evidence", generate_signing_key())


# --- Go known answers ----------------------------------------------------------------------------


def test_go_vector_verifies() -> None:
    verifier = NoteVerifier.from_verifier_key(GO_VKEY)
    assert verifier.name == "PeterNeumann"
    assert verifier.key_hash.hex() == "c74f20a3"
    assert verifier.verifier_key() == GO_VKEY
    assert open_note(GO_NOTE, [verifier]) == GO_TEXT.encode()
    assert open_note(GO_NOTE.encode(), [verifier]) == GO_TEXT.encode()


def test_go_signer_key_reproduces_signature() -> None:
    signer = NoteSigner.from_signer_key(GO_SKEY)
    assert signer.verifier_key() == GO_VKEY
    assert signer.signer_key() == GO_SKEY
    assert signer.signature_line(GO_TEXT) == GO_SIG_LINE
    assert signer.sign_note(GO_TEXT) == GO_NOTE


def test_go_vector_tampered() -> None:
    verifier = NoteVerifier.from_verifier_key(GO_VKEY)
    with pytest.raises(CheckpointError, match="does not verify"):
        open_note(GO_NOTE.replace("cryptography", "cryptographY"), [verifier])


def test_verifier_key_hash_must_match() -> None:
    with pytest.raises(CheckpointError, match="does not match"):
        NoteVerifier.from_verifier_key(GO_VKEY.replace("c74f20a3", "c74f20a4"))
    with pytest.raises(CheckpointError, match="does not match"):
        NoteVerifier.from_verifier_key(GO_VKEY.replace("PeterNeumann", "PeterNeuman"))
    for bad in ("PeterNeumann+c74f20a3", "PeterNeumann+xyz+ARpc", "+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
                "PeterNeumann+c74f20a3+AhpjZGQ=", "PeterNeumann+c74f20a3+!!!"):
        with pytest.raises(CheckpointError):
            NoteVerifier.from_verifier_key(bad)


# --- checkpoint body ----------------------------------------------------------------------------


def test_checkpoint_body() -> None:
    cp = Checkpoint("example.org/log", 8, ROOT)
    assert cp.body() == b"example.org/log\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n"
    cp2 = Checkpoint("example.org/log", 8, ROOT, ("ext one", "ext two"))
    assert cp2.body().endswith(b"=\next one\next two\n")
    assert Checkpoint.parse(cp2.body()) == cp2
    assert Checkpoint.parse(cp.body()) == cp


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"origin\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=", "newline"),
        (b"\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n", "origin"),
        (b"origin\n08\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n", "leading zeros"),
        (b"origin\n-1\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n", "decimal"),
        (b"origin\n+1\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n", "decimal"),
        (b"origin\n 1\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n", "decimal"),
        (b"origin\n\xd9\xa1\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n", "decimal"),
        (b"origin\n99999999999999999999999\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n", "64 bits"),
        (b"origin\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg\n", "base64"),
        (b"origin\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz-Nw7_RgQyg=\n", "base64"),
        (b"origin\n8\nAAAA\n", "32 bytes"),
        (b"origin\n8\n", "origin, size and root"),
        (b"origin\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n\n", "empty extension"),
        (b"origin\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n\xff\n", "UTF-8"),
    ],
)
def test_checkpoint_parse_rejects(body: bytes, match: str) -> None:
    with pytest.raises(CheckpointError, match=match):
        Checkpoint.parse(body)


def test_checkpoint_constructor_validates() -> None:
    with pytest.raises(CheckpointError):
        Checkpoint("", 1, ROOT)
    with pytest.raises(CheckpointError):
        Checkpoint("a\nb", 1, ROOT)
    with pytest.raises(CheckpointError):
        Checkpoint("a", -1, ROOT)
    with pytest.raises(CheckpointError):
        Checkpoint("a", 1, ROOT[:31])
    with pytest.raises(CheckpointError):
        Checkpoint("a", 1, ROOT, ("",))


# --- signing and opening ------------------------------------------------------------------------


def test_round_trip(signer: NoteSigner) -> None:
    cp = Checkpoint("example.org/log/evidence", 1234, ROOT)
    note = signer.sign(cp)
    body, sigs = note.split("\n\n")
    assert body + "\n" == cp.body().decode()
    assert sigs.startswith("\u2014 example.org/log/evidence ")
    raw = base64.b64decode(sigs.split(" ")[-1])
    assert raw[:4] == signer.key_hash and len(raw) == 68
    verifier = NoteVerifier.from_verifier_key(signer.verifier_key())
    assert open_checkpoint(note, [verifier]) == cp
    assert open_checkpoint(note, [verifier], origin="example.org/log/evidence") == cp
    with pytest.raises(CheckpointError, match="origin"):
        open_checkpoint(note, [verifier], origin="other")


def test_key_hash_formula(signer: NoteSigner) -> None:
    import hashlib

    want = hashlib.sha256(signer.name.encode() + b"\n\x01" + signer.public_key_bytes).digest()[:4]
    assert signer.key_hash == want and len(signer.key_hash) == 4


def test_tampered_body(signer: NoteSigner) -> None:
    note = signer.sign(Checkpoint("log", 10, ROOT))
    tampered = note.replace("\n10\n", "\n11\n")
    with pytest.raises(CheckpointError, match="does not verify"):
        open_checkpoint(tampered, [signer.verifier()])


def test_tampered_signature(signer: NoteSigner) -> None:
    note = signer.sign(Checkpoint("log", 10, ROOT))
    body, line = note.split("\n\n")
    prefix, b64 = line.rstrip("\n").rsplit(" ", 1)
    raw = bytearray(base64.b64decode(b64))
    raw[10] ^= 1
    bad = body + "\n\n" + prefix + " " + base64.b64encode(bytes(raw)).decode() + "\n"
    with pytest.raises(CheckpointError, match="does not verify"):
        open_checkpoint(bad, [signer.verifier()])


def test_wrong_key(signer: NoteSigner) -> None:
    note = signer.sign(Checkpoint("log", 10, ROOT))
    other = NoteSigner(signer.name, generate_signing_key())  # same name, different key hash
    with pytest.raises(CheckpointError, match="no valid signature by a known key"):
        open_checkpoint(note, [other.verifier()])
    with pytest.raises(CheckpointError, match="no valid signature"):
        open_checkpoint(note, [])


def test_unknown_signatures_ignored_and_multiple_signers(signer: NoteSigner) -> None:
    cp = Checkpoint("log", 10, ROOT)
    witness = NoteSigner("witness.example", generate_signing_key())
    stranger = NoteSigner("stranger", generate_signing_key())
    note = signer.sign(cp) + witness.signature_line(cp.body()) + stranger.signature_line(cp.body())
    assert open_checkpoint(note, [signer.verifier()]) == cp
    assert open_checkpoint(note, [witness.verifier()]) == cp
    assert open_checkpoint(note, [signer.verifier(), witness.verifier()]) == cp
    # An unknown signature line with garbage base64 payload is still malformed.
    with pytest.raises(CheckpointError):
        open_checkpoint(note + "\u2014 x !!!\n", [signer.verifier()])


def test_known_key_bad_signature_is_error_even_with_another_good_one(signer: NoteSigner) -> None:
    cp = Checkpoint("log", 10, ROOT)
    witness = NoteSigner("witness.example", generate_signing_key())
    bad_witness_line = witness.signature_line(Checkpoint("log", 11, ROOT).body())
    note = signer.sign(cp) + bad_witness_line
    assert open_checkpoint(note, [signer.verifier()]) == cp  # witness unknown: ignored
    with pytest.raises(CheckpointError, match="witness.example"):
        open_checkpoint(note, [signer.verifier(), witness.verifier()])


@pytest.mark.parametrize(
    "mutate",
    [
        lambda n: n.replace("\n\n", "\n"),  # no blank line
        lambda n: n[:-1],  # no final newline
        lambda n: n.replace("\u2014 ", "- "),  # wrong dash
        lambda n: n.replace("\u2014 ", "\u2014"),  # no space
        lambda n: n.rstrip("\n").rsplit(" ", 1)[0] + "\n",  # no signature
        lambda n: n.rstrip("\n").rsplit(" ", 1)[0] + " AAAA\n",  # signature too short
        lambda n: n + "\n",  # trailing blank line
        lambda n: n.replace("log\n", "lo\x01g\n", 1),  # control character
        lambda n: n.split("\n\n")[0] + "\n\n",  # empty signature block
    ],
)
def test_bad_note_formats(signer: NoteSigner, mutate) -> None:
    note = signer.sign(Checkpoint("log", 10, ROOT))
    with pytest.raises(CheckpointError):
        open_checkpoint(mutate(note), [signer.verifier()])


def test_signed_note_with_bad_checkpoint_body(signer: NoteSigner) -> None:
    note = signer.sign_note("log\n010\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n")
    assert open_note(note, [signer.verifier()])
    with pytest.raises(CheckpointError, match="leading zeros"):
        open_checkpoint(note, [signer.verifier()])


def test_signer_validation() -> None:
    key = generate_signing_key()
    for name in ("", "a b", "a+b", "a\nb"):
        with pytest.raises(CheckpointError):
            NoteSigner(name, key)
    signer = NoteSigner("ok", key)
    for text in ("", "no newline", "blank\n\nline\n"):
        with pytest.raises(CheckpointError):
            signer.sign_note(text)


# --- key files ----------------------------------------------------------------------------------


def test_pem_round_trip() -> None:
    key = generate_signing_key()
    pem = private_key_to_pem(key)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    loaded = load_private_key_pem(pem)
    assert loaded.public_key().public_bytes_raw() == key.public_key().public_bytes_raw()
    with pytest.raises(CheckpointError):
        load_private_key_pem(b"not a key")


def test_load_or_create_key_file(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "log.pem"
    key = load_or_create_key_file(path)
    assert isinstance(key, Ed25519PrivateKey)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = load_or_create_key_file(path)
    assert again.public_key().public_bytes_raw() == key.public_key().public_bytes_raw()
    assert [p.name for p in path.parent.iterdir()] == ["log.pem"]  # no temp files left


def test_load_or_create_rejects_non_ed25519(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    path = tmp_path / "ec.pem"
    path.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    with pytest.raises(CheckpointError, match="Ed25519"):
        load_or_create_key_file(path)
