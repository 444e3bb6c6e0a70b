"""The approval gate's record of each run: what the plan asks (``leadsquared_reset_approvals``) and the answer.

The request is stored as the JSON of :meth:`ApprovalRequest.to_dict` and read back typed, here.
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection

from sqlalchemy import select, update

from leadsquared_provider.rules.approval import ApprovalDecision, ApprovalRequest, Decision
from leadsquared_provider.store import schema as t
from leadsquared_provider.store.engine import StoreBase, upsert


class ApprovalTables(StoreBase):
    """The store's part that keeps the gate: one row per run."""

    def save_approval_request(self, key: str, request: ApprovalRequest) -> None:
        """Record what the plan asks, replacing an earlier plan's row and answer (a re-planned run asks again)."""
        values = {
            "run_key": key,
            "request_json": json.dumps(request.to_dict(), sort_keys=True),
            "decision": str(Decision.WAITING if request.needed else Decision.NOT_NEEDED),
            "decided_by": None,
            "decided_at": None,
            "note": None,
        }
        with self._begin() as conn:
            conn.execute(upsert(self.dialect, t.approvals, values, ("run_key",)))

    def load_approval(self, key: str) -> tuple[ApprovalRequest, ApprovalDecision] | None:
        """The run's request and its decision so far; None for a run planned before the gate existed."""
        with self.engine.connect() as conn:
            row = conn.execute(select(t.approvals).where(t.approvals.c.run_key == key)).first()
        if row is None:
            return None
        request = ApprovalRequest.from_mapping(json.loads(row.request_json))
        decision = ApprovalDecision(Decision(row.decision), row.decided_by, row.decided_at, row.note or "")
        return request, decision

    def latest_answer(self, keys: Collection[str], *, since: float) -> tuple[str, ApprovalDecision] | None:
        """The latest answer a person gave (approved, rejected or timed out) to one of the runs ``keys``, no
        earlier than ``since`` (epoch seconds), with its run key; None when none was. A backfill's run adopts
        it from the backfill's other runs (their keys), so that the backfill asks once."""
        answered = [str(d) for d in (Decision.APPROVED, Decision.REJECTED, Decision.TIMED_OUT)]
        if not keys:
            return None
        with self.engine.connect() as conn:
            row = conn.execute(
                select(t.approvals)
                .where(
                    t.approvals.c.run_key.in_(list(keys)),
                    t.approvals.c.decision.in_(answered),
                    t.approvals.c.decided_at >= since,
                )
                .order_by(t.approvals.c.decided_at.desc(), t.approvals.c.run_key)
                .limit(1)
            ).first()
        if row is None:
            return None
        return row.run_key, ApprovalDecision(Decision(row.decision), row.decided_by, row.decided_at, row.note or "")

    def record_decision(self, key: str, decision: ApprovalDecision) -> None:
        """Write the gate's answer for the run (when: ``decision.at``, else now)."""
        with self._begin() as conn:
            conn.execute(
                update(t.approvals)
                .where(t.approvals.c.run_key == key)
                .values(
                    decision=str(decision.decision),
                    decided_by=decision.by,
                    decided_at=decision.at if decision.at is not None else time.time(),
                    note=decision.note[: t.MESSAGE_SIZE] or None,
                )
            )
