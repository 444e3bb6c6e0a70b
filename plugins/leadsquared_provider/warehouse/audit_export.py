"""The audit export: the one write to the user's warehouse, of a run's audit rows to the table the DAG param
``audit_export_table`` names (none by default; docs/audit-export.md has each warehouse's CREATE TABLE).

Idempotent per run (the run's earlier rows are deleted first), in one transaction where the warehouse has
transactions; BigQuery, whose hook cannot insert rows, is written with one load job.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import Enum
from typing import TYPE_CHECKING, Any

from leadsquared_provider.exceptions import LeadSquaredError
from leadsquared_provider.store.audit import AUDIT_COLUMNS
from leadsquared_provider.warehouse.drivers import Driver, describe_error, is_deterministic, quietly

if TYPE_CHECKING:
    from airflow.providers.common.sql.hooks.sql import DbApiHook

    from leadsquared_provider.store import StateStore

log = logging.getLogger(__name__)

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


class AuditExportError(LeadSquaredError):
    """The audit export failed; the message names the table. ``deterministic`` as for CandidateQueryError."""

    def __init__(self, message: str, *, deterministic: bool = False) -> None:
        super().__init__(message)
        self.deterministic = deterministic


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
    driver = Driver.of(conn)
    placeholder = getattr(hook, "placeholder", "%s")
    cursor = None
    written = 0
    try:
        with _export_step(table, run_key):
            if getattr(hook, "supports_autocommit", False):
                hook.set_autocommit(conn, False)
            cursor = conn.cursor()
            cursor.execute(f"DELETE FROM {target} WHERE run_key = {placeholder}", (run_key,))
        records = (_export_values(row, run_key, text_timestamps=driver is Driver.SQLITE3) for row in rows)
        while batch := list(itertools.islice(records, chunk)):
            values = [value for record in batch for value in record]
            with _export_step(table, run_key):
                cursor.execute(_insert_sql(target, placeholder, len(batch)), values)
            written += len(batch)
        with _export_step(table, run_key):
            conn.commit()
    except BaseException:
        quietly(conn.rollback, "rolling back the audit export")
        raise
    finally:
        if cursor is not None:
            quietly(cursor.close, "closing the audit export cursor")
        quietly(conn.close, "closing the warehouse connection")
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
            f"audit export of run {run_key!r} to table {table} failed ({hint}): {describe_error(exc)}",
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
