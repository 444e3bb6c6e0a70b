"""The test warehouses' helpers, shared by the candidate query's and the audit export's tests: hooks from
``AIRFLOW_CONN_*`` env vars, the documented audit tables, and what the servers say about their sessions.

Fixtures that build the warehouses are in this folder's ``conftest.py``.
"""

from __future__ import annotations

import re
import sqlite3
import time
import uuid
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

from tests.mariadb_server import MariaDBServer
from tests.pg_server import PostgresServer

DOCS = Path(__file__).resolve().parents[3] / "docs" / "audit-export.md"
IDS = [str(uuid.UUID(int=n, version=4)) for n in range(1, 8)]


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


def wait_until(check: Callable[[], bool], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


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


def pg_relations(server: PostgresServer, dbname: str) -> list[tuple]:
    return pg_execute(
        server,
        dbname,
        "SELECT n.nspname, c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' "
        "ORDER BY 1, 2",
    )


def maria_sessions(server: MariaDBServer, **where: str) -> list[tuple]:
    """(COMMAND, STATE) of the sessions matching ``where`` (columns of information_schema.PROCESSLIST)."""
    conditions = " AND ".join(f"{column} = %s" for column in where)
    return server.query(
        f"SELECT COMMAND, STATE FROM information_schema.PROCESSLIST WHERE {conditions}", list(where.values())
    )


def maria_count(server: MariaDBServer, db: str, sql: str) -> int:
    return server.execute(sql, database=db)[0][0]


def sqlite_rows(path: Path, sql: str) -> list[tuple]:
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute(sql).fetchall()
