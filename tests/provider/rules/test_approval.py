"""The approval gate's pure rules: which runs wait for a person, and the preview they show."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from leadsquared_provider.rules.approval import (
    ApprovalDecision,
    ApprovalRequest,
    BackfillSpan,
    Decision,
    LeadActivities,
    Reason,
    approval_reasons,
    backfill_reach,
    duration_text,
    preview_body,
    preview_subject,
    window_days,
)
from leadsquared_provider.rules.request import ResetScope

GUARDS = {"threshold": 1000, "baseline": None, "max_growth": 10, "growth_floor": 100, "days": 1.0, "max_days": 7}
DAY = ResetScope(
    activity_event_codes=(166, 167),
    audit_types=("StageChange",),
    from_date=datetime(2026, 11, 21, 18, 30, tzinfo=UTC),
    to_date=datetime(2026, 11, 22, 18, 29, 59, tzinfo=UTC),
)


@pytest.mark.parametrize(
    ("leads", "changes", "reasons"),
    [
        pytest.param(1000, {}, (), id="at-the-threshold-passes"),
        pytest.param(1001, {}, (Reason.OVER_THRESHOLD,), id="over-the-threshold"),
        pytest.param(1000, {"baseline": 100}, (), id="exactly-10x-the-usual-passes"),
        pytest.param(900, {"baseline": 50}, (Reason.GROWTH,), id="growth-guard-trips"),
        pytest.param(90, {"baseline": 1}, (), id="under-the-growth-floor"),
        pytest.param(900, {"baseline": None}, (), id="no-baseline-no-growth-guard"),
        pytest.param(5, {"days": None}, (Reason.ALL_TIME,), id="all-time"),
        pytest.param(5, {"days": 7.0}, (), id="a-week-is-not-over-7-days"),
        pytest.param(5, {"days": 7.5}, (Reason.LONG_WINDOW,), id="longer-than-max-days"),
        pytest.param(5, {"backfill_days": 8.0}, (Reason.LONG_BACKFILL,), id="a-backfill-longer-than-max-days"),
        pytest.param(5, {"backfill_days": 7.0}, (), id="a-backfill-of-max-days-passes"),
        pytest.param(5, {"backfill_days": None}, (), id="not-a-backfill"),
        pytest.param(0, {"backfill_days": 30.0}, (), id="a-backfill-run-with-nothing-to-send-never-asks"),
        pytest.param(0, {"days": None, "threshold": 0}, (), id="nothing-to-send-never-asks"),
        pytest.param(
            5000,
            {"baseline": 100, "days": None},
            (Reason.OVER_THRESHOLD, Reason.GROWTH, Reason.ALL_TIME),
            id="every-reason-named",
        ),
    ],
)
def test_which_runs_need_a_person(leads, changes, reasons):
    assert approval_reasons(leads, **{**GUARDS, **changes}) == reasons


@pytest.mark.parametrize(
    ("span", "days", "more"),
    [
        pytest.param(BackfillSpan(1.0, before=0, after=0, reach=8), 1.0, False, id="alone"),
        pytest.param(BackfillSpan(1.0, before=3, after=0, reach=8), 4.0, False, id="the-last-of-four-days"),
        pytest.param(BackfillSpan(1.0, before=2, after=5, reach=8), 8.0, False, id="inside-eight-days"),
        pytest.param(BackfillSpan(1.0, before=0, after=8, reach=8), 9.0, True, id="the-first-of-thirty-days"),
        pytest.param(BackfillSpan(0.25, before=4, after=3, reach=29), 2.0, False, id="six-hourly-runs"),
    ],
)
def test_a_backfills_span_is_its_runs_found_times_the_interval(span, days, more):
    assert (span.days, span.more) == (days, more)


@pytest.mark.parametrize(
    ("max_days", "step_days", "reach"),
    [(7, 1.0, 8), (2, 1.0, 3), (7, 7.0, 2), (1, 0.25, 5), (7, 2.0, 4)],
)
def test_a_backfill_is_looked_at_just_far_enough_to_tell_it_is_longer_than_max_days(max_days, step_days, reach):
    assert backfill_reach(max_days, step_days) == reach
    assert BackfillSpan(step_days, before=reach, after=0, reach=reach).days > max_days  # all found: asks


def test_a_windows_length_counts_its_inclusive_last_second_and_no_window_is_all_time():
    assert window_days(DAY) == 1.0
    assert window_days(ResetScope(delete_notes=True, allow_all_time=True)) is None


def request(**changes) -> ApprovalRequest:
    base = ApprovalRequest(
        reasons=(Reason.OVER_THRESHOLD, Reason.GROWTH),
        leads=2400,
        threshold=1000,
        baseline=200,
        max_growth=10,
        days=1.0,
        max_days=7,
        sample=("aaaaaaaa-0000-4000-8000-000000000001", "aaaaaaaa-0000-4000-8000-000000000002"),
        calls=2420,
        calls_per_second=4.95,
        day_left=9680,
    )
    return ApprovalRequest(**{**base.__dict__, **changes})


def test_the_preview_says_why_what_how_long_and_how_much_of_the_day():
    body = preview_body(
        request(), DAY, dag_id="leadsquared_reset", run_id="manual__1", timezone="Asia/Kolkata", leads_url="U/leads"
    )
    assert (
        preview_subject(request(), "leadsquared_reset")
        == "Approve resetting 2,400 LeadSquared leads? (leadsquared_reset)"
    )
    for line in (
        "Run `manual__1` of **leadsquared_reset** waits for approval before it resets **2,400 leads**. "
        "A reset cannot be undone.",
        "- 2,400 leads is over approval_threshold=1,000",
        "- 2,400 leads is more than 10 x the usual 200 (the median of the DAG's recent runs; max_growth_factor)",
        "| Window (UTC) | 2026-11-21 18:30:00 .. 2026-11-22 18:29:59 |",
        "| Window (Asia/Kolkata) | 2026-11-22 00:00:00 .. 2026-11-22 23:59:59 |",
        "| Deletes | activities with event codes 166, 167; audit records StageChange |",
        "| Candidates | 2,400 (usual 200 (median of recent runs); asks over 10 x) |",
        "| Estimated duration | about 8 min 09 s (2,420 calls at 4.95 calls/s) |",
        "| Daily quota | 2,420 of the 9,680 calls left in today's share (25%) |",
        "**Sample of leads** (2 of 2,400; each opens its resets)",
        "- [aaaaaaaa-0000-4000-8000-000000000001](U/leads?lead_id=aaaaaaaa-0000-4000-8000-000000000001)",
    ):
        assert line in body.splitlines(), line
    assert "Activities each would lose" not in body


@pytest.mark.parametrize(
    ("changes", "line"),
    [
        pytest.param({"day_left": None}, "| Daily quota | no daily quota stated on the connection |", id="no-quota"),
        pytest.param({"day_left": 0}, "| Daily quota | 2,420 calls; today's share is spent |", id="spent"),
        pytest.param(
            {"calls_per_second": None},
            "| Estimated duration | 2,420 calls (the account's rate is unknown) |",
            id="rate-unknown",
        ),
        pytest.param({"baseline": None}, "| Candidates | 2,400 (no earlier runs to compare with) |", id="first-run"),
    ],
)
def test_the_preview_says_what_it_does_not_know(changes, line):
    body = preview_body(request(**changes), DAY, dag_id="d", run_id="r", timezone="UTC", leads_url="U")
    assert line in body.splitlines()


def test_the_preview_shows_the_activities_read_and_the_reads_that_failed():
    activities = (LeadActivities("a", 3), LeadActivities("b", None, "not found"))
    body = preview_body(request(activities=activities), DAY, dag_id="d", run_id="r", timezone="UTC", leads_url="U")
    assert "- `a`: 3" in body.splitlines() and "- `b`: not read (not found)" in body.splitlines()


def test_an_all_time_window_reads_from_lead_creation_to_now():
    scope = ResetScope(delete_notes=True, allow_all_time=True)
    body = preview_body(
        request(reasons=(Reason.ALL_TIME,), days=None), scope, dag_id="d", run_id="r", timezone="UTC", leads_url="U"
    )
    assert "| Window (UTC) | lead creation .. now |" in body
    assert "- the window is open-ended: everything since each lead was created" in body
    assert "| Deletes | notes |" in body


@pytest.mark.parametrize(
    ("more", "said"),
    [
        (False, "the run is part of a backfill of ~4 days, over approval_max_window_days=2; one answer holds"),
        (True, "the run is part of a backfill of more than 4 days, over approval_max_window_days=2"),
    ],
)
def test_the_preview_says_the_run_is_part_of_a_long_backfill(more, said):
    asks = request(reasons=(Reason.LONG_BACKFILL,), max_days=2, backfill_days=4.0, backfill_more=more)
    body = preview_body(asks, DAY, dag_id="d", run_id="backfill__x", timezone="UTC", leads_url="http://x/leads")
    assert f"- {said}" in body


def test_the_request_travels_through_json_unchanged():
    original = request(
        activities=(LeadActivities("a", 3), LeadActivities("b", None, "not found")),
        backfill_days=9.0,
        backfill_more=True,
    )
    assert ApprovalRequest.from_mapping(original.to_dict()) == original
    assert not request(reasons=()).needed


@pytest.mark.parametrize(
    ("decision", "text", "lets_through"),
    [
        (ApprovalDecision(Decision.NOT_NEEDED), "not needed", True),
        (
            ApprovalDecision(Decision.APPROVED, "alice", 1_800_000_000),
            "approved by alice at 2027-01-15 08:00:00 UTC",
            True,
        ),
        (ApprovalDecision(Decision.WAITING), "waiting for a person", False),
        (
            ApprovalDecision(Decision.REJECTED, "bob", 1_800_000_000),
            "rejected by bob at 2027-01-15 08:00:00 UTC: nothing was sent",
            False,
        ),
        (
            ApprovalDecision(Decision.TIMED_OUT, None, 1_800_000_000),
            "not answered in time (rejected at 2027-01-15 08:00:00 UTC): nothing was sent",
            False,
        ),
        (
            ApprovalDecision(Decision.APPROVED, "alice", 1_800_000_000, "for the backfill, at run backfill__1"),
            "approved by alice at 2027-01-15 08:00:00 UTC (for the backfill, at run backfill__1)",
            True,
        ),
        (
            ApprovalDecision(Decision.REJECTED, "bob", 1_800_000_000, "for the backfill, at run backfill__1"),
            "rejected by bob at 2027-01-15 08:00:00 UTC (for the backfill, at run backfill__1): nothing was sent",
            False,
        ),
        (
            ApprovalDecision(Decision.REFUSED, "admin", None, "admin triggered this run"),
            "approval by admin refused: admin triggered this run; nothing was sent",
            False,
        ),
    ],
    ids=lambda value: value.decision.value if isinstance(value, ApprovalDecision) else None,
)
def test_each_decision_reads_as_one_line_and_only_approval_lets_a_run_through(decision, text, lets_through):
    assert decision.as_text() == text
    assert decision.decision.lets_through is lets_through


@pytest.mark.parametrize(
    ("seconds", "text"), [(12.2, "13 s"), (250, "4 min 10 s"), (10_920, "3 h 02 min"), (60, "1 min 00 s")]
)
def test_durations_read_in_hours_minutes_or_seconds(seconds, text):
    assert duration_text(seconds) == text
