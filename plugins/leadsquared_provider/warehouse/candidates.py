"""The candidate query: the leads to reset, read from the user's warehouse.

The warehouse is any common-sql ``DbApiHook`` connection (Snowflake, BigQuery, Redshift, Databricks, MySQL,
PostgreSQL, SQLite...), and this module only reads it: the session is made read-only where the driver can
(PostgreSQL, MySQL/MariaDB, SQLite), nothing is committed, and the connection is closed at the end.

Streaming: a large candidate list never sits in the client's memory whole. PostgreSQL (psycopg2 and psycopg 3)
reads through a named, server-side cursor; MySQL drivers through an unbuffered cursor (mysqlclient's
``SSCursor``); every other driver through ``fetchmany``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Generator, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from leadsquared_provider.exceptions import CandidateQueryError
from leadsquared_provider.warehouse.drivers import Driver, describe_error, is_deterministic, quietly

if TYPE_CHECKING:
    from airflow.providers.common.sql.hooks.sql import DbApiHook

log = logging.getLogger(__name__)

CANDIDATE_SOURCE = "include/sql/candidates.sql"


def normalise_id(value: object) -> str | None:
    """A candidate id as text, whatever the driver returned.

    ``str`` and ``None`` stay; ``uuid.UUID`` becomes its canonical text; 16 raw bytes (``BINARY(16)``, BLOB)
    are read as a UUID; other bytes are decoded as UTF-8 (ValueError if they are not); anything else is
    ``str()``-ed.
    """
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        if len(raw) == 16:
            return str(uuid.UUID(bytes=raw))
        return raw.decode("utf-8")
    return str(value)


def iter_candidate_ids(
    hook: DbApiHook, sql: str, *, chunk: int = 10_000, source: str = CANDIDATE_SOURCE
) -> Generator[str | None, None, None]:
    """Run the candidate query; yield the first column of each row, normalised (:func:`normalise_id`).

    Rows are streamed ``chunk`` at a time. Nothing is written or committed: the session is read-only where
    the driver allows, and the cursor and connection are closed when the generator ends, including when the
    caller stops early and closes it. Failures raise :class:`CandidateQueryError` naming ``source``.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, got {chunk}")
    with _query_step(source):
        conn = hook.get_conn()
    driver = Driver.of(conn)
    cursor = None
    drained = False
    try:
        with _query_step(source):
            cursor = _streaming_cursor(conn, driver)
            cursor.execute(sql)
            rows = cursor.fetchmany(chunk)
        while rows:
            for row in rows:
                try:
                    value = normalise_id(_first_column(row))
                except ValueError as exc:
                    raise CandidateQueryError(
                        f"candidate query {source} returned an id that is neither text nor a 16-byte UUID: {exc}",
                        deterministic=True,
                    ) from None
                yield value
            with _query_step(source):
                rows = cursor.fetchmany(chunk)
        drained = True
    finally:
        _release(conn, cursor, driver, drained=drained)


@contextmanager
def _query_step(source: str) -> Iterator[None]:
    try:
        yield
    except Exception as exc:  # the driver's own error classes vary by warehouse
        deterministic = is_deterministic(exc)
        hint = "fix the query or the connection's grants" if deterministic else "may be transient, the task retries"
        raise CandidateQueryError(
            f"candidate query {source} failed ({hint}), nothing was sent: {describe_error(exc)}",
            deterministic=deterministic,
        ) from exc


def _streaming_cursor(conn: Any, driver: Driver) -> Any:
    """A read-only session where the driver can make one, and a cursor that does not buffer the result."""
    if driver.is_postgres:
        _best_effort_read_only(conn, driver)
        return conn.cursor(name=f"leadsquared_candidates_{uuid.uuid4().hex[:12]}")
    if driver.is_mysql:
        _best_effort_read_only(conn, driver)
        if driver is Driver.MYSQLCLIENT:
            from MySQLdb.cursors import SSCursor

            return conn.cursor(SSCursor)
        if driver is Driver.PYMYSQL:
            from pymysql.cursors import SSCursor

            return conn.cursor(SSCursor)
        return conn.cursor(buffered=False)
    if driver is Driver.SQLITE3:
        _best_effort_read_only(conn, driver)
    return conn.cursor()


def _best_effort_read_only(conn: Any, driver: Driver) -> None:
    """Make the session refuse writes and read in UTC (the window's bounds are UTC: a timestamptz or
    TIMESTAMP column then compares in UTC, whatever the server's or the user's time zone); a server that
    cannot refuse writes is still only read (SELECT-only grants advised)."""
    try:
        if driver is Driver.PSYCOPG2:
            conn.set_session(readonly=True, autocommit=False)  # named cursors need a transaction
        elif driver is Driver.PSYCOPG:
            conn.autocommit = False
            conn.read_only = True
        elif driver is Driver.SQLITE3:
            conn.execute("PRAGMA query_only = ON")
        elif driver.is_mysql:
            _in_utc(conn, driver)  # before the transaction starts
            _execute(conn, "START TRANSACTION READ ONLY")
        if driver.is_postgres:
            _in_utc(conn, driver)  # a read-only transaction may SET
    except Exception as exc:  # e.g. a MySQL-protocol warehouse without read-only transactions
        log.warning("could not make the warehouse session read-only (%s: %s)", type(exc).__name__, exc)


def _in_utc(conn: Any, driver: Driver) -> None:
    """The session's time zone UTC, where the driver's server has one; a failure only logs."""
    try:
        _execute(conn, "SET TIME ZONE 'UTC'" if driver.is_postgres else "SET time_zone = '+00:00'")
    except Exception as exc:  # a MySQL-protocol warehouse without time zones: bounds compare as written
        log.warning("could not set the warehouse session's time zone to UTC (%s: %s)", type(exc).__name__, exc)


def _execute(conn: Any, statement: str) -> None:
    cursor = conn.cursor()
    try:
        cursor.execute(statement)
    finally:
        cursor.close()


def _first_column(row: Any) -> Any:
    if isinstance(row, Mapping):  # a dict-row cursor configured on the connection
        return next(iter(row.values()), None)
    return row[0]


def _release(conn: Any, cursor: Any, driver: Driver, *, drained: bool) -> None:
    """Close the cursor and the connection (which ends the read-only transaction without a commit)."""
    if cursor is not None and not (driver.is_mysql and not drained):
        quietly(cursor.close, "closing the candidate cursor")
    # MySQL drivers read every remaining row off the wire when an unbuffered cursor is closed (or refuse to):
    # after an early stop the connection is closed first, which makes the server drop the rest.
    quietly(conn.close, "closing the warehouse connection")
