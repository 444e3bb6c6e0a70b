"""The reset ledger: run records, staged candidates and one audit row per lead, in the warehouse.

Kept in the customer's warehouse (any common-sql connection: SQLite, PostgreSQL, ...), like the row-level
sync logs of Hightouch or Census. It is what makes runs safe to retry:

- ``leadsquared_reset_runs``: one row per DAG run: its scope (categories + window), dry-run flag and
  candidate count. Mapped batches read their scope here instead of from XCom.
- ``leadsquared_reset_candidates``: the run's cleaned candidates, numbered ``1..n``; a batch is a range.
- ``leadsquared_reset_audit``: one row per (run, lead): outcome, HTTP status, exception, attempts, times.
  A lead is marked ``sending`` before its request and given its final outcome after it, so a crash
  leaves evidence of the request that was in flight. A lead already ``queued`` under the same scope key
  (window + categories), in this run or any other, or rejected for good (400, lead not found), is never
  sent again; it gets an ``already_done`` row.

Only portable SQL is used (``ON CONFLICT ... DO UPDATE`` works in SQLite >= 3.24 and PostgreSQL).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from leadsquared_provider.outcomes import Outcome, ResetResult

if TYPE_CHECKING:
    from airflow.providers.common.sql.hooks.sql import DbApiHook

RUNS = "leadsquared_reset_runs"
SCOPES = "leadsquared_reset_scopes"
CANDIDATES = "leadsquared_reset_candidates"
AUDIT = "leadsquared_reset_audit"

_DDL = (
    f"""CREATE TABLE IF NOT EXISTS {RUNS} (
        run_key VARCHAR(400) PRIMARY KEY,
        dag_id VARCHAR(250) NOT NULL,
        run_id VARCHAR(250) NOT NULL,
        scope_json TEXT NOT NULL,
        scope_key VARCHAR(64) NOT NULL,
        dry_run INTEGER NOT NULL,
        candidates INTEGER NOT NULL,
        invalid INTEGER NOT NULL,
        batches INTEGER NOT NULL,
        batch_size INTEGER NOT NULL,
        carried_over INTEGER NOT NULL,
        planned_at DOUBLE PRECISION NOT NULL)""",
    f"""CREATE TABLE IF NOT EXISTS {SCOPES} (
        scope_key VARCHAR(64) PRIMARY KEY,
        scope_json TEXT NOT NULL)""",
    f"""CREATE TABLE IF NOT EXISTS {CANDIDATES} (
        run_key VARCHAR(400) NOT NULL,
        seq INTEGER NOT NULL,
        lead_id VARCHAR(64) NOT NULL,
        scope_key VARCHAR(64) NOT NULL,
        PRIMARY KEY (run_key, seq))""",
    f"""CREATE TABLE IF NOT EXISTS {AUDIT} (
        run_key VARCHAR(400) NOT NULL,
        lead_id VARCHAR(200) NOT NULL,
        dag_id VARCHAR(250) NOT NULL,
        batch INTEGER NOT NULL,
        scope_key VARCHAR(64) NOT NULL,
        from_date VARCHAR(19),
        to_date VARCHAR(19),
        categories TEXT NOT NULL,
        outcome VARCHAR(20) NOT NULL,
        status_code INTEGER,
        exception_type VARCHAR(200),
        message TEXT,
        attempts INTEGER NOT NULL,
        sends INTEGER NOT NULL,
        started_at DOUBLE PRECISION,
        finished_at DOUBLE PRECISION,
        budget_wait DOUBLE PRECISION,
        PRIMARY KEY (run_key, lead_id, scope_key))""",
    f"CREATE INDEX IF NOT EXISTS {AUDIT}_lead_scope ON {AUDIT} (lead_id, scope_key, outcome)",
)


@dataclass(frozen=True)
class RunRecord:
    run_key: str
    dag_id: str
    run_id: str
    scope: dict[str, Any]
    scope_key: str
    dry_run: bool
    candidates: int
    invalid: int
    batches: int
    batch_size: int
    carried_over: int = 0

    def batch(self, number: int) -> dict[str, int]:
        """The bounds of batch ``number`` among the run's staged candidates (its own and carried over)."""
        from leadsquared_provider.planning import batch_bounds

        return batch_bounds(number, self.batch_size, self.candidates + self.carried_over)


def run_key(dag_id: str, run_id: str) -> str:
    return f"{dag_id}/{run_id}"


class ResetLedger:
    """Reads and writes the three ledger tables through a common-sql hook of the warehouse."""

    def __init__(self, warehouse_conn_id: str) -> None:
        self.warehouse_conn_id = warehouse_conn_id

    @cached_property
    def hook(self) -> DbApiHook:
        from airflow.providers.common.sql.hooks.sql import DbApiHook
        from airflow.sdk import BaseHook

        hook = BaseHook.get_hook(self.warehouse_conn_id)
        if not isinstance(hook, DbApiHook):
            raise TypeError(f"connection {self.warehouse_conn_id!r} is not a SQL (common-sql) connection")
        return hook

    @cached_property
    def conn(self) -> Any:
        conn = self.hook.get_conn()
        if self.hook.dialect_name == "sqlite":
            # Many task processes write here at once: wait for the lock instead of failing.
            conn.execute("PRAGMA busy_timeout = 60000")
            conn.execute("PRAGMA journal_mode = WAL")
        return conn

    def _sql(self, statement: str) -> str:
        return statement.replace("?", self.hook.placeholder)

    def _execute(self, statement: str, params: Sequence[Any] = ()) -> list[tuple]:
        cur = self.conn.cursor()
        try:
            cur.execute(self._sql(statement), tuple(params))
            rows = cur.fetchall() if cur.description else []
        finally:
            cur.close()
        self.conn.commit()
        return rows

    def _execute_many(self, statement: str, rows: Iterable[Sequence[Any]]) -> None:
        cur = self.conn.cursor()
        try:
            cur.executemany(self._sql(statement), list(rows))
        finally:
            cur.close()

    def ensure_tables(self) -> None:
        for statement in _DDL:
            self._execute(statement)

    def close(self) -> None:
        if "conn" in self.__dict__:
            self.conn.close()
            del self.__dict__["conn"]

    # -- planning -----------------------------------------------------------------------------------

    def stage_candidates(self, key: str, leads: Iterable[tuple[str, str]], chunk: int = 20_000) -> int:
        """Replace the run's staged candidates with ``(lead_id, scope_key)`` pairs numbered from 1."""
        self._execute(f"DELETE FROM {CANDIDATES} WHERE run_key = ?", (key,))
        count, cur = 0, self.conn.cursor()
        if self.hook.dialect_name == "postgresql" and hasattr(cur, "copy"):
            # psycopg 3: COPY stages 1,000,000 leads in ~3 s; executemany takes ~30 s (bench/RESULTS.md).
            try:
                with cur.copy(f"COPY {CANDIDATES} (run_key, seq, lead_id, scope_key) FROM STDIN") as copy:
                    for count, (lead_id, scope_key) in enumerate(leads, start=1):
                        copy.write_row((key, count, lead_id, scope_key))
            finally:
                cur.close()
            self.conn.commit()
            return count
        cur.close()
        statement = f"INSERT INTO {CANDIDATES} (run_key, seq, lead_id, scope_key) VALUES (?, ?, ?, ?)"
        rows = []
        for count, (lead_id, scope_key) in enumerate(leads, start=1):
            rows.append((key, count, lead_id, scope_key))
            if len(rows) >= chunk:
                self._execute_many(statement, rows)
                rows.clear()
        if rows:
            self._execute_many(statement, rows)
        self.conn.commit()
        return count

    def save_scope(self, scope_key: str, scope: dict[str, Any]) -> None:
        self._execute(
            f"INSERT INTO {SCOPES} (scope_key, scope_json) VALUES (?, ?) ON CONFLICT (scope_key) DO NOTHING",
            (scope_key, json.dumps(scope, sort_keys=True)),
        )

    def load_scopes(self, scope_keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        keys = sorted(set(scope_keys))
        if not keys:
            return {}
        marks = ", ".join("?" for _ in keys)
        rows = self._execute(f"SELECT scope_key, scope_json FROM {SCOPES} WHERE scope_key IN ({marks})", keys)
        found = {k: json.loads(text) for k, text in rows}
        missing = set(keys) - set(found)
        if missing:
            raise LookupError(f"scope(s) {sorted(missing)} missing from {SCOPES}")
        return found

    def carry_over(self, dag_id: str, key: str, max_runs: int = 3) -> list[tuple[str, str]]:
        """Leads that failed (transiently, or skipped after an auth failure) in earlier runs of the DAG and
        were not reset since under the same window and categories: ``(lead_id, scope_key)`` pairs.

        A lead is carried over at most ``max_runs`` times; leads rejected for good are never carried over.
        """
        rows = self._execute(
            f"""SELECT a.lead_id, a.scope_key FROM {AUDIT} a
                WHERE a.dag_id = ? AND a.run_key <> ? AND a.outcome IN ('failed', 'skipped')
                  AND NOT EXISTS (SELECT 1 FROM {AUDIT} b WHERE b.lead_id = a.lead_id
                      AND b.scope_key = a.scope_key
                      AND (b.outcome = 'queued' OR (b.outcome = 'rejected' AND b.status_code IS NOT NULL)))
                GROUP BY a.lead_id, a.scope_key
                HAVING COUNT(DISTINCT a.run_key) <= ?
                ORDER BY a.lead_id""",
            (dag_id, key, max_runs),
        )
        return [(r[0], r[1]) for r in rows]

    def save_run(self, record: RunRecord) -> None:
        self._execute(
            f"""INSERT INTO {RUNS} (run_key, dag_id, run_id, scope_json, scope_key, dry_run, candidates, invalid,
                   batches, batch_size, carried_over, planned_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (run_key) DO UPDATE SET scope_json = excluded.scope_json,
                   scope_key = excluded.scope_key, dry_run = excluded.dry_run,
                   candidates = excluded.candidates, invalid = excluded.invalid, batches = excluded.batches,
                   batch_size = excluded.batch_size, carried_over = excluded.carried_over,
                   planned_at = excluded.planned_at""",
            (
                record.run_key,
                record.dag_id,
                record.run_id,
                json.dumps(record.scope, sort_keys=True),
                record.scope_key,
                int(record.dry_run),
                record.candidates,
                record.invalid,
                record.batches,
                record.batch_size,
                record.carried_over,
                time.time(),
            ),
        )

    def load_run(self, key: str) -> RunRecord:
        rows = self._execute(
            f"""SELECT run_key, dag_id, run_id, scope_json, scope_key, dry_run, candidates, invalid, batches,
                   batch_size, carried_over FROM {RUNS} WHERE run_key = ?""",
            (key,),
        )
        if not rows:
            raise LookupError(f"run {key!r} was never planned (no row in {RUNS})")
        r = rows[0]
        return RunRecord(r[0], r[1], r[2], json.loads(r[3]), r[4], bool(r[5]), r[6], r[7], r[8], r[9], r[10])

    def previous_candidate_count(self, dag_id: str, key: str) -> int | None:
        """Candidates of the latest earlier planned run of the DAG (for the jump guard)."""
        rows = self._execute(
            f"""SELECT candidates FROM {RUNS} WHERE dag_id = ? AND run_key <> ? AND dry_run = 0
                ORDER BY planned_at DESC LIMIT 1""",
            (dag_id, key),
        )
        return rows[0][0] if rows else None

    def candidate_slice(self, key: str, first: int, last: int) -> list[tuple[str, str]]:
        """``(lead_id, scope_key)`` of candidates ``first..last`` of the run."""
        rows = self._execute(
            f"SELECT lead_id, scope_key FROM {CANDIDATES} WHERE run_key = ? AND seq BETWEEN ? AND ? ORDER BY seq",
            (key, first, last),
        )
        return [(r[0], r[1]) for r in rows]

    # -- outcomes -----------------------------------------------------------------------------------

    def already_done(self, lead_ids: Sequence[str], scope_key: str) -> set[str]:
        """Leads settled under this scope key: queued (accepted) or rejected for good by LeadSquared,
        by an earlier try of this run or by any other run. They are never sent again."""
        found: set[str] = set()
        for start in range(0, len(lead_ids), 500):
            part = lead_ids[start : start + 500]
            marks = ", ".join("?" for _ in part)
            rows = self._execute(
                f"""SELECT DISTINCT lead_id FROM {AUDIT}
                    WHERE scope_key = ? AND lead_id IN ({marks}) AND (outcome = 'queued'
                       OR (outcome = 'rejected' AND status_code IS NOT NULL))""",
                (scope_key, *part),
            )
            found.update(r[0] for r in rows)
        return found

    def in_flight(self, key: str) -> set[tuple[str, str]]:
        """``(lead_id, scope_key)`` of this run left ``sending`` by a process that died: maybe sent."""
        rows = self._execute(
            f"SELECT lead_id, scope_key FROM {AUDIT} WHERE run_key = ? AND outcome = 'sending'", (key,)
        )
        return {(r[0], r[1]) for r in rows}

    def record(
        self,
        *,
        key: str,
        dag_id: str,
        batch: int,
        scope: dict[str, Any],
        scope_key: str,
        result: ResetResult,
        sends: int | None = None,
    ) -> None:
        """Write (or overwrite) the lead's row for this run. ``sends`` counts requests that may have gone out.

        An ``already_done`` result never overwrites a final (queued/rejected) row of this run.
        """
        keep_final = (
            f" WHERE {AUDIT}.outcome NOT IN ('queued', 'rejected')" if result.outcome == Outcome.ALREADY_DONE else ""
        )
        categories = {k: scope[k] for k in ("activity_event_codes", "task_type_ids", "audit_types", "delete_notes")}
        self._execute(
            f"""INSERT INTO {AUDIT} (run_key, lead_id, dag_id, batch, scope_key, from_date, to_date, categories,
                   outcome, status_code, exception_type, message, attempts, sends, started_at, finished_at,
                   budget_wait) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (run_key, lead_id, scope_key) DO UPDATE SET outcome = excluded.outcome,
                   batch = excluded.batch, status_code = excluded.status_code,
                   exception_type = excluded.exception_type, message = excluded.message,
                   attempts = {AUDIT}.attempts + excluded.attempts, sends = {AUDIT}.sends + excluded.sends,
                   started_at = COALESCE({AUDIT}.started_at, excluded.started_at),
                   finished_at = excluded.finished_at, budget_wait = excluded.budget_wait{keep_final}""",
            (
                key,
                result.lead_id,
                dag_id,
                batch,
                scope_key,
                (scope.get("from_date") or "")[:19].replace("T", " ") or None,
                (scope.get("to_date") or "")[:19].replace("T", " ") or None,
                json.dumps(categories, sort_keys=True),
                str(result.outcome),
                result.status_code,
                result.exception_type,
                result.message,
                result.attempts,
                result.attempts if sends is None else sends,
                result.started_at,
                result.finished_at,
                result.budget_wait_seconds,
            ),
        )

    def outcome_counts(self, key: str, batch: int | None = None) -> dict[str, int]:
        where, params = "run_key = ?", [key]
        if batch is not None:
            where += " AND batch = ?"
            params.append(batch)
        rows = self._execute(f"SELECT outcome, COUNT(*) FROM {AUDIT} WHERE {where} GROUP BY outcome", params)
        return {outcome: count for outcome, count in rows}

    def leads_with(self, key: str, outcomes: Sequence[str], limit: int = 20, batch: int | None = None) -> list[dict]:
        marks = ", ".join("?" for _ in outcomes)
        where, params = f"run_key = ? AND outcome IN ({marks})", [key, *outcomes]
        if batch is not None:
            where += " AND batch = ?"
            params.append(batch)
        rows = self._execute(
            f"""SELECT lead_id, outcome, status_code, exception_type, message, attempts FROM {AUDIT}
                WHERE {where} ORDER BY finished_at, lead_id LIMIT {int(limit)}""",
            params,
        )
        names = ("lead_id", "outcome", "status_code", "exception_type", "message", "attempts")
        return [dict(zip(names, row, strict=True)) for row in rows]

    def unfinished(self, key: str) -> int:
        """Staged candidates of the run without a final outcome (never reached, or left ``sending``)."""
        rows = self._execute(
            f"""SELECT COUNT(*) FROM {CANDIDATES} c LEFT JOIN {AUDIT} a
                    ON a.run_key = c.run_key AND a.lead_id = c.lead_id AND a.scope_key = c.scope_key
                WHERE c.run_key = ? AND (a.lead_id IS NULL OR a.outcome = 'sending')""",
            (key,),
        )
        return rows[0][0]

    def repeated_sends(self, key: str) -> int:
        """Leads of the run whose request may have gone out more than once (a crash mid-request)."""
        rows = self._execute(f"SELECT COUNT(*) FROM {AUDIT} WHERE run_key = ? AND sends > attempts", (key,))
        return rows[0][0]

    def iter_rows(self, key: str) -> Iterator[dict[str, Any]]:
        cur = self.conn.cursor()
        cur.execute(self._sql(f"SELECT * FROM {AUDIT} WHERE run_key = ? ORDER BY lead_id"), (key,))
        names = [d[0] for d in cur.description]
        for row in cur.fetchall():
            yield dict(zip(names, row, strict=True))
        cur.close()
