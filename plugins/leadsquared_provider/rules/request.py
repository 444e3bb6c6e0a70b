"""Typed, validated Lead.Reset requests: nothing malformed ever reaches the API.

A :class:`ResetScope` is what one run resets (categories and window) and is shared by every lead of the
run; a :class:`ResetRequest` is one lead under one scope. Both validate on construction with the same
rules as the API's 400 answers, plus two of our own: lead ids must be LeadSquared GUIDs, and an absent
window ("everything since the lead was created") is refused unless ``allow_all_time`` is set.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from leadsquared_provider.exceptions import InvalidResetRequest
from leadsquared_provider.rules.kinds import ParamError, flag, listed, whole_number

LSQ_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"  # what LeadSquared reads; written by lsq_date_text (zero-padded)
MIN_YEAR, MAX_YEAR = 1970, 2100  # a window bound outside these years is a mistake, never a wish
AUDIT_TYPES = frozenset({"StageChange", "OwnerChange"})
_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def normalize_lead_id(raw: object) -> str:
    """Return ``raw`` as a lower-case LeadSquared GUID, or raise naming the bad value."""
    if raw is None:
        raise InvalidResetRequest("lead id is null")
    if not isinstance(raw, str):
        raise InvalidResetRequest(f"lead id {raw!r} is a {type(raw).__name__}, not a string")
    lead_id = raw.strip().lower()
    if not lead_id:
        raise InvalidResetRequest("lead id is empty")
    if not _GUID.match(lead_id):
        shown = raw if len(raw) <= 80 else raw[:77] + "..."
        raise InvalidResetRequest(f"lead id {shown!r} is not a LeadSquared GUID (8-4-4-4-12 hex digits)")
    return lead_id


def lsq_date_text(moment: datetime) -> str:
    """``moment`` as LeadSquared's ``YYYY-MM-DD HH:MM:SS``, always zero-padded (``strftime`` drops padding
    of years below 1000 on some platforms)."""
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d} "
        f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
    )


def parse_window_bound(name: str, value: object) -> datetime | None:
    """Parse a window bound given as an aware datetime or an ISO-8601 string with a UTC offset.

    The bound is returned in UTC; its year must lie in ``MIN_YEAR``..``MAX_YEAR``.
    """
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except (ValueError, OverflowError):
            raise InvalidResetRequest(
                f"{name} {_shown(value)} is not an ISO-8601 date-time (e.g. 2024-05-01T00:00:00+05:30)"
            ) from None
    else:
        raise InvalidResetRequest(f"{name} {_shown(value)} is a {type(value).__name__}, not a date-time")
    try:
        offset = moment.utcoffset()
    except (ValueError, OverflowError, TypeError):
        raise InvalidResetRequest(f"{name} {_shown(value)} has an unusable timezone") from None
    if moment.tzinfo is None or offset is None:
        raise InvalidResetRequest(
            f"{name} {_shown(value)} has no timezone: give an offset (e.g. +00:00) so the window is unambiguous"
        )
    try:
        moment = moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise InvalidResetRequest(
            f"{name} {_shown(value)} is out of range: years {MIN_YEAR}..{MAX_YEAR} only"
        ) from None
    if not MIN_YEAR <= moment.year <= MAX_YEAR:
        raise InvalidResetRequest(
            f"{name} {_shown(value)} is in year {moment.year} (UTC): years {MIN_YEAR}..{MAX_YEAR} only"
        )
    return moment


def _shown(value: object) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _int_codes(values: Iterable[object]) -> tuple[int, ...]:
    codes = []
    for value in values:
        try:
            code = whole_number("activity event code", value)
        except ParamError:
            raise InvalidResetRequest(f"activity event code {value!r} is not an integer") from None
        if code <= 0:
            raise InvalidResetRequest(f"activity event code {value!r} must be a positive integer")
        codes.append(code)
    return tuple(sorted(set(codes)))


def _task_types(values: Iterable[object]) -> tuple[str, ...]:
    types = []
    for value in values:
        try:
            types.append(normalize_lead_id(value))
        except InvalidResetRequest:
            raise InvalidResetRequest(f"task type id {value!r} is not a GUID") from None
    return tuple(sorted(set(types)))


def _audit_types(values: Iterable[object]) -> tuple[str, ...]:
    for value in values:
        if value not in AUDIT_TYPES:
            raise InvalidResetRequest(f"audit type {value!r} is unknown; LeadSquared documents {sorted(AUDIT_TYPES)}")
    return tuple(sorted(set(values)))  # type: ignore[arg-type]


def _flag(name: str, value: object) -> bool:
    try:
        return flag(name, value)
    except ParamError as refused:
        raise InvalidResetRequest(str(refused)) from None


def _as_list(name: str, value: object) -> list[object]:
    try:
        return listed(name, value)
    except ParamError as refused:
        raise InvalidResetRequest(str(refused)) from None


@dataclass(frozen=True)
class ResetScope:
    """What to reset on every lead of a run: the categories and the window (UTC, ``to_date`` inclusive)."""

    activity_event_codes: tuple[int, ...] = ()
    task_type_ids: tuple[str, ...] = ()
    audit_types: tuple[str, ...] = ()
    delete_notes: bool = False
    from_date: datetime | None = None
    to_date: datetime | None = None
    allow_all_time: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "activity_event_codes", _int_codes(self.activity_event_codes))
        object.__setattr__(self, "task_type_ids", _task_types(self.task_type_ids))
        object.__setattr__(self, "audit_types", _audit_types(self.audit_types))
        if not isinstance(self.delete_notes, bool):
            raise InvalidResetRequest(f"delete_notes must be true or false, got {self.delete_notes!r}")
        if not isinstance(self.allow_all_time, bool):
            raise InvalidResetRequest(f"allow_all_time must be true or false, got {self.allow_all_time!r}")
        object.__setattr__(self, "from_date", parse_window_bound("from_date", self.from_date))
        object.__setattr__(self, "to_date", parse_window_bound("to_date", self.to_date))
        if not (self.activity_event_codes or self.task_type_ids or self.audit_types or self.delete_notes):
            raise InvalidResetRequest(
                "no category chosen: give activity_event_codes, task_type_ids, audit_types or delete_notes=true"
            )
        if (self.from_date is None) != (self.to_date is None):
            raise InvalidResetRequest("give both from_date and to_date, or neither (all time)")
        if self.from_date is None and not self.allow_all_time:
            raise InvalidResetRequest(
                "no window given: that resets everything since each lead was created; "
                "set allow_all_time=true to mean it"
            )
        if self.from_date and self.to_date and self.from_date > self.to_date:
            raise InvalidResetRequest(
                f"from_date {lsq_date_text(self.from_date)} is after to_date {lsq_date_text(self.to_date)}"
            )

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> ResetScope:
        """Build a scope from params-like data, naming any unknown key."""
        known = {
            "activity_event_codes",
            "task_type_ids",
            "audit_types",
            "delete_notes",
            "from_date",
            "to_date",
            "allow_all_time",
        }
        unknown = set(data) - known
        if unknown:
            raise InvalidResetRequest(f"unknown scope field(s): {sorted(unknown)}")
        return cls(
            # raw values: __post_init__ checks and normalises each list
            activity_event_codes=tuple(
                cast("list[int]", _as_list("activity_event_codes", data.get("activity_event_codes")))
            ),
            task_type_ids=tuple(cast("list[str]", _as_list("task_type_ids", data.get("task_type_ids")))),
            audit_types=tuple(cast("list[str]", _as_list("audit_types", data.get("audit_types")))),
            delete_notes=_flag("delete_notes", data.get("delete_notes", False)),
            from_date=data.get("from_date"),
            to_date=data.get("to_date"),
            allow_all_time=_flag("allow_all_time", data.get("allow_all_time", False)),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (dates in ISO-8601 UTC), the inverse of :meth:`from_mapping`."""
        return {
            "activity_event_codes": list(self.activity_event_codes),
            "task_type_ids": list(self.task_type_ids),
            "audit_types": list(self.audit_types),
            "delete_notes": self.delete_notes,
            "from_date": self.from_date.isoformat() if self.from_date else None,
            "to_date": self.to_date.isoformat() if self.to_date else None,
            "allow_all_time": self.allow_all_time,
        }

    @property
    def from_text(self) -> str | None:
        return lsq_date_text(self.from_date) if self.from_date else None

    @property
    def to_text(self) -> str | None:
        """LeadSquared's ``ToDate``: the window's last second, inclusive."""
        return lsq_date_text(self.to_date) if self.to_date else None

    @property
    def end_text(self) -> str | None:
        """The candidate query's end of the window, exclusive: the second after ``to_text``. With ``from_text``
        it makes the half-open window ``[start, end)``, so consecutive windows leave no gap between them
        (a row at 23:59:59.5 belongs to exactly one day)."""
        return lsq_date_text(self.to_date.replace(microsecond=0) + timedelta(seconds=1)) if self.to_date else None

    @property
    def categories_text(self) -> str:
        """Compact, stable JSON of the categories, as stored in the audit table."""
        return json.dumps(
            {
                "ActivityEventList": list(self.activity_event_codes),
                "TaskTypeList": list(self.task_type_ids),
                "AuditActivityList": list(self.audit_types),
                "ShouldDeleteProspectNotes": self.delete_notes,
            },
            separators=(",", ":"),
        )

    @property
    def key(self) -> str:
        """Identity of window and categories: a lead queued under the same key is never sent again."""
        text = f"{self.from_text}|{self.to_text}|{self.categories_text}"
        return hashlib.sha256(text.encode()).hexdigest()[:24]


@dataclass(frozen=True)
class ResetRequest:
    """One lead to reset under a :class:`ResetScope`."""

    lead_id: str
    scope: ResetScope

    def __post_init__(self) -> None:
        object.__setattr__(self, "lead_id", normalize_lead_id(self.lead_id))

    def to_body(self) -> dict[str, Any]:
        """The JSON body of ``POST Lead.Reset``; categories not chosen are left out."""
        scope = self.scope
        body: dict[str, Any] = {"ProspectId": self.lead_id}
        if scope.task_type_ids:
            body["TaskTypeList"] = list(scope.task_type_ids)
        if scope.activity_event_codes:
            body["ActivityEventList"] = list(scope.activity_event_codes)
        if scope.delete_notes:
            body["ShouldDeleteProspectNotes"] = True
        if scope.audit_types:
            body["AuditActivityList"] = list(scope.audit_types)
        if scope.from_date is not None:
            body["FromDate"] = scope.from_text
            body["ToDate"] = scope.to_text
        return body
