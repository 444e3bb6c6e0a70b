"""LeadSquared's exception types and the bodies the emulator answers with."""

from __future__ import annotations

from typing import Any

INVALID_JSON = "MXInvalidJsonException"
MANDATORY_MISSING = "MXMandatoryAttributeMissingException"
INVALID_INPUT = "MXInvalidInputException"
UNKNOWN_ATTRIBUTE = "MXUnknownAttributeException"
LEAD_NOT_FOUND = "MXInvalidEntityReferenceException"
UNAUTHORIZED = "MXUnAuthorizedAccessException"
RATE_LIMITED = "MXAPIRateLimitExceededException"
INTERNAL = "MXException"
API_NOT_FOUND = "MXInvalidAPIException"

QUEUED_MESSAGE = "Your request for lead reset has been queued."

HTML_502 = b"""<html>
<head><title>502 Bad Gateway</title></head>
<body>
<center><h1>502 Bad Gateway</h1></center>
<hr><center>awselb/2.0</center>
</body>
</html>
"""

HTML_504 = b"""<html>
<head><title>504 Gateway Time-out</title></head>
<body>
<center><h1>504 Gateway Time-out</h1></center>
<hr><center>awselb/2.0</center>
</body>
</html>
"""

NON_JSON_200 = b"Service is temporarily busy. Please try again after some time.\r\n"


def error_body(exception_type: str, message: str) -> dict[str, Any]:
    """LeadSquared's error object: ``{"Status":"Error","ExceptionType":...,"ExceptionMessage":...}``."""
    return {"Status": "Error", "ExceptionType": exception_type, "ExceptionMessage": message}


def queued_body() -> dict[str, Any]:
    """The success answer of Lead.Reset."""
    return {"Status": "Success", "Message": {"Message": QUEUED_MESSAGE}}


DAILY_QUOTA_MESSAGE = "API calls quota exceeded for the day. Please try again later"


def rate_limit_message(limit: int, window_seconds: float) -> str:
    """``API calls exceeded the limit of 25 in 5 second(s)`` with the configured numbers."""
    window = int(window_seconds) if float(window_seconds).is_integer() else window_seconds
    return f"API calls exceeded the limit of {limit} in {window} second(s)"


class RequestRejected(Exception):
    """A request broke an API rule; carries the HTTP status and LeadSquared exception type."""

    def __init__(self, exception_type: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.exception_type = exception_type
        self.message = message
        self.status = status


def lead_not_found(status: int) -> RequestRejected:
    """An unknown lead: 400 "Lead not found" (the default) or 500 "Lead does not exist", as some hosts answer."""
    return RequestRejected(LEAD_NOT_FOUND, "Lead does not exist" if status == 500 else "Lead not found", status)
