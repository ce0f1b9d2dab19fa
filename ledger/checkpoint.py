"""Signed checkpoints: C2SP ``tlog-checkpoint`` bodies in C2SP ``signed-note`` envelopes, Ed25519.

Checkpoint body (https://c2sp.org/tlog-checkpoint)::

    <origin>\\n
    <tree size, decimal, no leading zeros>\\n
    <root hash, standard base64>\\n
    [<extension line>\\n ...]

Signed note (https://c2sp.org/signed-note), compatible with golang.org/x/mod/sumdb/note::

    <body>\\n
    — <key name> <base64(key hash (4 bytes, big endian) || signature)>\\n   (one line per signer)

Ed25519 keys (signature type 0x01): key hash = ``SHA-256(name || 0x0A || 0x01 || pubkey)[:4]``,
verifier key = ``<name>+<hex key hash>+<base64(0x01 || pubkey)>``, signer key (Go's ``PRIVATE+KEY``
format) = ``PRIVATE+KEY+<name>+<hex key hash>+<base64(0x01 || seed)>``.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import CheckpointError

__all__ = [
    "ALG_ED25519",
    "Checkpoint",
    "NoteSigner",
    "NoteVerifier",
    "open_note",
    "open_checkpoint",
    "generate_signing_key",
    "private_key_to_pem",
    "load_private_key_pem",
    "load_or_create_key_file",
]

ALG_ED25519 = 0x01
HASH_SIZE = 32
_SIG_PREFIX = "\u2014 "  # em dash, space
_MAX_SIGNATURES = 100
_DECIMAL = re.compile(r"(0|[1-9][0-9]*)\Z")


def _b64decode(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise CheckpointError(f"{what} is not valid standard base64: {text!r}") from None
    # Padding bits set to other values spell the same bytes: refuse, so no byte can change silently.
    if base64.b64encode(raw).decode("ascii") != text:
        raise CheckpointError(f"{what} is not canonical base64: {text!r}")
    return raw


def _check_key_name(name: str) -> str:
    if not isinstance(name, str) or not name:
        raise CheckpointError("key name must be a non-empty string")
    if "+" in name or any(ch.isspace() or unicodedata.category(ch)[0] == "C" for ch in name):
        raise CheckpointError(f"key name must not contain '+', spaces or control characters: {name!r}")
    return name


def _key_hash(name: str, public_key_bytes: bytes) -> bytes:
    return sha256(name.encode("utf-8") + b"\n" + bytes([ALG_ED25519]) + public_key_bytes).digest()[:4]


def _public_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


# ------------------------------------------------------------------------------------------
# Checkpoint body
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """A C2SP tlog-checkpoint: log origin, tree size, root hash and optional extension lines."""

    origin: str
    tree_size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.origin, str) or not self.origin:
            raise CheckpointError("checkpoint origin must be a non-empty string")
        if "\n" in self.origin:
            raise CheckpointError(f"checkpoint origin must be one line: {self.origin!r}")
        if isinstance(self.tree_size, bool) or not isinstance(self.tree_size, int) or self.tree_size < 0:
            raise CheckpointError(f"checkpoint tree size must be an int >= 0, got {self.tree_size!r}")
        if not isinstance(self.root_hash, bytes) or len(self.root_hash) != HASH_SIZE:
            got = len(self.root_hash) if isinstance(self.root_hash, (bytes, bytearray)) else type(self.root_hash).__name__
            raise CheckpointError(f"checkpoint root hash must be {HASH_SIZE} bytes, got {got}")
        if not isinstance(self.extensions, tuple):
            object.__setattr__(self, "extensions", tuple(self.extensions))
        for ext in self.extensions:
            if not isinstance(ext, str) or not ext or "\n" in ext:
                raise CheckpointError(f"checkpoint extension lines must be non-empty single lines: {ext!r}")

    def body(self) -> bytes:
        """The checkpoint text that is signed."""
        lines = [self.origin, str(self.tree_size), base64.b64encode(self.root_hash).decode("ascii")]
        lines.extend(self.extensions)
        return ("\n".join(lines) + "\n").encode("utf-8")

    @classmethod
    def parse(cls, body: bytes | str) -> Checkpoint:
        """Parse a checkpoint body strictly (raises :class:`CheckpointError`)."""
        if isinstance(body, bytes):
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                raise CheckpointError("checkpoint body is not valid UTF-8") from None
        else:
            text = body
        if not text.endswith("\n"):
            raise CheckpointError("checkpoint body must end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise CheckpointError(
                f"checkpoint body needs origin, size and root lines, got {len(lines)} line(s)"
            )
        origin, size_line, root_line, *extensions = lines
        if not origin:
            raise CheckpointError("checkpoint origin line is empty")
        if not _DECIMAL.match(size_line):
            raise CheckpointError(
                f"checkpoint tree size must be a decimal number without leading zeros, got {size_line!r}"
            )
        if len(size_line) > 20 or int(size_line) >= 1 << 64:
            raise CheckpointError(f"checkpoint tree size does not fit in 64 bits: {size_line}")
        root = _b64decode(root_line, "checkpoint root hash")
        if len(root) != HASH_SIZE:
            raise CheckpointError(f"checkpoint root hash must be {HASH_SIZE} bytes, got {len(root)}")
        for ext in extensions:
            if not ext:
                raise CheckpointError("checkpoint has an empty extension line")
        return cls(origin, int(size_line), root, tuple(extensions))


# ------------------------------------------------------------------------------------------
# Signers and verifiers
# ------------------------------------------------------------------------------------------


class NoteSigner:
    """Signs notes with an Ed25519 key under a key name."""

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        if not isinstance(private_key, Ed25519PrivateKey):
            raise CheckpointError(f"note signing key must be Ed25519, got {type(private_key).__name__}")
        self.name = _check_key_name(name)
        self.private_key = private_key
        self.public_key_bytes = _public_bytes(private_key.public_key())
        self.key_hash = _key_hash(name, self.public_key_bytes)

    @classmethod
    def from_signer_key(cls, skey: str) -> NoteSigner:
        """Parse a Go-style ``PRIVATE+KEY+<name>+<hash>+<base64(0x01||seed)>`` signer key."""
        parts = skey.strip().split("+", 4)
        if len(parts) != 5 or parts[0] != "PRIVATE" or parts[1] != "KEY":
            raise CheckpointError("signer key must look like PRIVATE+KEY+<name>+<hash>+<key>")
        name, hash_hex, key_b64 = parts[2], parts[3], parts[4]
        raw = _b64decode(key_b64, "signer key")
        if len(raw) != 33 or raw[0] != ALG_ED25519:
            raise CheckpointError("signer key must be an Ed25519 key (0x01 followed by a 32-byte seed)")
        signer = cls(name, Ed25519PrivateKey.from_private_bytes(raw[1:]))
        if signer.key_hash.hex() != hash_hex.lower() or len(hash_hex) != 8:
            raise CheckpointError(f"signer key hash {hash_hex!r} does not match the key and name")
        return signer

    def signer_key(self) -> str:
        """The Go-style ``PRIVATE+KEY+...`` encoding of this signer (secret!)."""
        seed = self.private_key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        key = base64.b64encode(bytes([ALG_ED25519]) + seed).decode("ascii")
        return f"PRIVATE+KEY+{self.name}+{self.key_hash.hex()}+{key}"

    def verifier_key(self) -> str:
        """``<name>+<hex key hash>+<base64(0x01 || pubkey)>``."""
        key = base64.b64encode(bytes([ALG_ED25519]) + self.public_key_bytes).decode("ascii")
        return f"{self.name}+{self.key_hash.hex()}+{key}"

    def verifier(self) -> NoteVerifier:
        return NoteVerifier(self.name, self.private_key.public_key())

    def signature_line(self, text: bytes | str) -> str:
        """The ``— <name> <base64>`` line (with newline) signing ``text``."""
        body = _note_text(text)
        sig = self.private_key.sign(body)
        return f"{_SIG_PREFIX}{self.name} {base64.b64encode(self.key_hash + sig).decode('ascii')}\n"

    def sign_note(self, text: bytes | str) -> str:
        """Full signed note: ``text``, a blank line, this signer's signature line."""
        body = _note_text(text)
        return body.decode("utf-8") + "\n" + self.signature_line(body)

    def sign(self, checkpoint: Checkpoint) -> str:
        """Signed note text of a checkpoint."""
        return self.sign_note(checkpoint.body())


class NoteVerifier:
    """Verifies notes signed by one Ed25519 key name."""

    def __init__(self, name: str, public_key: Ed25519PublicKey) -> None:
        if not isinstance(public_key, Ed25519PublicKey):
            raise CheckpointError(f"note verifier key must be Ed25519, got {type(public_key).__name__}")
        self.name = _check_key_name(name)
        self.public_key = public_key
        self.public_key_bytes = _public_bytes(public_key)
        self.key_hash = _key_hash(name, self.public_key_bytes)

    @classmethod
    def from_verifier_key(cls, vkey: str) -> NoteVerifier:
        """Parse ``<name>+<hex key hash>+<base64(0x01 || pubkey)>``."""
        parts = vkey.strip().split("+", 2)
        if len(parts) != 3:
            raise CheckpointError(f"verifier key must look like <name>+<hash>+<key>: {vkey!r}")
        name, hash_hex, key_b64 = parts
        if len(hash_hex) != 8 or not re.fullmatch(r"[0-9a-fA-F]{8}", hash_hex):
            raise CheckpointError(f"verifier key hash must be 8 hex digits, got {hash_hex!r}")
        raw = _b64decode(key_b64, "verifier key")
        if len(raw) != 33 or raw[0] != ALG_ED25519:
            raise CheckpointError("verifier key must be an Ed25519 key (0x01 followed by 32 bytes)")
        verifier = cls(name, Ed25519PublicKey.from_public_bytes(raw[1:]))
        if verifier.key_hash.hex() != hash_hex.lower():
            raise CheckpointError(
                f"verifier key hash {hash_hex} does not match the key and name "
                f"(expected {verifier.key_hash.hex()})"
            )
        return verifier

    def verifier_key(self) -> str:
        key = base64.b64encode(bytes([ALG_ED25519]) + self.public_key_bytes).decode("ascii")
        return f"{self.name}+{self.key_hash.hex()}+{key}"

    def verify(self, text: bytes, signature: bytes) -> bool:
        try:
            self.public_key.verify(signature, text)
        except InvalidSignature:
            return False
        return True

    def __repr__(self) -> str:
        return f"NoteVerifier({self.verifier_key()!r})"


def _check_text(text: str) -> None:
    for ch in text:
        if ch < " " and ch != "\n":
            raise CheckpointError(f"note contains a control character {ch!r}")


def _note_text(text: bytes | str) -> bytes:
    if isinstance(text, bytes):
        try:
            s = text.decode("utf-8")
        except UnicodeDecodeError:
            raise CheckpointError("note text is not valid UTF-8") from None
    else:
        s = text
    if not s or not s.endswith("\n"):
        raise CheckpointError("note text must be non-empty and end with a newline")
    if "\n\n" in s:
        raise CheckpointError("note text must not contain a blank line")
    _check_text(s)
    try:
        return s.encode("utf-8")
    except UnicodeEncodeError:
        raise CheckpointError("note text is not valid Unicode") from None


# ------------------------------------------------------------------------------------------
# Opening notes and checkpoints
# ------------------------------------------------------------------------------------------


def open_note(note_text: bytes | str, verifiers: Sequence[NoteVerifier]) -> bytes:
    """Verify a signed note and return its signed text (the body, ending with a newline).

    At least one signature by a known verifier (matched by name and key hash) must verify.
    Signatures by unknown keys are ignored; a signature by a known key that does not verify is
    an error.  Raises :class:`CheckpointError` naming what failed.
    """
    if isinstance(note_text, bytes):
        try:
            note_text = note_text.decode("utf-8")
        except UnicodeDecodeError:
            raise CheckpointError("signed note is not valid UTF-8") from None
    if not isinstance(note_text, str):
        raise CheckpointError(f"signed note must be text, got {type(note_text).__name__}")
    _check_text(note_text)
    split = note_text.rfind("\n\n")
    if split < 0:
        raise CheckpointError("signed note has no blank line before its signatures")
    text, sigs = note_text[: split + 1], note_text[split + 2 :]
    if not sigs or not sigs.endswith("\n"):
        raise CheckpointError("signed note has no signature lines (or they do not end with a newline)")
    try:
        body = text.encode("utf-8")
    except UnicodeEncodeError:
        raise CheckpointError("signed note is not valid Unicode") from None

    known = {(v.name, v.key_hash): v for v in verifiers}
    lines = sigs[:-1].split("\n")
    if len(lines) > _MAX_SIGNATURES:
        raise CheckpointError(f"signed note has more than {_MAX_SIGNATURES} signatures")
    verified: set[tuple[str, bytes]] = set()
    for n, line in enumerate(lines, 1):
        if not line.startswith(_SIG_PREFIX):
            raise CheckpointError(f"signature line {n} does not start with an em dash and a space: {line!r}")
        name, sep, b64 = line[len(_SIG_PREFIX) :].partition(" ")
        if not sep or not b64 or not name or "+" in name or any(ch.isspace() for ch in name):
            raise CheckpointError(f"signature line {n} is not '— <name> <base64>': {line!r}")
        raw = _b64decode(b64, f"signature line {n}")
        if len(raw) < 5:
            raise CheckpointError(f"signature line {n} is too short ({len(raw)} bytes)")
        key_hash, sig = raw[:4], raw[4:]
        verifier = known.get((name, key_hash))
        if verifier is None or (name, key_hash) in verified:
            continue  # unknown key, or a repeated signature by a key already checked
        if not verifier.verify(body, sig):
            raise CheckpointError(
                f"signature by {name}+{key_hash.hex()} does not verify (note tampered or wrong key)"
            )
        verified.add((name, key_hash))
    if not verified:
        names = ", ".join(sorted(f"{v.name}+{v.key_hash.hex()}" for v in verifiers)) or "none"
        raise CheckpointError(f"signed note has no valid signature by a known key (known: {names})")
    return body


def open_checkpoint(
    note_text: bytes | str, verifiers: Sequence[NoteVerifier], *, origin: str | None = None
) -> Checkpoint:
    """Verify a signed checkpoint note and parse its body strictly.

    If ``origin`` is given, the checkpoint must be for that log.
    """
    checkpoint = Checkpoint.parse(open_note(note_text, verifiers))
    if origin is not None and checkpoint.origin != origin:
        raise CheckpointError(f"checkpoint origin is {checkpoint.origin!r}, expected {origin!r}")
    return checkpoint


# ------------------------------------------------------------------------------------------
# Key helpers
# ------------------------------------------------------------------------------------------


def generate_signing_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def private_key_to_pem(key: Ed25519PrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_private_key_pem(data: bytes) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"cannot load the log signing key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise CheckpointError(f"log signing key must be Ed25519, got {type(key).__name__}")
    return key


def load_or_create_key_file(path: Path) -> Ed25519PrivateKey:
    """Load the PEM key at ``path``, or create it atomically with mode 0600 if it is missing.

    The key is written to a temporary file (mode 0600) in the same folder, synced, then hard-linked
    into place, so readers never see a partial file and two concurrent creators agree on one key.
    """
    path = Path(path)
    try:
        return load_private_key_pem(path.read_bytes())
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = generate_signing_key()
    pem = private_key_to_pem(key)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            os.write(fd, pem)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            # Someone else created it first: use theirs.
            return load_private_key_pem(path.read_bytes())
        except OSError:
            # Filesystem without hard links: exclusive create instead.
            try:
                fd2 = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                return load_private_key_pem(path.read_bytes())
            try:
                os.write(fd2, pem)
                os.fsync(fd2)
            finally:
                os.close(fd2)
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
    try:
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
    return key
