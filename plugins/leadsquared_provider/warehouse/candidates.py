"""The user's warehouse: reading the candidate query, and the optional audit export.

The warehouse is any common-sql ``DbApiHook`` connection (Snowflake, BigQuery, Redshift, Databricks, MySQL,
PostgreSQL, SQLite...). The candidate query only reads it: the session is made read-only where the driver can
(PostgreSQL, MySQL/MariaDB, SQLite), nothing is committed, and the connection is closed at the end. The audit
export is the one write, and only when the DAG param ``audit_export_table`` names a table (docs/audit-export.md).

Streaming: a large candidate list never sits in the client's memory whole. PostgreSQL (psycopg2 and psycopg 3)
reads through a named, server-side cursor; MySQL drivers through an unbuffered cursor (mysqlclient's
``SSCursor``); every other driver through ``fetchmany``.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import tempfile
import uuid
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import Enum
from typing import TYPE_CHECKING, Any

from leadsquared_provider.exceptions import CandidateQueryError, LeadSquaredError
from leadsquared_provider.store.audit import AUDIT_COLUMNS

if TYPE_CHECKING:
    from airflow.providers.common.sql.hooks.sql import DbApiHook

    from leadsquared_provider.store import StateStore

log = logging.getLogger(__name__)

CANDIDATE_SOURCE = "include/sql/candidates.sql"

# The audit's columns the export leaves out: the batch and the per-try counters, which the warehouse has no use for.
_NOT_EXPORTED = frozenset({"batch", "sends", "rate_limited"})
# The audit export's columns, in the order of the CREATE TABLE statements of docs/audit-export.md: the store's
# audit columns (less those), with the DAG run's id after its DAG's.
EXPORT_COLUMNS: tuple[str, ...] = tuple(
    name
    for column in AUDIT_COLUMNS
    if column not in _NOT_EXPORTED
    for name in ((column, "run_id") if column == "dag_id" else (column,))
)
_TIMESTAMP_COLUMNS = frozenset({"started_at", "finished_at"})
_WINDOW_COLUMNS = frozenset({"from_date", "to_date"})
_INTEGER_COLUMNS = frozenset({"status_code", "attempts"})
_WINDOW_FORMAT = "%Y-%m-%d %H:%M:%S"  # LeadSquared's, UTC

# A table name is interpolated into SQL, so it must be a plain (optionally dotted) identifier: no quotes,
# spaces, comments or semicolons. BigQuery's project ids may hold hyphens; the BigQuery path quotes the name.
_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*){0,2}")
_BIGQUERY_TABLE_NAME = re.compile(r"(?:[a-z][a-z0-9-]{4,28}[a-z0-9]\.)?[A-Za-z0-9_]+\.[A-Za-z0-9_]+")
_BIGQUERY_CONN_TYPE = "gcpbigquery"

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

_MYSQL_FAMILIES = frozenset({"mysqlclient", "mysql-connector", "pymysql"})
_POSTGRES_FAMILIES = frozenset({"psycopg2", "psycopg"})


class AuditExportError(LeadSquaredError):
    """The audit export failed; the message names the table. ``deterministic`` as for CandidateQueryError."""

    def __init__(self, message: str, *, deterministic: bool = False) -> None:
        super().__init__(message)
        self.deterministic = deterministic


# --------------------------------------------------------------------------------------------- candidates
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
    family = _driver_family(conn)
    cursor = None
    drained = False
    try:
        with _query_step(source):
            cursor = _streaming_cursor(conn, family)
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
        _release(conn, cursor, family, drained=drained)


@contextmanager
def _query_step(source: str) -> Iterator[None]:
    try:
        yield
    except Exception as exc:  # the driver's own error classes vary by warehouse
        deterministic = is_deterministic(exc)
        hint = "fix the query or the connection's grants" if deterministic else "may be transient, the task retries"
        raise CandidateQueryError(
            f"candidate query {source} failed ({hint}), nothing was sent: {type(exc).__name__}: {_driver_text(exc)}",
            deterministic=deterministic,
        ) from exc


def _driver_family(conn: Any) -> str:
    module = type(conn).__module__ or ""
    if module.startswith("psycopg2"):
        return "psycopg2"
    if module.startswith("psycopg"):
        return "psycopg"
    if module.startswith("MySQLdb"):
        return "mysqlclient"
    if module.startswith("mysql.connector"):
        return "mysql-connector"
    if module.startswith("pymysql"):
        return "pymysql"
    if module.startswith("sqlite3"):
        return "sqlite3"
    return "dbapi"


def _streaming_cursor(conn: Any, family: str) -> Any:
    """A read-only session where the driver can make one, and a cursor that does not buffer the result."""
    if family in _POSTGRES_FAMILIES:
        _best_effort_read_only(conn, family)
        return conn.cursor(name=f"leadsquared_candidates_{uuid.uuid4().hex[:12]}")
    if family in _MYSQL_FAMILIES:
        _best_effort_read_only(conn, family)
        if family == "mysqlclient":
            from MySQLdb.cursors import SSCursor

            return conn.cursor(SSCursor)
        if family == "pymysql":
            from pymysql.cursors import SSCursor

            return conn.cursor(SSCursor)
        return conn.cursor(buffered=False)
    if family == "sqlite3":
        _best_effort_read_only(conn, family)
    return conn.cursor()


def _best_effort_read_only(conn: Any, family: str) -> None:
    """Make the session refuse writes and read in UTC (the window's bounds are UTC: a timestamptz or
    TIMESTAMP column then compares in UTC, whatever the server's or the user's time zone); a server that
    cannot refuse writes is still only read (SELECT-only grants advised)."""
    try:
        if family == "psycopg2":
            conn.set_session(readonly=True, autocommit=False)  # named cursors need a transaction
        elif family == "psycopg":
            conn.autocommit = False
            conn.read_only = True
        elif family == "sqlite3":
            conn.execute("PRAGMA query_only = ON")
        elif family in _MYSQL_FAMILIES:
            _in_utc(conn, family)  # before the transaction starts
            _execute(conn, "START TRANSACTION READ ONLY")
        if family in _POSTGRES_FAMILIES:
            _in_utc(conn, family)  # a read-only transaction may SET
    except Exception as exc:  # e.g. a MySQL-protocol warehouse without read-only transactions
        log.warning("could not make the warehouse session read-only (%s: %s)", type(exc).__name__, exc)


def _in_utc(conn: Any, family: str) -> None:
    """The session's time zone UTC, where the driver's server has one; a failure only logs."""
    try:
        _execute(conn, "SET TIME ZONE 'UTC'" if family in _POSTGRES_FAMILIES else "SET time_zone = '+00:00'")
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


def _release(conn: Any, cursor: Any, family: str, *, drained: bool) -> None:
    """Close the cursor and the connection (which ends the read-only transaction without a commit)."""
    if cursor is not None and not (family in _MYSQL_FAMILIES and not drained):
        _quietly(cursor.close, "closing the candidate cursor")
    # MySQL drivers read every remaining row off the wire when an unbuffered cursor is closed (or refuse to):
    # after an early stop the connection is closed first, which makes the server drop the rest.
    _quietly(conn.close, "closing the warehouse connection")


def _quietly(action: Callable[[], Any], what: str) -> None:
    try:
        action()
    except Exception as exc:  # clean-up only: the read-only session holds nothing to lose
        log.debug("%s failed: %s: %s", what, type(exc).__name__, exc)


# --------------------------------------------------------------------------------------------- errors
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
    module = type(exc).__module__ or ""
    if module.startswith(("MySQLdb", "mysql.connector", "pymysql")):
        errno = getattr(exc, "errno", None)
        if errno is None and exc.args and isinstance(exc.args[0], int):
            errno = exc.args[0]  # mysqlclient: (errno, message)
        if errno in _MYSQL_DETERMINISTIC_ERRNOS:
            return True
        if isinstance(errno, int) and 2000 <= errno < 3000:  # client side: cannot connect, server gone away
            return False
    if module.startswith("sqlite3"):
        text = str(exc).lower()
        if any(message in text for message in _SQLITE_DETERMINISTIC_MESSAGES):
            return True
        if type(exc).__name__ == "OperationalError":  # database is locked, disk I/O error...
            return False
    class_names = {cls.__name__ for cls in type(exc).__mro__}
    if module.startswith("google.") and class_names & _GOOGLE_DETERMINISTIC_CLASSES:
        return True
    return bool(class_names & _DBAPI_DETERMINISTIC_CLASSES)


def _driver_text(exc: BaseException) -> str:
    args = exc.args
    if len(args) == 2 and isinstance(args[0], int) and isinstance(args[1], str):  # mysqlclient
        return f"{args[0]} {args[1]}"
    return str(exc).strip() or repr(exc)


# --------------------------------------------------------------------------------------------- audit export
def run_audit_export(
    store: StateStore, run_key: str, table: str | None, warehouse_conn_id: str
) -> Callable[[], int] | None:
    """The report's optional export of the run's audit rows to ``table`` (None when no table is named)."""
    if not table:
        return None

    def export() -> int:
        from airflow.sdk import BaseHook

        run_id = store.load_run(run_key).run_id
        rows = ({"run_id": run_id, **{c: r[c] for c in EXPORT_COLUMNS if c in r}} for r in store.iter_audit(run_key))
        return export_audit(BaseHook.get_hook(warehouse_conn_id), table, run_key, rows)

    return export


def export_audit(
    hook: DbApiHook, table: str, run_key: str, rows: Iterable[Mapping[str, Any]], *, chunk: int = 1000
) -> int:
    """Write one run's audit rows to ``table`` in the warehouse; returns the number of rows written.

    Idempotent per run: the run's earlier rows are deleted first, then the rows are inserted ``chunk`` at a
    time, each chunk one multi-row INSERT, all in one transaction where the warehouse has transactions (a
    failure leaves the previous export in place). ``rows`` are mappings keyed by :data:`EXPORT_COLUMNS`
    (missing keys are NULL; ``run_key``, if present, must be this run's). The table must exist
    (docs/audit-export.md has its CREATE TABLE for each warehouse). Each INSERT carries ``chunk`` x 15
    parameters: the default (15 000) suits PostgreSQL (65 535 at most), SQLite (32 766) and MySQL; lower it
    for SQL Server (2 100). BigQuery, whose hook has no
    ``insert_rows``, is written with one load job. Failures raise :class:`AuditExportError` naming the table;
    a bad ``table`` raises ValueError before anything is sent, a bad row raises ValueError and rolls back.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, got {chunk}")
    if getattr(hook, "conn_type", None) == _BIGQUERY_CONN_TYPE:
        return _export_bigquery(hook, _checked_bigquery_table(table), run_key, rows)
    target = checked_table_name(table)
    with _export_step(table, run_key):
        conn = hook.get_conn()
    family = _driver_family(conn)
    placeholder = getattr(hook, "placeholder", "%s")
    cursor = None
    written = 0
    try:
        with _export_step(table, run_key):
            if getattr(hook, "supports_autocommit", False):
                hook.set_autocommit(conn, False)
            cursor = conn.cursor()
            cursor.execute(f"DELETE FROM {target} WHERE run_key = {placeholder}", (run_key,))
        records = (_export_values(row, run_key, text_timestamps=family == "sqlite3") for row in rows)
        while batch := list(itertools.islice(records, chunk)):
            values = [value for record in batch for value in record]
            with _export_step(table, run_key):
                cursor.execute(_insert_sql(target, placeholder, len(batch)), values)
            written += len(batch)
        with _export_step(table, run_key):
            conn.commit()
    except BaseException:
        _quietly(conn.rollback, "rolling back the audit export")
        raise
    finally:
        if cursor is not None:
            _quietly(cursor.close, "closing the audit export cursor")
        _quietly(conn.close, "closing the warehouse connection")
    log.info("audit export: %d rows of run %s written to %s", written, run_key, table)
    return written


def checked_table_name(table: str) -> str:
    """``table`` if it is a plain identifier, optionally dotted (``db.schema.table``); ValueError otherwise."""
    if not isinstance(table, str) or not _TABLE_NAME.fullmatch(table):
        raise ValueError(
            f"audit export table {table!r} is not a plain table name: use letters, digits and underscores, "
            "optionally qualified as schema.table or database.schema.table"
        )
    return table


@contextmanager
def _export_step(table: str, run_key: str) -> Iterator[None]:
    try:
        yield
    except Exception as exc:  # the driver's own error classes vary by warehouse
        deterministic = is_deterministic(exc)
        hint = (
            "check that the table exists with the columns of docs/audit-export.md and that the connection's "
            "user may DELETE and INSERT there"
            if deterministic
            else "may be transient"
        )
        raise AuditExportError(
            f"audit export of run {run_key!r} to table {table} failed ({hint}): "
            f"{type(exc).__name__}: {_driver_text(exc)}",
            deterministic=deterministic,
        ) from exc


def _insert_sql(table: str, placeholder: str, count: int) -> str:
    row = "(" + ", ".join([placeholder] * len(EXPORT_COLUMNS)) + ")"
    return f"INSERT INTO {table} ({', '.join(EXPORT_COLUMNS)}) VALUES " + ", ".join([row] * count)


def _export_values(row: Mapping[str, Any], run_key: str, *, text_timestamps: bool) -> tuple[Any, ...]:
    unknown = set(row).difference(EXPORT_COLUMNS)
    if unknown:
        raise ValueError(f"audit row has columns the export does not have: {sorted(unknown)}")
    if row.get("run_key", run_key) != run_key:
        raise ValueError(f"audit row of run {row['run_key']!r} given to the export of run {run_key!r}")
    return tuple(
        _cell(column, run_key if column == "run_key" else row.get(column), text_timestamps=text_timestamps)
        for column in EXPORT_COLUMNS
    )


def _cell(column: str, value: Any, *, text_timestamps: bool) -> Any:
    if value is None:
        return None
    if isinstance(value, Enum):
        value = value.value
    if column in _TIMESTAMP_COLUMNS:
        moment = _utc_naive(value)
        return moment.isoformat(sep=" ") if text_timestamps and isinstance(moment, datetime) else moment
    if column in _WINDOW_COLUMNS and isinstance(value, datetime):
        return _utc_naive(value).strftime(_WINDOW_FORMAT)
    if column == "categories" and isinstance(value, list | tuple | set | frozenset):
        return ",".join(sorted(str(item) for item in value))
    if column in _INTEGER_COLUMNS:
        return int(value)
    if column == "possibly_repeated":
        return bool(value)
    return value if isinstance(value, str) else str(value)


def _utc_naive(value: Any) -> Any:
    """A plain naive ``datetime`` in UTC (every warehouse's TIMESTAMP column takes it as written)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = datetime.fromtimestamp(value, UTC)
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        # A plain datetime, not a subclass (pendulum's) that some drivers do not know how to send.
        return datetime(value.year, value.month, value.day, value.hour, value.minute, value.second, value.microsecond)
    return value  # text, written as given


# --------------------------------------------------------------------------------------------- BigQuery
def _checked_bigquery_table(table: str) -> str:
    if not isinstance(table, str) or not _BIGQUERY_TABLE_NAME.fullmatch(table):
        raise ValueError(
            f"audit export table {table!r} is not a BigQuery table name: use dataset.table or project.dataset.table"
        )
    return table


def _export_bigquery(hook: Any, table: str, run_key: str, rows: Iterable[Mapping[str, Any]]) -> int:
    """BigQuery's hook raises NotImplementedError from ``insert_rows``: a parameterised DELETE query job,
    then one load job of newline-delimited JSON (load jobs, unlike streaming inserts, leave rows that the
    next export's DELETE may remove at once). Not one transaction: a failed load leaves the run without rows
    until the task's retry exports again."""
    with _export_step(table, run_key):
        from google.cloud import bigquery

        client = hook.get_client(project_id=hook.project_id, location=hook.location)
        target = client.get_table(table)
        delete = bigquery.QueryJobConfig(
            use_legacy_sql=False,
            query_parameters=[bigquery.ScalarQueryParameter("run_key", "STRING", run_key)],
        )
        name = f"`{target.project}.{target.dataset_id}.{target.table_id}`"
        client.query(f"DELETE FROM {name} WHERE run_key = @run_key", job_config=delete).result()
    written = 0
    with tempfile.TemporaryFile() as ndjson:
        for row in rows:
            values = _export_values(row, run_key, text_timestamps=True)
            ndjson.write(json.dumps(dict(zip(EXPORT_COLUMNS, values, strict=True))).encode() + b"\n")
            written += 1
        if written:
            ndjson.seek(0)
            with _export_step(table, run_key):
                load = bigquery.LoadJobConfig(
                    source_format=bigquery.SourceFormat.NEWLINE_DELIMITED_JSON,
                    write_disposition=bigquery.WriteDisposition.WRITE_APPEND,
                    schema=target.schema,
                )
                client.load_table_from_file(ndjson, target, job_config=load).result()
    log.info("audit export: %d rows of run %s loaded into %s", written, run_key, table)
    return written
