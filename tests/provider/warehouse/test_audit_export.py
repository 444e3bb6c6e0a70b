"""The audit export to real warehouses (PostgreSQL, MariaDB through the MySQL provider, SQLite), into the
tables created by the statements of docs/audit-export.md, so the documentation is what is tested.

Then the report's export to PostgreSQL: the summary is pushed before the export, a transient failure is retried
by the task (the whole report runs again and the export replaces the run's rows), a deterministic one is final;
either way the summary says what failed.
"""

from __future__ import annotations

import copy
import json
import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from leadsquared_provider.rules.outcomes import Outcome
from leadsquared_provider.rules.params import RunParams
from leadsquared_provider.steps.report import report_run
from leadsquared_provider.store import StateStore, parse_run_key
from leadsquared_provider.warehouse.audit_export import EXPORT_COLUMNS, AuditExportError, export_audit, run_audit_export
from tests.pg_server import free_port
from tests.provider.steps.test_verify import RUN as STAGED_RUN
from tests.provider.steps.test_verify import stage_run
from tests.provider.warehouse.warehouses import (
    create_audit_table,
    documented_sql,
    hook,
    maria_count,
    pg_execute,
    sqlite_rows,
)

RUN = "leadsquared_reset/manual__2026-11-01"
STARTED = datetime(2026, 11, 1, 6, 30, 0, 250000, tzinfo=UTC)
LEADS = [f"{n:08x}-0000-4000-8000-00000000e0e0" for n in range(1, 4)]  # the report's staged run's


def audit_rows(count: int, *, run_key: str = RUN, message: str = "queued") -> list[dict[str, Any]]:
    return [
        {
            "run_key": run_key,
            "dag_id": "leadsquared_reset",
            "run_id": parse_run_key(run_key).run_id,
            "lead_id": str(uuid.UUID(int=n, version=4)),
            "from_date": "2026-10-31 18:30:00",
            "to_date": None,
            "categories": ["activities", "audits"],
            "outcome": Outcome.QUEUED if n % 2 else Outcome.FAILED,
            "status_code": 200 if n % 2 else 503,
            "exception_type": None if n % 2 else "ServiceUnavailable",
            "message": message,
            "attempts": 1 if n % 2 else 3,
            "possibly_repeated": not n % 2,
            "started_at": STARTED,
            "finished_at": STARTED.timestamp() + 2,  # epoch seconds, as the state store keeps them
        }
        for n in range(count)
    ]


def test_docs_create_every_export_column_for_every_warehouse():
    for heading in ("PostgreSQL", "Snowflake", "BigQuery", "Amazon Redshift", "Databricks", "MySQL / MariaDB"):
        create = documented_sql(heading)[0]
        body = create.split("(", 1)[1]
        columns = tuple(line.split()[0] for line in body.splitlines() if line.strip() and line.split()[0].islower())
        assert columns == EXPORT_COLUMNS, heading


# ------------------------------------------------------------------------------------------- PostgreSQL
@pytest.mark.postgres
def test_postgres_export_replaces_the_runs_rows(pg_warehouse, postgres_server):
    create_audit_table(lambda sql: pg_execute(postgres_server, pg_warehouse.db, sql), "PostgreSQL", "audit")
    owner = hook("wh_pg_owner")

    assert export_audit(owner, "public.audit", RUN, audit_rows(5), chunk=2) == 5
    assert export_audit(owner, "public.audit", RUN, audit_rows(4, message="again"), chunk=2) == 4

    rows = pg_execute(
        postgres_server,
        pg_warehouse.db,
        "SELECT lead_id, message, started_at, finished_at, possibly_repeated, categories FROM audit ORDER BY lead_id",
    )
    assert [row[:2] for row in rows] == [(str(uuid.UUID(int=n, version=4)), "again") for n in range(4)]
    naive = STARTED.replace(tzinfo=None)
    assert rows[0][2:] == (naive, naive + timedelta(seconds=2), True, "activities,audits")


# ------------------------------------------------------------------------------------------- MariaDB
def test_mariadb_export_writes_each_run_once_in_chunked_statements(maria_warehouse, mariadb_server):
    root, db = hook("wh_maria_root"), maria_warehouse.db
    count = "SELECT COUNT(*) FROM audit WHERE run_key = '{}'"
    other = "leadsquared_reset/scheduled__2026-10-31"
    assert export_audit(root, "audit", other, audit_rows(2, run_key=other)) == 2

    inserts = mariadb_server.global_status("Com_insert")
    assert export_audit(root, "audit", RUN, audit_rows(25), chunk=10) == 25
    assert mariadb_server.global_status("Com_insert") - inserts == 3  # 10 + 10 + 5 rows, not 25 statements
    assert maria_count(mariadb_server, db, count.format(RUN)) == 25

    assert export_audit(root, "audit", RUN, audit_rows(25, message="again"), chunk=10) == 25
    assert maria_count(mariadb_server, db, count.format(RUN)) == 25  # replaced, not added
    assert maria_count(mariadb_server, db, f"{count.format(RUN)} AND message = 'again'") == 25
    assert maria_count(mariadb_server, db, count.format(other)) == 2  # other runs untouched

    [row] = mariadb_server.execute(
        "SELECT outcome, status_code, exception_type, attempts, possibly_repeated, from_date, to_date, "
        f"categories, started_at, finished_at FROM audit WHERE lead_id = '{uuid.UUID(int=2, version=4)}' "
        f"AND run_key = '{RUN}'",
        database=db,
    )
    naive = STARTED.replace(tzinfo=None)
    expected = ("failed", 503, "ServiceUnavailable", 3, 1, "2026-10-31 18:30:00", None, "activities,audits")
    assert row == (*expected, naive, naive + timedelta(seconds=2))


def test_mariadb_export_by_a_select_only_user_names_the_table(maria_warehouse, mariadb_server):
    mariadb_server.execute(
        f"INSERT INTO audit (run_key, dag_id, run_id, lead_id, outcome) VALUES ('{RUN}', 'd', 'r', 'x', 'queued')",
        database=maria_warehouse.db,
    )

    with pytest.raises(AuditExportError) as refused:
        export_audit(hook("wh_maria_reader"), "audit", RUN, audit_rows(3))

    assert refused.value.deterministic is True
    assert "to table audit failed" in str(refused.value)
    assert "DELETE command denied" in str(refused.value)
    assert maria_count(mariadb_server, maria_warehouse.db, "SELECT COUNT(*) FROM audit") == 1


def test_mariadb_export_to_a_missing_table_names_it(maria_warehouse):
    with pytest.raises(AuditExportError) as failed:
        export_audit(hook("wh_maria_root"), "no_such_audit", RUN, audit_rows(1))

    assert failed.value.deterministic is True
    assert "to table no_such_audit failed" in str(failed.value)
    assert "doesn't exist" in str(failed.value)


# ------------------------------------------------------------------------------------------- SQLite
def test_sqlite_export_replaces_the_runs_rows(sqlite_db):
    conn_id, path = sqlite_db
    other = "leadsquared_reset/scheduled__2026-10-31"
    export_audit(hook(conn_id), "audit", other, audit_rows(1, run_key=other))

    assert export_audit(hook(conn_id), "audit", RUN, audit_rows(7), chunk=3) == 7
    assert export_audit(hook(conn_id), "audit", RUN, audit_rows(6, message="again"), chunk=3) == 6

    assert sqlite_rows(path, f"SELECT COUNT(*), MIN(message) FROM audit WHERE run_key = '{RUN}'") == [(6, "again")]
    assert sqlite_rows(path, f"SELECT COUNT(*) FROM audit WHERE run_key = '{other}'") == [(1,)]
    lead = uuid.UUID(int=1, version=4)
    [row] = sqlite_rows(
        path,
        "SELECT outcome, possibly_repeated, started_at, finished_at FROM audit "
        f"WHERE lead_id = '{lead}' AND run_key = '{RUN}'",
    )
    assert row == ("queued", 0, "2026-11-01 06:30:00.250000", "2026-11-01 06:30:02.250000")


def test_sqlite_export_with_a_bad_row_rolls_back_to_the_previous_export(sqlite_db):
    conn_id, path = sqlite_db
    export_audit(hook(conn_id), "audit", RUN, audit_rows(4))
    rows = [*audit_rows(5, message="again"), {"lead_id": "x", "outcome": "queued", "colour": "red"}]

    with pytest.raises(ValueError, match=r"columns the export does not have: \['colour'\]"):
        export_audit(hook(conn_id), "audit", RUN, rows, chunk=2)

    assert sqlite_rows(path, "SELECT COUNT(*), MIN(message) FROM audit") == [(4, "queued")]


def test_export_refuses_rows_of_another_run(sqlite_db):
    with pytest.raises(ValueError, match="given to the export of run"):
        export_audit(hook(sqlite_db[0]), "audit", RUN, audit_rows(1, run_key="other/run"))


@pytest.mark.parametrize(
    "table",
    [
        pytest.param("audit; DROP TABLE leads", id="statement"),
        pytest.param("audit--x", id="comment"),
        pytest.param('"audit"', id="quoted"),
        pytest.param("audit x", id="space"),
        pytest.param("", id="empty"),
        pytest.param("a.b.c.d", id="four-parts"),
        pytest.param("1audit", id="leading-digit"),
    ],
)
def test_export_refuses_a_table_name_that_is_not_an_identifier(sqlite_db, table):
    with pytest.raises(ValueError, match="is not a plain table name"):
        export_audit(hook(sqlite_db[0]), table, RUN, audit_rows(1))

    assert sqlite_rows(sqlite_db[1], "SELECT COUNT(*) FROM leads") == [(5,)]


@pytest.mark.parametrize("table", ["audit`; DROP TABLE x", "my-project.audit--x.t", "lsq"])
def test_bigquery_table_name_is_checked_before_any_call(table):
    # BigQuery cannot run here; the name check comes first, so an object with no methods at all suffices.
    with pytest.raises(ValueError, match="is not a BigQuery table name"):
        export_audit(SimpleNamespace(conn_type="gcpbigquery"), table, RUN, audit_rows(1))


# ------------------------------------------------------------------------------------------- the report's export
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
        STAGED_RUN,
        RunParams(),
        push=lambda summary: pushed.append(copy.deepcopy(summary)),
        export=run_audit_export(store, STAGED_RUN, table, "wh_export"),
    )


@pytest.mark.postgres
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
    assert rows == [(lead, parse_run_key(STAGED_RUN).run_id, "queued") for lead in LEADS]


@pytest.mark.postgres
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
