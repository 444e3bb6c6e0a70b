"""Verifying resets: the hook's activity read (paging, budget, answers it does not trust), the classification
of what remains, the reproducible sample, and the verify step with the state store, against the emulator."""

from __future__ import annotations

import random
import threading
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from leadsquared_provider.exceptions import ActivityReadError, LeadSquaredAuthError, PlanError, ResetFailuresError
from leadsquared_provider.hooks.leadsquared import LeadSquaredHook
from leadsquared_provider.rules.outcomes import Outcome, ResetResult
from leadsquared_provider.rules.params import RunParams
from leadsquared_provider.rules.report_text import format_report
from leadsquared_provider.rules.request import ResetRequest, ResetScope
from leadsquared_provider.steps.report import report_run
from leadsquared_provider.steps.verify import (
    Check,
    ScopeWindow,
    VerifyParams,
    classify,
    sample_leads,
    verify_run,
)
from leadsquared_provider.store import BatchScope, LeadResult, RunRecord, StateStore, parse_run_key
from lsq_emulator import EmulatorConfig, run_emulator
from tests.conftest import lsq_lead, new_lead_id
from tests.provider.hooks import test_answers
from tests.provider.hooks.test_answers import Reply, error

scripted = test_answers.scripted  # the fixture serving scripted answers on 127.0.0.1

# The window of a run for 2026-05-02 in India time, in UTC (ToDate inclusive).
FROM, TO = "2026-05-01 18:30:00", "2026-05-02 18:29:59"
SCOPE = ResetScope(
    activity_event_codes=(166, 167),
    audit_types=("StageChange",),
    from_date=datetime(2026, 5, 1, 18, 30, tzinfo=UTC),
    to_date=datetime(2026, 5, 2, 18, 29, 59, tzinfo=UTC),
)
WINDOW = ScopeWindow.from_scope(SCOPE)
RETRIEVE = "ProspectActivity.svc/Retrieve"


def activity(code: int, created: str, activity_id: str | None = None) -> dict[str, Any]:
    return {"Id": activity_id or str(uuid.uuid4()), "ActivityEvent": code, "CreatedOn": created}


def bounds_lead(lead_id: str | None = None) -> dict[str, Any]:
    """Activities on and around the window's bounds, with the scope's codes and another one."""
    return lsq_lead(
        lead_id,
        {
            "activities": [
                activity(166, "2026-05-01 18:29:59", "before-from"),  # one second before the window
                activity(166, FROM, "at-from"),  # on its first second
                activity(167, "2026-05-02 06:00:00", "inside"),
                activity(167, TO, "at-to"),  # on its last second
                activity(166, "2026-05-02 18:30:00", "after-to"),  # one second after it
                activity(200, "2026-05-02 06:00:00", "other-code"),  # another event code, inside the window
            ]
        },
    )


def retrieve_calls(emu) -> list[dict]:
    return [c for c in emu.calls() if c["path"].endswith(RETRIEVE)]


@pytest.fixture
def served():
    with run_emulator(EmulatorConfig(rate_limit=1000, rate_window_seconds=1.0)) as emu:
        yield emu


@pytest.fixture
def hook(served, lsq_connection) -> LeadSquaredHook:
    return LeadSquaredHook(
        leadsquared_conn_id=lsq_connection(served.base_url, rate_limit=1000, rate_window_seconds=1, max_retries=2)
    )


# -- the hook's read ---------------------------------------------------------------------------------------


def test_activities_are_paged_25_a_call_until_record_count(served, hook):
    lead_id = new_lead_id()
    many = [activity(166, f"2026-05-02 0{n % 10}:00:{n:02d}") for n in range(60)]
    served.add_leads([lsq_lead(lead_id, {"activities": [*many, *(activity(200, FROM) for _ in range(7))]})])

    found = hook.get_activities(lead_id.upper(), event_code=166)

    assert [a["Id"] for a in found] == [a["Id"] for a in many]
    assert {(a["EventCode"], a["ActivityType"]) for a in found} == {(166, 2)}
    calls = retrieve_calls(served)
    assert [c["body"] for c in calls] == [
        {"Parameter": {"ActivityEvent": 166}, "Paging": {"Offset": offset, "RowCount": "25"}}
        for offset in ("0", "25", "50")
    ]
    assert {(c["method"], c["query"], c["account"]) for c in calls} == {("POST", f"leadId={lead_id}", "demo")}

    served.clear_calls()
    assert len(hook.get_activities(lead_id)) == 67  # no event code: every activity of the lead
    assert [c["body"]["Parameter"] for c in retrieve_calls(served)] == [{}, {}, {}]


def test_a_lead_without_activities_takes_one_call(served, hook):
    lead_id = new_lead_id()
    served.add_leads([lsq_lead(lead_id)])
    assert hook.get_activities(lead_id, event_code=166) == []
    assert len(retrieve_calls(served)) == 1


def test_several_codes_take_one_unfiltered_call_when_the_lead_has_at_most_25_activities(served, hook):
    lead_id = new_lead_id()
    served.add_leads([bounds_lead(lead_id)])

    found = hook.get_activities_of(lead_id, [166, 167])

    assert sorted((code, a["Id"]) for code, a in found) == [
        (166, "after-to"),
        (166, "at-from"),
        (166, "before-from"),
        (167, "at-to"),
        (167, "inside"),
    ]  # the other code's activity is left out
    assert [(c["body"]["Parameter"], c["body"]["Paging"]["Offset"]) for c in retrieve_calls(served)] == [({}, "0")]


@pytest.mark.parametrize(
    ("others", "expected"),
    [
        # 10 + 10 of the codes and 40 others: 60 activities, 3 pages; 2 more calls <= 2 codes: read on unfiltered
        pytest.param(40, [({}, "0"), ({}, "25"), ({}, "50")], id="unfiltered-is-cheaper"),
        # 10 + 10 and 200 others: 9 pages; 8 more calls > 2 codes: one read per code instead, in the order given
        pytest.param(200, [({}, "0"), ({"ActivityEvent": 167}, "0"), ({"ActivityEvent": 166}, "0")], id="by-code"),
    ],
)
def test_a_lead_with_many_activities_is_read_whichever_way_takes_fewer_calls(served, hook, others, expected):
    lead_id = new_lead_id()
    mine = [activity(code, f"2026-05-02 0{n}:00:00") for code in (166, 167) for n in range(10)]
    other = [activity(200, "2026-05-02 06:00:00") for _ in range(others)]
    served.add_leads([lsq_lead(lead_id, {"activities": [*other[: others // 2], *mine, *other[others // 2 :]]})])

    found = hook.get_activities_of(lead_id, [167, 166, 167])

    assert sorted(a["Id"] for _, a in found) == sorted(a["Id"] for a in mine)
    assert all(a["EventCode"] == code for code, a in found)
    assert [(c["body"]["Parameter"], c["body"]["Paging"]["Offset"]) for c in retrieve_calls(served)] == expected


def test_an_unfiltered_activity_without_a_readable_code_makes_the_read_go_code_by_code(scripted, lsq_connection):
    inside = {"Id": "x", "CreatedOn": FROM}  # no EventCode: it might be one of the scope's codes
    server = scripted(
        Reply(200, {"RecordCount": 1, "ProspectActivities": [inside]}),
        Reply(200, {"RecordCount": 1, "ProspectActivities": [inside]}),  # asked for 166: the API filtered
        Reply(200, {"RecordCount": 0, "ProspectActivities": []}),
    )
    hook = test_answers.hook_for(lsq_connection, server)

    found = hook.get_activities_of(new_lead_id(), [166, 167])

    assert found == [(166, inside)]
    assert [json_body(r)["Parameter"] for r in server.requests] == [{}, {"ActivityEvent": 166}, {"ActivityEvent": 167}]


@pytest.mark.parametrize(
    ("lead_id", "event_code"),
    [
        pytest.param("not-a-guid", None, id="lead-not-guid"),
        pytest.param(str(uuid.uuid4()), 0, id="code-zero"),
        pytest.param(str(uuid.uuid4()), "166", id="code-text"),
        pytest.param(str(uuid.uuid4()), True, id="code-bool"),
    ],
)
def test_bad_read_is_refused_before_sending(served, hook, lead_id, event_code):
    with pytest.raises(ValueError, match=r"lead id|event code"):
        hook.get_activities(lead_id, event_code=event_code)
    assert served.calls() == []


@pytest.mark.parametrize(
    ("fault", "outcome"),
    [
        pytest.param("fault_5xx_rate", "fault_5xx", id="500"),
        pytest.param("fault_html_rate", "html", id="html-502"),
        pytest.param("fault_non_json_200_rate", "non_json", id="non-json-200"),
        pytest.param("fault_drop_rate", "dropped", id="dropped-connection"),
    ],
)
def test_reads_without_a_trusted_answer_are_retried_then_unverifiable(served, hook, fault, outcome):
    lead_id = new_lead_id()
    served.add_leads([bounds_lead(lead_id)])
    served.configure(**{fault: 1.0})

    with pytest.raises(ActivityReadError) as raised:
        hook.get_activities(lead_id, event_code=166)
    check = verify_one(hook, lead_id)

    assert raised.value.final is False and "gave up after 3 attempt(s)" in str(raised.value)
    assert [c["outcome"] for c in retrieve_calls(served)] == [outcome] * 6  # 1 + max_retries (2), twice
    assert check.result is Check.UNVERIFIABLE and "gave up after 3 attempt(s)" in check.message


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"RecordCount": 1, "ProspectActivities": "none"}, id="activities-not-a-list"),
        pytest.param({"RecordCount": 1, "ProspectActivities": ["x"]}, id="activity-not-an-object"),
        pytest.param({"ProspectActivities": []}, id="no-record-count"),
        pytest.param({"RecordCount": "1", "ProspectActivities": []}, id="record-count-text"),
        pytest.param([{"Id": "a"}], id="json-list"),
        pytest.param({}, id="empty-object"),
        pytest.param(error("MXException", "try later"), id="generic-error-object"),
        pytest.param("<html><body>maintenance</body></html>", id="html"),
    ],
)
def test_an_answer_that_is_not_an_activity_list_is_not_trusted(scripted, lsq_connection, body):
    server = scripted(Reply(200, body))
    hook = test_answers.hook_for(lsq_connection, server, max_retries=2)

    with pytest.raises(ActivityReadError, match="gave up after 3 attempt"):
        hook.get_activities(new_lead_id(), event_code=166)
    assert len(server.requests) == 3


def test_a_count_that_changes_while_paging_reads_again_from_the_start(scripted, lsq_connection):
    lead_id = new_lead_id()
    page = [{"Id": f"a{n}", "EventCode": 166, "CreatedOn": FROM} for n in range(25)]
    server = scripted(
        Reply(200, {"RecordCount": 30, "ProspectActivities": page}),
        Reply(200, {"RecordCount": 29, "ProspectActivities": page[:4]}),  # one was deleted meanwhile
        Reply(200, {"RecordCount": 29, "ProspectActivities": page}),
        Reply(200, {"RecordCount": 29, "ProspectActivities": page[:4]}),
    )
    hook = test_answers.hook_for(lsq_connection, server)

    assert len(hook.get_activities(lead_id, event_code=166)) == 29
    offsets = [json_body(r)["Paging"]["Offset"] for r in server.requests]
    assert offsets == ["0", "25", "0", "25"]


def json_body(request: dict) -> dict:
    import json

    return json.loads(request["body"])


@pytest.mark.parametrize("status", [400, 500])
def test_lead_not_found_is_final_after_one_call(served, hook, status):
    served.configure(missing_lead_status=status)
    lead_id = new_lead_id()

    with pytest.raises(ActivityReadError) as raised:
        hook.get_activities(lead_id, event_code=166)
    check = verify_one(hook, lead_id)

    assert raised.value.final is True
    assert (raised.value.status_code, raised.value.exception_type) == (status, "MXInvalidEntityReferenceException")
    assert len(retrieve_calls(served)) == 2  # once for each read, never retried
    assert check.result is Check.UNVERIFIABLE and "deleted or merged" in check.message


def test_refused_keys_stop_the_hook_as_for_resets(served, lsq_connection):
    lead_id = new_lead_id()
    served.add_leads([lsq_lead(lead_id)])
    bad = LeadSquaredHook(leadsquared_conn_id=lsq_connection(served.base_url, conn_id="bad", password="wrong"))

    with pytest.raises(LeadSquaredAuthError, match="401"):
        bad.get_activities(lead_id, event_code=166)
    with pytest.raises(LeadSquaredAuthError, match="not sent"):
        bad.get_activities(lead_id, event_code=167)
    assert len(served.calls()) == 1


def test_reads_take_the_budget_shared_with_concurrent_resets(lsq_connection):
    """A reader and a resetter with the same keys (two hooks, one budget) never exceed the limit together."""
    leads = [bounds_lead() for _ in range(10)]
    with run_emulator(EmulatorConfig(rate_limit=5, rate_window_seconds=1.0), leads=leads) as emu:
        conn_id = lsq_connection(emu.base_url, rate_limit=5, rate_window_seconds=1, rate_margin_seconds=0.05)
        reader, resetter = LeadSquaredHook(leadsquared_conn_id=conn_id), LeadSquaredHook(leadsquared_conn_id=conn_id)
        outcomes: list[Outcome] = []
        resets = threading.Thread(
            target=lambda: outcomes.extend(
                resetter.reset_lead(ResetRequest(lead["ProspectId"], SCOPE)).outcome for lead in leads[5:]
            )
        )
        resets.start()
        read = [len(reader.get_activities(lead["ProspectId"], event_code=166)) for lead in leads[:5]]
        resets.join()
        calls, stats = emu.calls(), emu.stats()

    assert read == [3] * 5 and outcomes == [Outcome.QUEUED] * 5
    assert sum(stats["rate_limited"].values()) == 0
    times = sorted(c["time"] for c in calls)
    assert max(sum(1 for t in times if start <= t < start + 1.0) for start in times) <= 5
    assert len(times) == 10 and times[-1] - times[0] >= 1.0  # two budgets would have sent all 10 at once


# -- classification ----------------------------------------------------------------------------------------


def verify_one(hook: LeadSquaredHook, lead_id: str, scope: ResetScope = SCOPE):
    from leadsquared_provider.steps.verify import check_lead

    return check_lead(hook, lead_id, "s1", ScopeWindow.from_scope(scope))


def test_only_the_scopes_codes_inside_the_window_count_then_the_reset_clears_them(served, hook):
    lead_id = new_lead_id()
    served.add_leads([bounds_lead(lead_id)])

    before = verify_one(hook, lead_id)
    result = hook.reset_lead(ResetRequest(lead_id, SCOPE))  # carried out at once (no processing delay)
    after = verify_one(hook, lead_id)

    assert (before.result, before.remaining_count) == (Check.STILL_PRESENT, 3)
    assert sorted(before.remaining_ids) == ["at-from", "at-to", "inside"]
    assert "166, 167 created 2026-05-01 18:30:00 .. 2026-05-02 18:29:59 UTC" in before.message
    assert result.outcome is Outcome.QUEUED
    assert (after.result, after.remaining_count, after.remaining_ids) == (Check.VERIFIED, 0, ())
    assert "2 other activities, kept" in after.message  # before-from and after-to (other-code is never read)
    kept = {a["Id"] for a in served.lead(lead_id)["activities"]}
    assert kept == {"before-from", "after-to", "other-code"}


def test_an_unperformed_reset_leaves_the_lead_still_present(served, hook):
    lead_id = new_lead_id()
    served.add_leads([bounds_lead(lead_id)])
    served.configure(unperformed_leads=(lead_id,))

    assert hook.reset_lead(ResetRequest(lead_id, SCOPE)).outcome is Outcome.QUEUED
    check = verify_one(hook, lead_id)

    assert [r["state"] for r in served.resets()] == ["unperformed"]
    assert (check.result, check.remaining_count) == (Check.STILL_PRESENT, 3)


def test_more_than_25_remaining_activities_are_all_counted(served, hook):
    lead_id = new_lead_id()
    inside = [activity(167, f"2026-05-02 10:{n // 60:02d}:{n % 60:02d}") for n in range(40)]
    served.add_leads([lsq_lead(lead_id, {"activities": inside})])

    check = verify_one(hook, lead_id)

    assert (check.result, check.remaining_count) == (Check.STILL_PRESENT, 40)
    assert set(check.remaining_ids) == {a["Id"] for a in inside}
    # 40 activities: the unfiltered first page then one more page (2 calls left <= 2 codes: not code by code)
    assert [c["body"]["Paging"]["Offset"] for c in retrieve_calls(served)] == ["0", "25"]
    assert [c["body"]["Parameter"] for c in retrieve_calls(served)] == [{}, {}]


@pytest.mark.parametrize(
    ("asked", "answered", "counts"),
    [
        pytest.param(166, {"EventCode": 166, "CreatedOn": FROM}, True, id="first-second"),
        pytest.param(166, {"EventCode": 166, "CreatedOn": TO}, True, id="last-second"),
        pytest.param(166, {"EventCode": 166, "CreatedOn": "2026-05-02 18:29:59.900"}, True, id="within-last-second"),
        pytest.param(166, {"EventCode": 166, "CreatedOn": "2026-05-01 18:29:59"}, False, id="second-before"),
        pytest.param(166, {"EventCode": 166, "CreatedOn": "2026-05-02 18:30:00"}, False, id="second-after"),
        pytest.param(166, {"EventCode": 166, "CreatedOn": "2026-05-02T00:00:00+05:30"}, True, id="offset-first"),
        pytest.param(166, {"EventCode": 166, "CreatedOn": "2026-05-03T00:00:00+05:30"}, False, id="offset-after"),
        pytest.param(166, {"EventCode": 166, "CreatedOn": "2026-05-02T00:00:00Z"}, True, id="zulu"),
        pytest.param(166, {"EventCode": 200, "CreatedOn": FROM}, False, id="other-code-despite-filter"),
        pytest.param(166, {"EventCode": "167", "CreatedOn": FROM}, True, id="code-as-text"),
        pytest.param(166, {"CreatedOn": FROM}, True, id="no-code-is-the-asked-one"),
    ],
)
def test_classification_of_one_activity(asked, answered, counts):
    check = classify("lead", "s1", WINDOW, [(asked, {"Id": "x", **answered})])
    assert check.result is (Check.STILL_PRESENT if counts else Check.VERIFIED)


def test_an_activity_without_a_readable_date_is_unverifiable_unless_others_remain():
    odd = {"Id": "odd", "EventCode": 166, "CreatedOn": "yesterday"}
    inside = {"Id": "in", "EventCode": 166, "CreatedOn": FROM}
    assert classify("lead", "s1", WINDOW, [(166, odd)]).result is Check.UNVERIFIABLE
    assert classify("lead", "s1", WINDOW, [(166, odd), (166, inside)]).remaining_ids == ("in",)


def test_an_all_time_scope_ends_when_the_reset_was_queued():
    scope = ResetScope(activity_event_codes=(166,), allow_all_time=True)
    queued_at = datetime(2026, 5, 2, 12, 0, tzinfo=UTC).timestamp()
    window = ScopeWindow.from_scope(scope, queued_at)
    early = {"Id": "early", "EventCode": 166, "CreatedOn": "2020-01-01 00:00:00"}
    later = {"Id": "later", "EventCode": 166, "CreatedOn": "2026-05-02 12:00:01"}
    assert (window.start, window.end) == (None, datetime(2026, 5, 2, 12, 0))
    assert classify("lead", "s1", window, [(166, early), (166, later)]).remaining_ids == ("early",)


# -- the sample ----------------------------------------------------------------------------------------------


def test_the_sample_is_random_but_the_same_for_the_same_run():
    leads = [str(uuid.UUID(int=n)) for n in range(1, 51)]
    shuffled = random.Random(3).sample(leads, len(leads))

    first = sample_leads(leads, 5, "leadsquared_reset/manual__1")

    assert first == sample_leads(shuffled, 5, "leadsquared_reset/manual__1") == sorted(first)
    assert len(set(first)) == 5 and set(first) <= set(leads)
    assert first == sorted(random.Random("leadsquared_reset/manual__1").sample(sorted(leads), 5))
    others = {tuple(sample_leads(leads, 5, f"leadsquared_reset/manual__{n}")) for n in range(2, 12)}
    assert len(others | {tuple(first)}) > 5  # other runs read other leads
    assert sample_leads(leads + leads[:3], 60, "any") == sorted(leads)  # all, once each


@pytest.mark.parametrize(
    ("params", "message"),
    [
        pytest.param({"verify_sample": -1}, "param verify_sample must be at least 0, got -1", id="negative"),
        pytest.param({"verify_sample": 1001}, "param verify_sample must be at most 1000, got 1001", id="too-many"),
        pytest.param({"verify_delay_seconds": 2.5}, "verify_delay_seconds", id="fraction"),
        pytest.param({"max_still_present": "few"}, "max_still_present", id="text"),
    ],
)
def test_verify_params_name_the_param_at_fault(params, message):
    with pytest.raises(PlanError, match=message):
        VerifyParams.from_params(params)


def test_verify_params_defaults():
    assert VerifyParams.from_params({}) == VerifyParams(sample=20, delay_seconds=300, max_still_present=0)


# -- the verify step with the state store ----------------------------------------------------------------


RUN = "leadsquared_reset/manual__verify"


def stage_run(store: StateStore, leads: list[str], *, scope: ResetScope = SCOPE, dry_run: bool = False) -> float:
    """A planned run whose ``leads`` were queued (as the batches record them); returns the last queued time."""
    store.save_scope("s1", scope)
    store.save_run(
        RunRecord(
            RUN,
            "leadsquared_reset",
            parse_run_key(RUN).run_id,
            scope,
            "s1",
            dry_run,
            len(leads),
            0,
            1,
            len(leads),
        )
    )
    now = time.time()
    outcome = Outcome.DRY_RUN if dry_run else Outcome.QUEUED
    batch = BatchScope(run_key=RUN, dag_id="leadsquared_reset", batch=1, scopes={"s1": scope})
    store.record_many(
        batch,
        (
            LeadResult("s1", ResetResult(lead, outcome, 200, None, "queued", 1, now, now + n))
            for n, lead in enumerate(leads)
        ),
    )
    return now + len(leads) - 1


@pytest.fixture
def store(state_conn):
    with StateStore(state_conn) as opened:
        yield opened


def test_verify_reads_the_sample_until_the_delay_then_the_report_fails_on_still_present(served, hook, store):
    leads = [bounds_lead() for _ in range(8)]
    served.add_leads(leads)
    ids = sorted(lead["ProspectId"] for lead in leads)
    unperformed = ids[:3]
    served.configure(unperformed_leads=tuple(unperformed))
    for lead_id in ids:
        assert hook.reset_lead(ResetRequest(lead_id, SCOPE)).outcome is Outcome.QUEUED
    last = stage_run(store, ids)
    params = VerifyParams(sample=8, delay_seconds=300, max_still_present=0)

    early = verify_run(store, RUN, params, hook_factory=lambda: hook, now=lambda: last + 10)
    first_reads = len(retrieve_calls(served))
    late = verify_run(store, RUN, params, hook_factory=lambda: hook, now=lambda: last + 301)

    assert early.done is False  # some leads still hold activities and LeadSquared has time left
    assert first_reads == 8  # every sampled lead, one call each (its 6 activities fit one unfiltered page)
    assert len(retrieve_calls(served)) == first_reads + 3  # only the leads not verified yet are read again
    assert late.done is True
    assert late.status == {
        "sampled": 8,
        "of_queued": 8,
        "verified": 5,
        "still_present": 3,
        "unverifiable": 0,
        "nothing_checkable": 0,
    }
    rows = {r.lead_id: r for r in store.verification_rows(RUN)}
    assert {lead for lead, r in rows.items() if r.result == "still_present"} == set(unperformed)
    assert all(sorted(rows[lead].remaining_ids) == ["at-from", "at-to", "inside"] for lead in unperformed)
    assert all(rows[lead].remaining_count == 3 for lead in unperformed)
    assert all(r.scope_key == "s1" and r.checked_at > 0 for r in rows.values())

    pushed: list[dict] = []
    with pytest.raises(ResetFailuresError, match=r"3 of 8 sampled lead.*max_still_present=0"):
        report_run(store, RUN, RunParams(), push=pushed.append, verify=params, verify_finished=True)
    [summary] = pushed
    assert summary["verification"] == {
        **late.status,
        "delay_seconds": 300,
        "not_checked": "audit records (StageChange): ProspectActivity.Retrieve reads activities only, "
        "so these were not checked",
    }
    assert [r["lead_id"] for r in summary["still_present_leads"]] == unperformed
    assert summary["still_present_leads"][0]["remaining_count"] == 3
    text = format_report(summary)
    assert "still_present                  3" in text and unperformed[0] in text

    tolerant = VerifyParams(sample=8, delay_seconds=300, max_still_present=3)
    assert report_run(store, RUN, RunParams(), push=pushed.append, verify=tolerant, verify_finished=True)


def test_a_sample_smaller_than_the_run_reads_only_its_leads(served, hook, store):
    leads = [bounds_lead() for _ in range(12)]
    served.add_leads(leads)
    ids = sorted(lead["ProspectId"] for lead in leads)
    last = stage_run(store, ids)  # nothing was reset: every lead still holds its activities

    step = verify_run(store, RUN, VerifyParams(sample=4), hook_factory=lambda: hook, now=lambda: last + 400)

    read = {c["lead_id"] for c in retrieve_calls(served)}
    assert read == set(sample_leads(ids, 4, RUN))
    assert step.done and step.status["still_present"] == 4 and step.status["of_queued"] == 12


def test_a_failed_read_stays_unverifiable_and_does_not_fail_the_run(served, hook, store):
    lead_id = new_lead_id()
    served.add_leads([bounds_lead(lead_id)])
    last = stage_run(store, [lead_id])
    served.configure(fault_5xx_rate=1.0)

    step = verify_run(store, RUN, VerifyParams(), hook_factory=lambda: hook, now=lambda: last + 1)
    summary = report_run(store, RUN, RunParams(), push=lambda _: None, verify=VerifyParams(), verify_finished=True)

    assert step.done and step.status["unverifiable"] == 1  # already retried by the hook: not waited for
    assert len(retrieve_calls(served)) == 3  # 1 + max_retries (2), then the lead is given up
    assert summary["verification"]["unverifiable"] == 1 and summary["still_present_leads"] == []
    [row] = store.verification_rows(RUN)
    assert row.result == "unverifiable" and "server error 500" in row.message


def test_refused_keys_end_verification_after_one_call(served, store, lsq_connection):
    leads = [bounds_lead() for _ in range(3)]
    served.add_leads(leads)
    last = stage_run(store, [lead["ProspectId"] for lead in leads])
    bad = LeadSquaredHook(leadsquared_conn_id=lsq_connection(served.base_url, conn_id="bad", password="wrong"))

    step = verify_run(store, RUN, VerifyParams(), hook_factory=lambda: bad, now=lambda: last + 1)

    assert step.done and step.status["unverifiable"] == 3
    assert len(served.calls()) == 1
    assert all("refused the keys" in r.message for r in store.verification_rows(RUN))


def test_a_scope_without_activity_codes_has_nothing_checkable(served, hook, store):
    lead_id = new_lead_id()
    served.add_leads([bounds_lead(lead_id)])
    scope = ResetScope(
        audit_types=("OwnerChange",), delete_notes=True, from_date=SCOPE.from_date, to_date=SCOPE.to_date
    )
    last = stage_run(store, [lead_id], scope=scope)

    step = verify_run(store, RUN, VerifyParams(), hook_factory=lambda: hook, now=lambda: last + 1)
    summary = report_run(store, RUN, RunParams(), push=lambda _: None, verify=VerifyParams(), verify_finished=True)

    assert step.done and step.status["nothing_checkable"] == 1 and step.status["verified"] == 0
    assert served.calls() == []
    assert summary["verification"]["not_checked"].startswith("audit records (OwnerChange), notes:")


@pytest.mark.parametrize(
    ("setup", "params", "said"),
    [
        pytest.param("dry_run", VerifyParams(), {"skipped": "dry run: nothing was sent"}, id="dry-run"),
        pytest.param("queued", VerifyParams(sample=0), {"off": "verify_sample is 0"}, id="sample-0"),
        pytest.param("nothing_queued", VerifyParams(), {"skipped": "no lead was queued"}, id="nothing-queued"),
        pytest.param("no_plan", VerifyParams(), {"skipped": "the run has no plan: nothing was sent"}, id="no-plan"),
    ],
)
def test_nothing_to_verify_is_said_and_reads_nothing(served, hook, store, setup, params, said):
    lead_id = new_lead_id()
    served.add_leads([bounds_lead(lead_id)])
    if setup != "no_plan":
        stage_run(store, [] if setup == "nothing_queued" else [lead_id], dry_run=setup == "dry_run")

    step = verify_run(store, RUN, params, hook_factory=lambda: hook)

    assert (step.done, step.status) == (True, said)
    assert served.calls() == []
    if setup != "no_plan":
        summary = report_run(store, RUN, RunParams(), push=lambda _: None, verify=params, verify_finished=True)
        assert set(summary["verification"]) == {next(iter(said))}
        assert summary["still_present_leads"] == []
        assert f"verification {next(iter(said))}: " in format_report(summary)


def test_a_verify_task_that_did_not_finish_fails_the_report(served, hook, store):
    lead_id = new_lead_id()
    served.add_leads([bounds_lead(lead_id)])
    stage_run(store, [lead_id])
    pushed: list[dict] = []

    with pytest.raises(ResetFailuresError, match="the resets were not verified: the verify task did not finish"):
        report_run(store, RUN, RunParams(), push=pushed.append, verify=VerifyParams(), verify_finished=False)
    assert "missing" in pushed[0]["verification"]


def test_a_window_still_open_when_its_reset_was_queued_is_checked_up_to_that_moment():
    # The store settles such a lead for its own run only; verification uses the same rule: what was created
    # in the window after the reset was queued is not a reset that failed.
    queued_at = datetime(2026, 12, 6, 12, 0, tzinfo=UTC).timestamp()
    today = ResetScope(
        activity_event_codes=(166,),
        from_date=datetime(2026, 12, 6, tzinfo=UTC),
        to_date=datetime(2026, 12, 6, 23, 59, 59, tzinfo=UTC),
    )
    window = ScopeWindow.from_scope(today, queued_at)
    assert window.end == datetime(2026, 12, 6, 12, 0)
    assert window.contains(datetime(2026, 12, 6, 11, 59)) and not window.contains(datetime(2026, 12, 6, 12, 0, 1))
    yesterday = datetime(2026, 12, 5, tzinfo=UTC)
    closed = ScopeWindow.from_scope(
        replace(today, from_date=yesterday, to_date=yesterday.replace(hour=23, minute=59, second=59)), queued_at
    )
    assert closed.end == datetime(2026, 12, 5, 23, 59, 59)  # closed before: its own end
