"""Hostile Lead.Reset answers: well-formed HTTP that a client must still count as a failure.

None of them performs the reset. Each kind is also the call record's ``outcome``.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from typing import Any

REDIRECT_302 = "redirect_302"
REDIRECT_307 = "redirect_307"
EMPTY_OBJECT = "empty_object"
STATUS_FAILURE = "status_failure"
MAINTENANCE_HTML = "maintenance_html"
JSON_LIST = "json_list"
JSON_STRING = "json_string"
FORBIDDEN = "forbidden"
EXCEPTION_TYPE_OBJECT = "exception_type_object"
EXCEPTION_MESSAGE_LIST = "exception_message_list"
EXCEPTION_MESSAGE_NUMBER = "exception_message_number"
TRANSIENT_ERROR_200 = "transient_error_200"

JSON_TYPE = "application/json; charset=utf-8"
HTML_TYPE = "text/html; charset=utf-8"

MAINTENANCE_PAGE = b"""<!DOCTYPE html>
<html>
<head><title>LeadSquared - Scheduled Maintenance</title></head>
<body>
<h1>We'll be back soon!</h1>
<p>LeadSquared is undergoing scheduled maintenance. Please try again after some time.</p>
</body>
</html>
"""


def _error(exception_type: Any, message: Any) -> dict[str, Any]:
    return {"Status": "Error", "ExceptionType": exception_type, "ExceptionMessage": message}


QUEUED = {"Status": "Success", "Message": {"Message": "Your request for lead reset has been queued."}}

# kind -> (HTTP status, JSON body); redirects and the maintenance page are built in hostile_answer().
_JSON_ANSWERS: dict[str, tuple[int, Any]] = {
    EMPTY_OBJECT: (200, {}),
    STATUS_FAILURE: (200, {"Status": "Failure"}),
    JSON_LIST: (200, [QUEUED]),
    JSON_STRING: (200, "Success"),
    FORBIDDEN: (403, _error("MXUnAuthorizedAccessException", "Permission denied")),
    EXCEPTION_TYPE_OBJECT: (200, _error({"Name": "MXException", "Code": 500}, "Failed")),
    EXCEPTION_MESSAGE_LIST: (500, _error("MXException", ["Something went wrong", "retry"])),
    EXCEPTION_MESSAGE_NUMBER: (400, _error("MXInvalidInputException", 400)),
    TRANSIENT_ERROR_200: (200, _error("MXException", "Something went wrong, please try again")),
}

HOSTILE_KINDS: tuple[str, ...] = (REDIRECT_302, REDIRECT_307, MAINTENANCE_HTML, *_JSON_ANSWERS)


@dataclass(frozen=True)
class HostileAnswer:
    """The bytes of one hostile answer."""

    status: int
    payload: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)


def redirect_location(redirect_url: str, path: str, query: str) -> str:
    """``redirect_url`` followed by the call's own path and query, as a host-level redirect rule makes it."""
    return f"{redirect_url.rstrip('/')}{path}" + (f"?{query}" if query else "")


def hostile_answer(kind: str, redirect_url: str, path: str, query: str) -> HostileAnswer:
    """Build the answer of ``kind`` for a call to ``path?query``."""
    if kind in (REDIRECT_302, REDIRECT_307):
        location = redirect_location(redirect_url, path, query)
        link = f'<a href="{html.escape(location)}">here</a>'
        page = f"<html><head><title>Object moved</title></head><body><h2>Object moved to {link}.</h2></body></html>\n"
        status = 302 if kind == REDIRECT_302 else 307
        return HostileAnswer(status, page.encode("utf-8"), HTML_TYPE, {"Location": location})
    if kind == MAINTENANCE_HTML:
        return HostileAnswer(200, MAINTENANCE_PAGE, HTML_TYPE)
    status, body = _JSON_ANSWERS[kind]
    return HostileAnswer(status, json.dumps(body, separators=(",", ":")).encode("utf-8"), JSON_TYPE)
