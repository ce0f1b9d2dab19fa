"""One error hierarchy for the ledger core. Adapters translate foreign exceptions into these."""

from __future__ import annotations


class LedgerError(Exception):
    """Base class of every error the ledger core raises."""


class CanonicalizationError(LedgerError):
    """A record cannot be canonicalised (RFC 8785): e.g. NaN, non-string keys, unsupported types."""


class ProofError(LedgerError):
    """A Merkle proof is malformed or does not verify."""


class InclusionProofError(ProofError):
    """An inclusion proof does not verify or is malformed."""


class ConsistencyProofError(ProofError):
    """A consistency proof does not verify or is malformed."""


class TreeSizeError(ProofError):
    """A requested index or tree size is out of range for the tree."""


class CheckpointError(LedgerError):
    """A checkpoint (C2SP signed note) is malformed or its signature does not verify."""


class LogNotFoundError(LedgerError):
    """No log of that name exists."""


class RecordTooLargeError(LedgerError):
    """A record exceeds the configured size limit."""

    def __init__(self, size_bytes: int, limit_bytes: int) -> None:
        super().__init__(f"record is {size_bytes} bytes; the limit is {limit_bytes} bytes")
        self.size_bytes = size_bytes
        self.limit_bytes = limit_bytes


class EntryNotFoundError(LedgerError):
    """No entry at that index in the log."""


class NotAnchoredError(LedgerError):
    """The entry or tree size is not yet covered by an anchored checkpoint."""


class ChainError(LedgerError):
    """The chain could not be reached or rejected a call."""


class ChainUnavailableError(ChainError):
    """The chain's JSON-RPC endpoint does not answer."""


class ContractRevertError(ChainError):
    """A contract call reverted; ``error_name`` and ``args`` decode its custom error."""

    def __init__(self, error_name: str, args: tuple = (), message: str | None = None) -> None:
        super().__init__(message or f"contract reverted with {error_name}{args!r}")
        self.error_name = error_name
        self.args_decoded = args


class DeploymentError(ChainError):
    """Contracts are not deployed, or deployed code does not match the committed artifacts."""


class CompilerError(LedgerError):
    """The Solidity compiler failed or could not be found."""


class AnvilError(ChainError):
    """The local anvil node could not be started, stopped or found."""


class VerificationError(LedgerError):
    """A proof bundle does not verify; ``field`` names what did not match."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class BundleFormatError(VerificationError):
    """A proof bundle is not a well-formed document (schema violation, bad encoding)."""


class BlobError(LedgerError):
    """Content-addressed blob storage failed (base class of the blob errors)."""


class BlobNotFoundError(BlobError):
    """No blob with that SHA-256 is stored."""


class BlobIntegrityError(BlobError):
    """Stored bytes no longer match their address; ``field`` names what differs (sha256, cid, size)."""

    def __init__(self, field: str, expected: str, actual: str, message: str | None = None) -> None:
        super().__init__(message or f"blob {field} mismatch: expected {expected}, actual {actual}")
        self.field = field
        self.expected = expected
        self.actual = actual


class BlobTooLargeError(BlobError):
    """A blob exceeds the size limit; nothing was stored. ``size_bytes`` is how much was read before stopping."""

    def __init__(self, limit_bytes: int, size_bytes: int | None = None) -> None:
        seen = f"; read {size_bytes} bytes before stopping" if size_bytes is not None else ""
        super().__init__(f"blob exceeds the limit of {limit_bytes} bytes{seen}")
        self.limit_bytes = limit_bytes
        self.size_bytes = size_bytes


class BlobBackendError(BlobError):
    """The blob backend (the IPFS RPC API) could not be reached or rejected a call."""
