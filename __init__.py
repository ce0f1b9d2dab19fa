"""Evidence and traceability ledger: append-only Merkle logs anchored on an EVM chain."""

__version__ = "0.1.0"
