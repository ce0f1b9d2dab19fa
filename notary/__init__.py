"""Evidence notarization (web captures, files, officer signatures). Built on the ledger core."""
