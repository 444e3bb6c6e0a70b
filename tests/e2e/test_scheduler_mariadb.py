"""The DAG under the real scheduler with a MariaDB warehouse: the candidate query and the audit export."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.checks import check_day_run
from tests.e2e.conftest import E2E, _start
from tests.e2e.scenario import DAYS, Scenario, iso_window
from tests.pg_server import unique_db_name

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

EXPORT_TABLE = "lsq_reset_audit_export"
READER = "lsq_reader"


def documented_mysql_ddl() -> str:
    """The MySQL/MariaDB CREATE TABLE of docs/audit-export.md, as a user would copy it."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "audit-export.md").read_text()
    block = re.search(r"### MySQL / MariaDB\s+```sql\n(.*?)```", text, re.S)
    assert block, "docs/audit-export.md has no MySQL / MariaDB statement"
    create = block.group(1).split(";")[0]  # the CREATE TABLE (the GRANT after it is the reader's, below)
    return create.replace("leadsquared_reset_audit", EXPORT_TABLE, 1)


@pytest.fixture(scope="module")
def mariadb_e2e(tmp_path_factory: pytest.TempPathFactory, mariadb_server: Any) -> Iterator[E2E]:
    tmp = tmp_path_factory.mktemp("e2e-mariadb")
    scenario = Scenario()
    db = mariadb_server.create_database(unique_db_name("wh"))

    def query(sql: str, params: tuple = ()) -> list[tuple]:
        return mariadb_server.query(sql, params, database=db)

    with mariadb_server.connect(db) as conn:
        cur = conn.cursor()
        scenario.write_warehouse_rows(lambda sql, rows: cur.executemany(sql, rows) if rows else cur.execute(sql))
        cur.execute(documented_mysql_ddl())
        conn.commit()
    mariadb_server.execute(
        f"CREATE USER '{READER}'@'%' IDENTIFIED BY 'reader-pw'",
        f"GRANT SELECT ON `{db}`.lsq_reset_requests TO '{READER}'@'%'",
        f"GRANT SELECT, INSERT, DELETE ON `{db}`.{EXPORT_TABLE} TO '{READER}'@'%'",
    )
    conn_json = mariadb_server.airflow_conn_json(db, login=READER, password="reader-pw")
    try:
        yield from _start(tmp, "mariadb", conn_json, query, scenario)
    finally:
        mariadb_server.execute(f"DROP USER IF EXISTS '{READER}'@'%'")
        mariadb_server.drop_database(db)


def test_mariadb_warehouse_run_and_audit_export(mariadb_e2e):
    e2e = mariadb_e2e
    day = DAYS[1]
    frm, to = iso_window(day)
    conf = {"from_date": frm, "to_date": to, "batch_size": 4, "audit_export_table": EXPORT_TABLE}
    run_id = e2e.stack.trigger(conf, run_id=f"maria__{time.time_ns()}")
    assert e2e.stack.wait_for_run(run_id) == "success"
    check_day_run(e2e, run_id, day, e2e.reset_calls())

    audit = e2e.audit(run_id)
    exported = e2e.query(
        f"SELECT lead_id, outcome, run_id, from_date FROM {EXPORT_TABLE} WHERE run_key = %s",
        (f"leadsquared_reset/{run_id}",),
    )
    assert {row[0]: row[1] for row in exported} == {lead: row[0] for lead, row in audit.items()}
    assert {row[2] for row in exported} == {run_id}
    assert e2e.stack.xcom(run_id, "report")["audit_exported_rows"] == len(audit)
    # Nothing of ours was created in the warehouse: only the user's two tables.
    assert {r[0] for r in e2e.query("SHOW TABLES")} == {"lsq_reset_requests", EXPORT_TABLE}

    # A re-run of the report replaces the run's exported rows instead of adding to them.
    e2e.stack.api(
        "POST",
        "/dags/leadsquared_reset/clearTaskInstances",
        json={
            "dry_run": False,
            "dag_run_id": run_id,
            "task_ids": ["report"],
            "only_failed": False,
            "reset_dag_runs": True,
        },
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        [report] = [ti for ti in e2e.stack.task_instances(run_id) if ti["task_id"] == "report"]
        if report["try_number"] >= 2 and report["state"] in ("success", "failed"):
            break
        time.sleep(2)
    assert report["try_number"] >= 2 and report["state"] == "success"
    count = e2e.query(f"SELECT COUNT(*) FROM {EXPORT_TABLE} WHERE run_key = %s", (f"leadsquared_reset/{run_id}",))
    assert count[0][0] == len(audit)
    print(json.dumps({"exported": len(exported)}))
