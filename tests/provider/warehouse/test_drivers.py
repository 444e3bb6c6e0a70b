"""Which driver a connection or an error comes from, and which errors are worth a retry (no server needed:
exceptions are made in the drivers' modules' names; the real servers' errors are in test_candidates.py and
test_audit_export.py)."""

from __future__ import annotations

import sqlite3
from contextlib import closing

import pytest

from leadsquared_provider.warehouse.drivers import Driver, describe_error, is_deterministic


def error_of(module: str, name: str = "Error", *args: object, **attributes: object) -> Exception:
    """An exception whose class is ``module.name``, with ``attributes`` set (``sqlstate``, ``errno``...)."""
    cls = type(name, (Exception,), {"__module__": module})
    exc = cls(*args)
    for key, value in attributes.items():
        setattr(exc, key, value)
    return exc


@pytest.mark.parametrize(
    ("module", "driver"),
    [
        pytest.param("psycopg2.extensions", Driver.PSYCOPG2, id="psycopg2"),
        pytest.param("psycopg", Driver.PSYCOPG, id="psycopg"),
        pytest.param("MySQLdb.connections", Driver.MYSQLCLIENT, id="mysqlclient"),
        pytest.param("mysql.connector.connection_cext", Driver.MYSQL_CONNECTOR, id="mysql-connector"),
        pytest.param("pymysql.connections", Driver.PYMYSQL, id="pymysql"),
        pytest.param("snowflake.connector.connection", Driver.DBAPI, id="other"),
    ],
)
def test_driver_is_known_by_its_module(module, driver):
    assert Driver.of(error_of(module)) is driver


def test_sqlite_connection_is_sqlite3():
    with closing(sqlite3.connect(":memory:")) as conn:
        assert Driver.of(conn) is Driver.SQLITE3
    assert not Driver.SQLITE3.is_mysql and not Driver.SQLITE3.is_postgres
    assert Driver.PSYCOPG.is_postgres and Driver.PYMYSQL.is_mysql


@pytest.mark.parametrize(
    ("exc", "deterministic"),
    [
        pytest.param(error_of("psycopg.errors", sqlstate="42501"), True, id="pg-permission-denied"),
        pytest.param(error_of("psycopg2.errors", pgcode="25006"), True, id="pg-read-only-transaction"),
        pytest.param(error_of("psycopg.errors", "ProgrammingError", sqlstate="08006"), False, id="pg-connection"),
        pytest.param(error_of("psycopg.errors", sqlstate="40P01"), False, id="pg-deadlock"),
        pytest.param(error_of("MySQLdb._exceptions", "OperationalError", 1146, "no table"), True, id="mysql-1146"),
        pytest.param(error_of("pymysql.err", "ProgrammingError", 2013, "lost"), False, id="mysql-client-2013"),
        pytest.param(error_of("mysql.connector.errors", errno=1792), True, id="mysql-read-only"),
        pytest.param(error_of("sqlite3", "OperationalError", "no such table: x"), True, id="sqlite-no-such"),
        pytest.param(error_of("sqlite3", "OperationalError", "database is locked"), False, id="sqlite-locked"),
        pytest.param(error_of("google.api_core.exceptions", "NotFound"), True, id="bigquery-not-found"),
        pytest.param(error_of("snowflake.connector.errors", "ProgrammingError"), True, id="dbapi-programming"),
        pytest.param(error_of("snowflake.connector.errors", "OperationalError"), False, id="dbapi-other"),
    ],
)
def test_is_deterministic(exc, deterministic):
    assert is_deterministic(exc) is deterministic


def test_describe_error_shows_mysqlclients_errno():
    assert describe_error(error_of("MySQLdb._exceptions", "OperationalError", 1146, "gone")) == (
        "OperationalError: 1146 gone"
    )
    assert describe_error(error_of("sqlite3", "OperationalError", " locked ")) == "OperationalError: locked"
    assert describe_error(error_of("x", "Boom")) == "Boom: Boom()"
