"""The approval gate under the real scheduler: a big run waits in ``awaiting_input`` until a person answers.

Two DAGs of one account file: ``leadsquared_reset`` (approvers alice and admin, four eyes) and
``leadsquared_reset_open`` (no approvers: anyone who may edit the DAG; four eyes). The stack's admin triggers
every run; alice is a second user (simple auth manager role ``user``: may edit DAGs).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from tests.e2e.checks import check_day_run
from tests.e2e.conftest import E2E, start_on_sqlite
from tests.e2e.scenario import DAYS, MISSING_LEAD, Scenario, iso_window, utc_window

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

GATED, OPEN = "leadsquared_reset", "leadsquared_reset_open"
ACCOUNTS = """
accounts:
  - name: gated
    dag_id: leadsquared_reset
    leadsquared_conn_id: leadsquared_default
    pool: leadsquared_api
    approvers: [alice, admin]
    four_eyes: true
  - name: open
    leadsquared_conn_id: leadsquared_default
    pool: leadsquared_api
    four_eyes: true
"""
USERS = "admin:admin,alice:user"
ASK = {"approval_threshold": 3}  # a day holds 8 or 9 candidates: over it
# The tests answer SETTLE_SECONDS after the task parks (see respond): an earlier answer is lost by Airflow 3.3.


@pytest.fixture(scope="module")
def gate_e2e(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2E]:
    tmp = tmp_path_factory.mktemp("e2e-approval")
    scenario = Scenario()
    warehouse = tmp / "warehouse.db"
    scenario.sqlite_warehouse(warehouse)
    accounts = tmp / "accounts.yaml"
    accounts.write_text(ACCOUNTS)
    yield from start_on_sqlite(
        tmp,
        warehouse,
        scenario,
        accounts_file=accounts,
        stack_env={"AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": USERS},
    )


def day_conf(day: str, **params: Any) -> dict[str, Any]:
    frm, to = iso_window(day)
    return {"from_date": frm, "to_date": to, **params}


def resets_in(e2e: E2E, day: str) -> list[dict[str, Any]]:
    window = utc_window(day)
    return [c for c in e2e.reset_calls() if (c["body"].get("FromDate"), c["body"].get("ToDate")) == window]


def approve_ti(e2e: E2E, run_id: str, dag_id: str) -> dict[str, Any]:
    return e2e.stack.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/approve")


def wait_for_task(e2e: E2E, run_id: str, dag_id: str, states: set[str], timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ti = approve_ti(e2e, run_id, dag_id)
        if ti["state"] in states:
            return ti
        time.sleep(2)
    raise TimeoutError(f"approve of {run_id} not in {states} within {timeout} s: {ti['state']}")


# Airflow 3.3 loses an answer given before the scheduler has read the waiting try's end from the executor
# (seconds, more under load): the resumed task is killed, retried, and asks again. A person takes longer.
SETTLE_SECONDS = 15.0


def respond(e2e: E2E, run_id: str, dag_id: str, user: str, option: str) -> requests.Response:
    """Answer the run's approval as ``user`` through the public REST API (what the UI's buttons call), once
    the waiting try has settled (:data:`SETTLE_SECONDS` after it started)."""
    started = datetime.fromisoformat(approve_ti(e2e, run_id, dag_id)["start_date"])
    time.sleep(max(0.0, SETTLE_SECONDS - (datetime.now(UTC) - started).total_seconds()))
    home = e2e.stack.config.home
    password = json.loads((home / "passwords.json").read_text())[user]
    token = requests.post(
        f"{e2e.stack.config.api_url}/auth/token", json={"username": user, "password": password}, timeout=30
    ).json()["access_token"]
    return requests.patch(
        f"{e2e.stack.config.api_url}/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/approve/-1/hitlDetails",
        headers={"Authorization": f"Bearer {token}"},
        json={"chosen_options": [option], "params_input": {}},
        timeout=60,
    )


def hitl(e2e: E2E, run_id: str, dag_id: str) -> dict[str, Any]:
    return e2e.stack.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/approve/-1/hitlDetails")


def alert_for(e2e: E2E, run_id: str) -> dict[str, Any]:
    lines = (e2e.stack.config.home / "logs" / "leadsquared_alerts.jsonl").read_text().splitlines()
    [alert] = [json.loads(line) for line in lines if json.loads(line)["run_id"] == run_id]
    return alert


def test_a_run_under_the_threshold_never_waits(gate_e2e):
    e2e = gate_e2e
    run_id = e2e.stack.trigger(day_conf(DAYS[0]), run_id="small")  # 8 leads, under the default 1000
    assert e2e.stack.wait_for_run(run_id, dag_id=GATED) == "success"
    assert approve_ti(e2e, run_id, GATED)["state"] == "success"
    with pytest.raises(RuntimeError, match="404"):  # nobody was asked
        hitl(e2e, run_id, GATED)
    check_day_run(e2e, run_id, DAYS[0], resets_in(e2e, DAYS[0]))
    summary = e2e.stack.xcom(run_id, "report")
    assert summary["approval"]["decision"] == "not_needed" and summary["approval"]["reasons"] == []


def test_a_big_run_waits_and_sends_exactly_its_candidates_once_approved(gate_e2e):
    e2e = gate_e2e
    run_id = e2e.stack.trigger(day_conf(DAYS[1], **ASK), run_id="big")
    ti = wait_for_task(e2e, run_id, GATED, {"awaiting_input"})
    assert ti["state"] == "awaiting_input"  # parked: no worker slot, no triggerer
    assert e2e.stack.api("GET", f"/dags/{GATED}/dagRuns/{run_id}")["state"] == "running"
    assert resets_in(e2e, DAYS[1]) == []

    detail = hitl(e2e, run_id, GATED)
    assert detail["subject"] == f"Approve resetting 9 LeadSquared leads? ({GATED})"
    body = detail["body"]
    frm, to = utc_window(DAYS[1])
    assert f"| Window (UTC) | {frm} .. {to} |" in body
    assert f"| Window (Asia/Kolkata) | {DAYS[1]} 00:00:00 .. {DAYS[1]} 23:59:59 |" in body
    assert "9 leads is over approval_threshold=3" in body
    some = e2e.scenario.candidates(DAYS[1])[0]
    assert f"/leadsquared/leads?lead_id={some})" in body
    assert [user["name"] for user in detail["assigned_users"]] == ["alice"]  # admin triggered it: four eyes
    assert detail["options"] == ["Approve", "Reject"] and detail["defaults"] == ["Reject"]

    refused = respond(e2e, run_id, GATED, "admin", "Approve")  # the trigger user: Airflow refuses the answer
    assert refused.status_code == 403, refused.text
    answered = respond(e2e, run_id, GATED, "alice", "Approve")
    assert answered.ok, answered.text

    assert e2e.stack.wait_for_run(run_id, dag_id=GATED) == "success"
    check_day_run(e2e, run_id, DAYS[1], resets_in(e2e, DAYS[1]))
    approval = e2e.stack.xcom(run_id, "report")["approval"]
    assert (approval["decision"], approval["by"], approval["reasons"]) == ("approved", "alice", ["over_threshold"])
    assert approval["text"].startswith("approved by alice at ")


def test_a_rejected_run_sends_nothing_fails_and_alerts(gate_e2e):
    e2e = gate_e2e
    run_id = e2e.stack.trigger(day_conf(DAYS[2], **ASK), run_id="rejected")
    wait_for_task(e2e, run_id, GATED, {"awaiting_input"})
    assert respond(e2e, run_id, GATED, "alice", "Reject").ok

    assert e2e.stack.wait_for_run(run_id, dag_id=GATED) == "failed"
    assert resets_in(e2e, DAYS[2]) == []
    states = {ti["task_id"]: ti["state"] for ti in e2e.stack.task_instances(run_id, dag_id=GATED)}
    assert states["approve"] == "success" and states["report"] == "failed"
    assert states["reset_batch.reset"] == "skipped"
    summary = e2e.stack.xcom(run_id, "report")
    assert summary["approval"]["decision"] == "rejected" and summary["approval"]["by"] == "alice"
    assert summary["counts"] == {"not_approved": 8} and summary["failures"] == 0
    alert = alert_for(e2e, run_id)
    assert "the run was not approved: rejected by alice at " in alert["reason"]


def test_the_trigger_users_own_approval_is_refused_with_four_eyes(gate_e2e):
    """Without approvers Airflow lets anyone who may edit the DAG answer, the trigger user too: the task
    refuses that approval itself, and nothing is sent."""
    e2e = gate_e2e
    run_id = e2e.stack.trigger(day_conf(DAYS[2], **ASK), dag_id=OPEN, run_id="self_approved")
    wait_for_task(e2e, run_id, OPEN, {"awaiting_input"})
    assert hitl(e2e, run_id, OPEN)["assigned_users"] == []
    assert respond(e2e, run_id, OPEN, "admin", "Approve").ok  # accepted by Airflow...

    assert e2e.stack.wait_for_run(run_id, dag_id=OPEN) == "failed"  # ...refused by the gate
    assert resets_in(e2e, DAYS[2]) == []
    assert approve_ti(e2e, run_id, OPEN)["state"] == "failed"  # for good (no retry): clear it to ask again
    summary = e2e.stack.xcom(run_id, "report", dag_id=OPEN)
    assert summary["approval"]["decision"] == "refused" and summary["approval"]["by"] == "admin"
    assert "admin triggered this run and may not approve it (four_eyes)" in alert_for(e2e, run_id)["reason"]


def test_no_answer_in_time_is_a_rejection(gate_e2e):
    e2e = gate_e2e
    started = time.monotonic()
    run_id = e2e.stack.trigger(day_conf(DAYS[2], approval_timeout_minutes=1, **ASK), run_id="unanswered")
    wait_for_task(e2e, run_id, GATED, {"awaiting_input"})
    assert e2e.stack.wait_for_run(run_id, dag_id=GATED) == "failed"
    waited = time.monotonic() - started
    assert waited >= 60, waited
    assert resets_in(e2e, DAYS[2]) == []
    summary = e2e.stack.xcom(run_id, "report")
    assert summary["approval"]["decision"] == "timed_out" and summary["approval"]["by"] is None
    assert "not answered in time" in alert_for(e2e, run_id)["reason"]
    print(f"unanswered run: failed {waited:.0f} s after its trigger (timeout 60 s)")


def backfill_runs(e2e: E2E, dag_id: str, count: int, timeout: float = 120) -> list[str]:
    """The DAG's backfill runs' ids, in the order of their days, once ``count`` of them exist."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = e2e.stack.api("GET", f"/dags/{dag_id}/dagRuns", params={"run_type": "backfill", "limit": 100})
        if len(runs["dag_runs"]) >= count:
            return [r["dag_run_id"] for r in sorted(runs["dag_runs"], key=lambda r: r["logical_date"])]
        time.sleep(2)
    raise TimeoutError(f"{count} backfill runs of {dag_id} not created within {timeout} s")


def check_backfill_day(e2e: E2E, run_id: str, day: str, dag_id: str) -> None:
    """The emulator's record holds each lead of ``day`` once with the day's window, whichever run of this
    module sent it: the backfill's run sent what no earlier run had, and counts the rest reset already."""
    expected = {*e2e.scenario.candidates(day), *([MISSING_LEAD] if day == DAYS[1] else [])}
    assert sorted(c["lead_id"] for c in resets_in(e2e, day)) == sorted(expected)
    audit = e2e.audit(run_id, dag_id)
    reset = {lead for lead, row in audit.items() if row[0] in ("queued", "already_done")}
    assert set(e2e.scenario.candidates(day)) <= reset <= expected  # the missing lead: rejected, or done before
    assert e2e.stack.xcom(run_id, "report", dag_id=dag_id)["failures"] == 0


# The window of each run is one day: with approval_max_window_days=2 only the backfill's span asks.
BACKFILL_CONF = {"approval_max_window_days": 2, "approval_threshold": 100_000}


def test_a_backfill_longer_than_max_days_asks_once_and_every_day_is_sent_once(gate_e2e):
    """Three days over approval_max_window_days=2: the backfill's first run waits; once it is approved, the
    other runs adopt the answer without asking."""
    e2e = gate_e2e
    sent_before = len(e2e.reset_calls())
    e2e.stack.create_backfill(f"{DAYS[0]}T00:00:00+05:30", f"{DAYS[-1]}T00:00:00+05:30", 1, GATED, BACKFILL_CONF)
    first, *others = run_ids = backfill_runs(e2e, GATED, len(DAYS))
    assert first.startswith("backfill__") and len(run_ids) == 3

    wait_for_task(e2e, first, GATED, {"awaiting_input"})
    body = hitl(e2e, first, GATED)["body"]
    assert "the run is part of a backfill of ~3 days, over approval_max_window_days=2" in body
    assert len(e2e.reset_calls()) == sent_before  # nothing sent; max_active_runs=1: the others wait behind it
    assert respond(e2e, first, GATED, "alice", "Approve").ok

    assert {run_id: e2e.stack.wait_for_run(run_id, dag_id=GATED) for run_id in run_ids} == dict.fromkeys(
        run_ids, "success"
    )
    for run_id, day in zip(run_ids, DAYS, strict=True):
        check_backfill_day(e2e, run_id, day, GATED)
        approval = e2e.stack.xcom(run_id, "report")["approval"]
        assert (approval["decision"], approval["by"], approval["reasons"]) == ("approved", "alice", ["long_backfill"])
    for run_id in others:  # nobody was asked again
        with pytest.raises(RuntimeError, match="404"):
            hitl(e2e, run_id, GATED)
        approval = e2e.stack.xcom(run_id, "report")["approval"]
        assert approval["text"].endswith(f"(for the backfill, at run {first})")


def test_a_backfill_within_max_days_never_asks(gate_e2e):
    e2e = gate_e2e
    e2e.stack.create_backfill(f"{DAYS[0]}T00:00:00+05:30", f"{DAYS[1]}T00:00:00+05:30", 2, OPEN, BACKFILL_CONF)
    run_ids = backfill_runs(e2e, OPEN, 2)
    assert {run_id: e2e.stack.wait_for_run(run_id, dag_id=OPEN) for run_id in run_ids} == dict.fromkeys(
        run_ids, "success"
    )
    for run_id, day in zip(run_ids, DAYS[:2], strict=True):
        with pytest.raises(RuntimeError, match="404"):  # nobody was asked
            hitl(e2e, run_id, OPEN)
        approval = e2e.stack.xcom(run_id, "report", dag_id=OPEN)["approval"]
        assert (approval["decision"], approval["reasons"]) == ("not_needed", [])
        check_backfill_day(e2e, run_id, day, OPEN)
