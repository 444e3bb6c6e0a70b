"""The test warehouses, each with a table ``leads`` of candidate ids and, where the tests export to it, the
documented audit table: PostgreSQL, MariaDB (through the MySQL provider) and SQLite."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from types import SimpleNamespace

import pytest

from leadsquared_provider.warehouse.audit_export import EXPORT_COLUMNS
from tests.mariadb_server import MariaDBServer
from tests.pg_server import PostgresServer, unique_db_name
from tests.provider.warehouse.warehouses import IDS, create_audit_table, pg_execute, pg_sessions, wait_until


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
