"""What the resets page reads from the state store: read-only and paged, over a connection of :func:`connect`.

Every query is served by an index of the schema:

- a lead's history: ``leadsquared_reset_audit_lead`` (``lead_id, finished_at``), newest first;
- a run's counts and its leads with an outcome: ``leadsquared_reset_audit_run_outcome`` (``run_key, outcome``);
- a run's possibly repeated leads and its calls over time: the audit's primary key (``run_key, ...``);
- recent runs: ``leadsquared_reset_runs_dag`` (``dag_id, planned_at``).

A run's counts are :func:`~leadsquared_provider.store.runs.run_counts`, as the report reads them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar

from sqlalchemy import case, func, inspect, select

from leadsquared_provider.rules.outcomes import COUNT_ORDER
from leadsquared_provider.store import schema as t
from leadsquared_provider.store.audit import AUDIT_COLUMNS
from leadsquared_provider.store.engine import StoreUnavailable, read_engine
from leadsquared_provider.store.runs import RunRecord, run_counts, run_record

if TYPE_CHECKING:
    from sqlalchemy import Select
    from sqlalchemy.engine import Connection

T = TypeVar("T")

# The verify step (leadsquared_provider.steps.verify) writes the verification table; a store that no run of
# a provider with that step has touched yet lacks it, and the page (which never creates tables) says so.
VERIFIED = "verified"
VERIFICATION_COLUMNS = ("lead_id", "result", "remaining_count", "remaining_ids", "message", "checked_at")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of rows and how many there are in all."""

    rows: list[T]
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
class Verification:
    """The verification step's results for a run: counts per result, and the leads not verified (paged)."""

    result_column: str
    counts: dict[str, int]
    not_verified: Page[dict[str, Any]]
    columns: list[str] = field(default_factory=list)


@contextmanager
def connect(conn_id: str) -> Iterator[Connection]:
    """A read connection to the state store of ``conn_id``.

    :raises StoreUnavailable: the store holds nothing yet (no run planned) or cannot be read.
    """
    from sqlalchemy.exc import SQLAlchemyError

    try:
        with read_engine(conn_id).connect() as conn:
            check_ready(conn)
            yield conn
    except SQLAlchemyError as exc:
        log.warning("state store %s unreadable: %s", conn_id, exc)
        raise StoreUnavailable(f"the state store (connection {conn_id}) cannot be read: {type(exc).__name__}") from None


def check_ready(conn: Connection) -> None:
    """Raise :class:`StoreUnavailable` unless the audit table exists (the first run creates it)."""
    if not inspect(conn).has_table(t.audit.name):
        raise StoreUnavailable("the state store has no audit table yet: no run has been planned")


def _page(conn: Connection, stmt: Any, count_stmt: Any, number: int, size: int) -> Page[dict[str, Any]]:
    number = max(1, number)
    rows = [dict(row._mapping) for row in conn.execute(stmt.limit(size).offset((number - 1) * size))]
    total = conn.execute(count_stmt).scalar() or 0
    return Page(rows=rows, total=total, number=number, size=size)


def lead_id_forms(lead_id: str) -> list[str]:
    """The ids a search for ``lead_id`` matches: as typed (trimmed) and lower-cased, as the plan stores GUIDs."""
    typed = lead_id.strip()
    return list(dict.fromkeys([typed, typed.lower()]))


# -- a lead ----------------------------------------------------------------------------------------


def _lead_history_where(lead_id: str, dag_ids: Collection[str] | None) -> list[Any]:
    a = t.audit
    where = [a.c.lead_id.in_(lead_id_forms(lead_id))]
    if dag_ids is not None:
        where.append(a.c.dag_id.in_(sorted(dag_ids)))
    return where


def lead_history_select(lead_id: str, dag_ids: Collection[str] | None) -> Select[Any]:
    """The query of a lead's history, unpaged: its audit rows, newest first (for :func:`lead_history`, and for
    the bench that reads its plan)."""
    a = t.audit
    columns = [a.c[name] for name in AUDIT_COLUMNS]
    return select(*columns).where(*_lead_history_where(lead_id, dag_ids)).order_by(a.c.finished_at.desc(), a.c.run_key)


def lead_history(
    conn: Connection, lead_id: str, dag_ids: Collection[str] | None, *, page: int = 1, size: int = 20
) -> Page[dict[str, Any]]:
    """Every audit row of the lead (every run that touched it), newest first, in DAGs ``dag_ids`` (None: all)."""
    count = select(func.count()).select_from(t.audit).where(*_lead_history_where(lead_id, dag_ids))
    return _page(conn, lead_history_select(lead_id, dag_ids), count, page, size)


# -- a run -----------------------------------------------------------------------------------------


def run_facts(conn: Connection, key: str) -> RunRecord | None:
    """The run's row, or None for a run never planned."""
    row = conn.execute(select(t.runs).where(t.runs.c.run_key == key)).first()
    return run_record(row) if row is not None else None


def outcome_counts(conn: Connection, key: str) -> dict[str, int]:
    """The run's counts (:func:`~leadsquared_provider.store.runs.run_counts`) in :data:`COUNT_ORDER`, then any
    other outcome."""
    found = run_counts(conn, key)
    ordered = {str(o): found.pop(str(o)) for o in COUNT_ORDER if str(o) in found}
    return {**ordered, **dict(sorted(found.items()))}


class RunTotals(NamedTuple):
    """A run's requests sent, rate-limit answers and possibly repeated leads, and its first and last activity
    (epoch seconds; None before any)."""

    sends: int
    rate_limited: int
    possibly_repeated: int
    first: float | None
    last: float | None


def run_totals(conn: Connection, key: str) -> RunTotals:
    """The run's :class:`RunTotals`."""
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
    return RunTotals(*row)


def run_leads(
    conn: Connection,
    key: str,
    *,
    outcomes: Collection[str] | None = None,
    repeated: bool | None = None,
    page: int = 1,
    size: int = 25,
) -> Page[dict[str, Any]]:
    """The run's audit rows with one of ``outcomes`` and/or possibly repeated, in the order they finished."""
    a = t.audit
    where = [a.c.run_key == key]
    if outcomes is not None:
        where.append(a.c.outcome.in_([str(o) for o in outcomes]))
    if repeated is not None:
        where.append(a.c.possibly_repeated.is_(repeated))
    columns = [a.c[name] for name in AUDIT_COLUMNS]
    stmt = select(*columns).where(*where).order_by(a.c.finished_at, a.c.lead_id)
    return _page(conn, stmt, select(func.count()).select_from(a).where(*where), page, size)


class LeadTiming(NamedTuple):
    """When one lead's sending started and finished, and how long it waited for the budget (epoch seconds)."""

    started_at: float | None
    finished_at: float | None
    budget_wait: float | None


def sent_lead_timings(conn: Connection, key: str) -> list[LeadTiming]:
    """The timings of each lead the run sent (at least one request)."""
    a = t.audit
    stmt = select(a.c.started_at, a.c.finished_at, a.c.budget_wait).where(a.c.run_key == key, a.c.sends > 0)
    return [LeadTiming(*row) for row in conn.execute(stmt)]


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


def recent_runs(conn: Connection, dag_ids: Collection[str] | None, *, page: int = 1, size: int = 10) -> Page[RunRecord]:
    """Runs of DAGs ``dag_ids`` (None: all), the latest planned first."""
    r = t.runs
    where = [] if dag_ids is None else [r.c.dag_id.in_(sorted(dag_ids))]
    number = max(1, page)
    stmt = select(r).where(*where).order_by(r.c.planned_at.desc()).limit(size).offset((number - 1) * size)
    rows = [run_record(row) for row in conn.execute(stmt)]
    total = conn.execute(select(func.count()).select_from(r).where(*where)).scalar() or 0
    return Page(rows=rows, total=total, number=number, size=size)


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
    stmt = select(*(v.c[name] for name in VERIFICATION_COLUMNS)).where(*where).order_by(v.c.lead_id)
    rows = _page(conn, stmt, select(func.count()).select_from(v).where(*where), page, size)
    return Verification(
        result_column="result",
        counts={str(k): n for k, n in counts},
        not_verified=rows,
        columns=list(VERIFICATION_COLUMNS),
    )
