"""The state store's tables, defined once with SQLAlchemy Core (SQLite and PostgreSQL from one definition).

- ``leadsquared_schema``: one row, the schema's version, so a later change can migrate it.
- ``leadsquared_reset_runs``: one row per DAG run: its scope, dry-run flag, counts; ``reported_at`` once its
  report ran (a run with unresolved leads is carried over by the next run only once it is closed).
- ``leadsquared_reset_scopes``: window + categories by scope key, so batches read their scope here.
- ``leadsquared_reset_candidates``: the run's cleaned candidates, numbered ``1..n``; a batch is a range.
- ``leadsquared_reset_claims``: one row per (lead, scope key) for all runs, inserted-or-nothing before a
  request: the owner (run, batch, try, host, pid) and an expiry kept fresh while it works. A claim is
  *settled* once LeadSquared queued or refused the reset for good: the lead is never sent again under
  that scope, if its window had closed when it was settled (``final``); a reset queued before its window
  closed (a manual run of today, an all-time run) covers what existed then, so only its own run skips the
  lead. A failed lead's claim is released (deleted) so a later run may send it.
- ``leadsquared_reset_audit``: one row per (run, lead, scope): outcome, answer, attempts, timings.
- ``leadsquared_reset_verification``: one row per (run, sampled lead, scope): whether the activities the reset
  was to delete are gone (read back later with ProspectActivity.Retrieve), and what remains.
- ``leadsquared_reset_approvals``: one row per run: why it waits for a person (none: it does not), the
  preview's facts, and the decision (who, when). A new table: ``create_all`` adds it to an older store.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    true,
)

# 2: leadsquared_reset_runs.run_type (the growth guard's baseline), leadsquared_reset_audit.unread (an attempt
# whose answer was never read); 3: leadsquared_reset_claims.final (settled after its window closed),
# leadsquared_reset_runs.leadsquared_conn_id and .account (the run's connection, for the resets page, and its
# account's tag, for the budget);
# StateStore migrates 1 and 2
SCHEMA_VERSION = 3

# Column sizes that answers are cut to before they are written (one lead's odd answer never fails a write).
EXCEPTION_TYPE_SIZE = 200
MESSAGE_SIZE = 1000
REMAINING_IDS_SIZE = 2000  # the ids of activities still present, comma-separated, cut to whole ids

metadata = MetaData()

schema_version = Table(
    "leadsquared_schema",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("version", Integer, nullable=False),
)

runs = Table(
    "leadsquared_reset_runs",
    metadata,
    Column("run_key", String(400), primary_key=True),
    Column("dag_id", String(250), nullable=False),
    Column("run_id", String(250), nullable=False),
    Column("run_type", String(32)),  # Airflow's DagRunType value; NULL for runs planned before version 2
    Column("leadsquared_conn_id", String(250)),  # the run's LeadSquared connection; NULL before version 3
    Column("account", String(64)),  # the account's tag (hash of its OrgId) the plan learnt; NULL: dry run
    Column(
        "deferred", Integer, nullable=False, default=0, server_default="0"
    ),  # staged last, in no batch: over today's quota
    Column("scope_json", Text, nullable=False),
    Column("scope_key", String(64), nullable=False),
    Column("dry_run", Boolean, nullable=False),
    Column("candidates", Integer, nullable=False),
    Column("invalid", Integer, nullable=False),
    Column("batches", Integer, nullable=False),
    Column("batch_size", Integer, nullable=False),
    Column("carried_over", Integer, nullable=False, default=0),
    Column("planned_at", Float, nullable=False),
    Column("reported_at", Float),
    Column("unresolved", Integer),
    Index("leadsquared_reset_runs_dag", "dag_id", "planned_at"),
)

scopes = Table(
    "leadsquared_reset_scopes",
    metadata,
    Column("scope_key", String(64), primary_key=True),
    Column("scope_json", Text, nullable=False),
)

candidates = Table(
    "leadsquared_reset_candidates",
    metadata,
    Column("run_key", String(400), primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("lead_id", String(64), nullable=False),
    Column("scope_key", String(64), nullable=False),
)

claims = Table(
    "leadsquared_reset_claims",
    metadata,
    Column("lead_id", String(64), primary_key=True),
    Column("scope_key", String(64), primary_key=True),
    Column("owner_id", String(64), nullable=False),
    Column("run_key", String(400), nullable=False),
    Column("batch", Integer, nullable=False),
    Column("try_number", Integer, nullable=False),
    Column("hostname", String(250), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("claimed_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("settled_outcome", String(32)),
    Column("settled_at", Float),
    # Settled once its window had closed (by the store's clock): no later run sends the lead for it.
    Column("final", Boolean, nullable=False, default=True, server_default=true()),
    Index("leadsquared_reset_claims_owner", "owner_id"),
)

audit = Table(
    "leadsquared_reset_audit",
    metadata,
    Column("run_key", String(400), primary_key=True),
    Column("lead_id", String(200), primary_key=True),
    Column("scope_key", String(64), primary_key=True),
    Column("dag_id", String(250), nullable=False),
    Column("batch", Integer, nullable=False),
    Column("from_date", String(19)),
    Column("to_date", String(19)),
    Column("categories", Text, nullable=False),
    Column("outcome", String(32), nullable=False),
    Column("status_code", Integer),
    Column("exception_type", String(EXCEPTION_TYPE_SIZE)),
    Column("message", String(MESSAGE_SIZE)),
    Column("attempts", Integer, nullable=False),
    Column("sends", Integer, nullable=False),
    Column("possibly_repeated", Boolean, nullable=False, default=False),
    # An attempt of this row's lead got no clear answer and no attempt followed it (it may have reached
    # LeadSquared): the next send of the lead and window, by any run, is possibly repeated.
    Column("unread", Boolean, nullable=False, default=False),
    Column("rate_limited", Integer, nullable=False, default=0),
    Column("started_at", Float),
    Column("finished_at", Float),
    Column("budget_wait", Float),
    Index("leadsquared_reset_audit_lead", "lead_id", "finished_at"),
    Index("leadsquared_reset_audit_run_outcome", "run_key", "outcome"),
)

verification = Table(
    "leadsquared_reset_verification",
    metadata,
    Column("run_key", String(400), primary_key=True),
    Column("lead_id", String(64), primary_key=True),
    Column("scope_key", String(64), primary_key=True),
    Column("result", String(32), nullable=False),
    Column("remaining_count", Integer, nullable=False, default=0),
    Column("remaining_ids", Text),
    Column("message", String(MESSAGE_SIZE)),
    Column("checked_at", Float, nullable=False),
)

approvals = Table(
    "leadsquared_reset_approvals",
    metadata,
    Column("run_key", String(400), primary_key=True),
    Column("request_json", Text, nullable=False),  # the plan's ApprovalRequest: why the run waits, its preview
    Column("decision", String(32), nullable=False),  # a rules.approval.Decision
    Column("decided_by", String(250)),
    Column("decided_at", Float),
    Column("note", String(MESSAGE_SIZE)),
)
