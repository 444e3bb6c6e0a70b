"""The report's audit export to a real PostgreSQL warehouse: the summary is pushed before the export, a
transient failure is retried by the task (the whole report runs again and the export replaces the run's
rows), a deterministic one is final; either way the summary says what failed."""

from __future__ import annotations

import copy
import json

import pytest

from leadsquared_provider.rules.params import RunParams
from leadsquared_provider.steps.report import report_run
from leadsquared_provider.store import StateStore
from leadsquared_provider.warehouse.audit_export import AuditExportError, run_audit_export
from tests.pg_server import free_port
from tests.provider.steps.test_verify import RUN, stage_run
from tests.provider.warehouse.test_candidates import create_audit_table, pg_execute

LEADS = [f"{n:08x}-0000-4000-8000-00000000e0e0" for n in range(1, 4)]

pytestmark = pytest.mark.postgres


@pytest.fixture
def warehouse(postgres_server, postgres_db, monkeypatch):
    """The documented PostgreSQL audit table, and a connection ``wh_export`` to a closed port for now."""
    create_audit_table(lambda sql: pg_execute(postgres_server, postgres_db, sql), "PostgreSQL", "audit")
    closed = {"conn_type": "postgres", "host": "127.0.0.1", "port": free_port(), "login": "postgres"}
    monkeypatch.setenv("AIRFLOW_CONN_WH_EXPORT", json.dumps({**closed, "schema": postgres_db}))

    def reachable() -> None:
        monkeypatch.setenv("AIRFLOW_CONN_WH_EXPORT", postgres_server.airflow_conn_json(postgres_db))

    return reachable


def report(store: StateStore, pushed: list[dict], table: str = "public.audit") -> dict:
    """The report task's body (its XCom pushes copied as they are made)."""
    return report_run(
        store,
        RUN,
        RunParams(),
        push=lambda summary: pushed.append(copy.deepcopy(summary)),
        export=run_audit_export(store, RUN, table, "wh_export"),
    )


def test_a_transient_export_failure_keeps_the_summary_and_the_retry_exports_once(
    state_conn, warehouse, postgres_server, postgres_db
):
    with StateStore(state_conn) as store:
        stage_run(store, LEADS)
        pushed: list[dict] = []
        with pytest.raises(AuditExportError) as failed:
            report(store, pushed)

        assert failed.value.deterministic is False  # the DAG lets the task retry it
        first, last = pushed
        assert first["counts"] == {"queued": 3} and "audit_exported_rows" not in first  # pushed before the export
        assert "public.audit" in last["audit_export_error"] and last["counts"] == {"queued": 3}
        assert pg_execute(postgres_server, postgres_db, "SELECT count(*) FROM audit") == [(0,)]

        warehouse()  # the warehouse answers again: the task's retry runs the report again
        pushed.clear()
        summary = report(store, pushed)

    assert summary["audit_exported_rows"] == 3 and "audit_export_error" not in summary
    assert pushed[-1] == summary
    rows = pg_execute(postgres_server, postgres_db, "SELECT lead_id, run_id, outcome FROM audit ORDER BY lead_id")
    assert rows == [(lead, RUN.split("/", 1)[1], "queued") for lead in LEADS]


def test_a_deterministic_export_failure_is_final_and_named_in_the_summary(state_conn, warehouse):
    warehouse()
    with StateStore(state_conn) as store:
        stage_run(store, LEADS)
        pushed: list[dict] = []
        with pytest.raises(AuditExportError) as failed:
            report(store, pushed, table="public.no_such_table")

    assert failed.value.deterministic is True  # the DAG fails the task for good: a retry would fail the same
    assert "public.no_such_table" in pushed[-1]["audit_export_error"]
    assert pushed[0]["counts"] == pushed[-1]["counts"] == {"queued": 3}
