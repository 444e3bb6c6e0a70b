"""Which DB-API driver a warehouse connection is, and what its errors mean.

Shared by the candidate query (:mod:`.candidates`) and the audit export (:mod:`.audit_export`): both pick
driver-specific behaviour by :class:`Driver`, tell an error that will recur (:func:`is_deterministic`) from one
worth a retry, and quote the driver's message (:func:`describe_error`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from enum import StrEnum
from typing import Any

log = logging.getLogger(__name__)


class Driver(StrEnum):
    """The DB-API driver behind a connection (or an exception), known by its module; ``DBAPI`` for any other."""

    PSYCOPG2 = "psycopg2"
    PSYCOPG = "psycopg"
    MYSQLCLIENT = "mysqlclient"
    MYSQL_CONNECTOR = "mysql-connector"
    PYMYSQL = "pymysql"
    SQLITE3 = "sqlite3"
    DBAPI = "dbapi"

    @classmethod
    def of(cls, obj: object) -> Driver:
        """The driver whose module defines ``obj``'s class (a connection, a cursor, an exception)."""
        module = type(obj).__module__ or ""
        return next((driver for prefix, driver in _MODULE_PREFIXES if module.startswith(prefix)), cls.DBAPI)

    @property
    def is_postgres(self) -> bool:
        return self in (Driver.PSYCOPG2, Driver.PSYCOPG)

    @property
    def is_mysql(self) -> bool:
        return self in (Driver.MYSQLCLIENT, Driver.MYSQL_CONNECTOR, Driver.PYMYSQL)


# Module prefixes, in the order they are tried (``psycopg2`` before ``psycopg``).
_MODULE_PREFIXES: tuple[tuple[str, Driver], ...] = (
    ("psycopg2", Driver.PSYCOPG2),
    ("psycopg", Driver.PSYCOPG),
    ("MySQLdb", Driver.MYSQLCLIENT),
    ("mysql.connector", Driver.MYSQL_CONNECTOR),
    ("pymysql", Driver.PYMYSQL),
    ("sqlite3", Driver.SQLITE3),
)

# Errors that running the statement again cannot fix (the query, its objects or its permissions are wrong).
# SQLSTATE classes: 42 syntax error or access rule violation (permission denied, unknown table or column),
# 22 data exception, 0A feature not supported, 21 cardinality, 3D/3F unknown database/schema, 2F routine.
_DETERMINISTIC_SQLSTATE_CLASSES = frozenset({"42", "22", "0A", "21", "3D", "3F", "2F", "44"})
_DETERMINISTIC_SQLSTATES = frozenset({"25006"})  # read-only transaction: the query tried to write
# Connection exception, login refused (the secret may be fixed before the retry), rollback (serialization,
# deadlock), resources, lock not available, operator intervention (cancel, shutdown), system and internal
# errors: worth another try.
_TRANSIENT_SQLSTATE_CLASSES = frozenset({"08", "28", "40", "53", "55", "57", "58", "XX"})
_MYSQL_DETERMINISTIC_ERRNOS = frozenset(
    {
        1044,  # access denied to database
        1049,  # unknown database
        1052,  # ambiguous column
        1054,  # unknown column
        1064,  # syntax error
        1109,  # unknown table
        1142,  # command denied on table
        1143,  # command denied on column
        1146,  # table doesn't exist
        1227,  # a privilege is needed
        1305,  # function or procedure does not exist
        1370,  # execute denied on routine
        1792,  # cannot execute in a READ ONLY transaction
    }
)
_SQLITE_DETERMINISTIC_MESSAGES = (
    "no such ",  # table, column, function
    "syntax error",
    "unrecognized token",
    "incomplete input",
    "ambiguous column",
    "readonly database",  # the read-only session refused a write
    "not authorized",
    "file is not a database",
)
_DBAPI_DETERMINISTIC_CLASSES = frozenset({"ProgrammingError", "DataError", "NotSupportedError", "IntegrityError"})
_GOOGLE_DETERMINISTIC_CLASSES = frozenset({"BadRequest", "Forbidden", "NotFound"})


def is_deterministic(exc: BaseException) -> bool:
    """True when the same statement will fail again: permission denied, syntax error, unknown table or column.

    False for connection trouble, timeouts, deadlocks and anything not recognised (the task retries).
    """
    sqlstate = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
    if isinstance(sqlstate, str) and len(sqlstate) == 5:
        if sqlstate[:2] in _TRANSIENT_SQLSTATE_CLASSES:
            return False
        if sqlstate in _DETERMINISTIC_SQLSTATES or sqlstate[:2] in _DETERMINISTIC_SQLSTATE_CLASSES:
            return True
    driver = Driver.of(exc)
    if driver.is_mysql:
        errno = getattr(exc, "errno", None)
        if errno is None and exc.args and isinstance(exc.args[0], int):
            errno = exc.args[0]  # mysqlclient: (errno, message)
        if errno in _MYSQL_DETERMINISTIC_ERRNOS:
            return True
        if isinstance(errno, int) and 2000 <= errno < 3000:  # client side: cannot connect, server gone away
            return False
    if driver is Driver.SQLITE3:
        text = str(exc).lower()
        if any(message in text for message in _SQLITE_DETERMINISTIC_MESSAGES):
            return True
        if type(exc).__name__ == "OperationalError":  # database is locked, disk I/O error...
            return False
    class_names = {cls.__name__ for cls in type(exc).__mro__}
    if (type(exc).__module__ or "").startswith("google.") and class_names & _GOOGLE_DETERMINISTIC_CLASSES:
        return True
    return bool(class_names & _DBAPI_DETERMINISTIC_CLASSES)


def describe_error(exc: BaseException) -> str:
    """``Type: message`` of a driver's error, for the messages that wrap it (mysqlclient's errno shown)."""
    args = exc.args
    if len(args) == 2 and isinstance(args[0], int) and isinstance(args[1], str):  # mysqlclient
        text = f"{args[0]} {args[1]}"
    else:
        text = str(exc).strip() or repr(exc)
    return f"{type(exc).__name__}: {text}"


def quietly(action: Callable[[], Any], what: str) -> None:
    """Run a clean-up ``action`` (close, rollback); its failure is only logged, at debug level, as ``what``."""
    try:
        action()
    except Exception as exc:  # clean-up only: the outcome is already decided
        log.debug("%s failed: %s: %s", what, type(exc).__name__, exc)
