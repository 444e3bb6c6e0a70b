"""The audit: one row per (run, lead, scope) with its outcome, answer, attempts and timings; and the
verification rows that read back whether LeadSquared carried the resets out.

Tables: ``leadsquared_reset_audit``, ``leadsquared_reset_verification``. A row is upserted: attempts and sends
add up over tries, and a not-sent outcome never overwrites a settled one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlalchemy import func, literal, or_, select

from leadsquared_provider.rules.outcomes import SETTLED_OUTCOMES, Outcome, ResetResult, redacted
from leadsquared_provider.store import schema as t
from leadsquared_provider.store.engine import StoreBase, dialect_insert, upsert

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from leadsquared_provider.rules.request import ResetScope
    from leadsquared_provider.store.runs import StagedLead

# The audit's columns a reader is shown (the resets page's lead rows; the export derives its own from them),
# in that order. The others (scope_key, unread, budget_wait) are the store's bookkeeping.
AUDIT_COLUMNS: tuple[str, ...] = (
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


@dataclass(frozen=True)
class BatchScope:
    """What every audit row of one batch shares: the run, its DAG, the batch and its leads' scopes by key."""

    run_key: str
    dag_id: str
    batch: int
    scopes: Mapping[str, ResetScope]


class LeadResult(NamedTuple):
    """A lead's result under one scope: what one audit row records (the lead is ``result.lead_id``)."""

    scope_key: str
    result: ResetResult

    @classmethod
    def not_sent(cls, lead: StagedLead, outcome: Outcome, message: str) -> LeadResult:
        """The staged ``lead``, not sent (already done, held elsewhere, dry run, skipped, deferred)."""
        return cls(lead.scope_key, ResetResult.not_sent(lead.lead_id, outcome, message))


class QueuedLead(NamedTuple):
    """A lead LeadSquared queued under a scope, and when its answer came (epoch seconds)."""

    lead_id: str
    scope_key: str
    queued_at: float | None


class LeadRow(NamedTuple):
    """A lead's audit row as the report lists it: its outcome and the answer behind it."""

    lead_id: str
    outcome: str
    status_code: int | None
    exception_type: str | None
    message: str
    attempts: int


@dataclass(frozen=True)
class VerificationRow:
    """One (lead, scope) read back by the verify step: its result (a ``steps.verify.Check``), what remains
    of what the reset was to delete, and why."""

    lead_id: str
    scope_key: str
    result: str
    remaining_count: int = 0
    remaining_ids: tuple[str, ...] = ()
    message: str = ""
    checked_at: float = field(default_factory=time.time)


def categories_json(scope: ResetScope) -> str:
    """The scope's categories as the audit's ``categories`` column holds them."""
    picked = {
        "activity_event_codes": list(scope.activity_event_codes),
        "task_type_ids": list(scope.task_type_ids),
        "audit_types": list(scope.audit_types),
        "delete_notes": scope.delete_notes,
    }
    return json.dumps(picked, sort_keys=True)


def write_audit(
    conn: Connection,
    batch: BatchScope,
    scope_key: str,
    result: ResetResult,
    *,
    sends: int,
    repeated: bool = False,
) -> None:
    """Upsert the (run, lead, scope) row. Attempts and sends add up over tries; a not-sent outcome never
    overwrites a settled one (a zombie's late ``already_done`` must not hide its twin's ``queued``)."""
    a = t.audit
    scope = batch.scopes[scope_key]
    values = {
        "run_key": batch.run_key,
        "lead_id": str(result.lead_id)[:200],
        "scope_key": scope_key,
        "dag_id": batch.dag_id,
        "batch": batch.batch,
        "from_date": scope.from_text,
        "to_date": scope.to_text,
        "categories": categories_json(scope),
        "outcome": str(result.outcome),
        "status_code": result.status_code,
        "exception_type": redacted(result.exception_type, t.EXCEPTION_TYPE_SIZE)
        if result.exception_type is not None
        else None,
        "message": redacted(result.message, t.MESSAGE_SIZE),
        "attempts": result.attempts,
        "sends": sends,
        "possibly_repeated": bool(repeated),
        "unread": result.last_unread,
        "rate_limited": result.rate_limited_answers,
        "started_at": result.started_at,
        "finished_at": result.finished_at,
        "budget_wait": result.budget_wait_seconds,
    }
    stmt = dialect_insert(conn.dialect.name, a).values(**values)
    x = stmt.excluded
    keep_settled = None
    if result.outcome not in SETTLED_OUTCOMES:
        keep_settled = a.c.outcome.not_in([str(o) for o in SETTLED_OUTCOMES])
    stmt = stmt.on_conflict_do_update(
        index_elements=["run_key", "lead_id", "scope_key"],
        set_={
            "batch": x.batch,
            "outcome": x.outcome,
            "status_code": x.status_code,
            "exception_type": x.exception_type,
            "message": x.message,
            "attempts": a.c.attempts + x.attempts,
            "sends": a.c.sends + x.sends,
            "possibly_repeated": or_(a.c.possibly_repeated, x.possibly_repeated),
            "unread": or_(a.c.unread, x.unread),
            "rate_limited": a.c.rate_limited + x.rate_limited,
            "started_at": func.coalesce(a.c.started_at, x.started_at),
            "finished_at": x.finished_at,
            "budget_wait": x.budget_wait,
        },
        where=keep_settled,
    )
    conn.execute(stmt)


def _joined_ids(ids: Iterable[object]) -> str:
    """Ids comma-separated, cut to whole ids within the column's size (the count says how many there were)."""
    text = ""
    for raw in ids:
        part = str(raw).replace(",", " ").strip()[:100]
        candidate = f"{text},{part}" if text else part
        if len(candidate) > t.REMAINING_IDS_SIZE:
            break
        text = candidate
    return text


class AuditTables(StoreBase):
    """The store's part that records and reads back outcomes and their verification."""

    def record(self, batch: BatchScope, scope_key: str, result: ResetResult) -> None:
        """Write a lead that was not sent (already done, held elsewhere, dry run, skipped, invalid id)."""
        with self._begin() as conn:
            write_audit(conn, batch, scope_key, result, sends=0)

    def record_many(self, batch: BatchScope, results: Iterable[LeadResult]) -> None:
        """Write leads that were not sent, in one transaction."""
        with self._begin() as conn:
            for lead in results:
                write_audit(conn, batch, lead.scope_key, lead.result, sends=0)

    def outcome_counts(self, key: str, batch: int | None = None) -> dict[str, int]:
        """The run's (or one batch's) audit rows per outcome, ``sending`` included."""
        a = t.audit
        stmt = select(a.c.outcome, func.count()).where(a.c.run_key == key).group_by(a.c.outcome)
        if batch is not None:
            stmt = stmt.where(a.c.batch == batch)
        with self.engine.connect() as conn:
            return {outcome: count for outcome, count in conn.execute(stmt)}

    def leads_with(
        self,
        key: str,
        outcomes: Sequence[str] | None = None,
        *,
        repeated: bool | None = None,
        limit: int = 20,
        offset: int = 0,
        batch: int | None = None,
    ) -> list[LeadRow]:
        """The run's audit rows with one of ``outcomes`` (and/or possibly repeated), oldest first."""
        a = t.audit
        stmt = select(a.c.lead_id, a.c.outcome, a.c.status_code, a.c.exception_type, a.c.message, a.c.attempts).where(
            a.c.run_key == key
        )
        if outcomes is not None:
            stmt = stmt.where(a.c.outcome.in_([str(o) for o in outcomes]))
        if repeated is not None:
            stmt = stmt.where(a.c.possibly_repeated.is_(repeated))
        if batch is not None:
            stmt = stmt.where(a.c.batch == batch)
        stmt = stmt.order_by(a.c.finished_at, a.c.lead_id).limit(limit).offset(offset)
        with self.engine.connect() as conn:
            return [LeadRow(*row) for row in conn.execute(stmt)]

    def repeated_count(self, key: str) -> int:
        """Leads of the run whose request may have reached LeadSquared more than once."""
        a = t.audit
        stmt = select(func.count()).where(a.c.run_key == key, a.c.possibly_repeated.is_(True))
        with self.engine.connect() as conn:
            return conn.execute(stmt).scalar() or 0

    def rate_limited_answers(self, key: str) -> int:
        a = t.audit
        with self.engine.connect() as conn:
            return int(
                conn.execute(select(func.coalesce(func.sum(a.c.rate_limited), 0)).where(a.c.run_key == key)).scalar()
                or 0
            )

    def iter_audit(self, key: str) -> Iterator[dict[str, Any]]:
        """The run's audit rows by name, ordered by lead."""
        a = t.audit
        with self.engine.connect() as conn:
            for row in conn.execute(select(a).where(a.c.run_key == key).order_by(a.c.lead_id)):
                yield dict(row._mapping)

    def queued_leads(self, key: str) -> list[QueuedLead]:
        """The run's leads LeadSquared queued, ordered by lead then scope."""
        a = t.audit
        stmt = (
            select(a.c.lead_id, a.c.scope_key, a.c.finished_at)
            .where(a.c.run_key == key, a.c.outcome == literal(str(Outcome.QUEUED)))
            .order_by(a.c.lead_id, a.c.scope_key)
        )
        with self.engine.connect() as conn:
            return [QueuedLead(row.lead_id, row.scope_key, row.finished_at) for row in conn.execute(stmt)]

    def save_verification(self, key: str, rows: Iterable[VerificationRow]) -> int:
        """Upsert the checks of ``rows`` for the run; a later check replaces an earlier."""
        v = t.verification
        written = 0
        with self._begin() as conn:
            for row in rows:
                values = {
                    "run_key": key,
                    "lead_id": str(row.lead_id)[:64],
                    "scope_key": row.scope_key,
                    "result": str(row.result),
                    "remaining_count": row.remaining_count,
                    "remaining_ids": _joined_ids(row.remaining_ids),
                    "message": redacted(row.message, t.MESSAGE_SIZE),
                    "checked_at": row.checked_at,
                }
                stmt = upsert(self.dialect, v, values, ("run_key", "lead_id", "scope_key"))
                conn.execute(stmt)
                written += 1
        return written

    def verification_rows(self, key: str) -> list[VerificationRow]:
        """The run's verification rows (``remaining_ids`` as kept: cut to the column), ordered by lead and scope."""
        v = t.verification
        stmt = select(v).where(v.c.run_key == key).order_by(v.c.lead_id, v.c.scope_key)
        with self.engine.connect() as conn:
            return [
                VerificationRow(
                    lead_id=row.lead_id,
                    scope_key=row.scope_key,
                    result=row.result,
                    remaining_count=row.remaining_count,
                    remaining_ids=tuple(part for part in (row.remaining_ids or "").split(",") if part),
                    message=row.message or "",
                    checked_at=row.checked_at,
                )
                for row in conn.execute(stmt)
            ]
