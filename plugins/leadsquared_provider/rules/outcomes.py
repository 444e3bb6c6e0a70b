"""What became of one lead's reset, and how every LeadSquared answer is classified.

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

Rate-limit answers (429; ``MXAPIRateLimitExceededException`` at any status; a 403, or a 2xx error object,
whose message says the limit was exceeded) are not outcomes: the hook slows the account's budget and sends
again.

An answer's fields are untrusted: ``ExceptionType`` and ``ExceptionMessage`` may be any JSON value; they
become one line of text, cut to 200 (exception type) and 1000 (message) characters.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

RATE_LIMIT_EXCEPTION = "MXAPIRateLimitExceededException"
LEAD_NOT_FOUND_EXCEPTION = "MXInvalidEntityReferenceException"
UNAUTHORIZED_EXCEPTION = "MXUnAuthorizedAccessException"
# LeadSquared's answers to a request it understood and refused as posed (the body, not the moment).
VALIDATION_EXCEPTIONS: frozenset[str] = frozenset(
    {
        LEAD_NOT_FOUND_EXCEPTION,
        "MXMandatoryAttributeMissingException",
        "MXInvalidInputException",
        "MXInvalidJsonException",
        "MXUnknownAttributeException",
    }
)
REDIRECT_EXCEPTION = "Redirect"  # our own exception type for a 3xx answer
GENERIC_EXCEPTION = "MXException"  # LeadSquared's catch-all: it does not say what was wrong


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


class AnswerClass(StrEnum):
    """How one HTTP answer (or the lack of one) is treated."""

    QUEUED = "queued"  # the call did what was asked (Lead.Reset: "Status": "Success")
    REJECTED = "rejected"  # refused for good: not retried
    AUTH_FAILED = "auth_failed"  # keys, host, permission or redirect: the hook stops
    RATE_LIMITED = "rate_limited"  # the budget slows down and the call is sent again; never an outcome
    TRANSIENT = "transient"  # no clear answer: retried, then ``failed``
    # A 4xx error that does not say why (no exception type, or the catch-all ``MXException``): the same
    # request now would get the same answer, so it is not retried in this run; but it is not a refusal for
    # good either: ``failed``, its claim released, and the next run tries it again (at most three runs).
    REFUSED = "refused"


@dataclass(frozen=True)
class Answer:
    """One classified answer: its class, HTTP status, LeadSquared exception type and message.

    ``uncertain`` is true when the request may have reached LeadSquared though the answer does not say what
    became of it (timeout, dropped connection, 5xx, an unexplained body): sending again may repeat it.
    """

    kind: AnswerClass
    status_code: int | None
    exception_type: str | None
    message: str
    payload: Any = None
    uncertain: bool = False


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


EXCEPTION_TYPE_LIMIT = 200
MESSAGE_LIMIT = 1000
EXCERPT_LIMIT = 200
_RATE_LIMIT_TEXT = re.compile(r"rate[\s_-]*limit|calls?\s+exceeded|exceeded\s+the\s+limit|too\s+many\s+requests", re.I)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def redacted(text: object, limit: int = MESSAGE_LIMIT) -> str:
    """``text`` on one line, every secret registered with Airflow's masker replaced, cut to ``limit``."""
    from airflow.sdk.log import redact

    return _short(_CONTROL.sub(" ", str(redact(str(text)))), limit)


def answer_text(value: object, limit: int = MESSAGE_LIMIT) -> str:
    """Any JSON value of an answer as one line of text of at most ``limit`` characters."""
    if value is None:
        return ""
    if isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
        except (TypeError, ValueError, RecursionError):
            text = repr(value)
    return _short(_CONTROL.sub(" ", text), limit)


def _status_of(body: dict[str, Any]) -> str:
    status = body.get("Status")
    return status.strip().casefold() if isinstance(status, str) else ""


def _message_of(body: dict[str, Any]) -> str:
    """``ExceptionMessage``, else ``Message`` (or ``Message.Message``), as text."""
    message = body.get("ExceptionMessage")
    if message in (None, "", [], {}):
        message = body.get("Message")
        if isinstance(message, dict) and "Message" in message:
            message = message["Message"]
    return answer_text(message)


def is_queued_body(body: dict[str, Any]) -> bool:
    """Lead.Reset's success: ``"Status": "Success"`` (any case). Anything else is not one."""
    return _status_of(body) == "success"


def is_user_body(body: dict[str, Any]) -> bool:
    """UserByAccessKey.Get's success: a user object (it has no ``Status``), not an error object."""
    return _status_of(body) in ("", "success") and "ExceptionType" not in body and ("Role" in body or "Id" in body)


def activity_event_code(activity: Mapping[str, Any], default: int | None = None) -> int | None:
    """An activity's ``EventCode`` as a number (the API may give it as text); ``default`` when the answer
    leaves it out (a read filtered by that code); None when it is unreadable."""
    code = activity.get("EventCode", default)
    if isinstance(code, str) and code.strip().isdigit():
        return int(code.strip())
    return code if isinstance(code, int) and not isinstance(code, bool) else None


def _excerpt(body_text: str) -> str:
    return answer_text(body_text, EXCERPT_LIMIT) or "(empty body)"


def redirect_host(location: str | None) -> str:
    """The host a ``Location`` header points to (host only: never its path or query)."""
    if not location:
        return "an unnamed host (no Location header)"
    try:
        host = urlsplit(location.strip()).hostname
    except ValueError:
        host = None
    return answer_text(host, 255) if host else "the same host (a relative Location)"


def classify_answer(
    status_code: int,
    body_text: str,
    *,
    location: str | None = None,
    accepts: Callable[[dict[str, Any]], bool] = is_queued_body,
) -> Answer:
    """Classify an HTTP answer of LeadSquared by its exception type first, then its status and body.

    :param status_code: the HTTP status.
    :param body_text: the answer's body as text.
    :param location: the ``Location`` header of a 3xx answer.
    :param accepts: what a success body looks like for this call (default: Lead.Reset's
        ``"Status": "Success"``); a 2xx whose body it refuses is never a success.
    """
    if 300 <= status_code < 400:
        return Answer(
            AnswerClass.AUTH_FAILED,
            status_code,
            REDIRECT_EXCEPTION,
            f"answered {status_code}, a redirect to {redirect_host(location)}: redirects are never followed "
            "(the keys would travel with them); set the connection's host to the account's API host itself",
        )
    try:
        body = json.loads(body_text) if body_text and body_text.strip() else None
    except (ValueError, RecursionError):
        body = None
    if isinstance(body, dict):
        exception_type = answer_text(body.get("ExceptionType"), EXCEPTION_TYPE_LIMIT) or None
        message = _message_of(body)
        is_error = exception_type is not None or _status_of(body) in ("error", "failure", "failed")
    else:
        exception_type, message, is_error = None, "", False
    said = message or _excerpt(body_text)
    says_rate_limit = bool(_RATE_LIMIT_TEXT.search(said))

    def answer(kind: AnswerClass, text: str, *, uncertain: bool = False, payload: Any = None) -> Answer:
        return Answer(kind, status_code, exception_type, text, payload=payload, uncertain=uncertain)

    # The exception type first: it means the same at any status.
    if exception_type == LEAD_NOT_FOUND_EXCEPTION:
        return answer(AnswerClass.REJECTED, message or "lead not found")
    if status_code == 429 or exception_type == RATE_LIMIT_EXCEPTION:
        return answer(AnswerClass.RATE_LIMITED, said)
    if status_code == 403:  # a rate limit only when the body says so; else the keys lack a permission
        if says_rate_limit:
            return answer(AnswerClass.RATE_LIMITED, said)
        return answer(AnswerClass.AUTH_FAILED, f"permission refused (403): {said}")
    if status_code == 401 or exception_type == UNAUTHORIZED_EXCEPTION:
        return answer(AnswerClass.AUTH_FAILED, f"keys refused: {said}")
    if status_code == 404:
        return answer(AnswerClass.AUTH_FAILED, f"API path not found (404; wrong host or region?): {said}")
    if status_code >= 500:
        return answer(AnswerClass.TRANSIENT, f"server error {status_code}: {said}", uncertain=True)
    if 200 <= status_code < 300:
        if isinstance(body, dict) and not is_error and accepts(body):
            return answer(AnswerClass.QUEUED, message, payload=body)
        if exception_type in VALIDATION_EXCEPTIONS:
            return answer(AnswerClass.REJECTED, message or "error answer")
        if is_error and says_rate_limit:
            return answer(AnswerClass.RATE_LIMITED, said)
        what = f"{exception_type}: {said}" if exception_type else f"body {_excerpt(body_text)!r}"
        return answer(AnswerClass.TRANSIENT, f"answer {status_code} is not a success: {what}", uncertain=True)
    if 400 <= status_code < 500 and status_code != 408 and is_error:
        if exception_type in (None, GENERIC_EXCEPTION):
            return answer(AnswerClass.REFUSED, f"answer {status_code} without a reason: {said}")
        return answer(AnswerClass.REJECTED, message or "error answer")
    return answer(
        AnswerClass.TRANSIENT, f"answer {status_code} is not an error object: {_excerpt(body_text)!r}", uncertain=True
    )
