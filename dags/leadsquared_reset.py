"""
### LeadSquared lead reset

Each run **plans** the leads to reset (the warehouse query `include/sql/candidates.sql`, or the `lead_ids`
param), **resets** them in batches (one mapped task group per batch, every call paced by the account's
shared rate budget, every lead's outcome written to the state store's `leadsquared_reset_audit`), and
**verifies** a sample of the leads LeadSquared queued (their activities read back: are the ones the reset was to
delete gone?), and **reports** what happened. The warehouse is only read (the candidate query).

**Window.** A scheduled or backfill run resets exactly its data interval: one day in `LOCAL_TIMEZONE`
below, sent to LeadSquared in UTC with `ToDate` = interval end minus one second. A manual run takes
`from_date`/`to_date` from its params (ISO-8601 with an offset); with neither it would reset *all
time*, which is refused unless `allow_all_time` is ticked.

**Guards.** Nothing is sent when the params are wrong, when no category is chosen, or when the candidates
exceed `max_leads_per_run`. Each message names the param that overrides it. `dry_run` plans and reports
without sending anything.

**Approval.** A run over `approval_threshold` leads, past `max_growth_factor` x the usual count (the median
of the last scheduled runs), over an all-time window or one longer than `approval_max_window_days`, or in a
backfill longer than that, waits at `approve` (Required Actions) with a preview, holding no worker slot; other
runs pass at once. A backfill's other runs take the answer its first one got. Reject, or no answer within
`approval_timeout_minutes`: nothing is sent and the run fails with its alert.

**Safety.** Before its request, each lead is claimed atomically in the state store under its window and
categories, for all runs: a lead already queued (or rejected for good) is never sent twice, and a lead held
by another live run or try is not sent here (`in_progress_elsewhere`). Wrong keys or host stop the run at
the plan's single credentials check. Leads that failed transiently are retried by the next run for their original window
(`retry_earlier_failures`, at most three runs).

**Verification.** LeadSquared only says a reset is *queued*. After the batches, `verify` reads back
`verify_sample` of the run's queued leads (random, the same for a re-run) with `ProspectActivity.Retrieve`:
a lead is `verified` when no activity with one of the run's event codes remains inside the window,
`still_present` otherwise, `unverifiable` when the read failed. Leads not verified yet are read again every
minute until `verify_delay_seconds` after the last reset was queued; the task waits in `up_for_reschedule`,
holding no worker slot. More than `max_still_present` leads still present fails the run (with its alert).
Tasks, notes and audit records cannot be read back: the summary says so.

Categories: `activity_event_codes` (custom activity event codes), `task_type_ids` (task type GUIDs),
`audit_types` (`StageChange`, `OwnerChange`), `delete_notes`.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.sdk import (
    DAG,
    CronDataIntervalTimetable,
    dag,
    get_current_context,
    task,
    task_group,
)

from leadsquared_provider.accounts import Account, accounts_file, load_accounts
from leadsquared_provider.notifications.run_report import RunReportNotifier
from leadsquared_provider.operators.approval import LeadSquaredApprovalOperator
from leadsquared_provider.operators.plan import LeadSquaredPlanOperator
from leadsquared_provider.operators.report import LeadSquaredReportOperator
from leadsquared_provider.operators.reset import LeadSquaredResetOperator
from leadsquared_provider.rules.params import dag_params
from leadsquared_provider.sensors.verify import LeadSquaredVerifySensor

# ---- Edit here: the defaults of every run (each can be overridden in the trigger form) ------------------
# One DAG per account of include/leadsquared_accounts.yaml; an account may set its own of these defaults, and
# names its own LeadSquared connection and pool there.
LOCAL_TIMEZONE = "Asia/Kolkata"  # the day boundary of scheduled runs (the API's example window is IST days)
SCHEDULE = "0 0 * * *"  # once a day, covering the previous day
DEFAULT_CATEGORIES = {
    "activity_event_codes": [166, 167],
    "task_type_ids": [],
    "audit_types": ["StageChange", "OwnerChange"],
    "delete_notes": False,
}
WAREHOUSE_CONN_ID = "warehouse_default"  # read only: the candidate query (and the optional audit export)
STATE_CONN_ID = "leadsquared_state"  # sqlite (one machine) or postgres: runs, claims, outcomes (all accounts)
# ----------------------------------------------------------------------------------------------------------

PROJECT_DIR = Path(__file__).resolve().parent.parent
SQL_DIR = PROJECT_DIR / "include" / "sql"


def leadsquared_reset(account: Account) -> DAG:
    """The reset DAG of one account of the accounts file (its connection, pool, warehouse and defaults)."""
    leadsquared_conn_id = account.leadsquared_conn_id
    warehouse_conn_id = account.warehouse_conn_id or WAREHOUSE_CONN_ID
    candidate_query = account.candidate_query
    timezone = account.timezone or LOCAL_TIMEZONE
    categories = account.categories.as_params() if account.categories else DEFAULT_CATEGORIES

    @dag(
        dag_id=account.dag_id,
        schedule=CronDataIntervalTimetable(account.schedule or SCHEDULE, timezone=timezone),
        start_date=pendulum.datetime(2026, 1, 1, tz=timezone),
        catchup=False,
        max_active_runs=3,
        template_searchpath=[str(SQL_DIR)],
        doc_md=__doc__,
        tags=["leadsquared", "reset"],
        default_args={"owner": "data-engineering", "retries": 2, "retry_delay": timedelta(seconds=30)},
        params=dag_params(categories),
    )
    def account_dag():
        # Window, keys, candidates, guards; stages the batches and returns their numbers (lineage: the query's tables).
        plan = LeadSquaredPlanOperator(
            task_id="plan",
            candidate_query=candidate_query,
            query_name=f"include/sql/{candidate_query}",
            warehouse_conn_id=warehouse_conn_id,
            leadsquared_conn_id=leadsquared_conn_id,
            state_conn_id=STATE_CONN_ID,
        )

        @task(map_index_template="{{ batch_label }}")
        def check(batch: int) -> None:
            """Fail when this batch holds leads that were not reset."""
            from leadsquared_provider.steps.report import check_batch

            check_batch(get_current_context(), batch, state_conn_id=STATE_CONN_ID)

        @task_group(group_id="reset_batch")
        def reset_batch(batch: int) -> None:
            reset = LeadSquaredResetOperator(
                task_id="reset",
                batch=batch,
                leadsquared_conn_id=leadsquared_conn_id,
                state_conn_id=STATE_CONN_ID,
                max_in_flight="{{ params.max_in_flight }}",
                pool=account.pool,
                map_index_template="{{ batch_label }}",
            )
            reset >> check(batch)

        # After every batch, failed ones too; waits between pokes without a worker slot.
        verify = LeadSquaredVerifySensor(
            task_id="verify", leadsquared_conn_id=leadsquared_conn_id, state_conn_id=STATE_CONN_ID
        )

        # Alerts when the run fails (credentials, failures over the threshold, a guard), and a notice when it
        # deferred leads to the next run (the daily quota): add Slack/e-mail beside them.
        # The outcomes read back from the state store; fails on keys, failures or rejections. Emits the account's
        # asset event leadsquared://<host>/resets, its OpenLineage output and the run's metrics.
        report = LeadSquaredReportOperator(
            task_id="report",
            trigger_rule="all_done",
            leadsquared_conn_id=leadsquared_conn_id,
            warehouse_conn_id=warehouse_conn_id,
            state_conn_id=STATE_CONN_ID,
            on_failure_callback=[RunReportNotifier(state_conn_id=STATE_CONN_ID)],
            on_success_callback=[RunReportNotifier(state_conn_id=STATE_CONN_ID, notice_on_deferred=True)],
        )

        # Waits for a person when the plan says so (size, growth, window); other runs pass at once.
        approve = LeadSquaredApprovalOperator(
            task_id="approve",
            state_conn_id=STATE_CONN_ID,
            timezone=timezone,
            approvers=account.approvers,
            four_eyes=account.four_eyes,
        )
        plan >> approve >> reset_batch.expand(batch=plan.output) >> verify >> report

    return account_dag()


for _account in load_accounts(accounts_file(PROJECT_DIR), sql_dir=SQL_DIR):
    leadsquared_reset(_account)
