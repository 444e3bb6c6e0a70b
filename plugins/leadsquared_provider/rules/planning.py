"""Planning a run: its window, its cleaned candidates, its batches and the blast-radius guards.

Pure functions (no Airflow, no I/O) so that every rule is tested on its own.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from leadsquared_provider.exceptions import InvalidResetRequest, PlanError
from leadsquared_provider.rules.request import ResetScope, normalize_lead_id

if TYPE_CHECKING:
    from leadsquared_provider.settings import LeadSquaredSettings

# Below Airflow's [core] max_map_length (1024), with room to spare.
MAX_BATCHES = 1000
INTERVAL_RUN_TYPES = frozenset({"scheduled", "backfill"})


def resolve_window(
    *,
    from_date: Any,
    to_date: Any,
    run_type: str,
    interval_start: datetime | None,
    interval_end: datetime | None,
) -> tuple[datetime | str | None, datetime | str | None]:
    """The run's window: explicit params win; scheduled and backfill runs reset their data interval.

    ``ToDate`` is inclusive to the second, so an interval ``[start, end)`` becomes ``start .. end - 1 s``.
    A manual run without window params means "all time" (the scope refuses it without ``allow_all_time``).
    """
    from_param, to_param = from_date, to_date
    if from_param or to_param:
        return from_param or None, to_param or None
    if str(run_type) in INTERVAL_RUN_TYPES and interval_start is not None and interval_end is not None:
        if interval_end <= interval_start:
            raise PlanError(
                f"the run's data interval {interval_start} .. {interval_end} is empty: schedule the DAG with "
                "a timetable that has real intervals (CronDataIntervalTimetable), not a cron string"
            )
        return interval_start, interval_end - timedelta(seconds=1)
    return None, None


def build_scope(categories: Mapping[str, Any], window: tuple[Any, Any], *, allow_all_time: bool) -> ResetScope:
    """The run's :class:`ResetScope` from its categories and window; errors name the param at fault."""
    try:
        return ResetScope.from_mapping(
            {**categories, "from_date": window[0], "to_date": window[1], "allow_all_time": allow_all_time}
        )
    except InvalidResetRequest as exc:
        raise PlanError(f"params refused, nothing was sent: {exc}") from None
    except (OverflowError, ValueError) as exc:
        raise PlanError(f"params refused, nothing was sent: from_date/to_date: {exc}") from None


@dataclass
class CleanedCandidates:
    """Valid, distinct, normalized lead ids in first-seen order, and what was dropped and why."""

    valid: list[str] = field(default_factory=list)
    invalid: list[tuple[str, str]] = field(default_factory=list)  # (raw value, reason)
    nulls: int = 0
    duplicates: int = 0
    truncated: bool = False  # reading stopped early: there are more candidates than were read


def clean_candidates(
    raw_ids: Iterable[object], *, max_invalid_kept: int = 10_000, stop_after: int | None = None
) -> CleanedCandidates:
    """Trim, lower-case, drop nulls and duplicates, and set aside what is not a LeadSquared GUID.

    Reading stops once ``stop_after`` valid leads are found (``max_leads_per_run + 1``: enough to refuse
    the run), so an oversized result never sits in memory.
    """
    result = CleanedCandidates()
    seen: set[str] = set()
    for raw in raw_ids:
        if stop_after is not None and len(result.valid) >= stop_after:
            result.truncated = True
            break
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            result.nulls += 1
            continue
        try:
            lead_id = normalize_lead_id(raw)
        except InvalidResetRequest as exc:
            if len(result.invalid) < max_invalid_kept:
                result.invalid.append((str(raw)[:200], str(exc)))
            continue
        if lead_id in seen:
            result.duplicates += 1
            continue
        seen.add(lead_id)
        result.valid.append(lead_id)
    return result


def check_blast_radius(count: int, *, max_leads: int) -> None:
    """Refuse a run before any request when it would touch more leads than ``max_leads_per_run``. (A run
    that merely looks large asks a person instead: :mod:`~leadsquared_provider.rules.approval`.)"""
    if count > max_leads:
        raise PlanError(
            f"{count} candidate leads exceed max_leads_per_run={max_leads}: nothing was sent. "
            "If this is meant, trigger the run with a higher max_leads_per_run param."
        )


def batch_ranges(count: int, batch_size: int, max_batches: int = MAX_BATCHES) -> Iterator[dict[str, int]]:
    """Batch descriptors ``{"batch", "first", "last"}`` (1-based, inclusive) covering ``1..count``.

    The batch size grows when needed so that there are never more than ``max_batches`` of them.
    """
    if batch_size < 1:
        raise PlanError(f"batch_size must be at least 1, got {batch_size}")
    size = max(batch_size, math.ceil(count / max_batches)) if count else batch_size
    for index, first in enumerate(range(1, count + 1, size), start=1):
        yield {"batch": index, "first": first, "last": min(first + size - 1, count)}


def batch_bounds(number: int, size: int, total: int) -> dict[str, int]:
    """The descriptor of batch ``number`` (1-based) of ``total`` leads in batches of ``size``."""
    if not 1 <= number <= math.ceil(total / size):
        raise PlanError(f"batch {number} does not exist: {total} leads in batches of {size}")
    first = (number - 1) * size + 1
    return {"batch": number, "first": first, "last": min(first + size - 1, total)}


def batch_time_limit(leads: int, settings: LeadSquaredSettings) -> timedelta:
    """The reset task's ``execution_timeout``: four times the batch's calls at the connection's share of the
    rate (room for co-tenants, retries and rate-limit answers), plus one lead's longest retry chain of
    whole-call deadlines, plus two minutes. A task past it fails and its try's retry takes the unsent leads."""
    per_second = settings.rate_limit * settings.rate_share / settings.rate_window_seconds
    calls = 4 * leads / per_second if per_second > 0 else 0.0
    longest_lead = (settings.max_retries + 1) * (settings.timeout_seconds + settings.backoff_max_seconds)
    return timedelta(seconds=math.ceil(calls + longest_lead + 120))


def batch_label(batch: Mapping[str, int]) -> str:
    return f"batch {batch['batch']}: leads {batch['first']}–{batch['last']}"
