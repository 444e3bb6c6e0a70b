"""What became of one lead's reset: the outcomes, their sets and the recorded result.

Classes (``Outcome``):

- ``queued``: LeadSquared said so: a 2xx answer whose body is a JSON object with ``"Status": "Success"``
  (any case; the reset runs asynchronously on their side). Nothing else is a success.
- ``rejected``: refused for this lead for good, never retried: the lead is not found
  (``MXInvalidEntityReferenceException``, at any HTTP status, 500 included), a validation exception, or
  another 4xx error object; also a candidate id that is not a GUID, found at plan time and never sent
  (``InvalidLeadId``).
- ``auth_failed``: the run stops sending at once: keys or host wrong (401, 404), a 403 that is not a
  rate limit (the keys lack a permission), or a redirect (3xx: the connection's host is not the account's
  API host; redirects are never followed, so the keys go nowhere else).
- ``failed``: no clear answer outlasted the retry budget: 5xx, timeout, dropped connection, or a body that
  does not say what happened (``{}``, ``{"Status":"Failure"}``, HTML, a JSON list or string, a generic
  exception type such as ``MXException`` on a 2xx).
- ``skipped``: not sent because the run stopped (credentials failed) before its turn.
- ``dry_run``: would have been sent; dry runs send nothing.
- ``already_done``: queued or rejected by an earlier try or run under the same window and categories;
  not sent again.
- ``in_progress_elsewhere``: another live owner (another run, or another try of this batch) held the lead's
  claim; not sent here. The next run picks it up if that owner did not settle it.
- ``sending``: a request was (possibly) in flight when the process died; resolved on the next attempt.

How an HTTP answer becomes one of these: ``hooks/answers.py`` (rate limits are never an outcome).
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any


class Outcome(StrEnum):
    QUEUED = "queued"
    REJECTED = "rejected"
    AUTH_FAILED = "auth_failed"
    FAILED = "failed"
    SKIPPED = "skipped"
    DRY_RUN = "dry_run"
    SENDING = "sending"
    ALREADY_DONE = "already_done"
    IN_PROGRESS_ELSEWHERE = "in_progress_elsewhere"
    DEFERRED = "deferred"  # today's share of the daily quota did not hold it: the next run sends it


# A lead is *settled* under a scope once LeadSquared queued its reset or refused it for good: it is never
# sent again under that scope. The one definition, used by the state store's claims.
SETTLED_OUTCOMES: frozenset[Outcome] = frozenset({Outcome.QUEUED, Outcome.REJECTED})
# Outcomes that leave the lead to be reset by a later run (for its original window).
UNRESOLVED_OUTCOMES: frozenset[Outcome] = frozenset(
    {Outcome.FAILED, Outcome.SKIPPED, Outcome.SENDING, Outcome.IN_PROGRESS_ELSEWHERE, Outcome.DEFERRED}
)
# Leads the run reset, or found reset by an earlier try or run.
RESET_OUTCOMES: frozenset[Outcome] = frozenset({Outcome.QUEUED, Outcome.ALREADY_DONE})
# Leads this run did not reset and nobody else is resetting: they fail a batch's check and the run.
FAILURE_OUTCOMES: tuple[Outcome, ...] = (Outcome.FAILED, Outcome.AUTH_FAILED, Outcome.SKIPPED)
# Leads the run did not reset, in the order the resets page shows them.
NOT_RESET_OUTCOMES: tuple[Outcome, ...] = (
    Outcome.FAILED,
    Outcome.AUTH_FAILED,
    Outcome.SKIPPED,
    Outcome.REJECTED,
    Outcome.IN_PROGRESS_ELSEWHERE,
    Outcome.DEFERRED,
    Outcome.SENDING,
)
# A run's count of staged leads with no final outcome yet (never reached, or left ``sending``): not an outcome
# of its own, a count beside them (the state store's ``run_counts``).
UNFINISHED = "unfinished"
# A run's counts in the order they are shown; a lead left ``sending`` is counted among the unfinished.
COUNT_ORDER: tuple[str, ...] = (
    Outcome.QUEUED,
    Outcome.ALREADY_DONE,
    Outcome.DRY_RUN,
    *(o for o in NOT_RESET_OUTCOMES if o is not Outcome.SENDING),
    UNFINISHED,
)
# What each outcome (and the unfinished count) means, in one line.
OUTCOME_MEANING: dict[str, str] = {
    Outcome.QUEUED: "LeadSquared accepted the reset",
    Outcome.ALREADY_DONE: "reset earlier for the same window and categories: not sent again",
    Outcome.DRY_RUN: "would have been sent (dry run: nothing was sent)",
    Outcome.FAILED: "no clear answer within the retry budget: a later run sends it again",
    Outcome.AUTH_FAILED: "LeadSquared refused the keys, host or permission",
    Outcome.SKIPPED: "not sent: the run stopped before its turn",
    Outcome.REJECTED: "refused for good: lead not found, not a GUID, or invalid request",
    Outcome.IN_PROGRESS_ELSEWHERE: "another run or try held the lead: not sent here",
    Outcome.SENDING: "a request was in flight when its process died",
    Outcome.DEFERRED: "not sent: over today's share of the account's daily quota; the next run sends it",
    UNFINISHED: "staged but not finished yet (the run is going on, its batch never ran, or a request was in "
    "flight when its process died)",
}


@dataclass(frozen=True)
class ResetResult:
    """The final, recorded result of one lead's reset.

    ``attempts`` counts requests sent; ``uncertain_attempts`` those among them that got no clear answer
    (timeout, dropped connection, 5xx) and were followed by another attempt: each may have reached
    LeadSquared, so the lead counts as possibly repeated. ``last_unread`` says the last attempt got no clear
    answer either (the retries ran out): whoever sends the lead again, in this run or a later one, may repeat
    it. ``rate_limited_answers`` counts the rate-limit answers met on the way (they are retried, never an
    outcome).
    """

    lead_id: str
    outcome: Outcome
    status_code: int | None = None
    exception_type: str | None = None
    message: str = ""
    attempts: int = 0
    started_at: float = 0.0
    finished_at: float = 0.0
    budget_wait_seconds: float = 0.0
    uncertain_attempts: int = 0
    rate_limited_answers: int = 0
    last_unread: bool = False

    @classmethod
    def not_sent(
        cls, lead_id: str, outcome: Outcome, message: str, *, exception_type: str | None = None
    ) -> ResetResult:
        """A lead that was not sent (already done, held elsewhere, dry run, skipped, invalid id)."""
        now = time.time()
        return cls(
            lead_id=lead_id,
            outcome=outcome,
            exception_type=exception_type,
            message=message,
            started_at=now,
            finished_at=now,
        )

    @classmethod
    def crashed(cls, lead_id: str, exc: BaseException, *, attempts: int = 0, started_at: float = 0.0) -> ResetResult:
        """An unexpected exception while sending or recording the lead: ``failed`` with the exception type."""
        now = time.time()
        return cls(
            lead_id=lead_id,
            outcome=Outcome.FAILED,
            exception_type=type(exc).__name__,
            message=redacted(f"unexpected error: {type(exc).__name__}: {exc}", 300),
            attempts=attempts,
            started_at=started_at or now,
            finished_at=now,
        )

    @property
    def possibly_repeated(self) -> bool:
        return self.uncertain_attempts > 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


MESSAGE_LIMIT = 1000
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def one_line(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """``text`` on one line (control characters and runs of whitespace as one space), cut to ``limit``."""
    return _short(_CONTROL.sub(" ", text), limit)


def redacted(text: object, limit: int = MESSAGE_LIMIT) -> str:
    """``text`` on one line, every secret registered with Airflow's masker replaced, cut to ``limit``."""
    from airflow.sdk.log import redact  # type: ignore[attr-defined]  # re-exported by the Task SDK's log module

    return one_line(str(redact(str(text))), limit)
