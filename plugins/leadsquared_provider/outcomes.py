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
- ``sending``: a request was (possibly) in flight when the process died; resolved on the next attempt.

Rate-limit answers (429; HTTP 200 or 403 with ``MXAPIRateLimitExceededException``) are not outcomes:
the hook waits and sends again.
"""

from __future__ import annotations

import json
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
    """The final, recorded result of one lead's reset."""

    lead_id: str
    outcome: Outcome
    status_code: int | None
    exception_type: str | None
    message: str
    attempts: int
    started_at: float
    finished_at: float
    budget_wait_seconds: float = 0.0

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
