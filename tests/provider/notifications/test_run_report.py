"""RunReportNotifier: the alert of a failed run is written even when its summary cannot be built."""

from __future__ import annotations

import json
from types import SimpleNamespace

from leadsquared_provider.notifications.run_report import RunReportNotifier


def _context(run_id: str) -> dict:
    return {
        "dag_run": SimpleNamespace(dag_id="leadsquared_reset", run_id=run_id),
        "ti": SimpleNamespace(task_id="report"),
        "exception": RuntimeError("3 lead(s) not reset, over failure_threshold=0"),
    }


def test_alert_is_written_when_the_state_store_is_down(tmp_path, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_BROKEN_STATE", json.dumps({"conn_type": "postgres", "host": "127.0.0.1", "port": 1})
    )
    alerts = tmp_path / "alerts.jsonl"
    RunReportNotifier(path=str(alerts), state_conn_id="broken_state").notify(_context("manual__down"))
    [alert] = [json.loads(line) for line in alerts.read_text().splitlines()]
    assert alert["run_id"] == "manual__down" and alert["summary"] is None
    assert alert["reason"] == "3 lead(s) not reset, over failure_threshold=0"
    assert alert["summary_missing"].startswith("summary unavailable: OperationalError")
    assert alert["link"].endswith("/dags/leadsquared_reset/runs/manual__down")


def test_alert_of_a_run_never_planned_says_nothing_was_sent(tmp_path, state_conn):
    alerts = tmp_path / "alerts.jsonl"
    RunReportNotifier(path=str(alerts), state_conn_id=state_conn).notify(_context("manual__unplanned"))
    [alert] = [json.loads(line) for line in alerts.read_text().splitlines()]
    assert alert["summary"] is None
    assert alert["summary_missing"] == "the plan never ran to the end: nothing was staged or sent"


def test_the_notice_on_deferred_leads_says_nothing_of_a_run_that_deferred_none(tmp_path, state_conn):
    alerts = tmp_path / "alerts.jsonl"
    RunReportNotifier(path=str(alerts), state_conn_id=state_conn, notice_on_deferred=True).notify(
        _context("manual__nothing_deferred")
    )
    assert not alerts.exists()  # a notice only when leads were deferred (tests/e2e/test_daily_quota.py)
