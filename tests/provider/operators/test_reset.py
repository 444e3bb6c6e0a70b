"""The reset task's time limit: derived from its batch's size and the account's rate (issue 19, case 7)."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowFailException

from leadsquared_provider.hooks.leadsquared import LeadSquaredHook
from leadsquared_provider.operators.reset import LeadSquaredResetOperator
from leadsquared_provider.rules.approval import ApprovalDecision, ApprovalRequest, Decision, Reason
from leadsquared_provider.rules.planning import batch_time_limit
from leadsquared_provider.rules.request import ResetScope
from leadsquared_provider.settings import LeadSquaredSettings
from leadsquared_provider.store import RunRecord, StagedLead, StateStore
from lsq_emulator import EmulatorConfig, run_emulator

SCOPE = {
    "activity_event_codes": [166],
    "from_date": "2026-11-01T00:00:00+00:00",
    "to_date": "2026-11-01T23:59:59+00:00",
}


def test_the_limit_grows_with_the_batch_and_shrinks_with_the_rate():
    fast = LeadSquaredSettings(rate_limit=25, rate_window_seconds=5.0)
    slow = LeadSquaredSettings(rate_limit=5, rate_window_seconds=5.0, rate_share=0.5)
    assert batch_time_limit(200, fast) < batch_time_limit(200, slow)
    assert batch_time_limit(100, fast) < batch_time_limit(200, fast)
    # 200 leads at 5 calls/s take 40 s; the limit allows four times that, one lead's longest retry chain
    # (6 attempts of a 30 s deadline and a 30 s backoff) and two minutes.
    assert batch_time_limit(200, fast) == timedelta(seconds=160 + 6 * 60 + 120)


def _operator(lsq: str, state: str, **kwargs) -> LeadSquaredResetOperator:
    return LeadSquaredResetOperator(task_id="reset", batch="2", leadsquared_conn_id=lsq, state_conn_id=state, **kwargs)


@pytest.fixture
def served():
    with run_emulator(EmulatorConfig(rate_limit=1000, rate_window_seconds=1.0)) as emu:
        yield emu


def test_each_try_gets_the_limit_of_its_own_batch_unless_the_dag_set_one(state_conn, lsq_connection):
    lsq = lsq_connection("http://127.0.0.1:9", rate_limit=10, rate_window_seconds=5)
    with StateStore(state_conn) as store:  # 450 leads in batches of 200: batch 2 has 200, batch 3 has 50
        store.save_run(RunRecord("dag/r1", "dag", "r1", ResetScope.from_mapping(SCOPE), "s1", False, 450, 0, 3, 200))
    context = {"dag_run": SimpleNamespace(dag_id="dag", run_id="r1", run_type="manual")}
    settings = LeadSquaredHook(leadsquared_conn_id=lsq).settings

    derived = _operator(lsq, state_conn)
    assert derived.execution_timeout is None
    derived.pre_execute(context)
    assert derived.execution_timeout == batch_time_limit(200, settings)

    last = _operator(lsq, state_conn)
    last.batch = "3"
    last.pre_execute(context)
    assert last.execution_timeout == batch_time_limit(50, settings)

    chosen = _operator(lsq, state_conn, execution_timeout=timedelta(minutes=7))
    chosen.pre_execute(context)
    assert chosen.execution_timeout == timedelta(minutes=7)


@pytest.mark.parametrize(
    "decision", [Decision.WAITING, Decision.REJECTED, Decision.TIMED_OUT, Decision.REFUSED], ids=lambda d: d.value
)
def test_a_batch_of_a_run_the_gate_has_not_let_through_sends_nothing(state_conn, lsq_connection, served, decision):
    """The approval task marked successful by hand (or skipped) does not open the gate: the store's answer does."""
    lsq = lsq_connection(served.base_url)
    leads = ["1e1e1e1e-0000-4000-8000-00000000000a", "1e1e1e1e-0000-4000-8000-00000000000b"]
    with StateStore(state_conn) as store:
        store.save_scope("s1", ResetScope.from_mapping(SCOPE))
        store.save_run(RunRecord("dag/r1", "dag", "r1", ResetScope.from_mapping(SCOPE), "s1", False, 2, 0, 1, 200))
        store.stage_candidates("dag/r1", [StagedLead(lead, "s1") for lead in leads])
        store.save_approval_request(
            "dag/r1",
            ApprovalRequest(
                reasons=(Reason.OVER_THRESHOLD,), leads=2, threshold=1, baseline=None, max_growth=10, days=1, max_days=7
            ),
        )
        if decision is not Decision.WAITING:
            store.record_decision("dag/r1", ApprovalDecision(decision, "alice"))
    context = {"dag_run": SimpleNamespace(dag_id="dag", run_id="r1", run_type="manual")}

    with pytest.raises(AirflowFailException, match=r"approval is .*: this batch sends nothing"):
        _operator(lsq, state_conn).execute(context)

    assert served.calls() == []  # not even the keys' check
    with StateStore(state_conn) as store:
        assert store.outcome_counts("dag/r1") == {}
