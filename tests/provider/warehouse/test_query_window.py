"""The shipped candidate query's window is half-open in UTC: consecutive days leave no gap and no overlap.

Two consecutive India-time days (scheduled runs: their data intervals) are rendered through the plan's own
window code and the shipped ``include/sql/candidates.sql``, then read through ``iter_candidate_ids`` from real
warehouses with fractional-second timestamps: SQLite text, PostgreSQL ``timestamp`` and ``timestamptz`` (the
database's time zone is India's, so a bound read in the session's zone would be 5.5 h off), MariaDB
``DATETIME(6)`` and ``TIMESTAMP(6)`` (the server's time zone India's). Each row belongs to exactly one day.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import jinja2
import pytest

from leadsquared_provider.rules.planning import build_scope, resolve_window
from leadsquared_provider.warehouse.candidates import iter_candidate_ids
from tests.pg_server import unique_db_name

SQL_DIR = Path(__file__).resolve().parents[3] / "include" / "sql"
DAY_1 = (datetime(2026, 11, 20, 18, 30, tzinfo=UTC), datetime(2026, 11, 21, 18, 30, tzinfo=UTC))  # Nov 21 IST
DAY_2 = (DAY_1[1], datetime(2026, 11, 22, 18, 30, tzinfo=UTC))  # Nov 22 IST
# UTC instants, each with the day it belongs to (None: neither).
ROWS = {
    "2026-11-20 18:29:59.999000": None,  # the last instant before day 1
    "2026-11-20 18:30:00.000000": 1,  # day 1's first instant
    "2026-11-21 18:29:59.500000": 1,  # the half second that a window ending at 18:29:59 (inclusive) missed
    "2026-11-21 18:30:00.000000": 2,  # day 2's first instant: not day 1's too
    "2026-11-22 06:00:00.250000": 2,
    "2026-11-22 18:29:59.750000": 2,
    "2026-11-22 18:30:00.000000": None,  # day 3's first instant
}
LEAD_OF = {stamp: str(uuid.uuid5(uuid.NAMESPACE_URL, stamp)) for stamp in ROWS}


def rendered_query(day: tuple[datetime, datetime]) -> str:
    """What the plan task renders for a scheduled run of ``day``: its window, through the shipped query."""
    window = resolve_window(
        from_date=None, to_date=None, run_type="scheduled", interval_start=day[0], interval_end=day[1]
    )
    scope = build_scope({"delete_notes": True}, window, allow_all_time=False)
    template = jinja2.Environment(loader=jinja2.FileSystemLoader(SQL_DIR)).get_template("candidates.sql")
    return template.render(window_start=scope.from_text, window_end=scope.end_text)


def expected(day: int) -> set[str]:
    return {LEAD_OF[stamp] for stamp, belongs in ROWS.items() if belongs == day}


def read_both_days(conn_id: str) -> tuple[set[str], set[str]]:
    from airflow.sdk import BaseHook

    return tuple(
        set(iter_candidate_ids(BaseHook.get_hook(conn_id), rendered_query(day), source="include/sql/candidates.sql"))
        for day in (DAY_1, DAY_2)
    )


def test_the_rendered_window_is_half_open_and_the_api_keeps_its_inclusive_last_second():
    window = resolve_window(
        from_date=None, to_date=None, run_type="scheduled", interval_start=DAY_1[0], interval_end=DAY_1[1]
    )
    scope = build_scope({"delete_notes": True}, window, allow_all_time=False)
    assert (scope.from_text, scope.to_text, scope.end_text) == (
        "2026-11-20 18:30:00",
        "2026-11-21 18:29:59",  # LeadSquared's ToDate: inclusive, to the second
        "2026-11-21 18:30:00",  # the query's end: exclusive
    )
    sql = rendered_query(DAY_1)
    assert "requested_at >= '2026-11-20 18:30:00' AND requested_at < '2026-11-21 18:30:00'" in sql
    assert "BETWEEN" not in sql.split("SELECT", 1)[1]


def test_sqlite_text_timestamps(sqlite_warehouse):
    conn_id, path = sqlite_warehouse
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("CREATE TABLE lsq_reset_requests (prospect_id TEXT, requested_at TEXT)")
        db.executemany(
            "INSERT INTO lsq_reset_requests VALUES (?, ?)",
            [(LEAD_OF[stamp], stamp.rstrip("0").rstrip(".")) for stamp in ROWS],  # '...:59.5', '...:00'
        )
    assert read_both_days(conn_id) == (expected(1), expected(2))


@pytest.mark.postgres
@pytest.mark.parametrize("column", ["timestamp", "timestamptz"])
def test_postgres_timestamp_columns_compare_in_utc_whatever_the_database_time_zone(
    postgres_server, postgres_db, monkeypatch, column
):
    reader = unique_db_name("win")
    values = ", ".join(f"('{LEAD_OF[stamp]}', '{stamp}+00')" for stamp in ROWS)  # UTC instants
    with closing(postgres_server.connect(postgres_db)) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"CREATE TABLE lsq_reset_requests (prospect_id TEXT, requested_at {column})")
            cur.execute("SET TIME ZONE 'UTC'")  # a timestamp column stores the UTC wall time
            cur.execute(f"INSERT INTO lsq_reset_requests VALUES {values}")
            cur.execute(f"ALTER DATABASE {postgres_db} SET timezone TO 'Asia/Kolkata'")  # every new session's
            cur.execute(f"CREATE ROLE {reader} LOGIN")
            cur.execute(f"GRANT SELECT ON lsq_reset_requests TO {reader}")
    conn_json = {"conn_type": "postgres", "host": postgres_server.host, "port": postgres_server.port}
    monkeypatch.setenv("AIRFLOW_CONN_WH_WINDOW", json.dumps({**conn_json, "login": reader, "schema": postgres_db}))
    try:
        assert read_both_days("wh_window") == (expected(1), expected(2))
    finally:
        with closing(postgres_server.connect(postgres_db)) as conn:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f"DROP OWNED BY {reader}")
                cur.execute(f"DROP ROLE {reader}")


@pytest.mark.parametrize("client", ["mysqlclient", "mysql-connector-python"])
@pytest.mark.parametrize("column", ["DATETIME(6)", "TIMESTAMP(6)"])
def test_mariadb_datetime_and_timestamp_columns(mariadb_server, mariadb_db, monkeypatch, column, client):
    values = ", ".join(f"('{LEAD_OF[stamp]}', '{stamp}')" for stamp in ROWS)
    mariadb_server.execute(
        f"CREATE TABLE lsq_reset_requests (prospect_id CHAR(36), requested_at {column} NULL)",
        "SET time_zone = '+00:00'",  # the rows are UTC instants
        f"INSERT INTO lsq_reset_requests VALUES {values}",
        database=mariadb_db,
    )
    monkeypatch.setenv("AIRFLOW_CONN_WH_WINDOW", mariadb_server.airflow_conn_json(mariadb_db, client=client))
    mariadb_server.execute("SET GLOBAL time_zone = '+05:30'")  # every new session's, as a server in India
    try:
        assert read_both_days("wh_window") == (expected(1), expected(2))
    finally:
        mariadb_server.execute("SET GLOBAL time_zone = 'SYSTEM'")
