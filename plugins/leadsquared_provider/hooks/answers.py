"""How one HTTP answer of LeadSquared is read: its class (:class:`AnswerClass`), and the text it may show.

An answer's exception type means the same at any status, so it is read first, then the status and the body
(:func:`classify_answer`). A success is only what the call's ``accepts`` recognises in a 2xx JSON object
that is not an error object. Rate-limit answers (429; ``MXAPIRateLimitExceededException`` at any status; a
403, or a 2xx error object, whose message says the limit was exceeded) are never an outcome: the hook slows
the account's budget and sends again.

An answer's fields are untrusted: ``ExceptionType`` and ``ExceptionMessage`` may be any JSON value; they
become one line of text, cut to 200 (exception type) and 1000 (message) characters.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from leadsquared_provider.rules.outcomes import MESSAGE_LIMIT, one_line

if TYPE_CHECKING:
    from requests import Response

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
    ``response`` is the HTTP response it came in (its body read), when one came: what ``run()`` returns.
    """

    kind: AnswerClass
    status_code: int | None
    exception_type: str | None
    message: str
    payload: Any = None
    uncertain: bool = False
    response: Response | None = field(default=None, compare=False, repr=False)


EXCEPTION_TYPE_LIMIT = 200
EXCERPT_LIMIT = 200
_RATE_LIMIT_TEXT = re.compile(r"rate[\s_-]*limit|calls?\s+exceeded|exceeded\s+the\s+limit|too\s+many\s+requests", re.I)


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
    return one_line(text, limit)


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
