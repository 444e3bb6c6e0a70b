"""The warehouse module against real warehouses: PostgreSQL, MariaDB (through the MySQL provider) and SQLite.

Connections come from ``AIRFLOW_CONN_*`` env vars and hooks from ``BaseHook.get_hook``, as in the plan task.
The candidate query runs as a user that may only SELECT; the audit export's tables are created from the
statements of docs/audit-export.md, so the documentation is what is tested.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from leadsquared_provider.exceptions import CandidateQueryError
from leadsquared_provider.rules.outcomes import Outcome
from leadsquared_provider.warehouse.audit_export import EXPORT_COLUMNS, AuditExportError, export_audit
from leadsquared_provider.warehouse.candidates import iter_candidate_ids, normalise_id
from tests.mariadb_server import MariaDBServer
from tests.pg_server import PostgresServer, free_port, unique_db_name

DOCS = Path(__file__).resolve().parents[3] / "docs" / "audit-export.md"
IDS = [str(uuid.UUID(int=n, version=4)) for n in range(1, 8)]
RUN = "leadsquared_reset/manual__2026-11-01"
STARTED = datetime(2026, 11, 1, 6, 30, 0, 250000, tzinfo=UTC)


def hook(conn_id: str):
    from airflow.sdk import BaseHook

    return BaseHook.get_hook(conn_id)


def documented_sql(heading: str) -> list[str]:
    """The statements of the ```sql block under ``### <heading>`` in docs/audit-export.md."""
    text = DOCS.read_text()
    section = text.split(f"### {heading}\n", 1)[1]
    block = section.split("```sql\n", 1)[1].split("```", 1)[0]
    without_comments = re.sub(r"--[^\n]*", "", block)
    return [statement.strip() for statement in without_comments.split(";") if statement.strip()]


def create_audit_table(run: Callable[[str], Any], heading: str, table: str) -> None:
    """Run the documented CREATE TABLE/INDEX statements (not the GRANT) under another table name."""
    for statement in documented_sql(heading):
        if not statement.startswith("GRANT"):
            run(statement.replace("leadsquared_reset_audit", table))


def audit_rows(count: int, *, run_key: str = RUN, message: str = "queued") -> list[dict[str, Any]]:
    return [
        {
            "run_key": run_key,
            "dag_id": "leadsquared_reset",
            "run_id": run_key.split("/", 1)[1],
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


def wait_until(check: Callable[[], bool], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


# ------------------------------------------------------------------------------------------- values
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(IDS[0], IDS[0], id="str"),
        pytest.param(None, None, id="none"),
        pytest.param(uuid.UUID(IDS[1]), IDS[1], id="uuid"),
        pytest.param(uuid.UUID(IDS[2]).bytes, IDS[2], id="16-bytes"),
        pytest.param(bytearray(uuid.UUID(IDS[3]).bytes), IDS[3], id="16-bytearray"),
        pytest.param(memoryview(uuid.UUID(IDS[4]).bytes), IDS[4], id="16-memoryview"),
        pytest.param(IDS[5].encode(), IDS[5], id="utf8-bytes"),
        pytest.param(42, "42", id="int"),
    ],
)
def test_normalise_id(value, expected):
    assert normalise_id(value) == expected


def test_normalise_id_refuses_bytes_that_are_not_text():
    with pytest.raises(ValueError):
        normalise_id(b"\xff\xfe\x00")


def test_docs_create_every_export_column_for_every_warehouse():
    for heading in ("PostgreSQL", "Snowflake", "BigQuery", "Amazon Redshift", "Databricks", "MySQL / MariaDB"):
        create = documented_sql(heading)[0]
        body = create.split("(", 1)[1]
        columns = tuple(line.split()[0] for line in body.splitlines() if line.strip() and line.split()[0].islower())
        assert columns == EXPORT_COLUMNS, heading


# ------------------------------------------------------------------------------------------- PostgreSQL
def pg_sessions(server: PostgresServer, dbname: str, user: str) -> list[tuple[str, str]]:
    """(state, last statement) of ``user``'s sessions on ``dbname``."""
    with closing(server.connect()) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT state, query FROM pg_stat_activity WHERE datname = %s AND usename = %s", (dbname, user))
            return cur.fetchall()


def pg_execute(server: PostgresServer, dbname: str, *statements: str) -> list[tuple]:
    with closing(server.connect(dbname)) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
            return cur.fetchall() if cur.description else []


@pytest.fixture
def pg_warehouse(postgres_server: PostgresServer, postgres_db: str, monkeypatch: pytest.MonkeyPatch):
    """Table ``leads`` (uuid ids, one NULL) readable by a SELECT-only role; ``secret`` it may not read.

    Connections: ``wh_pg_reader`` (the SELECT-only role) and ``wh_pg_owner`` (superuser).
    """
    reader = unique_db_name("reader")
    values = ", ".join(f"({n}, '{lead}')" for n, lead in enumerate(IDS)) + f", ({len(IDS)}, NULL)"
    pg_execute(
        postgres_server,
        postgres_db,
        "CREATE TABLE leads (seq INTEGER PRIMARY KEY, id UUID)",
        f"INSERT INTO leads VALUES {values}",
        "CREATE TABLE secret (id UUID)",
        "CREATE SEQUENCE probe",
        f"CREATE ROLE {reader} LOGIN",
        f"GRANT SELECT ON leads TO {reader}",
    )
    conn = {"conn_type": "postgres", "host": postgres_server.host, "port": postgres_server.port}
    monkeypatch.setenv("AIRFLOW_CONN_WH_PG_READER", json.dumps({**conn, "login": reader, "schema": postgres_db}))
    monkeypatch.setenv("AIRFLOW_CONN_WH_PG_OWNER", postgres_server.airflow_conn_json(postgres_db))
    yield SimpleNamespace(db=postgres_db, reader=reader)
    assert wait_until(lambda: not pg_sessions(postgres_server, postgres_db, reader)), "reader session left open"
    pg_execute(postgres_server, postgres_db, f"DROP OWNED BY {reader}", f"DROP ROLE {reader}")


def pg_relations(server: PostgresServer, dbname: str) -> list[tuple]:
    return pg_execute(
        server,
        dbname,
        "SELECT n.nspname, c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' "
        "ORDER BY 1, 2",
    )


@pytest.fixture(params=["psycopg", "psycopg2"])
def pg_reader(request, pg_warehouse, postgres_server):
    """The reader's hook: the Postgres provider's (psycopg 3 here), or a DbApiHook whose connections are
    psycopg2's (the provider's choice where SQLAlchemy < 2 or psycopg 3 is not installed)."""
    if request.param == "psycopg":
        return hook("wh_pg_reader")
    import psycopg2
    from airflow.providers.common.sql.hooks.sql import DbApiHook

    class Psycopg2Hook(DbApiHook):
        conn_name_attr = "psycopg2_conn_id"

        def get_conn(self):
            server = postgres_server
            return psycopg2.connect(
                host=server.host, port=server.port, user=pg_warehouse.reader, dbname=pg_warehouse.db
            )

    return Psycopg2Hook()


@pytest.mark.postgres
def test_postgres_reads_uuid_ids_as_text_through_a_server_side_cursor(pg_warehouse, pg_reader, postgres_server):
    stream = iter_candidate_ids(pg_reader, "SELECT id FROM leads ORDER BY seq", chunk=3)
    first = next(stream)

    [(state, statement)] = pg_sessions(postgres_server, pg_warehouse.db, pg_warehouse.reader)
    # Rows come 3 at a time from a cursor declared on the server, inside a still open (read-only) transaction.
    assert state == "idle in transaction"
    assert re.match(r'FETCH FORWARD 3 FROM "leadsquared_candidates_[0-9a-f]{12}"', statement), statement

    ids = [first, *stream]
    assert ids == [*IDS, None]
    assert all(isinstance(lead, str) for lead in ids[:-1])
    assert wait_until(lambda: not pg_sessions(postgres_server, pg_warehouse.db, pg_warehouse.reader))


@pytest.mark.postgres
def test_postgres_stream_closed_early_closes_the_cursor_and_the_session(pg_warehouse, pg_reader, postgres_server):
    stream = iter_candidate_ids(pg_reader, "SELECT id FROM leads ORDER BY seq", chunk=2)
    assert [next(stream), next(stream), next(stream)] == IDS[:3]
    assert len(pg_sessions(postgres_server, pg_warehouse.db, pg_warehouse.reader)) == 1

    stream.close()  # what the planner does after max_leads_per_run + 1 ids

    assert wait_until(lambda: not pg_sessions(postgres_server, pg_warehouse.db, pg_warehouse.reader))
    with pytest.raises(StopIteration):
        next(stream)


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("sql", "driver_text"),
    [
        pytest.param("SELECT id FROM secret", "permission denied", id="permission-denied"),
        pytest.param("SELEC id FROM leads", "syntax error", id="syntax-error"),
        pytest.param("SELECT id FROM nowhere", 'relation "nowhere" does not exist', id="unknown-table"),
        pytest.param("SELECT nope FROM leads", 'column "nope" does not exist', id="unknown-column"),
    ],
)
def test_postgres_query_that_cannot_succeed_is_deterministic(
    pg_warehouse, pg_reader, postgres_server, sql, driver_text
):
    before = pg_relations(postgres_server, pg_warehouse.db)

    with pytest.raises(CandidateQueryError) as failed:
        list(iter_candidate_ids(pg_reader, sql, source="include/sql/candidates.sql"))

    assert failed.value.deterministic is True
    assert "candidate query include/sql/candidates.sql failed" in str(failed.value)
    assert driver_text in str(failed.value)
    assert pg_relations(postgres_server, pg_warehouse.db) == before  # nothing created


@pytest.mark.postgres
def test_postgres_session_is_read_only_even_for_a_user_who_may_write(pg_warehouse, postgres_server):
    before = pg_relations(postgres_server, pg_warehouse.db)

    with pytest.raises(CandidateQueryError) as refused:
        list(iter_candidate_ids(hook("wh_pg_owner"), "SELECT nextval('probe')::text"))

    assert refused.value.deterministic is True
    assert "read-only transaction" in str(refused.value)
    assert pg_execute(postgres_server, pg_warehouse.db, "SELECT is_called FROM probe") == [(False,)]
    assert pg_relations(postgres_server, pg_warehouse.db) == before


@pytest.mark.postgres
def test_postgres_unreachable_server_is_not_deterministic(monkeypatch):
    conn = {"conn_type": "postgres", "host": "127.0.0.1", "port": free_port(), "login": "x", "schema": "x"}
    monkeypatch.setenv("AIRFLOW_CONN_WH_PG_DOWN", json.dumps(conn))

    with pytest.raises(CandidateQueryError) as failed:
        list(iter_candidate_ids(hook("wh_pg_down"), "SELECT 1", source="include/sql/mine.sql"))

    assert failed.value.deterministic is False
    assert "include/sql/mine.sql" in str(failed.value)
    assert "may be transient" in str(failed.value)


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
@pytest.fixture(params=["mysqlclient", "mysql-connector-python"])
def maria_warehouse(request, mariadb_server: MariaDBServer, mariadb_db: str, monkeypatch: pytest.MonkeyPatch):
    """Table ``leads`` (BINARY(16) and CHAR(36) ids, one NULL row) and an audit table; a reader that may only
    SELECT them; ``secret`` it may not read. Connections ``wh_maria_reader`` and ``wh_maria_root`` use the
    MySQL provider's client named by the parameter."""
    reader, password = unique_db_name("rd"), "reader-pw"
    rows = ", ".join(f"({n}, UNHEX(REPLACE('{lead}', '-', '')), '{lead}')" for n, lead in enumerate(IDS))
    mariadb_server.execute(
        "CREATE TABLE leads (seq INT PRIMARY KEY, id_bin BINARY(16), id_char CHAR(36))",
        f"INSERT INTO leads VALUES {rows}, ({len(IDS)}, NULL, NULL)",
        "CREATE TABLE secret (id CHAR(36))",
        database=mariadb_db,
    )
    create_audit_table(lambda sql: mariadb_server.execute(sql, database=mariadb_db), "MySQL / MariaDB", "audit")
    mariadb_server.execute(
        f"CREATE USER '{reader}'@'127.0.0.1' IDENTIFIED BY '{password}'",
        f"GRANT SELECT ON `{mariadb_db}`.leads TO '{reader}'@'127.0.0.1'",
        f"GRANT SELECT ON `{mariadb_db}`.audit TO '{reader}'@'127.0.0.1'",
    )
    extra = {"client": request.param}
    monkeypatch.setenv(
        "AIRFLOW_CONN_WH_MARIA_READER",
        mariadb_server.airflow_conn_json(mariadb_db, login=reader, password=password, **extra),
    )
    monkeypatch.setenv("AIRFLOW_CONN_WH_MARIA_ROOT", mariadb_server.airflow_conn_json(mariadb_db, **extra))
    yield SimpleNamespace(db=mariadb_db, reader=reader)
    mariadb_server.execute(f"DROP USER '{reader}'@'127.0.0.1'")


def maria_sessions(server: MariaDBServer, **where: str) -> list[tuple]:
    """(COMMAND, STATE) of the sessions matching ``where`` (columns of information_schema.PROCESSLIST)."""
    conditions = " AND ".join(f"{column} = %s" for column in where)
    return server.query(
        f"SELECT COMMAND, STATE FROM information_schema.PROCESSLIST WHERE {conditions}", list(where.values())
    )


def maria_count(server: MariaDBServer, db: str, sql: str) -> int:
    return server.execute(sql, database=db)[0][0]


def test_mariadb_reads_binary_and_char_ids_as_text(maria_warehouse):
    reader = hook("wh_maria_reader")

    binary = list(iter_candidate_ids(reader, "SELECT id_bin FROM leads ORDER BY seq", chunk=3))
    text = list(iter_candidate_ids(reader, "SELECT id_char FROM leads ORDER BY seq", chunk=3))

    assert binary == [*IDS, None]
    assert text == [*IDS, None]


def test_mariadb_streams_unbuffered_and_an_early_close_drops_the_rest(maria_warehouse, mariadb_server):
    # Two million generated rows: far more than the socket buffers hold, so an unbuffered read leaves the
    # server still sending after the first rows arrived (a buffered one would have read them all).
    sql = "SELECT LPAD(seq, 36, '0') FROM seq_1_to_2000000"
    stream = iter_candidate_ids(hook("wh_maria_root"), sql, chunk=100)
    assert next(stream) == "1".rjust(36, "0")

    [(command, state)] = maria_sessions(mariadb_server, DB=maria_warehouse.db, INFO=sql)
    assert command == "Query", state  # still executing: the rest of the result is not read yet

    started = time.monotonic()
    stream.close()
    assert time.monotonic() - started < 2
    assert wait_until(lambda: not maria_sessions(mariadb_server, DB=maria_warehouse.db, INFO=sql))
    assert not maria_sessions(mariadb_server, DB=maria_warehouse.db, COMMAND="Query")


@pytest.mark.parametrize(
    ("sql", "driver_text"),
    [
        pytest.param("SELECT id FROM secret", "SELECT command denied", id="permission-denied"),
        pytest.param("SELEC id_char FROM leads", "You have an error in your SQL syntax", id="syntax-error"),
        pytest.param("SELECT nope FROM leads", "Unknown column 'nope'", id="unknown-column"),
    ],
)
def test_mariadb_query_that_cannot_succeed_is_deterministic(maria_warehouse, mariadb_server, sql, driver_text):
    with pytest.raises(CandidateQueryError) as failed:
        list(iter_candidate_ids(hook("wh_maria_reader"), sql))

    assert failed.value.deterministic is True
    assert "candidate query include/sql/candidates.sql failed" in str(failed.value)
    assert driver_text in str(failed.value)
    assert wait_until(lambda: not maria_sessions(mariadb_server, USER=maria_warehouse.reader))


def test_mariadb_session_is_read_only_even_for_a_user_who_may_write(maria_warehouse, mariadb_server):
    # A query with a side effect on the server: a sequence's next value is a write.
    mariadb_server.execute("CREATE SEQUENCE probe", database=maria_warehouse.db)

    with pytest.raises(CandidateQueryError) as refused:
        list(iter_candidate_ids(hook("wh_maria_root"), "SELECT NEXTVAL(probe)"))

    assert refused.value.deterministic is True
    assert "READ ONLY transaction" in str(refused.value)
    assert mariadb_server.execute("SELECT NEXTVAL(probe)", database=maria_warehouse.db) == [(1,)]


def test_mariadb_unreachable_server_is_not_deterministic(maria_warehouse, monkeypatch):
    conn = json.loads(os.environ["AIRFLOW_CONN_WH_MARIA_ROOT"])
    monkeypatch.setenv("AIRFLOW_CONN_WH_MARIA_DOWN", json.dumps({**conn, "port": free_port()}))

    with pytest.raises(CandidateQueryError) as failed:
        list(iter_candidate_ids(hook("wh_maria_down"), "SELECT 1"))

    assert failed.value.deterministic is False
    assert "Can't connect" in str(failed.value)


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
SQLITE_AUDIT = f"CREATE TABLE audit ({', '.join(EXPORT_COLUMNS)})"


@pytest.fixture
def sqlite_db(sqlite_warehouse) -> Iterator[tuple[str, Path]]:
    """The ``warehouse_test`` SQLite warehouse with ``leads`` (ids as BLOB, text, integer, NULL) and ``audit``."""
    conn_id, path = sqlite_warehouse
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE leads (seq INTEGER PRIMARY KEY, id)")
        conn.executemany(
            "INSERT INTO leads (seq, id) VALUES (?, ?)",
            [(0, uuid.UUID(IDS[0]).bytes), (1, IDS[1]), (2, 42), (3, None), (4, IDS[4].encode())],
        )
        conn.execute(SQLITE_AUDIT)
        conn.commit()
    yield conn_id, path


def sqlite_rows(path: Path, sql: str) -> list[tuple]:
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute(sql).fetchall()


def test_sqlite_ids_of_every_type_come_back_as_text(sqlite_db):
    ids = list(iter_candidate_ids(hook(sqlite_db[0]), "SELECT id FROM leads ORDER BY seq", chunk=2))

    assert ids == [IDS[0], IDS[1], "42", None, IDS[4]]


def test_sqlite_id_that_is_not_text_is_refused(sqlite_db):
    with closing(sqlite3.connect(sqlite_db[1])) as conn:
        conn.execute("INSERT INTO leads (seq, id) VALUES (9, x'fffe00')")
        conn.commit()

    with pytest.raises(CandidateQueryError) as refused:
        list(iter_candidate_ids(hook(sqlite_db[0]), "SELECT id FROM leads WHERE seq = 9"))

    assert refused.value.deterministic is True
    assert "neither text nor a 16-byte UUID" in str(refused.value)


@pytest.mark.parametrize(
    ("sql", "driver_text"),
    [
        pytest.param("SELECT id FROM nowhere", "no such table: nowhere", id="unknown-table"),
        pytest.param("SELEC id FROM leads", "syntax error", id="syntax-error"),
        pytest.param("DELETE FROM leads RETURNING id", "readonly database", id="write"),
    ],
)
def test_sqlite_query_that_cannot_succeed_is_deterministic(sqlite_db, sql, driver_text):
    with pytest.raises(CandidateQueryError) as failed:
        list(iter_candidate_ids(hook(sqlite_db[0]), sql, source="include/sql/candidates.sql"))

    assert failed.value.deterministic is True
    assert "include/sql/candidates.sql" in str(failed.value)
    assert driver_text in str(failed.value)
    assert sqlite_rows(sqlite_db[1], "SELECT COUNT(*) FROM leads") == [(5,)]


def test_sqlite_stream_closed_early_releases_the_database(sqlite_db):
    stream = iter_candidate_ids(hook(sqlite_db[0]), "SELECT id FROM leads ORDER BY seq", chunk=1)
    assert next(stream) == IDS[0]

    def can_lock_exclusively() -> bool:
        with closing(sqlite3.connect(sqlite_db[1], timeout=0, isolation_level=None)) as conn:
            try:
                conn.execute("BEGIN EXCLUSIVE")
            except sqlite3.OperationalError:  # database is locked: the reading statement is still open
                return False
            conn.execute("ROLLBACK")
            return True

    assert not can_lock_exclusively()
    stream.close()
    assert can_lock_exclusively()


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
