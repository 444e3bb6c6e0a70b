"""LeadSquaredApprovalOperator's answer handling: who may approve, and what the store records."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowFailException

from leadsquared_provider.accounts import Approver
from leadsquared_provider.operators.approval import LeadSquaredApprovalOperator
from leadsquared_provider.rules.approval import ApprovalDecision, ApprovalRequest, Decision, Reason
from leadsquared_provider.rules.request import ResetScope
from leadsquared_provider.store import RunRecord, StateStore

KEY = "leadsquared_reset/manual__1"
AT = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


@pytest.fixture
def store(state_conn):
    with StateStore(state_conn) as store:
        store.save_approval_request(
            KEY,
            ApprovalRequest(
                reasons=(Reason.OVER_THRESHOLD,), leads=5, threshold=1, baseline=None, max_growth=10, days=1, max_days=7
            ),
        )
        yield store


def answer(store, option: str | None, by: str | None, *, trigger_user="admin", timedout=False, **gate):
    operator = LeadSquaredApprovalOperator(task_id="approve", state_conn_id="leadsquared_state", **gate)
    context = {
        "dag_run": SimpleNamespace(dag_id="leadsquared_reset", run_id="manual__1", triggering_user_name=trigger_user)
    }
    event = {
        "chosen_options": [option] if option else ["Reject"],
        "params_input": {},
        "responded_at": AT,
        "responded_by_user": {"id": by, "name": by} if by else None,
        "timedout": timedout,
    }
    try:
        return operator.execute_complete(context, event)
    finally:
        answer.decision = store.load_approval(KEY)[1]


@pytest.mark.parametrize(
    ("by", "gate", "decision"),
    [
        pytest.param("alice", {}, Decision.APPROVED, id="anyone-without-approvers"),
        pytest.param("admin", {}, Decision.APPROVED, id="the-trigger-user-without-four-eyes"),
        pytest.param("alice", {"four_eyes": True}, Decision.APPROVED, id="someone-else-with-four-eyes"),
        pytest.param("alice", {"approvers": [Approver("alice", "alice")]}, Decision.APPROVED, id="an-approver"),
    ],
)
def test_an_approval_that_counts_is_recorded_with_who_and_when(store, by, gate, decision):
    assert answer(store, "Approve", by, **gate)["chosen_options"] == ["Approve"]
    assert answer.decision.decision is decision
    assert (answer.decision.by, answer.decision.at) == (by, AT.timestamp())


@pytest.mark.parametrize(
    ("by", "gate", "why"),
    [
        pytest.param(
            "admin", {"four_eyes": True}, "admin triggered this run and may not approve it (four_eyes)", id="four-eyes"
        ),
        pytest.param(
            "bob",
            {"approvers": [Approver("alice", "alice")]},
            "bob is not one of the account's approvers",
            id="stranger",
        ),
    ],
)
def test_an_approval_that_does_not_count_fails_the_task_and_is_recorded_refused(store, by, gate, why):
    with pytest.raises(
        AirflowFailException, match=rf"^approval by {by} at .* refused: {re.escape(why)}.*clear this task"
    ):
        answer(store, "Approve", by, **gate)
    assert (answer.decision.decision, answer.decision.by) == (Decision.REFUSED, by)
    assert answer.decision.note.startswith(why)


def test_a_rejection_and_a_timeout_are_recorded_and_let_nothing_through(store):
    answer(store, "Reject", "alice")
    assert (answer.decision.decision, answer.decision.by) == (Decision.REJECTED, "alice")
    answer(store, None, None, timedout=True)  # the scheduler's sweep chose the default, Reject
    assert (answer.decision.decision, answer.decision.by) == (Decision.TIMED_OUT, None)
    assert not answer.decision.decision.lets_through


# A backfill of 2026-09-01 .. 2026-09-06 (UTC days); each run's id is ``backfill__<its interval's end>``.
def backfill_run(day: int) -> str:
    return f"backfill__{datetime(2026, 9, day + 1, tzinfo=UTC).isoformat()}"


LONG = ApprovalRequest(
    reasons=(Reason.LONG_BACKFILL,), leads=5, threshold=1000, baseline=None, max_growth=10, days=1, max_days=2
)


def ask_backfill(state_conn, day: int, request: ApprovalRequest = LONG, **params):
    """The gate's ``execute`` for the backfill's run of ``day`` (planned with ``request``): what it returns
    (``asked`` when it asks, with :func:`asking`) and the decision it leaves in the store."""
    run_id = backfill_run(day)
    key = f"leadsquared_reset/{run_id}"
    start = datetime(2026, 9, day, tzinfo=UTC)
    scope = ResetScope(delete_notes=True, from_date=start, to_date=start + timedelta(days=1, seconds=-1))
    with StateStore(state_conn) as store:
        store.save_run(RunRecord(key, "leadsquared_reset", run_id, scope, "s", False, 5, 0, 1, 5, run_type="backfill"))
        store.save_approval_request(key, request)
    operator = LeadSquaredApprovalOperator(task_id="approve", state_conn_id=state_conn)
    context = {
        "dag_run": SimpleNamespace(
            dag_id="leadsquared_reset", run_id=run_id, run_type="backfill", triggering_user_name="admin"
        ),
        "data_interval_start": start,
        "data_interval_end": start + timedelta(days=1),
        "params": params,
        "ti": SimpleNamespace(),
    }
    try:
        return operator.execute(context)
    finally:
        with StateStore(state_conn) as store:
            ask_backfill.decision = store.load_approval(key)[1]


@pytest.fixture
def asking(monkeypatch):
    """Asking (Airflow's ``HITLOperator.execute``, which parks the task) returns ``asked`` instead."""
    monkeypatch.setattr("airflow.providers.standard.operators.hitl.HITLOperator.execute", lambda self, context: "asked")


def answer_backfill(state_conn, day: int, decision: ApprovalDecision) -> None:
    with StateStore(state_conn) as store:
        store.record_decision(f"leadsquared_reset/{backfill_run(day)}", decision)


def test_a_long_backfill_asks_once_and_its_other_runs_adopt_the_answer(state_conn, asking):
    assert ask_backfill(state_conn, 1) == "asked"  # the backfill's first run: nobody answered yet
    answer_backfill(state_conn, 1, ApprovalDecision(Decision.APPROVED, "alice", time.time() - 60))

    went_on = ask_backfill(state_conn, 2)
    assert went_on["chosen_options"] == ["Approve"] and went_on["responded_by_user"]["name"] == "alice"
    assert ask_backfill.decision.decision is Decision.APPROVED
    assert ask_backfill.decision.as_text().endswith(f"(for the backfill, at run {backfill_run(1)})")
    assert ask_backfill(state_conn, 3)["chosen_options"] == ["Approve"]  # adopted from day 2's, named day 1's
    assert ask_backfill.decision.note == f"for the backfill, at run {backfill_run(1)}"
    assert ask_backfill.decision.by == "alice"


def test_a_rejected_backfill_is_rejected_in_its_other_runs_without_asking(state_conn, asking):
    ask_backfill(state_conn, 2)
    answer_backfill(state_conn, 2, ApprovalDecision(Decision.REJECTED, "bob", time.time()))
    assert ask_backfill(state_conn, 1)["chosen_options"] == ["Reject"]  # a run before it (a reversed backfill)
    assert (ask_backfill.decision.decision, ask_backfill.decision.by) == (Decision.REJECTED, "bob")
    assert not ask_backfill.decision.decision.lets_through


@pytest.mark.parametrize(
    ("request_", "answered", "params"),
    [
        pytest.param(
            ApprovalRequest((Reason.OVER_THRESHOLD,), 5, 1, None, 10, 1, 2),
            time.time(),
            {},
            id="not-the-backfill-reason",
        ),
        pytest.param(LONG, time.time() - 2 * 3600, {"approval_timeout_minutes": 60}, id="an-answer-too-old"),
        pytest.param(LONG, None, {}, id="a-neighbour-still-waiting"),
    ],
)
def test_a_backfills_run_asks_itself_when_there_is_no_answer_to_adopt(state_conn, asking, request_, answered, params):
    ask_backfill(state_conn, 1, request_)
    if answered is not None:
        answer_backfill(state_conn, 1, ApprovalDecision(Decision.APPROVED, "alice", answered))
    assert ask_backfill(state_conn, 2, request_, **params) == "asked"
    assert ask_backfill.decision.decision is Decision.WAITING
