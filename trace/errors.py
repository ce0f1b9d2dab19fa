"""One error hierarchy for food traceability. The API maps these to HTTP statuses."""

from __future__ import annotations


class TraceError(Exception):
    """Base class of every error the trace package raises."""


class InvalidIdentifierError(TraceError, ValueError):
    """A GTIN, GLN, lot, serial, EPC URI or GS1 Digital Link is malformed (bad length, characters
    or check digit). The message says what was expected and what was given."""


class InvalidEventError(TraceError, ValueError):
    """An EPCIS document or event does not conform to the EPCIS 2.0 JSON Schema or to the model.

    ``path`` is the JSON path of the offending value (``$`` is the event or document itself,
    e.g. ``$.epcisBody.eventList[0].eventTime``)."""

    def __init__(self, message: str, path: str = "$") -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.reason = message


class RuleViolationError(TraceError):
    """An event is well formed but breaks a traceability rule (e.g. shipping more than is on hand).

    ``rule`` names the rule: ``not_shipped``, ``over_shipped``, ``mass_balance``, ``lot_disposed``,
    ``lot_recalled``, ..."""

    def __init__(self, *args: str, rule: str | None = None) -> None:
        # Canonical form ``RuleViolationError(rule, message)``; ``RuleViolationError(message,
        # rule=...)`` is accepted too.
        if rule is None:
            if len(args) >= 2:
                rule, message = args[0], args[1]
            else:
                rule, message = "rule_violation", (args[0] if args else "traceability rule violated")
        else:
            message = args[0] if args else rule
        super().__init__(message)
        self.rule = rule
        self.message = message


class NotFoundError(TraceError):
    """A lot, event, party or location does not exist."""


class PermissionDeniedError(TraceError):
    """The actor may not perform this operation (e.g. record events for another operator)."""
