"""ProspectActivity.Retrieve: the request's filter and paging, and stored activities in the API's shape."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lsq_emulator.errors import INVALID_INPUT, INVALID_JSON, RequestRejected

MAX_ROWS = 25
CUSTOM_ACTIVITY_TYPE = 2


@dataclass(frozen=True)
class ActivityQuery:
    """Which activities one Retrieve call asks for: an optional event code, then a page."""

    event: int | None
    offset: int
    row_count: int


def _count(paging: dict[str, Any], name: str, default: int) -> int:
    value = paging.get(name, default)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise RequestRejected(INVALID_INPUT, f"Paging {name} must be a non-negative integer (or its digits), got {value!r}")


def parse_activity_query(body: Any) -> ActivityQuery:
    """Read ``{"Parameter": {"ActivityEvent": int}, "Paging": {"Offset": .., "RowCount": ..}}`` (all optional).

    Offset and RowCount may be ints or digit strings; RowCount is capped at 25.
    """
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise RequestRejected(INVALID_JSON, "The JSON body must be an object")
    parameter = body.get("Parameter") or {}
    paging = body.get("Paging") or {}
    if not isinstance(parameter, dict) or not isinstance(paging, dict):
        raise RequestRejected(INVALID_INPUT, "Parameter and Paging must be objects")
    event = parameter.get("ActivityEvent")
    if event is not None and (isinstance(event, bool) or not isinstance(event, int)):
        raise RequestRejected(INVALID_INPUT, f"Parameter ActivityEvent must be an integer event code, got {event!r}")
    offset = _count(paging, "Offset", 0)
    row_count = min(_count(paging, "RowCount", MAX_ROWS), MAX_ROWS)
    return ActivityQuery(event=event, offset=offset, row_count=row_count)


def as_prospect_activity(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored activity (``Id``, ``ActivityEvent``, ``CreatedOn``, optional ``EventName``) as the API shows it."""
    code = stored["ActivityEvent"]
    return {
        "Id": stored["Id"],
        "EventCode": code,
        "EventName": stored.get("EventName") or f"Custom Activity {code}",
        "CreatedOn": stored["CreatedOn"],
        "ActivityType": CUSTOM_ACTIVITY_TYPE,
    }


def retrieve(activities: list[dict[str, Any]], query: ActivityQuery) -> dict[str, Any]:
    """``{"RecordCount": total matching, "ProspectActivities": [the page]}`` in stored order."""
    matching = [a for a in activities if query.event is None or a.get("ActivityEvent") == query.event]
    page = matching[query.offset : query.offset + query.row_count]
    return {"RecordCount": len(matching), "ProspectActivities": [as_prospect_activity(a) for a in page]}
