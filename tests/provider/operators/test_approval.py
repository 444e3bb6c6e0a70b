"""LeadSquaredApprovalOperator's answer handling: who may approve, and what the store records."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowFailException

from leadsquared_provider.accounts import Approver
from leadsquared_provider.operators.approval import LeadSquaredApprovalOperator
from leadsquared_provider.rules.approval import ApprovalRequest, Decision, Reason
from leadsquared_provider.store import StateStore

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
