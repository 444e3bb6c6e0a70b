"""Runs, their scopes and their staged candidates: what the plan writes and every later step reads.

Tables: ``leadsquared_reset_runs``, ``leadsquared_reset_scopes``, ``leadsquared_reset_candidates``. A scope is
stored as the JSON of :meth:`ResetScope.to_dict` and read back as a :class:`ResetScope`, once, here.
"""

from __future__ import annotations

import itertools
import json
import statistics
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlalchemy import and_, case, delete, exists, func, literal, or_, select, true, update

from leadsquared_provider.rules.approval import Decision
from leadsquared_provider.rules.outcomes import UNFINISHED, UNRESOLVED_OUTCOMES, Outcome
from leadsquared_provider.rules.planning import INTERVAL_RUN_TYPES, batch_bounds
from leadsquared_provider.rules.request import ResetScope
from leadsquared_provider.store import schema as t
from leadsquared_provider.store.engine import IN_CHUNK, StoreBase, dialect_insert, upsert

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Row

CARRY_OVER_MAX_RUNS = 3
# A run whose report never ran is closed for carry-over once it is this old (its tasks are long gone).
STALE_RUN_SECONDS = 24 * 3600
# The growth guard compares a run with the median of this many earlier runs of the DAG.
GROWTH_BASELINE_RUNS = 5
TURNED_DOWN = tuple(decision for decision in Decision if not decision.lets_through and decision is not Decision.WAITING)


class RunRef(NamedTuple):
    """A DAG run, named by its DAG and run ids."""

    dag_id: str
    run_id: str


def run_key(dag_id: str, run_id: str) -> str:
    """The store's key of a DAG run (read back by :func:`parse_run_key`)."""
    return f"{dag_id}/{run_id}"


def parse_run_key(key: str) -> RunRef:
    """The DAG run of a key :func:`run_key` built: a DAG id holds no ``/``, a run id may."""
    dag_id, _, run_id = key.partition("/")
    return RunRef(dag_id, run_id)


class StagedLead(NamedTuple):
    """One lead to reset under one scope: a staged candidate of a run."""

    lead_id: str
    scope_key: str


@dataclass(frozen=True)
class RunRecord:
    """A run's row of ``leadsquared_reset_runs``: its scope, counts and batches; when it was planned and
    reported (set by the store, not by the plan)."""

    run_key: str
    dag_id: str
    run_id: str
    scope: ResetScope
    scope_key: str
    dry_run: bool
    candidates: int
    invalid: int
    batches: int
    batch_size: int
    carried_over: int = 0
    run_type: str | None = None  # Airflow's DagRunType value: "scheduled", "backfill", "manual", ...
    leadsquared_conn_id: str | None = None  # the account's connection (None: planned before schema 3)
    account: str | None = None  # the account's tag, learnt by the plan (None: a dry run, or before schema 3)
    deferred: int = 0  # the last staged leads, in no batch: over today's share of the daily quota
    planned_at: float | None = None
    reported_at: float | None = None  # None: its report has not run
    unresolved: int | None = None  # leads its report left to the next run

    @property
    def window(self) -> dict[str, str | None]:
        """The run's window, ``from`` and ``to`` as ISO-8601 UTC text (None: unbounded), as reports show it."""
        stored = self.scope.to_dict()
        return {"from": stored["from_date"], "to": stored["to_date"]}

    @property
    def batched(self) -> int:
        """The staged leads that the batches cover (its own and carried over, less the deferred)."""
        return self.candidates + self.carried_over - self.deferred

    def batch(self, number: int) -> dict[str, int]:
        """The bounds of batch ``number`` among the run's staged candidates (its own and carried over)."""
        return batch_bounds(number, self.batch_size, self.batched)


def run_record(row: Row[Any]) -> RunRecord:
    """A row of ``leadsquared_reset_runs``, decoded."""
    return RunRecord(
        run_key=row.run_key,
        dag_id=row.dag_id,
        run_id=row.run_id,
        scope=ResetScope.from_mapping(json.loads(row.scope_json)),
        scope_key=row.scope_key,
        dry_run=bool(row.dry_run),
        candidates=row.candidates,
        invalid=row.invalid,
        batches=row.batches,
        batch_size=row.batch_size,
        carried_over=row.carried_over or 0,
        run_type=row.run_type,
        leadsquared_conn_id=row.leadsquared_conn_id,
        account=row.account,
        deferred=row.deferred or 0,
        planned_at=row.planned_at,
        reported_at=row.reported_at,
        unresolved=row.unresolved,
    )


def scope_json(scope: ResetScope) -> str:
    return json.dumps(scope.to_dict(), sort_keys=True)


def run_counts(conn: Connection, key: str) -> dict[str, int]:
    """The run's leads per final outcome, and :data:`UNFINISHED`: staged with no final outcome yet (never
    reached, or left ``sending``: the request's answer was never recorded). One reading of the run for the
    report and the UI alike; a run never planned has none."""
    c, a = t.candidates, t.audit
    found = conn.execute(select(a.c.outcome, func.count()).where(a.c.run_key == key).group_by(a.c.outcome)).all()
    counts = {outcome: count for outcome, count in found if outcome != Outcome.SENDING}
    same = and_(a.c.run_key == c.c.run_key, a.c.lead_id == c.c.lead_id, a.c.scope_key == c.c.scope_key)
    left = conn.execute(
        select(func.count())
        .select_from(c.outerjoin(a, same))
        .where(c.c.run_key == key, or_(a.c.lead_id.is_(None), a.c.outcome == literal(str(Outcome.SENDING))))
    ).scalar()
    if left:
        counts[UNFINISHED] = left
    return counts


class RunTables(StoreBase):
    """The store's part that plans: runs, scopes and staged candidates."""

    def save_scope(self, scope_key: str, scope: ResetScope) -> None:
        stmt = dialect_insert(self.dialect, t.scopes).values(scope_key=scope_key, scope_json=scope_json(scope))
        with self._begin() as conn:
            conn.execute(stmt.on_conflict_do_nothing(index_elements=["scope_key"]))

    def load_scopes(self, scope_keys: Iterable[str]) -> dict[str, ResetScope]:
        """The scopes of ``scope_keys``, by key.

        :raises LookupError: a scope key the plan never saved.
        """
        keys = sorted(set(scope_keys))
        found: dict[str, ResetScope] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(keys), IN_CHUNK):
                part = keys[start : start + IN_CHUNK]
                rows = conn.execute(select(t.scopes).where(t.scopes.c.scope_key.in_(part)))
                found.update({row.scope_key: ResetScope.from_mapping(json.loads(row.scope_json)) for row in rows})
        missing = set(keys) - set(found)
        if missing:
            raise LookupError(f"scope(s) {sorted(missing)} missing from {t.scopes.name}")
        return found

    def stage_candidates(self, key: str, leads: Iterable[StagedLead], chunk: int = 20_000) -> int:
        """Replace the run's staged candidates with ``leads`` numbered from 1.

        A million rows in seconds: PostgreSQL's COPY (psycopg 3), else the driver's executemany of the
        INSERT that SQLAlchemy compiles for the table (SQLAlchemy's own bulk insert is 3-10x slower here).
        """
        c = t.candidates
        rows = ((key, seq, lead_id, scope_key) for seq, (lead_id, scope_key) in enumerate(leads, start=1))
        count = 0
        with self._begin() as conn:
            conn.execute(delete(c).where(c.c.run_key == key))
            cursor = conn.connection.driver_connection.cursor()
            try:
                if self.dialect == "postgresql" and hasattr(cursor, "copy"):
                    columns = ", ".join(col.name for col in c.columns)
                    with cursor.copy(f"COPY {c.name} ({columns}) FROM STDIN") as copy:
                        for row in rows:
                            copy.write_row(row)
                            count += 1
                    return count
                statement = str(c.insert().compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True}))
                positional = conn.dialect.positional
                while part := list(itertools.islice(rows, chunk)):
                    params = part if positional else [dict(zip(c.columns.keys(), row, strict=True)) for row in part]
                    cursor.executemany(statement, params)
                    count += len(part)
            finally:
                cursor.close()
        return count

    def carry_over(self, dag_id: str, key: str, max_runs: int = CARRY_OVER_MAX_RUNS) -> list[StagedLead]:
        """Leads of earlier, closed runs of the DAG left unresolved and not settled since.

        Unresolved: failed, skipped, left ``sending``, held by an owner that then failed, or never reached
        (no audit row: the batch died). A lead is carried over at most ``max_runs`` times; leads settled
        under their scope (queued, or refused for good) never are. Runs still going are left alone: their
        own batches are still at work (a run is closed once its report ran, or after a day).
        """
        c, a, r, k = t.candidates, t.audit, t.runs, t.claims
        closed = or_(r.c.reported_at.is_not(None), r.c.planned_at < time.time() - STALE_RUN_SECONDS)
        unresolved = or_(a.c.outcome.is_(None), a.c.outcome.in_([str(o) for o in UNRESOLVED_OUTCOMES]))
        settled = exists().where(
            and_(k.c.lead_id == c.c.lead_id, k.c.scope_key == c.c.scope_key, k.c.settled_outcome.is_not(None))
        )
        stmt = (
            select(c.c.lead_id, c.c.scope_key)
            .select_from(
                c.join(r, r.c.run_key == c.c.run_key).outerjoin(
                    a,
                    and_(a.c.run_key == c.c.run_key, a.c.lead_id == c.c.lead_id, a.c.scope_key == c.c.scope_key),
                )
            )
            .where(
                r.c.dag_id == dag_id,
                r.c.run_key != key,
                r.c.dry_run.is_(False),
                or_(r.c.unresolved.is_(None), r.c.unresolved > 0),
                closed,
                unresolved,
                ~settled,
            )
            .group_by(c.c.lead_id, c.c.scope_key)
            # A run that deferred the lead (today's quota) does not count against the limit.
            .having(
                func.count(func.distinct(case((a.c.outcome == str(Outcome.DEFERRED), None), else_=c.c.run_key)))
                <= max_runs
            )
            .order_by(c.c.lead_id)
        )
        with self.engine.connect() as conn:
            return [StagedLead(row.lead_id, row.scope_key) for row in conn.execute(stmt)]

    def save_run(self, record: RunRecord) -> None:
        """Write the run's row (planned now, not reported yet), replacing an earlier plan of it."""
        values = {
            "run_key": record.run_key,
            "dag_id": record.dag_id,
            "run_id": record.run_id,
            "run_type": record.run_type,
            "leadsquared_conn_id": record.leadsquared_conn_id,
            "account": record.account,
            "deferred": record.deferred,
            "scope_json": scope_json(record.scope),
            "scope_key": record.scope_key,
            "dry_run": record.dry_run,
            "candidates": record.candidates,
            "invalid": record.invalid,
            "batches": record.batches,
            "batch_size": record.batch_size,
            "carried_over": record.carried_over,
            "planned_at": time.time(),
            "reported_at": None,
            "unresolved": None,
        }
        with self._begin() as conn:
            conn.execute(upsert(self.dialect, t.runs, values, ("run_key",)))

    def load_run(self, key: str) -> RunRecord:
        """The run's row.

        :raises LookupError: the run was never planned.
        """
        with self.engine.connect() as conn:
            row = conn.execute(select(t.runs).where(t.runs.c.run_key == key)).first()
        if row is None:
            raise LookupError(f"run {key!r} was never planned (no row in {t.runs.name})")
        return run_record(row)

    def growth_baseline(self, dag_id: str, key: str, *, runs: int = GROWTH_BASELINE_RUNS) -> int | None:
        """The growth guard's baseline: the median candidate count of the DAG's last ``runs`` scheduled or
        backfill runs (not dry runs, not this one), so that neither a one-lead manual fix nor an empty day
        becomes the measure of the next night; of its last runs of any type while it has none of those.
        ``None`` (no guard) without earlier runs or when the median is 0. A run turned down at the approval gate
        is no measure either."""
        r, g = t.runs, t.approvals
        turned_down = exists().where(g.c.run_key == r.c.run_key, g.c.decision.in_([str(d) for d in TURNED_DOWN]))
        earlier = (r.c.dag_id == dag_id, r.c.run_key != key, r.c.dry_run.is_(False), ~turned_down)
        interval = r.c.run_type.in_(INTERVAL_RUN_TYPES)
        with self.engine.connect() as conn:
            for condition in (interval, true()):
                stmt = select(r.c.candidates).where(*earlier, condition).order_by(r.c.planned_at.desc()).limit(runs)
                counts = [row.candidates for row in conn.execute(stmt)]
                if counts:
                    baseline = int(statistics.median_low(counts))
                    return baseline or None
        return None

    def candidate_slice(self, key: str, first: int, last: int) -> list[StagedLead]:
        """Candidates ``first..last`` of the run, in their order."""
        c = t.candidates
        stmt = (
            select(c.c.lead_id, c.c.scope_key).where(c.c.run_key == key, c.c.seq.between(first, last)).order_by(c.c.seq)
        )
        with self.engine.connect() as conn:
            return [StagedLead(row.lead_id, row.scope_key) for row in conn.execute(stmt)]

    def close_run(self, key: str, unresolved: int) -> None:
        """Mark the run reported: from now on, its unresolved leads are carried over by the next run."""
        with self._begin() as conn:
            conn.execute(
                update(t.runs).where(t.runs.c.run_key == key).values(reported_at=time.time(), unresolved=unresolved)
            )

    def run_counts(self, key: str) -> dict[str, int]:
        """See :func:`run_counts`."""
        with self.engine.connect() as conn:
            return run_counts(conn, key)
