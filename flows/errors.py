"""One error hierarchy for transaction flows. The API maps these to HTTP statuses."""

from __future__ import annotations


class FlowsError(Exception):
    """Base class of every error the flows package raises."""


class InvalidRecordError(FlowsError, ValueError):
    """A USCC, invoice, contract, payment or snapshot is malformed. ``field`` names the offending
    field (``$`` is the record itself); the message says what was expected and what came."""

    def __init__(self, message: str, field: str = "$") -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = message


class DuplicateRecordError(FlowsError):
    """The record was already accepted (an invoice with the same seller, code and number; a
    contract or payment with the same reference). ``key_hex`` is the duplicate's key and
    ``log_index`` where the first one sits in the ``flows`` log."""

    def __init__(self, message: str, *, key_hex: str, log_index: int | None) -> None:
        super().__init__(message)
        self.key_hex = key_hex
        self.log_index = log_index


class NotFoundError(FlowsError):
    """An enterprise, record, finding, grade or draw does not exist."""


class PermissionDeniedError(FlowsError):
    """The reader may not see this (an agency outside its remit, an enterprise not a party)."""


class DrawStateError(FlowsError):
    """A random-inspection draw was used out of order (revealed twice, revealed before its
    commitment was recorded, or a revealed seed that does not match the commitment)."""
