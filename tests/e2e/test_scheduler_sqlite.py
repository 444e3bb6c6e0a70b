"""The DAG under the real scheduler, SQLite warehouse: runs, re-runs, backfills, dry runs, guards, bad keys."""

from __future__ import annotations

import json
import time

import pytest

from tests.e2e.checks import check_day_run
from tests.e2e.scenario import DAYS, iso_window, utc_window

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def trigger_and_wait(e2e, conf: dict, name: str) -> tuple[str, str, list[dict]]:
    e2e.emulator.clear_calls()
    run_id = e2e.stack.trigger(conf, run_id=f"{name}__{time.time_ns()}")
    state = e2e.stack.wait_for_run(run_id)
    return run_id, state, e2e.reset_calls()


def test_manual_run_resets_exactly_the_window(sqlite_e2e):
    day = DAYS[1]
    frm, to = iso_window(day)
    run_id, state, calls = trigger_and_wait(sqlite_e2e, {"from_date": frm, "to_date": to, "batch_size": 3}, "day")

    assert state == "success"
    check_day_run(sqlite_e2e, run_id, day, calls)
    tis = sqlite_e2e.stack.task_instances(run_id)
    labels = sorted(ti["rendered_map_index"] for ti in tis if ti["task_id"] == "reset_batch.reset")
    assert labels[0] == "batch 1: leads 1–3"
    assert len(labels) == 3  # 9 valid candidates (8 + the deleted lead) in batches of 3
    assert {ti["state"] for ti in tis} == {"success"}

    # The same window again: every lead is already queued, so nothing is sent twice.
    again, state, calls = trigger_and_wait(sqlite_e2e, {"from_date": frm, "to_date": to}, "again")
    assert state == "success"
    assert calls == []
    assert sqlite_e2e.stack.xcom(again, "report")["counts"] == {"already_done": 9, "rejected": 2}


def test_backfill_resets_each_day_once_with_its_interval(sqlite_e2e):
    e2e = sqlite_e2e
    e2e.emulator.clear_calls()
    # Three India-time days; each backfill run's data interval is one of them.
    e2e.stack.create_backfill("2026-11-21T00:00:00+05:30", "2026-11-23T00:00:00+05:30", max_active_runs=3)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        runs = e2e.stack.api("GET", "/dags/leadsquared_reset/dagRuns", params={"run_type": "backfill"})["dag_runs"]
        if len(runs) == 3 and all(r["state"] in ("success", "failed") for r in runs):
            break
        time.sleep(3)
    assert sorted(r["state"] for r in runs) == ["success"] * 3
    calls = e2e.reset_calls()
    windows = {(c["body"]["FromDate"], c["body"]["ToDate"]) for c in calls}
    # DAYS[1] was reset by the manual run above (same window, same categories): nothing is sent again.
    assert windows == {utc_window(DAYS[0]), utc_window(DAYS[2])}
    assert sum(e2e.emulator.stats()["rate_limited"].values()) == 0
    for run in runs:
        start = run["data_interval_start"]
        day = next(d for d in DAYS if start.startswith(utc_window(d)[0][:10]))
        day_calls = [c for c in calls if (c["body"]["FromDate"], c["body"]["ToDate"]) == utc_window(day)]
        if day == DAYS[1]:
            assert day_calls == []  # reset by the manual run above: never sent twice
        else:
            check_day_run(e2e, run["dag_run_id"], day, day_calls)


def test_dry_run_sends_nothing_and_reports_what_it_would_send(sqlite_e2e):
    frm, to = iso_window(DAYS[2])
    run_id, state, _ = trigger_and_wait(
        sqlite_e2e, {"from_date": frm.replace("00:00:00", "06:00:00"), "to_date": to, "dry_run": True}, "dry"
    )
    assert state == "success"
    assert sqlite_e2e.emulator.calls() == []
    audit = sqlite_e2e.audit(run_id)
    assert audit and {row[0] for row in audit.values()} == {"dry_run"}
    assert all(row[7] == 0 for row in audit.values())  # sends


@pytest.mark.parametrize(
    ("conf", "failed_task", "message"),
    [
        pytest.param({"max_leads_per_run": 2}, "plan", "exceed max_leads_per_run=2", id="over-guard"),
        pytest.param({}, "plan", "allow_all_time=true", id="all-time-without-opt-in"),
        pytest.param({"activity_event_codes": [], "audit_types": []}, "plan", "no category chosen", id="no-category"),
        pytest.param(
            {"from_date": "2026-11-23", "to_date": "2026-11-22T00:00:00+05:30"}, "plan", "no timezone", id="naive-date"
        ),
    ],
)
def test_refused_runs_send_nothing(sqlite_e2e, conf, failed_task, message):
    if "max_leads_per_run" in conf:
        conf = {**conf, "from_date": iso_window(DAYS[0])[0], "to_date": iso_window(DAYS[2])[1]}
    run_id, state, _ = trigger_and_wait(sqlite_e2e, conf, "refused")

    assert state == "failed"
    assert [c for c in sqlite_e2e.emulator.calls() if c["path"].endswith("Lead.Reset")] == []
    tis = {ti["task_id"]: ti for ti in sqlite_e2e.stack.task_instances(run_id)}
    assert tis[failed_task]["state"] == "failed"
    assert tis[failed_task]["try_number"] == 1  # refused for good, not retried
    log = sqlite_e2e.stack.api(
        "GET",
        f"/dags/leadsquared_reset/dagRuns/{run_id}/taskInstances/plan/logs/1",
        headers={"Accept": "application/json"},
    )
    assert message in json.dumps(log)
    # The alert: one line for this run, with the reason and a link to the run.
    alerts = (sqlite_e2e.stack.config.home / "logs" / "leadsquared_alerts.jsonl").read_text().splitlines()
    [alert] = [json.loads(line) for line in alerts if json.loads(line)["run_id"] == run_id]
    assert alert["task_id"] == "report"
    assert alert["link"].endswith(f"/dags/leadsquared_reset/runs/{run_id}")
    assert "no plan" in alert["reason"] and alert["summary"] is None


def test_failures_over_threshold_fail_the_run_show_the_batch_and_alert(sqlite_e2e):
    e2e = sqlite_e2e
    lead = e2e.scenario.leads[0]["ProspectId"]
    e2e.emulator.configure(failing_leads=(lead,))
    try:
        conf = {"from_date": "2026-11-25T00:00:00+05:30", "to_date": "2026-11-25T23:59:59+05:30", "lead_ids": [lead]}
        run_id, state, calls = trigger_and_wait(e2e, conf, "failing")
    finally:
        e2e.emulator.configure(failing_leads=())
    assert state == "failed"
    assert len(calls) == 6  # 1 + max_retries (5), then given up
    tis = {(ti["task_id"], ti["map_index"]): ti for ti in e2e.stack.task_instances(run_id)}
    assert tis[("reset_batch.reset", 0)]["state"] == "success"
    check = tis[("reset_batch.check", 0)]
    assert (check["state"], check["rendered_map_index"]) == ("failed", "batch 1: leads 1–1")
    assert tis[("report", -1)]["state"] == "failed"
    alerts = (e2e.stack.config.home / "logs" / "leadsquared_alerts.jsonl").read_text().splitlines()
    [alert] = [json.loads(line) for line in alerts if json.loads(line)["run_id"] == run_id]
    assert "over failure_threshold=0" in alert["reason"]
    assert alert["summary"]["counts"] == {"failed": 1}
    assert alert["summary"]["first_failed"][0]["lead_id"] == lead


def test_no_key_in_logs_xcom_rendered_fields_audit_or_emulator_record(sqlite_e2e):
    """After every run of this module: neither key appears anywhere a user or an attacker could read."""
    from tests.conftest import ADMIN_ACCESS, ADMIN_SECRET

    e2e = sqlite_e2e
    home = e2e.stack.config.home
    texts = [p.read_text(errors="replace") for p in (home / "logs").rglob("*") if p.is_file()]
    texts += [p.read_text(errors="replace") for p in (home / "stack-logs").rglob("*.log")]
    runs = e2e.stack.api("GET", "/dags/leadsquared_reset/dagRuns", params={"limit": 100})["dag_runs"]
    assert len(runs) >= 4
    for run in runs:
        for ti in e2e.stack.task_instances(run["dag_run_id"]):
            texts.append(json.dumps(ti.get("rendered_fields")))
            path = f"/dags/leadsquared_reset/dagRuns/{run['dag_run_id']}/taskInstances/{ti['task_id']}/xcomEntries"
            texts.append(json.dumps(e2e.stack.api("GET", path, params={"map_index": ti["map_index"]})))
    texts.append(json.dumps(e2e.state("SELECT * FROM leadsquared_reset_audit")))
    texts.append(json.dumps(e2e.state("SELECT * FROM leadsquared_reset_runs")))
    texts.append(json.dumps(e2e.emulator.calls()))
    assert sum(len(t) for t in texts) > 10_000  # the logs were really read
    for key in (ADMIN_SECRET, ADMIN_ACCESS):
        assert not [t[:200] for t in texts if key in t]
