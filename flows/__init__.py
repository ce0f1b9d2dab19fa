"""Transaction flows (contracts, payments, invoices, reconciliation, risk). Built on the ledger core."""
