"""The candidate query against real warehouses: PostgreSQL, MariaDB (through the MySQL provider) and SQLite.

Connections come from ``AIRFLOW_CONN_*`` env vars and hooks from ``BaseHook.get_hook``, as in the plan task.
The query runs as a user that may only SELECT; the warehouses are this folder's ``conftest.py`` fixtures.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
import uuid
from contextlib import closing

import pytest

from leadsquared_provider.exceptions import CandidateQueryError
from leadsquared_provider.warehouse.candidates import iter_candidate_ids, normalise_id
from tests.pg_server import free_port
from tests.provider.warehouse.warehouses import (
    IDS,
    hook,
    maria_sessions,
    pg_execute,
    pg_relations,
    pg_sessions,
    sqlite_rows,
    wait_until,
)


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


# ------------------------------------------------------------------------------------------- PostgreSQL
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


# ------------------------------------------------------------------------------------------- MariaDB
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


# ------------------------------------------------------------------------------------------- SQLite
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
