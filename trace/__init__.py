"""Food traceability (EPCIS 2.0 events, lots, QR codes, recalls). Built on the ledger core."""
