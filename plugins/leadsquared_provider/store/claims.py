"""Claims: one row per (lead, scope) for all runs, taken before a request and settled or released after it.

Table: ``leadsquared_reset_claims``. Claims live by the store's clock (PostgreSQL's ``clock_timestamp()``; for
SQLite, the one machine's clock), never a worker's: a worker whose clock runs ahead cannot see a live claim as
expired. An expired claim is taken over only when it is seen expired and unchanged twice, ``grace`` seconds
apart by the store's clock: an owner whose heartbeat waited on a locked or unreachable store gets that long to
land it once the store answers again, however long the store was held. Taking a claim writes the lead's
``sending`` audit row, and settling it its outcome, in the same transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, case, delete, or_, select, update

from leadsquared_provider.rules.outcomes import SETTLED_OUTCOMES, Outcome, ResetResult
from leadsquared_provider.store import schema as t
from leadsquared_provider.store.audit import BatchScope, write_audit
from leadsquared_provider.store.engine import IN_CHUNK, StoreBase, dialect_insert, store_now

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from leadsquared_provider.rules.request import ResetScope
    from leadsquared_provider.store.runs import StagedLead


@dataclass(frozen=True)
class ClaimOwner:
    """Who holds a claim: one sender (one try of one batch, in one process)."""

    owner_id: str
    run_key: str
    batch: int
    try_number: int
    hostname: str
    pid: int

    def describe(self) -> str:
        return f"run {self.run_key}, batch {self.batch}, try {self.try_number} on {self.hostname} pid {self.pid}"


class ClaimStatus(StrEnum):
    OURS = "ours"  # inserted: nobody held the lead
    TAKEN_OVER = "taken_over"  # an expired claim: its owner died, maybe mid-request
    SETTLED = "settled"  # queued or refused for good under this scope: never send again
    HELD = "held"  # a live owner holds it
    EXPIRED = "expired"  # seen expired once: taken over if still so, unchanged, ``grace`` seconds later


@dataclass(frozen=True)
class Sighting:
    """An expired claim as seen at ``seen_at`` (the store's clock): whose it was and until when."""

    owner_id: str
    expires_at: float
    seen_at: float


@dataclass(frozen=True)
class Claim:
    status: ClaimStatus
    detail: str = ""
    sighting: Sighting | None = None  # EXPIRED: pass it back to the next claim of the lead
    # Ours, and an earlier attempt at this lead and window (any run or try) got no answer that was read:
    # sending it now may repeat a reset LeadSquared already queued.
    after_unread: bool = False

    @property
    def possibly_repeats(self) -> bool:
        return self.status is ClaimStatus.TAKEN_OVER or self.after_unread


def _window_end(scope: ResetScope) -> float | None:
    """The scope's window end (exclusive: one second after its inclusive ``to_date``) in epoch seconds;
    ``None`` for a window without an end (all-time), which never closes."""
    return scope.to_date.timestamp() + 1 if scope.to_date is not None else None


def _take_claim(conn: Connection, row: Mapping[str, Any], holder: str, *still: Any, **extra: Any) -> bool:
    """Make the lead's claim ``row`` (ours) if ``holder`` still holds it as seen (``still``); True if taken."""
    k = t.claims
    mine = {name: value for name, value in row.items() if name not in ("lead_id", "scope_key")}
    where = (k.c.lead_id == row["lead_id"], k.c.scope_key == row["scope_key"], k.c.owner_id == holder, *still)
    return conn.execute(update(k).where(*where).values(**mine, **extra)).rowcount == 1


def _owner_columns(owner: ClaimOwner) -> dict[str, Any]:
    return {
        "owner_id": owner.owner_id,
        "run_key": owner.run_key,
        "batch": owner.batch,
        "try_number": owner.try_number,
        "hostname": owner.hostname[:250],
        "pid": owner.pid,
    }


class ClaimTables(StoreBase):
    """The store's part that sends: claims on (lead, scope), taken, kept alive, settled or released."""

    def settled(self, lead_ids: Sequence[str], scope_key: str, run: str | None = None) -> dict[str, str]:
        """Leads settled under ``scope_key`` for good (by any run), or by run ``run`` before the window closed:
        ``lead -> "<outcome> by run <run>"``. Not sent again."""
        k = t.claims
        found: dict[str, str] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(lead_ids), IN_CHUNK):
                part = list(lead_ids[start : start + IN_CHUNK])
                stmt = select(k.c.lead_id, k.c.settled_outcome, k.c.run_key).where(
                    k.c.scope_key == scope_key,
                    k.c.lead_id.in_(part),
                    k.c.settled_outcome.is_not(None),
                    or_(k.c.final.is_(True), k.c.run_key == run) if run is not None else k.c.final.is_(True),
                )
                found.update({row.lead_id: f"{row.settled_outcome} by run {row.run_key}" for row in conn.execute(stmt)})
        return found

    def claim(
        self,
        owner: ClaimOwner,
        batch: BatchScope,
        lead: StagedLead,
        ttl: float,
        *,
        sighting: Sighting | None = None,
        grace: float = 0.0,
    ) -> Claim:
        """Take the lead's claim under its scope for ``owner`` (insert-or-nothing), and when it is ours,
        write the lead's ``sending`` row in the same transaction. Times are the store's clock.

        An expired claim is first answered ``EXPIRED`` with a :class:`Sighting`; it is taken over by a later
        call given that sighting, if the claim is still expired and unchanged ``grace`` seconds after it."""
        k = t.claims
        now = store_now(self.dialect)
        row = {
            "lead_id": lead.lead_id,
            "scope_key": lead.scope_key,
            **_owner_columns(owner),
            "claimed_at": now,
            "expires_at": now + ttl,
            "settled_outcome": None,
            "settled_at": None,
        }
        with self._begin() as conn:
            # RETURNING, not rowcount: psycopg 3 reports -1 rows for INSERT ... ON CONFLICT DO NOTHING.
            inserted = conn.execute(
                dialect_insert(self.dialect, k)
                .values(**row)
                .on_conflict_do_nothing(index_elements=["lead_id", "scope_key"])
                .returning(k.c.owner_id)
            ).first()
            if inserted is not None:
                claim = Claim(ClaimStatus.OURS)
            else:
                held = conn.execute(
                    select(k, now.label("store_now")).where(
                        k.c.lead_id == lead.lead_id, k.c.scope_key == lead.scope_key
                    )
                ).first()
                if held is None:  # released between the two statements: try once more next time
                    return Claim(ClaimStatus.HELD, "claim released meanwhile")
                if held.settled_outcome is not None and (held.final or held.run_key == owner.run_key):
                    return Claim(ClaimStatus.SETTLED, f"{held.settled_outcome} by run {held.run_key}")
                if held.settled_outcome is not None:
                    # Reset by another run before this window closed: that reset covered what existed then.
                    if not _take_claim(conn, row, held.owner_id, k.c.final.is_(False), final=True):
                        return Claim(ClaimStatus.HELD, "claim changed meanwhile")
                    claim = Claim(
                        ClaimStatus.OURS,
                        f"{held.settled_outcome} by run {held.run_key} before the window closed: sent again",
                    )
                    return self._claimed(conn, batch, lead, claim)
                holder = (
                    f"run {held.run_key}, batch {held.batch}, try {held.try_number} on {held.hostname} pid {held.pid}"
                )
                if held.owner_id == owner.owner_id:
                    claim = Claim(ClaimStatus.OURS)
                elif held.expires_at >= held.store_now:
                    return Claim(ClaimStatus.HELD, f"held by {holder}")
                elif not (
                    sighting is not None
                    and (sighting.owner_id, sighting.expires_at) == (held.owner_id, held.expires_at)
                    and held.store_now - sighting.seen_at >= grace
                ):
                    seen = (
                        sighting
                        if sighting is not None
                        and (sighting.owner_id, sighting.expires_at) == (held.owner_id, held.expires_at)
                        else None
                    )
                    return Claim(
                        ClaimStatus.EXPIRED,
                        f"expired claim of {holder}",
                        seen or Sighting(held.owner_id, held.expires_at, held.store_now),
                    )
                else:
                    unchanged = and_(k.c.expires_at == held.expires_at, k.c.settled_outcome.is_(None))
                    if not _take_claim(conn, row, held.owner_id, unchanged):
                        return Claim(ClaimStatus.HELD, f"held by {holder}")
                    claim = Claim(ClaimStatus.TAKEN_OVER, f"expired claim of {holder} taken over")
            return self._claimed(conn, batch, lead, claim)

    def _claimed(self, conn: Connection, batch: BatchScope, lead: StagedLead, claim: Claim) -> Claim:
        """The claim is ours: note an earlier unread attempt and write the ``sending`` row."""
        a = t.audit
        unread = select(a.c.lead_id).where(
            a.c.lead_id == lead.lead_id, a.c.scope_key == lead.scope_key, a.c.unread.is_(True)
        )
        if conn.execute(unread.limit(1)).first() is not None:
            claim = Claim(claim.status, claim.detail, after_unread=True)
        sending = ResetResult.not_sent(lead.lead_id, Outcome.SENDING, "request in flight")
        write_audit(conn, batch, lead.scope_key, sending, sends=0, repeated=claim.possibly_repeats)
        return claim

    def finish(
        self,
        owner: ClaimOwner,
        batch: BatchScope,
        scope_key: str,
        result: ResetResult,
        *,
        extra_sends: int = 0,
        repeated: bool = False,
    ) -> None:
        """Write the lead's final outcome and, in the same transaction, settle its claim (queued, refused for
        good) or release it (any other outcome: a later run may send it)."""
        k = t.claims
        mine = and_(k.c.lead_id == result.lead_id, k.c.scope_key == scope_key, k.c.owner_id == owner.owner_id)
        with self._begin() as conn:
            write_audit(
                conn,
                batch,
                scope_key,
                result,
                sends=result.attempts + extra_sends,
                repeated=repeated or result.possibly_repeated,
            )
            if result.outcome in SETTLED_OUTCOMES:
                now = store_now(self.dialect)
                end = _window_end(batch.scopes[scope_key])
                final = case((now >= end, True), else_=False) if end is not None else False
                settled = {"settled_outcome": str(result.outcome), "settled_at": result.finished_at, "final": final}
                if conn.execute(update(k).where(mine).values(**settled)).rowcount == 0:
                    # Our claim is gone (a store that lost its last commits in a crash): the lead is settled
                    # all the same, unless another owner holds it now (it took over an expired claim).
                    conn.execute(
                        dialect_insert(self.dialect, k)
                        .values(
                            lead_id=result.lead_id,
                            scope_key=scope_key,
                            **_owner_columns(owner),
                            claimed_at=now,
                            expires_at=now,
                            **settled,
                        )
                        .on_conflict_do_nothing(index_elements=["lead_id", "scope_key"])
                    )
            else:
                conn.execute(delete(k).where(mine, k.c.settled_outcome.is_(None)))

    def heartbeat(self, owner: ClaimOwner, ttl: float) -> int:
        """Keep the owner's unsettled claims alive for ``ttl`` more seconds; return how many."""
        k = t.claims
        with self._begin() as conn:
            kept: int = conn.execute(
                update(k)
                .where(k.c.owner_id == owner.owner_id, k.c.settled_outcome.is_(None))
                .values(expires_at=store_now(self.dialect) + ttl)
            ).rowcount
            return kept
