"""The approval gate: which runs wait for a person, what the plan records for them, and the preview's text.

Pure (no Airflow, no I/O). The plan decides with :func:`approval_reasons` and records an
:class:`ApprovalRequest`; the approval task shows :func:`preview_body` and records an :class:`ApprovalDecision`;
the report fails a run whose decision does not let it through.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from leadsquared_provider.rate_budget.day import utc_text
from leadsquared_provider.rules.request import ResetScope

# Lead ids the preview lists (each a link to the resets page) and leads whose activities it may read.
PREVIEW_SAMPLE = 10
PREVIEW_ACTIVITY_LEADS = 5
# A turned-down run's count of staged leads (in place of "unfinished": they were never to be sent).
NOT_APPROVED = "not_approved"


class Reason(StrEnum):
    """Why a run waits for a person."""

    OVER_THRESHOLD = "over_threshold"
    GROWTH = "growth"
    ALL_TIME = "all_time"
    LONG_WINDOW = "long_window"
    LONG_BACKFILL = "long_backfill"  # one run of a backfill that spans more than approval_max_window_days


class Decision(StrEnum):
    """Where a run stands at the gate."""

    NOT_NEEDED = "not_needed"  # nothing asked: the run went on at once
    WAITING = "waiting"
    APPROVED = "approved"
    REJECTED = "rejected"
    TIMED_OUT = "timed_out"  # nobody answered within approval_timeout_minutes: rejected
    REFUSED = "refused"  # four eyes: approved by the person who triggered the run

    @property
    def lets_through(self) -> bool:
        return self in (Decision.NOT_NEEDED, Decision.APPROVED)


def window_days(scope: ResetScope) -> float | None:
    """The window's length in days (``to_date`` inclusive); None when it is open on a side (all time)."""
    if scope.from_date is None or scope.to_date is None:
        return None
    return (scope.to_date - scope.from_date + timedelta(seconds=1)).total_seconds() / 86_400


@dataclass(frozen=True)
class BackfillSpan:
    """How far a backfill reaches around one of its runs: ``before`` and ``after`` of its ``reach`` neighbouring
    runs found on each side, each run ``step_days`` long."""

    step_days: float
    before: int
    after: int
    reach: int

    @property
    def days(self) -> float:
        """The days the runs found cover (this run's and its neighbours')."""
        return (1 + self.before + self.after) * self.step_days

    @property
    def more(self) -> bool:
        """Whether the backfill may reach further than the runs looked for (a side found all of them)."""
        return self.before >= self.reach or self.after >= self.reach


def backfill_reach(max_days: int, step_days: float) -> int:
    """Neighbouring runs to look for on each side: enough to tell a backfill longer than ``max_days``."""
    return int(max_days // step_days) + 1


def approval_reasons(
    leads: int,
    *,
    threshold: int,
    baseline: int | None,
    max_growth: float,
    growth_floor: int,
    days: float | None,
    max_days: int,
    backfill_days: float | None = None,
) -> tuple[Reason, ...]:
    """Why a run of ``leads`` staged leads over a window of ``days`` (None: all time), part of a backfill
    spanning ``backfill_days`` (None: not a backfill's run), needs a person; empty when it needs none. A run
    with nothing to send never asks (nor does a dry run: the plan does not ask)."""
    if leads == 0:
        return ()
    reasons = []
    if leads > threshold:
        reasons.append(Reason.OVER_THRESHOLD)
    if baseline is not None and leads > growth_floor and leads > baseline * max_growth:
        reasons.append(Reason.GROWTH)
    if days is None:
        reasons.append(Reason.ALL_TIME)
    elif days > max_days:
        reasons.append(Reason.LONG_WINDOW)
    if backfill_days is not None and backfill_days > max_days:
        reasons.append(Reason.LONG_BACKFILL)
    return tuple(reasons)


@dataclass(frozen=True)
class LeadActivities:
    """A lead's activities the reset would delete, read before asking (None and why: the read failed)."""

    lead_id: str
    count: int | None
    note: str = ""


@dataclass(frozen=True)
class ApprovalRequest:
    """What the plan records for the gate: why the run waits (no reasons: it does not) and the preview's facts."""

    reasons: tuple[Reason, ...]
    leads: int  # staged: this window's candidates and leads retried from earlier runs
    threshold: int
    baseline: int | None  # the growth guard's usual count (None: no earlier runs)
    max_growth: float
    days: float | None  # the window's length (None: all time)
    max_days: int
    sample: tuple[str, ...] = ()  # the first staged lead ids
    calls: int = 0  # the run's calls: resets sent today and verification reads
    calls_per_second: float | None = None  # the account's effective rate for this connection (None: unknown)
    day_left: int | None = None  # calls left in today's share of the daily quota (None: no quota)
    activities: tuple[LeadActivities, ...] = ()  # read when approval_preview_activities is on
    backfill_days: float | None = None  # the days the run's backfill spans (None: not a backfill's run)
    backfill_more: bool = False  # the backfill may span more than backfill_days (not looked further)

    @property
    def needed(self) -> bool:
        return bool(self.reasons)

    @property
    def estimated_seconds(self) -> float | None:
        """How long the run's calls take at the effective rate (None: rate unknown)."""
        if not self.calls_per_second:
            return None
        return self.calls / self.calls_per_second

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, the inverse of :meth:`from_mapping`."""
        return {
            "reasons": [str(reason) for reason in self.reasons],
            "leads": self.leads,
            "threshold": self.threshold,
            "baseline": self.baseline,
            "max_growth": self.max_growth,
            "days": self.days,
            "max_days": self.max_days,
            "sample": list(self.sample),
            "calls": self.calls,
            "calls_per_second": self.calls_per_second,
            "day_left": self.day_left,
            "activities": [[a.lead_id, a.count, a.note] for a in self.activities],
            "backfill_days": self.backfill_days,
            "backfill_more": self.backfill_more,
        }

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> ApprovalRequest:
        return cls(
            reasons=tuple(Reason(reason) for reason in data["reasons"]),
            leads=int(data["leads"]),
            threshold=int(data["threshold"]),
            baseline=data.get("baseline"),
            max_growth=float(data["max_growth"]),
            days=data.get("days"),
            max_days=int(data["max_days"]),
            sample=tuple(data.get("sample") or ()),
            calls=int(data.get("calls") or 0),
            calls_per_second=data.get("calls_per_second"),
            day_left=data.get("day_left"),
            activities=tuple(LeadActivities(lead, count, note) for lead, count, note in data.get("activities") or ()),
            backfill_days=data.get("backfill_days"),
            backfill_more=bool(data.get("backfill_more")),
        )


@dataclass(frozen=True)
class ApprovalDecision:
    """The gate's answer for a run: who decided and when (epoch seconds; None while waiting or not needed), and
    a note (why an approval was refused; for a backfill's run, which run of the backfill was answered)."""

    decision: Decision
    by: str | None = None
    at: float | None = None
    note: str = ""

    def as_text(self) -> str:
        """One line for the report: ``approved by alice at 2026-12-01 10:00:00 UTC``."""
        when = f" at {utc_text(self.at)}" if self.at else ""
        who = f" by {self.by}" if self.by else ""
        said = f" ({self.note})" if self.note else ""
        text = {
            Decision.NOT_NEEDED: "not needed",
            Decision.WAITING: "waiting for a person",
            Decision.APPROVED: f"approved{who}{when}{said}",
            Decision.REJECTED: f"rejected{who}{when}{said}: nothing was sent",
            Decision.TIMED_OUT: f"not answered in time (rejected{when}){said}: nothing was sent",
            Decision.REFUSED: f"approval{who}{when} refused: {self.note or 'four eyes'}; nothing was sent",
        }
        return text[self.decision]


def reason_lines(request: ApprovalRequest) -> list[str]:
    """One sentence per reason, naming the param that sets it."""
    said = {
        Reason.OVER_THRESHOLD: f"{request.leads:,} leads is over approval_threshold={request.threshold:,}",
        Reason.GROWTH: f"{request.leads:,} leads is more than {request.max_growth:g} x the usual "
        f"{request.baseline or 0:,} (the median of the DAG's recent runs; max_growth_factor)",
        Reason.ALL_TIME: "the window is open-ended: everything since each lead was created",
        Reason.LONG_WINDOW: f"the window spans {request.days or 0:.4g} days, over approval_max_window_days="
        f"{request.max_days}",
        Reason.LONG_BACKFILL: f"the run is part of a backfill of {'more than ' if request.backfill_more else '~'}"
        f"{request.backfill_days or 0:.4g} days, over approval_max_window_days={request.max_days}; one answer "
        "holds for every run of the backfill",
    }
    return [said[reason] for reason in request.reasons]


def duration_text(seconds: float) -> str:
    """``3 h 02 min``, ``4 min 10 s``, ``12 s``."""
    whole = math.ceil(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def _window_text(scope: ResetScope, zone: ZoneInfo | None) -> str:
    def side(moment: datetime | None, missing: str) -> str:
        if moment is None:
            return missing
        return f"{(moment.astimezone(zone) if zone else moment):%Y-%m-%d %H:%M:%S}"

    return f"{side(scope.from_date, 'lead creation')} .. {side(scope.to_date, 'now')}"


def _categories_text(scope: ResetScope) -> str:
    parts = []
    if scope.activity_event_codes:
        parts.append(f"activities with event codes {', '.join(map(str, scope.activity_event_codes))}")
    if scope.task_type_ids:
        parts.append(f"tasks of types {', '.join(scope.task_type_ids)}")
    if scope.audit_types:
        parts.append(f"audit records {', '.join(scope.audit_types)}")
    if scope.delete_notes:
        parts.append("notes")
    return "; ".join(parts)


def preview_subject(request: ApprovalRequest, dag_id: str) -> str:
    return f"Approve resetting {_leads(request.leads, 'LeadSquared ')}? ({dag_id})"


def preview_body(
    request: ApprovalRequest, scope: ResetScope, *, dag_id: str, run_id: str, timezone: str, leads_url: str
) -> str:
    """The approval page's Markdown: why the run waits, what it resets, how long and how much of today's quota
    it takes, and a sample of its leads, each linked to the resets page (``leads_url?lead_id=...``)."""
    zone = ZoneInfo(timezone)
    usual = (
        f"usual {request.baseline:,} (median of recent runs); asks over {request.max_growth:g} x"
        if request.baseline is not None
        else "no earlier runs to compare with"
    )
    if (seconds := request.estimated_seconds) is not None and request.calls_per_second:
        duration = f"about {duration_text(seconds)} ({request.calls:,} calls at {request.calls_per_second:.2f} calls/s)"
    else:
        duration = f"{request.calls:,} calls (the account's rate is unknown)"
    if request.day_left is None:
        quota = "no daily quota stated on the connection"
    elif request.day_left == 0:
        quota = f"{request.calls:,} calls; today's share is spent"
    else:
        quota = (
            f"{request.calls:,} of the {request.day_left:,} calls left in today's share "
            f"({request.calls / request.day_left:.0%})"
        )
    lines = [
        f"Run `{run_id}` of **{dag_id}** waits for approval before it resets **{_leads(request.leads)}**. "
        "A reset cannot be undone.",
        "",
        "**Why it asks**",
        "",
        *(f"- {line}" for line in reason_lines(request)),
        "",
        "| | |",
        "|---|---|",
        f"| Window (UTC) | {_window_text(scope, None)} |",
        f"| Window ({timezone}) | {_window_text(scope, zone)} |",
        f"| Deletes | {_categories_text(scope)} |",
        f"| Candidates | {request.leads:,} ({usual}) |",
        f"| Estimated duration | {duration} |",
        f"| Daily quota | {quota} |",
        "",
        f"**Sample of leads** ({len(request.sample)} of {request.leads:,}; each opens its resets)",
        "",
        *(f"- [{lead}]({leads_url}?lead_id={lead})" for lead in request.sample),
    ]
    if request.activities:
        lines += ["", "**Activities each would lose** (read now, in the window, of the event codes above)", ""]
        lines += [
            f"- `{a.lead_id}`: {a.count}" if a.count is not None else f"- `{a.lead_id}`: not read ({a.note})"
            for a in request.activities
        ]
    lines += ["", "**Approve** sends the resets; **Reject** (or no answer in time) sends nothing."]
    return "\n".join(lines)


def _leads(count: int, kind: str = "") -> str:
    return f"{count:,} {kind}lead" + ("" if count == 1 else "s")
