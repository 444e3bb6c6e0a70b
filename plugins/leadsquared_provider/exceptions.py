"""The project's own errors; each message names the input, lead, status or exception type at fault."""

from __future__ import annotations


class LeadSquaredError(Exception):
    """Base class of every LeadSquared provider error."""


class InvalidResetRequest(LeadSquaredError, ValueError):
    """A reset request or scope breaks the API's rules; nothing was sent."""


class InvalidConnection(LeadSquaredError, ValueError):
    """The LeadSquared connection lacks a field or has a malformed extra."""


class LeadSquaredAuthError(LeadSquaredError):
    """The keys or the host are wrong (401/404): stop sending, do not retry."""

    def __init__(self, message: str, *, status_code: int | None, exception_type: str | None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.exception_type = exception_type


class PlanError(LeadSquaredError, ValueError):
    """A run's plan was refused (bad params, guard tripped, query failed); nothing was sent."""


class CandidateQueryError(LeadSquaredError):
    """The candidate query failed on the warehouse (may be transient: the task retries)."""


class ResetFailuresError(LeadSquaredError):
    """A batch or a run holds more failed leads than it may."""
