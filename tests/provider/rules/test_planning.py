"""Planning rules: window, cleaning, guards and batches (no Airflow run needed)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from leadsquared_provider.exceptions import PlanError
from leadsquared_provider.rules.planning import (
    MAX_BATCHES,
    batch_bounds,
    batch_label,
    batch_ranges,
    build_scope,
    check_blast_radius,
    clean_candidates,
    resolve_window,
)

GUID = "fea01c86-5617-44d6-8469-4dbc409ab8f8"
START, END = datetime(2020, 10, 14, 18, 30, tzinfo=UTC), datetime(2020, 10, 15, 18, 30, tzinfo=UTC)


@pytest.mark.parametrize("run_type", ["scheduled", "backfill"])
def test_interval_runs_reset_their_interval_to_the_last_second(run_type):
    window = resolve_window(from_date=None, to_date=None, run_type=run_type, interval_start=START, interval_end=END)
    scope = build_scope({"delete_notes": True}, window, allow_all_time=False)
    assert (scope.from_text, scope.to_text) == ("2020-10-14 18:30:00", "2020-10-15 18:29:59")


def test_params_window_wins_and_manual_without_window_is_all_time():
    window = resolve_window(
        from_date="2020-10-15T00:00:00+05:30",
        to_date="2020-10-16T23:59:59+05:30",
        run_type="manual",
        interval_start=START,
        interval_end=END,
    )
    scope = build_scope({"delete_notes": True}, window, allow_all_time=False)
    assert (scope.from_text, scope.to_text) == ("2020-10-14 18:30:00", "2020-10-16 18:29:59")  # the seed's example
    assert resolve_window(from_date=None, to_date=None, run_type="manual", interval_start=START, interval_end=END) == (
        None,
        None,
    )
    with pytest.raises(PlanError, match="allow_all_time=true"):
        build_scope({"delete_notes": True}, (None, None), allow_all_time=False)
    assert build_scope({"delete_notes": True}, (None, None), allow_all_time=True).from_date is None


def test_zero_length_interval_is_refused_with_the_fix_named():
    with pytest.raises(PlanError, match="CronDataIntervalTimetable"):
        resolve_window(from_date=None, to_date=None, run_type="scheduled", interval_start=START, interval_end=START)


def test_cleaning_trims_dedupes_and_sets_aside_non_guids():
    raw = [f"  {GUID.upper()} ", GUID, None, "", "   ", "nope", "'; DROP TABLE x; --", 42, GUID + "0"]
    cleaned = clean_candidates(raw)
    assert cleaned.valid == [GUID]
    assert (cleaned.nulls, cleaned.duplicates) == (3, 1)
    assert [value for value, _ in cleaned.invalid] == ["nope", "'; DROP TABLE x; --", "42", GUID + "0"]
    assert all("lead id" in reason for _, reason in cleaned.invalid)


def test_the_hard_guard_refuses_over_max_leads_per_run_and_names_the_override():
    with pytest.raises(PlanError, match=r"10001 candidate leads exceed max_leads_per_run=10000: nothing was sent"):
        check_blast_radius(10_001, max_leads=10_000)
    check_blast_radius(10_000, max_leads=10_000)  # at the limit: through (a tenfold jump asks, it does not refuse)


def test_batches_cover_every_lead_once_and_stay_under_max_map_length():
    batches = list(batch_ranges(1_000_000, 200))
    assert len(batches) == MAX_BATCHES <= 1024
    assert batches[0] == {"batch": 1, "first": 1, "last": 1000}
    assert batches[-1]["last"] == 1_000_000
    assert sum(b["last"] - b["first"] + 1 for b in batches) == 1_000_000
    assert list(batch_ranges(5, 2)) == [
        {"batch": 1, "first": 1, "last": 2},
        {"batch": 2, "first": 3, "last": 4},
        {"batch": 3, "first": 5, "last": 5},
    ]
    assert list(batch_ranges(0, 200)) == []
    assert batch_label(batches[2]) == "batch 3: leads 2001–3000"
    # A batch's bounds from its number alone (XCom carries only the numbers).
    assert [batch_bounds(b["batch"], 1000, 1_000_000) for b in batches] == batches
    assert batch_bounds(3, 2, 5) == {"batch": 3, "first": 5, "last": 5}
    with pytest.raises(PlanError, match="batch 4 does not exist"):
        batch_bounds(4, 2, 5)
