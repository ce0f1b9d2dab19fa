"""The ledger core: canonical hashing, Merkle logs and proofs, checkpoints, chains, anchoring, bundles, storage."""
