"""The project's own errors; each message names the input, lead, status or exception type at fault."""

from __future__ import annotations


class LeadSquaredError(Exception):
    """Base class of every LeadSquared provider error."""


class InvalidResetRequest(LeadSquaredError, ValueError):
    """A reset request or scope breaks the API's rules; nothing was sent."""


class InvalidConnection(LeadSquaredError, ValueError):
    """The LeadSquared connection lacks a field or has a malformed extra."""


class LeadSquaredAuthError(LeadSquaredError):
    """The keys, the host or the keys' permissions are wrong: stop sending, do not retry.

    Raised for 401 and 404 answers, a 403 that is not a rate limit (permission refused), and any redirect
    (the connection points at the wrong host); ``exception_type`` is LeadSquared's, or ``Redirect``.
    """

    def __init__(self, message: str, *, status_code: int | None, exception_type: str | None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.exception_type = exception_type


class RefusedCallError(LeadSquaredError, ValueError):
    """A call ``LeadSquaredHook.run()`` will not send; nothing was sent.

    A Lead.Reset (it would skip the state store's claim: resets go through ``reset_lead``), a URL off the
    connection's API host or carrying the keys, or an option that would loosen the timeout, the redirect
    rule or the answer checks.
    """


class PlanError(LeadSquaredError, ValueError):
    """A run's plan was refused (bad params, guard tripped, query failed); nothing was sent."""


class CandidateQueryError(LeadSquaredError):
    """The candidate query failed on the warehouse.

    ``deterministic`` is True when running it again cannot help (permission denied, syntax error, unknown
    table or column): refuse the run. False (the default) for trouble that may pass (connection lost,
    timeout): the task retries.
    """

    def __init__(self, message: str, *, deterministic: bool = False) -> None:
        super().__init__(message)
        self.deterministic = deterministic


class ResetFailuresError(LeadSquaredError):
    """A batch or a run holds more failed leads than it may."""


class RateBudgetError(LeadSquaredError):
    """The shared rate budget cannot give a unit (store broken, or the bounded wait ran out)."""


class DailyQuotaSpent(LeadSquaredError):
    """The account's share of today's quota is spent: nothing more is sent until ``resets_at`` (epoch s)."""

    def __init__(self, message: str, resets_at: float | None = None) -> None:
        super().__init__(message)
        self.resets_at = resets_at


class ActivityReadError(LeadSquaredError):
    """A lead's activities could not be read (the keys were fine).

    ``final`` is True when LeadSquared refused the read for good (the lead is not found: deleted or merged
    since; or the request was refused as posed), False when no trusted answer came within the retry budget.
    """

    def __init__(
        self, message: str, *, lead_id: str, status_code: int | None, exception_type: str | None, final: bool
    ) -> None:
        super().__init__(message)
        self.lead_id = lead_id
        self.status_code = status_code
        self.exception_type = exception_type
        self.final = final


class NotApproved(LeadSquaredError):
    """The run waited for a person and was not approved (rejected, not answered in time, or a refused
    approval): nothing was sent."""
