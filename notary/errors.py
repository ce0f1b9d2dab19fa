"""One error hierarchy for evidence notarization."""

from __future__ import annotations


class NotaryError(Exception):
    """Base class of every error the notary package raises."""


# -- capture ----------------------------------------------------------------------------------

class CaptureError(NotaryError):
    """A web capture failed; nothing was stored or notarized."""


class UnsafeDestinationError(CaptureError):
    """The URL (or a redirect, or a sub-resource) resolves to a private, loopback or link-local
    address that the allowlist does not permit."""


class FetchError(CaptureError):
    """The server could not be reached or answered with a protocol error."""


class CaptureTimeoutError(CaptureError):
    """The fetch or the rendering took longer than the configured timeout."""


class UnsupportedContentError(CaptureError):
    """The response is not a web page (e.g. an image or a binary download) or the URL is not http(s)."""


class ResponseTooLargeError(CaptureError):
    """A response exceeded the configured size bound."""


class ArchiveIntegrityError(CaptureError):
    """A part of a capture archive does not match its recorded digest; ``part`` names it."""

    def __init__(self, part: str, message: str) -> None:
        super().__init__(f"{part}: {message}")
        self.part = part


# -- evidence, officers, cases, custody ---------------------------------------------------------

class NotFoundError(NotaryError):
    """No such evidence item, case, officer or agency."""


class PermissionDeniedError(NotaryError):
    """The actor may not do this (e.g. an officer of another agency, a revoked key)."""


class SignatureError(NotaryError):
    """A signature over an evidence record is missing, malformed or does not verify."""


class InvalidEvidenceError(NotaryError):
    """Evidence metadata or an upload is malformed (what was expected and what came)."""


class UploadTooLargeError(NotaryError):
    """An upload exceeds the configured size limit."""

    def __init__(self, limit_bytes: int) -> None:
        super().__init__(f"upload exceeds the limit of {limit_bytes} bytes")
        self.limit_bytes = limit_bytes


# -- domain (helper) ----------------------------------------------------------------------------

class KeyStorageError(NotaryError):
    """A server-held private key cannot be decrypted (wrong key-encryption key, altered data),
    or the key-encryption key file is unusable."""


class EvidenceStateError(NotaryError):
    """The evidence cannot change that way in its current status (e.g. correcting a withdrawn item)."""


class AuthorityError(NotaryError):
    """Registering or revoking a key in the on-chain Authority failed; nothing was changed here."""


class ConflictError(NotaryError):
    """Something with that identity already exists (agency code, case reference, officer key)."""


class InvalidRequestError(NotaryError):
    """A request names an unknown role, agency kind, action or reason, or a value is malformed."""
