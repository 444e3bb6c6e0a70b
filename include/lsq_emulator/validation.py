"""Lead.Reset request validation with the API's 400 answers, in a fixed order of checks."""

from __future__ import annotations

import json
from typing import Any

from lsq_emulator.errors import (
    INVALID_INPUT,
    INVALID_JSON,
    MANDATORY_MISSING,
    UNKNOWN_ATTRIBUTE,
    RequestRejected,
)
from lsq_emulator.store import AUDIT_TYPES, ResetOrder, parse_lsq_date

RESET_ATTRIBUTES = (
    "ProspectId",
    "TaskTypeList",
    "ActivityEventList",
    "ShouldDeleteProspectNotes",
    "AuditActivityList",
    "FromDate",
    "ToDate",
)
_BAD_BODY = (
    "The message body is not as per API specification. Make sure that content type is set to "
    '"application/json" and the JSON body has correct attribute names and structure.'
)


def is_json_content_type(content_type: str | None) -> bool:
    """True for ``application/json`` with or without parameters such as ``charset``."""
    return (content_type or "").split(";", 1)[0].strip().lower() == "application/json"


def parse_json_body(content_type: str | None, raw: bytes) -> Any:
    """Parse a JSON request body or raise a 400 ``MXInvalidJsonException``."""
    if not is_json_content_type(content_type):
        raise RequestRejected(INVALID_JSON, f"Content-Type must be application/json. {_BAD_BODY}")
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise RequestRejected(INVALID_JSON, f"Invalid JSON body. {_BAD_BODY}") from None


def _string_list(body: dict[str, Any], name: str, allowed: frozenset[str] | None = None) -> frozenset[str]:
    value = body.get(name)
    if value is None:
        return frozenset()
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise RequestRejected(INVALID_INPUT, f"{name} must be a list of non-empty strings")
    if allowed is not None:
        bad = sorted(set(value) - allowed)
        if bad:
            raise RequestRejected(INVALID_INPUT, f"{name} has unsupported value(s) {bad}; allowed: {sorted(allowed)}")
    return frozenset(value)


def _int_list(body: dict[str, Any], name: str) -> frozenset[int]:
    value = body.get(name)
    if value is None:
        return frozenset()
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise RequestRejected(INVALID_INPUT, f"{name} must be a list of integer activity event codes")
    return frozenset(value)


def _date(body: dict[str, Any], name: str) -> Any:
    value = body.get(name)
    if value is None:
        return None
    try:
        return parse_lsq_date(value)
    except ValueError:
        raise RequestRejected(
            INVALID_INPUT, f"{name} {value!r} is not a date in UTC of the form YYYY-MM-DD HH:MM:SS"
        ) from None


def validate_reset(body: Any) -> ResetOrder:
    """Check a parsed Lead.Reset body; return the order or raise :class:`RequestRejected` (400).

    Order: object -> unknown attributes -> ProspectId -> attribute types -> a category chosen ->
    dates (format, both or neither, FromDate <= ToDate). ``null`` counts as absent.
    """
    if not isinstance(body, dict):
        raise RequestRejected(INVALID_JSON, f"The JSON body must be an object. {_BAD_BODY}")
    unknown = sorted(set(body) - set(RESET_ATTRIBUTES))
    if unknown:
        raise RequestRejected(UNKNOWN_ATTRIBUTE, f"Unknown attribute(s): {', '.join(unknown)}")
    prospect_id = body.get("ProspectId")
    if not isinstance(prospect_id, str) or not prospect_id.strip():
        raise RequestRejected(MANDATORY_MISSING, "Mandatory attribute ProspectId is missing or empty")
    task_types = _string_list(body, "TaskTypeList")
    activity_events = _int_list(body, "ActivityEventList")
    audit_types = _string_list(body, "AuditActivityList", AUDIT_TYPES)
    notes = body.get("ShouldDeleteProspectNotes")
    if notes is not None and not isinstance(notes, bool):
        raise RequestRejected(INVALID_INPUT, "ShouldDeleteProspectNotes must be true or false")
    if not (task_types or activity_events or audit_types or notes):
        raise RequestRejected(
            MANDATORY_MISSING,
            "Specify at least one of TaskTypeList, ActivityEventList, AuditActivityList or ShouldDeleteProspectNotes",
        )
    from_date, to_date = _date(body, "FromDate"), _date(body, "ToDate")
    if (from_date is None) != (to_date is None):
        missing = "ToDate" if to_date is None else "FromDate"
        raise RequestRejected(MANDATORY_MISSING, f"{missing} is mandatory when the other date is given")
    if from_date is not None and to_date is not None and from_date > to_date:
        raise RequestRejected(INVALID_INPUT, "FromDate must not be after ToDate")
    return ResetOrder(
        prospect_id=prospect_id.strip(),
        task_types=task_types,
        activity_events=activity_events,
        audit_types=audit_types,
        delete_notes=bool(notes),
        from_date=from_date,
        to_date=to_date,
    )
