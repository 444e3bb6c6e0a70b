"""The state store: the only code that reads or writes our tables (in our own database, never the warehouse).

One :class:`StateStore`, made of one part per job, each in its module over the tables it owns:

- :mod:`.engine`: the connection (SQLite or PostgreSQL), the schema's creation and migration, the store's
  clock, and the read-only engine of the resets page;
- :mod:`.runs`: runs, scopes and staged candidates (the plan), and a run's counts;
- :mod:`.claims`: claims on (lead, scope), which make each lead's request happen once;
- :mod:`.audit`: each lead's outcome, and the verification's read-back;
- :mod:`.approvals`: the approval gate: why a run waits for a person, and the answer;
- :mod:`.reads`: what the resets page reads (paged, read-only);
- :mod:`.schema`: the tables, defined once with SQLAlchemy Core.

Written with SQLAlchemy Core (installed with Airflow): upserts use each dialect's ``INSERT ... ON CONFLICT``,
and no SQL text is assembled at run time. Like the per-row sync state that Hightouch, Census and dlt keep in
their own store, this is written once or twice per lead; a warehouse sees at most one bulk export per run.
"""

from __future__ import annotations

from leadsquared_provider.store.approvals import ApprovalTables
from leadsquared_provider.store.audit import (
    AUDIT_COLUMNS,
    AuditTables,
    BatchScope,
    LeadResult,
    LeadRow,
    QueuedLead,
    VerificationRow,
)
from leadsquared_provider.store.claims import Claim, ClaimOwner, ClaimStatus, ClaimTables, Sighting
from leadsquared_provider.store.engine import (
    StateStoreError,
    StoreUnavailable,
    state_is_machine_local,
    store_now,
)
from leadsquared_provider.store.runs import (
    RunRecord,
    RunRef,
    RunTables,
    StagedLead,
    parse_run_key,
    run_counts,
    run_key,
)


class StateStore(RunTables, ClaimTables, AuditTables, ApprovalTables):
    """Reads and writes the state tables. Use as a context manager: ``with StateStore() as store: ...``.

    Its methods live with their tables (:class:`RunTables`, :class:`ClaimTables`, :class:`AuditTables`,
    :class:`ApprovalTables`), over
    one engine and one schema check: a step holds one store, whatever tables it touches.
    """

    def __enter__(self) -> StateStore:
        self.ensure_schema()
        return self


__all__ = [
    "AUDIT_COLUMNS",
    "BatchScope",
    "Claim",
    "ClaimOwner",
    "ClaimStatus",
    "LeadResult",
    "LeadRow",
    "QueuedLead",
    "RunRecord",
    "RunRef",
    "Sighting",
    "StagedLead",
    "StateStore",
    "StateStoreError",
    "StoreUnavailable",
    "VerificationRow",
    "parse_run_key",
    "run_counts",
    "run_key",
    "state_is_machine_local",
    "store_now",
]
