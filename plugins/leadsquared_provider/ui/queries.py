"""What the resets page reads from the state store: SQLAlchemy Core over :mod:`leadsquared_provider.store.schema`.

Read-only and paged. Every query is served by an index of the schema:

- a lead's history: ``leadsquared_reset_audit_lead`` (``lead_id, finished_at``), newest first;
- a run's counts and its leads with an outcome: ``leadsquared_reset_audit_run_outcome`` (``run_key, outcome``);
- a run's possibly repeated leads and its calls over time: the audit's primary key (``run_key, ...``);
- recent runs: ``leadsquared_reset_runs_dag`` (``dag_id, planned_at``).

SQLite is read through its own engine with plain deferred reads (WAL readers never wait for writers), not
the state store's, whose transactions all take the write lock (``BEGIN IMMEDIATE``); PostgreSQL through the
state store's engine.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from sqlalchemy import case, func, inspect, select

from leadsquared_provider.rules.outcomes import Outcome
from leadsquared_provider.store import schema as t
from leadsquared_provider.store.state_store import UNFINISHED, run_counts

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

# Leads the run did not reset, in the order the page shows them.
NOT_RESET = (
    Outcome.FAILED,
    Outcome.AUTH_FAILED,
    Outcome.SKIPPED,
    Outcome.REJECTED,
    Outcome.IN_PROGRESS_ELSEWHERE,
    Outcome.DEFERRED,
    Outcome.SENDING,
)
# The run's counts in that order; a lead left ``sending`` is counted among the unfinished (run_counts).
OUTCOME_ORDER = (
    Outcome.QUEUED,
    Outcome.ALREADY_DONE,
    Outcome.DRY_RUN,
    *(o for o in NOT_RESET if o is not Outcome.SENDING),
    UNFINISHED,
)
# The verify step (leadsquared_provider.steps.verify) writes state_schema.verification; a store that no run of
# a provider with that step has touched yet lacks the table, and the page (which never creates tables) says so.
VERIFIED = "verified"
_VERIFICATION_SHOWN = ("lead_id", "result", "remaining_count", "remaining_ids", "message", "checked_at")

_LEAD_COLUMNS = (
    "run_key",
    "dag_id",
    "lead_id",
    "batch",
    "from_date",
    "to_date",
    "categories",
    "outcome",
    "status_code",
    "exception_type",
    "message",
    "attempts",
    "sends",
    "possibly_repeated",
    "rate_limited",
    "started_at",
    "finished_at",
)

_sqlite_engines: dict[str, Engine] = {}
_sqlite_lock = threading.Lock()


class StoreUnavailable(RuntimeError):
    """The state store holds nothing yet (no run planned) or cannot be opened; the message says which."""


@dataclass(frozen=True)
class Page:
    """One page of rows and how many there are in all."""

    rows: list[dict[str, Any]]
    total: int
    number: int
    size: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.size))

    @property
    def first_row(self) -> int:
        return (self.number - 1) * self.size + 1 if self.rows else 0

    @property
    def last_row(self) -> int:
        return self.first_row + len(self.rows) - 1 if self.rows else 0


@dataclass(frozen=True)
class RunFacts:
    """A run's row of ``leadsquared_reset_runs``, decoded."""

    run_key: str
    dag_id: str
    run_id: str
    scope: dict[str, Any]
    dry_run: bool
    candidates: int
    invalid: int
    carried_over: int
    batches: int
    batch_size: int
    planned_at: float
    reported_at: float | None
    unresolved: int | None
    leadsquared_conn_id: str | None  # None: planned before the store recorded it


@dataclass(frozen=True)
class Verification:
    """The verification step's results for a run: counts per result, and the leads not verified (paged)."""

    result_column: str
    counts: dict[str, int]
    not_verified: Page
    columns: list[str] = field(default_factory=list)


def sqlite_read_engine(path: str | Path) -> Engine:
    """An engine that only reads the SQLite file at ``path`` (never creates it), one per file and process."""
    from sqlalchemy import create_engine, event

    key = str(Path(path).resolve())
    with _sqlite_lock:
        engine = _sqlite_engines.get(key)
        if engine is None:
            uri = f"file:{quote(key)}?mode=rw"  # rw, not ro: a WAL reader needs the -shm file; never created

            def connect() -> sqlite3.Connection:
                return sqlite3.connect(uri, uri=True, timeout=10, check_same_thread=False)

            engine = create_engine("sqlite://", creator=connect)

            @event.listens_for(engine, "connect")
            def _read_only(dbapi_conn: Any, _record: Any) -> None:
                dbapi_conn.execute("PRAGMA query_only = ON")

            _sqlite_engines[key] = engine
        return engine


def read_engine(conn_id: str) -> Engine:
    """The engine that reads the state store of connection ``conn_id`` (sqlite or postgres)."""
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    if conn.conn_type == "sqlite":
        if not conn.host:
            raise StoreUnavailable(f"state store connection {conn_id!r} (sqlite) has no file path as host")
        if not Path(conn.host).exists():
            raise StoreUnavailable(f"the state store {conn.host} does not exist yet: no run has been planned")
        return sqlite_read_engine(conn.host)
    from leadsquared_provider.store.state_store import StateStore

    return StateStore(conn_id).engine


def check_ready(conn: Connection) -> None:
    """Raise :class:`StoreUnavailable` unless the audit table exists (the first run creates it)."""
    if not inspect(conn).has_table(t.audit.name):
        raise StoreUnavailable("the state store has no audit table yet: no run has been planned")


def _page(conn: Connection, stmt: Any, count_stmt: Any, number: int, size: int) -> Page:
    number = max(1, number)
    rows = [dict(row._mapping) for row in conn.execute(stmt.limit(size).offset((number - 1) * size))]
    total = conn.execute(count_stmt).scalar() or 0
    return Page(rows=rows, total=total, number=number, size=size)


def lead_id_forms(lead_id: str) -> list[str]:
    """The ids a search for ``lead_id`` matches: as typed (trimmed) and lower-cased, as the plan stores GUIDs."""
    typed = lead_id.strip()
    return list(dict.fromkeys([typed, typed.lower()]))


# -- a lead ----------------------------------------------------------------------------------------


def lead_history(
    conn: Connection, lead_id: str, dag_ids: Collection[str] | None, *, page: int = 1, size: int = 20
) -> Page:
    """Every audit row of the lead (every run that touched it), newest first, in DAGs ``dag_ids`` (None: all)."""
    a = t.audit
    where = [a.c.lead_id.in_(lead_id_forms(lead_id))]
    if dag_ids is not None:
        where.append(a.c.dag_id.in_(sorted(dag_ids)))
    columns = [a.c[name] for name in _LEAD_COLUMNS]
    stmt = select(*columns).where(*where).order_by(a.c.finished_at.desc(), a.c.run_key)
    return _page(conn, stmt, select(func.count()).select_from(a).where(*where), page, size)


# -- a run -----------------------------------------------------------------------------------------


def run_facts(conn: Connection, key: str) -> RunFacts | None:
    r = t.runs
    row = conn.execute(select(r).where(r.c.run_key == key)).first()
    if row is None:
        return None
    return RunFacts(
        run_key=row.run_key,
        dag_id=row.dag_id,
        run_id=row.run_id,
        scope=json.loads(row.scope_json),
        dry_run=bool(row.dry_run),
        candidates=row.candidates,
        invalid=row.invalid,
        carried_over=row.carried_over or 0,
        batches=row.batches,
        batch_size=row.batch_size,
        planned_at=row.planned_at,
        reported_at=row.reported_at,
        unresolved=row.unresolved,
        leadsquared_conn_id=row.leadsquared_conn_id,
    )


def outcome_counts(conn: Connection, key: str) -> dict[str, int]:
    """The run's counts (:func:`~leadsquared_provider.store.state_store.run_counts`, as the report reads them), in
    :data:`OUTCOME_ORDER` (then any other outcome)."""
    found = run_counts(conn, key)
    ordered = {str(o): found.pop(str(o)) for o in OUTCOME_ORDER if str(o) in found}
    return {**ordered, **dict(sorted(found.items()))}


def run_totals(conn: Connection, key: str) -> dict[str, Any]:
    """Requests sent, rate-limit answers, possibly repeated leads and the first and last activity of the run."""
    a = t.audit
    row = conn.execute(
        select(
            func.coalesce(func.sum(a.c.sends), 0).label("sends"),
            func.coalesce(func.sum(a.c.rate_limited), 0).label("rate_limited"),
            func.coalesce(func.sum(case((a.c.possibly_repeated.is_(True), 1), else_=0)), 0).label("possibly_repeated"),
            func.min(a.c.started_at).label("first"),
            func.max(a.c.finished_at).label("last"),
        ).where(a.c.run_key == key)
    ).one()
    return dict(row._mapping)


def run_leads(
    conn: Connection,
    key: str,
    *,
    outcomes: Collection[str] | None = None,
    repeated: bool | None = None,
    page: int = 1,
    size: int = 25,
) -> Page:
    """The run's audit rows with one of ``outcomes`` and/or possibly repeated, in the order they finished."""
    a = t.audit
    where = [a.c.run_key == key]
    if outcomes is not None:
        where.append(a.c.outcome.in_([str(o) for o in outcomes]))
    if repeated is not None:
        where.append(a.c.possibly_repeated.is_(repeated))
    columns = [a.c[name] for name in _LEAD_COLUMNS]
    stmt = select(*columns).where(*where).order_by(a.c.finished_at, a.c.lead_id)
    return _page(conn, stmt, select(func.count()).select_from(a).where(*where), page, size)


def send_times(conn: Connection, key: str) -> Iterator[float]:
    """When the run's requests left, estimated per lead: its first after the budget wait, its retries spread
    evenly up to its finish. (The audit keeps per lead the start, the wait for the budget, the finish and the
    number of requests, not each request's time.)"""
    a = t.audit
    stmt = select(a.c.started_at, a.c.finished_at, a.c.budget_wait, a.c.sends).where(
        a.c.run_key == key, a.c.sends > 0, a.c.started_at.is_not(None), a.c.finished_at.is_not(None)
    )
    for started, finished, waited, sends in conn.execute(stmt.execution_options(yield_per=5000)):
        first = min(started + (waited or 0.0), finished)
        if sends == 1:
            yield first
            continue
        step = (finished - first) / (sends - 1)
        for n in range(sends):
            yield first + n * step


def recent_runs(conn: Connection, dag_ids: Collection[str] | None, *, page: int = 1, size: int = 10) -> Page:
    """Runs of DAGs ``dag_ids`` (None: all), the latest planned first."""
    r = t.runs
    where = [] if dag_ids is None else [r.c.dag_id.in_(sorted(dag_ids))]
    stmt = (
        select(
            r.c.run_key,
            r.c.dag_id,
            r.c.run_id,
            r.c.scope_json,
            r.c.dry_run,
            r.c.candidates,
            r.c.invalid,
            r.c.carried_over,
            r.c.planned_at,
            r.c.reported_at,
            r.c.unresolved,
        )
        .where(*where)
        .order_by(r.c.planned_at.desc())
    )
    return _page(conn, stmt, select(func.count()).select_from(r).where(*where), page, size)


def dags_with_runs(conn: Connection) -> list[str]:
    """The DAGs that planned resets (those whose access a lead search checks)."""
    r = t.runs
    return list(conn.execute(select(r.c.dag_id).distinct().order_by(r.c.dag_id)).scalars())


# -- verification (written by a later step; shown once its table exists) ------------------------------------


def verification(conn: Connection, key: str, *, page: int = 1, size: int = 25) -> Verification | None:
    """The verification results of the run, or None while the store has no verification table yet."""
    v = t.verification
    if not inspect(conn).has_table(v.name):
        return None
    counts = conn.execute(select(v.c.result, func.count()).where(v.c.run_key == key).group_by(v.c.result)).all()
    where = [v.c.run_key == key, v.c.result != VERIFIED]
    stmt = select(*(v.c[name] for name in _VERIFICATION_SHOWN)).where(*where).order_by(v.c.lead_id)
    rows = _page(conn, stmt, select(func.count()).select_from(v).where(*where), page, size)
    return Verification(
        result_column="result",
        counts={str(k): n for k, n in counts},
        not_verified=rows,
        columns=list(_VERIFICATION_SHOWN),
    )
