"""LeadSquaredVerifySensor in a DAG of the user's own: its defaults, and its pokes against the emulator and a
run staged in an SQLite state store (what it reads, what it records, what it pushes)."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk import DAG
from airflow.sdk.exceptions import AirflowFailException

from leadsquared_provider.rules.outcomes import Outcome, ResetResult
from leadsquared_provider.rules.params import MAX_VERIFY_DELAY_SECONDS, POKE_INTERVAL_SECONDS
from leadsquared_provider.rules.request import ResetRequest
from leadsquared_provider.sensors.verify import LeadSquaredVerifySensor
from leadsquared_provider.store import BatchScope, LeadResult, RunRecord, StateStore, run_key
from tests.provider.steps import test_verify as steps_verify
from tests.provider.steps.test_verify import RETRIEVE, SCOPE, bounds_lead

served = steps_verify.served  # the emulator
hook = steps_verify.hook  # a hook on it, with a budget of its own

DAG_ID, RUN_ID = "my_resets", "manual__sensor"
KEY = run_key(DAG_ID, RUN_ID)
ACCOUNT = "run-account-tag"  # the account's tag the plan recorded: the sensor's hook spends that account's budget


def context(**params: Any) -> dict[str, Any]:
    """What the sensor reads of a task's context: its DAG run and the run's params."""
    return {"dag_run": SimpleNamespace(dag_id=DAG_ID, run_id=RUN_ID, run_type="manual"), "params": params}


def stage_run(conn_id: str, leads: list[str]) -> None:
    """A planned run of ``my_resets`` whose ``leads`` were queued just now, under the recorded ``ACCOUNT``."""
    scope = SCOPE
    now = time.time()
    with StateStore(conn_id) as store:
        store.save_scope("s1", scope)
        store.save_run(
            RunRecord(KEY, DAG_ID, RUN_ID, scope, "s1", False, len(leads), 0, 1, len(leads), account=ACCOUNT)
        )
        store.record_many(
            BatchScope(run_key=KEY, dag_id=DAG_ID, batch=1, scopes={"s1": scope}),
            (LeadResult("s1", ResetResult(lead, Outcome.QUEUED, 200, None, "queued", 1, now, now)) for lead in leads),
        )


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str | None]]:
    """The (connection, account) of every LeadSquaredHook built from here on."""
    from leadsquared_provider.hooks import leadsquared

    made: list[tuple[str, str | None]] = []

    class Recorded(leadsquared.LeadSquaredHook):
        def __init__(self, leadsquared_conn_id: str = "leadsquared_default", account: str | None = None) -> None:
            made.append((leadsquared_conn_id, account))
            super().__init__(leadsquared_conn_id=leadsquared_conn_id, account=account)

    monkeypatch.setattr(leadsquared, "LeadSquaredHook", Recorded)
    return made


@pytest.fixture
def sensor(hook, state_conn) -> LeadSquaredVerifySensor:
    """The sensor in a user's DAG, under its own task id, with the emulator's connection and the test's store."""
    with DAG("my_resets", schedule=None):
        return LeadSquaredVerifySensor(
            task_id="read_back", leadsquared_conn_id=hook.leadsquared_conn_id, state_conn_id=state_conn
        )


def test_defaults_wait_without_a_worker_slot_after_every_batch(state_conn):
    with DAG("my_resets", schedule=None):
        sensor = LeadSquaredVerifySensor(task_id="read_back")
        custom = LeadSquaredVerifySensor(task_id="quick", mode="poke", poke_interval=5, timeout=60)

    assert (sensor.mode, sensor.poke_interval, sensor.timeout) == (
        "reschedule",
        POKE_INTERVAL_SECONDS,
        MAX_VERIFY_DELAY_SECONDS + 3600,
    )
    assert sensor.trigger_rule == "all_done"  # failed batches' queued leads are verified all the same
    assert (sensor.leadsquared_conn_id, sensor.state_conn_id) == ("leadsquared_default", "leadsquared_state")
    assert set(sensor.template_fields) == {"leadsquared_conn_id", "state_conn_id"}
    assert (custom.mode, custom.poke_interval, custom.timeout) == ("poke", 5, 60)


def test_a_poke_reads_the_sample_and_waits_while_leads_still_hold_activities(served, hook, sensor, state_conn, built):
    leads = [bounds_lead() for _ in range(4)]
    served.add_leads(leads)
    ids = sorted(lead["ProspectId"] for lead in leads)
    served.configure(unperformed_leads=(ids[0],))
    for lead_id in ids:
        hook.reset_lead(ResetRequest(lead_id, SCOPE))
    stage_run(state_conn, ids)
    served.clear_calls()

    poked = sensor.poke(context(verify_sample=4, verify_delay_seconds=300))

    assert (poked.is_done, poked.xcom_value) == (False, None)  # LeadSquared has 300 s left for ids[0]
    assert built == [(hook.leadsquared_conn_id, ACCOUNT)]  # the sensor's connection, the run's account
    calls = served.calls()
    assert all(c["path"].endswith(RETRIEVE) for c in calls)
    assert sorted(c["lead_id"] for c in calls) == ids  # each sampled lead read once
    with StateStore(state_conn) as store:
        rows = {row.lead_id: row.result for row in store.verification_rows(KEY)}
    assert rows == {ids[0]: "still_present", **{lead: "verified" for lead in ids[1:]}}

    served.clear_calls()
    last = sensor.poke(context(verify_sample=4, verify_delay_seconds=0))  # the delay is over: final

    assert [c["lead_id"] for c in served.calls()] == [ids[0]]  # only the lead not verified yet is read again
    assert last.is_done is True
    assert last.xcom_value == {
        "sampled": 4,
        "of_queued": 4,
        "verified": 3,
        "still_present": 1,
        "unverifiable": 0,
        "nothing_checkable": 0,
    }


def test_a_poke_pushes_the_counts_once_every_sampled_lead_is_verified(served, hook, sensor, state_conn):
    leads = [bounds_lead() for _ in range(3)]
    served.add_leads(leads)
    ids = [lead["ProspectId"] for lead in leads]
    for lead_id in ids:
        hook.reset_lead(ResetRequest(lead_id, SCOPE))
    stage_run(state_conn, ids)
    served.clear_calls()

    poked = sensor.poke(context(verify_sample=2))

    assert poked.is_done is True
    assert poked.xcom_value == {
        "sampled": 2,
        "of_queued": 3,
        "verified": 2,
        "still_present": 0,
        "unverifiable": 0,
        "nothing_checkable": 0,
    }
    assert len(served.calls()) == 2


def test_a_run_that_was_never_planned_is_done_without_a_read(served, sensor, built):
    poked = sensor.poke(context())

    assert (poked.is_done, poked.xcom_value) == (True, {"skipped": "the run has no plan: nothing was sent"})
    assert served.calls() == [] and built == []


@pytest.mark.parametrize(
    ("params", "message"),
    [
        pytest.param({"verify_sample": -1}, "param verify_sample must be at least 0, got -1", id="negative"),
        pytest.param({"verify_delay_seconds": 2.5}, "verify_delay_seconds", id="fraction"),
        pytest.param({"max_still_present": "few"}, "max_still_present", id="text"),
    ],
)
def test_bad_params_fail_the_task_for_good_naming_the_param(served, sensor, state_conn, params, message):
    stage_run(state_conn, [bounds_lead()["ProspectId"]])

    with pytest.raises(AirflowFailException, match=message):
        sensor.poke(context(**params))
    assert served.calls() == []
