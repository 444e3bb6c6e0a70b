"""What became of one lead's reset, and how every LeadSquared answer is classified.

Classes (``Outcome``):

- ``queued``: LeadSquared accepted the reset (it runs asynchronously on their side).
- ``rejected``: refused for this lead (400, lead not found, any other error body): never retried;
  also a candidate id that is not a GUID, found at plan time and never sent (``InvalidLeadId``).
- ``auth_failed``: keys or host wrong (401, 404): the run stops sending at once.
- ``failed``: transient trouble (5xx, timeout, dropped connection, non-JSON) outlasted the retry budget.
- ``skipped``: not sent because the run stopped (credentials failed) before its turn.
- ``dry_run``: would have been sent; dry runs send nothing.
- ``already_done``: queued or rejected by an earlier try or run under the same window and categories;
  not sent again.
- ``in_progress_elsewhere``: another live owner (another run, or another try of this batch) held the lead's
  claim; not sent here. The next run picks it up if that owner did not settle it.
- ``sending``: a request was (possibly) in flight when the process died; resolved on the next attempt.

Rate-limit answers (429; HTTP 200 or 403 with ``MXAPIRateLimitExceededException``) are not outcomes:
the hook waits and sends again.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

RATE_LIMIT_EXCEPTION = "MXAPIRateLimitExceededException"
LEAD_NOT_FOUND_EXCEPTION = "MXInvalidEntityReferenceException"


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


# A lead is *settled* under a scope once LeadSquared queued its reset or refused it for good: it is never
# sent again under that scope. The one definition, used by the state store's claims.
SETTLED_OUTCOMES: frozenset[Outcome] = frozenset({Outcome.QUEUED, Outcome.REJECTED})
# Outcomes that leave the lead to be reset by a later run (for its original window).
UNRESOLVED_OUTCOMES: frozenset[Outcome] = frozenset(
    {Outcome.FAILED, Outcome.SKIPPED, Outcome.SENDING, Outcome.IN_PROGRESS_ELSEWHERE}
)


class AnswerClass(StrEnum):
    """How one HTTP answer (or the lack of one) is treated."""

    QUEUED = "queued"  # accepted (2xx, not an error body)
    REJECTED = "rejected"
    AUTH_FAILED = "auth_failed"
    RATE_LIMITED = "rate_limited"
    TRANSIENT = "transient"


@dataclass(frozen=True)
class Answer:
    """One classified answer: its class, HTTP status, LeadSquared exception type and message."""

    kind: AnswerClass
    status_code: int | None
    exception_type: str | None
    message: str
    payload: Any = None


@dataclass(frozen=True)
class ResetResult:
    """The final, recorded result of one lead's reset.

    ``attempts`` counts requests sent; ``uncertain_attempts`` those among them that got no clear answer
    (timeout, dropped connection, 5xx) and were followed by another attempt: each may have reached
    LeadSquared, so the lead counts as possibly repeated. ``rate_limited_answers`` counts the rate-limit
    answers met on the way (they are retried, never an outcome).
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

    @classmethod
    def not_sent(
        cls, lead_id: str, outcome: Outcome, message: str, *, exception_type: str | None = None
    ) -> ResetResult:
        """A lead that was not sent (already done, held elsewhere, dry run, skipped, invalid id)."""
        now = time.time()
        return cls(lead_id, outcome, None, exception_type, message, 0, now, now)

    @classmethod
    def crashed(cls, lead_id: str, exc: BaseException, *, attempts: int = 0, started_at: float = 0.0) -> ResetResult:
        """An unexpected exception while sending or recording the lead: ``failed`` with the exception type."""
        now = time.time()
        return cls(
            lead_id,
            Outcome.FAILED,
            None,
            type(exc).__name__,
            _short(f"unexpected error: {type(exc).__name__}: {exc}"),
            attempts,
            started_at or now,
            now,
        )

    @property
    def possibly_repeated(self) -> bool:
        return self.uncertain_attempts > 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def classify_answer(status_code: int, body_text: str) -> Answer:
    """Classify an HTTP answer of LeadSquared by its status code *and* its body.

    A 2xx whose body says ``"Status":"Error"`` is an error; the exception type, not only the status
    code, tells a rate limit apart (LeadSquared has been seen answering rate limits as 200 and 403).
    """
    try:
        body = json.loads(body_text) if body_text else None
    except ValueError:
        body = None
    if not isinstance(body, dict):
        if status_code in (401, 404):
            return Answer(AnswerClass.AUTH_FAILED, status_code, None, _short(body_text) or "no body")
        if status_code == 429:
            return Answer(AnswerClass.RATE_LIMITED, status_code, None, _short(body_text) or "no body")
        return Answer(AnswerClass.TRANSIENT, status_code, None, f"answer is not a JSON object: {_short(body_text)!r}")
    exception_type = body.get("ExceptionType")
    message = str(body.get("ExceptionMessage") or body.get("Message") or "")
    if isinstance(body.get("Message"), dict):
        message = str(body["Message"].get("Message", ""))
    if status_code == 429 or exception_type == RATE_LIMIT_EXCEPTION or status_code == 403:
        return Answer(AnswerClass.RATE_LIMITED, status_code, exception_type, _short(message))
    if status_code in (401, 404):
        return Answer(AnswerClass.AUTH_FAILED, status_code, exception_type, _short(message))
    if status_code >= 500:
        return Answer(AnswerClass.TRANSIENT, status_code, exception_type, _short(message))
    if 200 <= status_code < 300 and body.get("Status") != "Error":
        return Answer(AnswerClass.QUEUED, status_code, None, _short(message), payload=body)
    return Answer(AnswerClass.REJECTED, status_code, exception_type, _short(message) or "error answer")
