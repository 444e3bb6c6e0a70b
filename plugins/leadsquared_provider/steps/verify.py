"""Verify that LeadSquared carried out a run's resets, by reading a sample of its queued leads back.

LeadSquared answers ``Lead.Reset`` with "queued" and documents no status endpoint: the only evidence that a
reset was carried out is the lead's activities, read again later with ``ProspectActivity.Retrieve``. After
the run's batches, a sample of the leads LeadSquared queued in this run (random, reproducible from the run's
key) is read back; while some still hold what their reset was to delete, the verify task pokes again (every
minute, holding no worker slot in between) until ``verify_delay_seconds`` after the run's last reset was
queued, reading again what is not verified yet. Then each (lead, scope) is:

- ``verified``: no activity with one of the scope's event codes and a ``CreatedOn`` inside the scope's window
  (``from_date`` .. ``to_date`` inclusive, UTC) remains. Activities outside the window, or with other event
  codes, are meant to remain and do not count.
- ``still_present``: some remain (their count and ids are kept).
- ``unverifiable``: the read failed after its retries (or the lead is gone, or an activity has no readable
  ``CreatedOn``).
- ``nothing_checkable``: the scope deletes no activities; tasks, notes and audit records cannot be read back
  with this API (the summary says so).

Results go to the state store's ``leadsquared_reset_verification`` table; the report judges them.
"""

from __future__ import annotations

import logging
import random
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from leadsquared_provider.exceptions import DailyQuotaSpent, LeadSquaredAuthError, RateBudgetError
from leadsquared_provider.hooks.answers import activity_event_code
from leadsquared_provider.rules.params import VerifyParams
from leadsquared_provider.store import VerificationRow

if TYPE_CHECKING:
    from leadsquared_provider.hooks.leadsquared import LeadSquaredHook
    from leadsquared_provider.rules.request import ResetScope
    from leadsquared_provider.store import QueuedLead, StateStore

log = logging.getLogger(__name__)

SHOWN_IDS = 10  # ids of remaining activities per lead in the summary (the table keeps more)


class Check(StrEnum):
    VERIFIED = "verified"
    STILL_PRESENT = "still_present"
    UNVERIFIABLE = "unverifiable"
    NOTHING_CHECKABLE = "nothing_checkable"


# Not read again on a later poke: nothing will change them.
FINAL_CHECKS: frozenset[Check] = frozenset({Check.VERIFIED, Check.NOTHING_CHECKABLE})
# A lead read under several scopes is as bad as its worst check.
_PRECEDENCE = (Check.STILL_PRESENT, Check.UNVERIFIABLE, Check.VERIFIED, Check.NOTHING_CHECKABLE)


def _utc_naive(moment: datetime) -> datetime:
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.replace(microsecond=0)


def parse_created_on(value: object) -> datetime | None:
    """An activity's ``CreatedOn`` (``YYYY-MM-DD HH:MM:SS``, UTC) as a naive UTC datetime to the second, or
    None when it is not a date. Fractions of a second are dropped: ``ToDate`` is inclusive to the second."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return _utc_naive(datetime.fromisoformat(value.strip().replace("Z", "+00:00")))
    except ValueError:
        return None


@dataclass(frozen=True)
class ScopeWindow:
    """What one scope's reset was to delete among a lead's activities: these event codes, created in
    ``start`` .. ``end`` (naive UTC, both inclusive; ``None``: unbounded on that side)."""

    event_codes: tuple[int, ...]
    start: datetime | None
    end: datetime | None

    @classmethod
    def from_scope(cls, scope: ResetScope, queued_at: float | None = None) -> ScopeWindow:
        """The scope's event codes and window, cut at the moment its reset was queued: a reset covers what
        existed then (the state store's rule for settling a lead), so what was created in the window after
        it, or after an all-time reset, may remain."""
        end = _utc_naive(scope.to_date) if scope.to_date is not None else None
        if queued_at is not None:
            queued = _utc_naive(datetime.fromtimestamp(queued_at, UTC))
            end = queued if end is None else min(end, queued)
        start = _utc_naive(scope.from_date) if scope.from_date is not None else None
        return cls(event_codes=scope.activity_event_codes, start=start, end=end)

    def contains(self, moment: datetime) -> bool:
        return (self.start is None or moment >= self.start) and (self.end is None or moment <= self.end)

    def describe(self) -> str:
        start = self.start.isoformat(sep=" ") if self.start else "lead creation"
        end = self.end.isoformat(sep=" ") if self.end else "now"
        return f"event code(s) {', '.join(map(str, self.event_codes))} created {start} .. {end} UTC"


def classify(
    lead_id: str, scope_key: str, window: ScopeWindow, activities: Iterable[tuple[int, Mapping[str, Any]]]
) -> VerificationRow:
    """Judge one lead under one scope from its activities, each given with the event code it was read for.

    Only an activity with one of the scope's event codes and a ``CreatedOn`` inside the window counts; one
    with such a code and no readable ``CreatedOn`` makes the lead unverifiable (unless others remain anyway).
    """
    remaining: list[str] = []
    unreadable: list[str] = []
    others = 0
    seen: set[str] = set()
    for asked, activity in activities:
        activity_id = str(activity.get("Id") or "?")[:100]
        if activity_id != "?" and activity_id in seen:
            continue  # read twice (several codes, or pages that overlapped)
        seen.add(activity_id)
        if activity_event_code(activity, asked) not in window.event_codes:
            others += 1
            continue
        created = parse_created_on(activity.get("CreatedOn"))
        if created is None:
            unreadable.append(activity_id)
        elif window.contains(created):
            remaining.append(activity_id)
        else:
            others += 1
    what = window.describe()
    if remaining:
        return VerificationRow(
            lead_id,
            scope_key,
            Check.STILL_PRESENT,
            len(remaining),
            tuple(remaining),
            f"{len(remaining)} activit{'y' if len(remaining) == 1 else 'ies'} of {what} still present",
        )
    if unreadable:
        return VerificationRow(
            lead_id,
            scope_key,
            Check.UNVERIFIABLE,
            message=f"{len(unreadable)} activit{'y' if len(unreadable) == 1 else 'ies'} of event code(s) "
            f"{', '.join(map(str, window.event_codes))} without a readable CreatedOn: {', '.join(unreadable[:5])}",
        )
    return VerificationRow(
        lead_id, scope_key, Check.VERIFIED, message=f"none of {what} left ({others} other activities, kept)"
    )


def check_lead(hook: LeadSquaredHook, lead_id: str, scope_key: str, window: ScopeWindow) -> VerificationRow:
    """Read the lead's activities of the window's event codes (one call for most leads) and classify them.

    A read that fails (after the hook's retries), a lead that is not found and an exhausted budget make the
    lead ``unverifiable``. :raises LeadSquaredAuthError: the keys were refused (no further lead can be read).
    """
    from leadsquared_provider.exceptions import ActivityReadError

    if not window.event_codes:
        return VerificationRow(
            lead_id,
            scope_key,
            Check.NOTHING_CHECKABLE,
            message="the scope deletes no activities: tasks, notes and audit records cannot be read back",
        )
    try:
        activities = hook.get_activities_of(lead_id, window.event_codes)
    except ActivityReadError as exc:
        gone = " (deleted or merged since its reset was queued?)" if exc.final else ""
        return VerificationRow(lead_id, scope_key, Check.UNVERIFIABLE, message=f"{exc}{gone}")
    except RateBudgetError as exc:
        return VerificationRow(lead_id, scope_key, Check.UNVERIFIABLE, message=f"rate budget: {exc}")
    return classify(lead_id, scope_key, window, activities)


def sample_leads(lead_ids: Iterable[str], size: int, run_key: str) -> list[str]:
    """``size`` of the distinct ``lead_ids``, drawn with ``random.Random(run_key)`` from their sorted list:
    the same run always reads the same leads, whatever order they come in. Returned sorted."""
    population = sorted(set(lead_ids))
    if size >= len(population):
        return population
    return sorted(random.Random(run_key).sample(population, size))


def lead_results(rows: Iterable[VerificationRow]) -> dict[str, Check]:
    """Each lead's overall check from its rows (one per scope): the worst of them."""
    by_lead: dict[str, set[Check]] = defaultdict(set)
    for row in rows:
        by_lead[row.lead_id].add(Check(row.result))
    return {lead: next(c for c in _PRECEDENCE if c in checks) for lead, checks in by_lead.items()}


def counts(results: Mapping[str, Check]) -> dict[str, int]:
    found = {str(check): 0 for check in Check}
    for check in results.values():
        found[str(check)] += 1
    return found


@dataclass(frozen=True)
class VerifyStep:
    """One poke of the verify task: ``done`` (with the task's small result), or to be poked again."""

    done: bool
    status: dict[str, Any]


def verify_run(
    store: StateStore,
    key: str,
    params: VerifyParams,
    *,
    hook_factory: Callable[[], LeadSquaredHook],
    now: Callable[[], float] = time.time,
) -> VerifyStep:
    """Read back the run's sample (only what is not settled yet) and say whether verification is over.

    Over when: the run sent nothing to verify (no plan, dry run, ``verify_sample`` 0, nothing queued), no
    sampled lead still holds activities (each is verified, unverifiable or has nothing checkable),
    ``verify_delay_seconds`` have passed since the run's last reset was queued (this round's checks are then
    final), or the keys were refused.
    """
    try:
        run = store.load_run(key)
    except LookupError:
        return VerifyStep(True, {"skipped": "the run has no plan: nothing was sent"})
    if run.dry_run:
        return VerifyStep(True, {"skipped": "dry run: nothing was sent"})
    if params.sample == 0:
        return VerifyStep(True, {"off": "verify_sample is 0"})
    queued = store.queued_leads(key)
    if not queued:
        return VerifyStep(True, {"skipped": "no lead was queued"})
    started = now()
    queued_of: dict[str, list[QueuedLead]] = defaultdict(list)
    for lead in queued:
        queued_of[lead.lead_id].append(lead)
    last_queued = max((lead.queued_at for lead in queued if lead.queued_at is not None), default=started)
    deadline = last_queued + params.delay_seconds
    last_round = started >= deadline
    sample = sample_leads(queued_of, params.sample, key)
    settled = {(r.lead_id, r.scope_key) for r in store.verification_rows(key) if r.result in FINAL_CHECKS}
    todo = [lead for lead_id in sample for lead in queued_of[lead_id] if (lead.lead_id, lead.scope_key) not in settled]
    scopes = store.load_scopes({lead.scope_key for lead in todo})
    hook = hook_factory() if todo else None
    refused: str | None = None
    day_note: str | None = None
    left = hook.budget.day_left() if hook is not None else None
    if left is not None and left < len(todo):  # the day is tight: read fewer, and say so
        day_note = (
            f"{min(left, len(todo))} of {len(todo)} sampled reads made: today's share of the account's daily "
            "quota holds no more"
        )
        log.warning("verification: %s", day_note)
    for n, lead in enumerate(todo):
        if refused is None and left is not None and n >= left:
            refused = "not read: today's share of the account's daily quota is spent"
        if refused is None and hook is not None:  # a hook exists whenever there is a lead to read
            window = ScopeWindow.from_scope(scopes[lead.scope_key], lead.queued_at)
            try:
                check = check_lead(hook, lead.lead_id, lead.scope_key, window)
            except LeadSquaredAuthError as exc:
                refused = f"not read: LeadSquared refused the keys: {exc}"
            except DailyQuotaSpent as exc:
                refused = f"not read: {exc}"
        if refused is not None:
            check = VerificationRow(lead.lead_id, lead.scope_key, Check.UNVERIFIABLE, message=refused)
        log.info("lead %s: %s (%s)", lead.lead_id, check.result, check.message)
        store.save_verification(key, [check])  # as it goes: a killed poke keeps what it read
    sampled = set(sample)
    results = lead_results(r for r in store.verification_rows(key) if r.lead_id in sampled)
    tally = counts(results)
    status: dict[str, Any] = {"sampled": len(sample), "of_queued": len(queued_of), **tally}
    if day_note or (refused and "daily quota" in refused):
        status["daily_quota"] = day_note or refused
    # Only leads still holding activities are waited for: an unverifiable read was already retried (it is
    # read again only if a later poke happens anyway).
    waiting = tally[Check.STILL_PRESENT]
    if not waiting or last_round or refused:
        return VerifyStep(True, status)
    wait = round(deadline - now())
    log.info(
        "%d sampled lead(s) still hold activities: LeadSquared has until %s UTC (%s s more) to carry their resets out",
        waiting,
        datetime.fromtimestamp(deadline, UTC).isoformat(sep=" ", timespec="seconds"),
        max(wait, 0),
    )
    return VerifyStep(False, status)


def not_checked(scopes: Iterable[ResetScope]) -> str:
    """What the run reset that no read can confirm (tasks, notes, audit records), in one sentence."""
    kinds: list[str] = []
    scopes = list(scopes)
    audits = sorted({a for s in scopes for a in s.audit_types})
    if audits:
        kinds.append(f"audit records ({', '.join(audits)})")
    if any(s.task_type_ids for s in scopes):
        kinds.append("tasks")
    if any(s.delete_notes for s in scopes):
        kinds.append("notes")
    if not kinds:
        return "nothing: the run deleted activities only"
    return f"{', '.join(kinds)}: ProspectActivity.Retrieve reads activities only, so these were not checked"


def verification_summary(
    store: StateStore, key: str, *, dry_run: bool, queued: int, params: VerifyParams, finished: bool
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The report's ``verification`` part and its ``still_present_leads`` (the first 10, with counts and ids).

    :param finished: the verify task finished (it left its result); when it did not while there was something
        to verify, the part says ``missing`` and the report fails the run.
    """
    if dry_run:
        return {"skipped": "dry run: nothing was sent, so nothing was verified"}, []
    if params.sample == 0:
        return {"off": "verify_sample is 0: no lead was read back"}, []
    if not queued:
        return {"skipped": "no lead was queued by this run: nothing to verify"}, []
    if not finished:
        return {"missing": "the verify task did not finish: see its log, then clear it to verify again"}, []
    rows = store.verification_rows(key)
    results = lead_results(rows)
    scopes = store.load_scopes({row.scope_key for row in rows}) if rows else {}
    part: dict[str, Any] = {
        "sampled": len(results),
        "of_queued": queued,
        **counts(results),
        "delay_seconds": params.delay_seconds,
        "not_checked": not_checked(scopes.values()),
    }
    still = [row for row in rows if row.result == Check.STILL_PRESENT]
    shown = [
        {
            "lead_id": row.lead_id,
            "remaining_count": row.remaining_count,
            "remaining_ids": list(row.remaining_ids[:SHOWN_IDS]),
            "message": row.message,
        }
        for row in still[:10]
    ]
    return part, shown
