"""The throwaway PostgreSQL server used by the tests: reachable with psycopg2 and through Airflow's PostgresHook."""

from __future__ import annotations

import psycopg2
import pytest

from tests.pg_server import PostgresServer

pytestmark = pytest.mark.postgres


def test_create_table_insert_and_read_back(postgres_server: PostgresServer, postgres_db: str) -> None:
    conn = psycopg2.connect(postgres_server.dsn(postgres_db))
    try:
        with conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE leads (id serial PRIMARY KEY, name text NOT NULL)")
            cur.executemany("INSERT INTO leads (name) VALUES (%s)", [("ada",), ("grace",)])
        with conn.cursor() as cur:
            cur.execute("SELECT id, name FROM leads ORDER BY id")
            assert cur.fetchall() == [(1, "ada"), (2, "grace")]
            cur.execute("SELECT current_database(), inet_server_addr()::text")
            assert cur.fetchone() == (postgres_db, "127.0.0.1/32")
    finally:
        conn.close()


def test_postgres_hook_via_env_connection(
    postgres_server: PostgresServer, postgres_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE_PG", postgres_server.airflow_conn_json(postgres_db))
    hook = PostgresHook(postgres_conn_id="warehouse_pg")
    assert hook.get_records("select 1") == [(1,)]
    assert hook.get_first("select current_database()") == (postgres_db,)
