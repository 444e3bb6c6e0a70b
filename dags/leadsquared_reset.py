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

**Guards.** Nothing is sent when the params are wrong, when no category is chosen, when the candidates
exceed `max_leads_per_run`, or when they jump past `max_growth_factor` x the usual count (the median of the
last scheduled runs). Each message names the param that overrides it. `dry_run` plans and reports without
sending anything.

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
    PokeReturnValue,
    dag,
    get_current_context,
    task,
    task_group,
)

from leadsquared_provider.accounts import Account, accounts_file, load_accounts
from leadsquared_provider.notifications.run_report import RunReportNotifier
from leadsquared_provider.operators.reset import LeadSquaredResetOperator
from leadsquared_provider.rules.params import MAX_VERIFY_DELAY_SECONDS, POKE_INTERVAL_SECONDS, dag_params

# ---- Edit here: the defaults of every run (each can be overridden in the trigger form) ------------------
# One DAG per account of include/leadsquared_accounts.yaml; an account may set its own of these defaults.
LOCAL_TIMEZONE = "Asia/Kolkata"  # the day boundary of scheduled runs (the API's example window is IST days)
SCHEDULE = "0 0 * * *"  # once a day, covering the previous day
DEFAULT_CATEGORIES = {
    "activity_event_codes": [166, 167],
    "task_type_ids": [],
    "audit_types": ["StageChange", "OwnerChange"],
    "delete_notes": False,
}
LEADSQUARED_CONN_ID = "leadsquared_default"  # the shipped account's (accounts file: leadsquared_conn_id)
WAREHOUSE_CONN_ID = "warehouse_default"  # read only: the candidate query (and the optional audit export)
STATE_CONN_ID = "leadsquared_state"  # sqlite (one machine) or postgres: runs, claims, outcomes (all accounts)
POOL = "leadsquared_api"  # the shipped account's (accounts file: pool, pool_slots); caps its batches in flight
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
        @task
        def plan() -> list[int]:
            """Window, keys, candidates, guards; stages the batches in the state store and returns their numbers."""
            from airflow.sdk import conf
            from airflow.sdk.exceptions import AirflowFailException

            from leadsquared_provider.exceptions import PlanError
            from leadsquared_provider.rules.params import RunParams
            from leadsquared_provider.steps.plan import RunIdentity, plan_run

            context = get_current_context()
            dag_run = context["dag_run"]
            template = context["dag"].get_template_env().get_template(candidate_query)
            try:
                return plan_run(
                    RunIdentity(
                        dag_id=dag_run.dag_id,
                        run_id=dag_run.run_id,
                        run_type=str(getattr(dag_run.run_type, "value", dag_run.run_type)),
                        interval_start=context.get("data_interval_start"),
                        interval_end=context.get("data_interval_end"),
                    ),
                    RunParams.from_params(context["params"]),
                    render_query=lambda start, end: template.render(**context, window_start=start, window_end=end),
                    warehouse_conn_id=warehouse_conn_id,
                    leadsquared_conn_id=leadsquared_conn_id,
                    state_conn_id=STATE_CONN_ID,
                    executor=conf.get("core", "executor"),
                    query_name=f"include/sql/{candidate_query}",
                )
            except PlanError as refused:  # bad params, guards, keys, a broken query: retrying would not help
                raise AirflowFailException(str(refused)) from refused

        @task(map_index_template="{{ batch_label }}")
        def check(batch: int) -> None:
            """Fail when this batch holds leads that were not reset."""
            from airflow.sdk.exceptions import AirflowFailException

            from leadsquared_provider.rules.planning import batch_label
            from leadsquared_provider.steps.report import batch_failures
            from leadsquared_provider.store.state_store import StateStore, run_key

            context = get_current_context()
            key = run_key(context["dag_run"].dag_id, context["dag_run"].run_id)
            with StateStore(STATE_CONN_ID) as store:
                label = batch_label(store.load_run(key).batch(int(batch)))
                counts = store.outcome_counts(key, batch=int(batch))
            context["batch_label"] = label
            print(f"{label}: {counts}")  # the task log; no XCom, which would grow with the batch count
            if batch_failures(counts):  # final: the store will say the same on a retry
                raise AirflowFailException(f"{label} holds {batch_failures(counts)} lead(s) not reset: {counts}")

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

        @task.sensor(
            mode="reschedule",  # between pokes the task holds no worker slot (and needs no triggerer)
            poke_interval=POKE_INTERVAL_SECONDS,
            timeout=MAX_VERIFY_DELAY_SECONDS + 3600,
            trigger_rule="all_done",  # failed batches too: their queued leads are verified all the same
        )
        def verify() -> PokeReturnValue:
            """Read back a sample of the run's queued leads until they are verified or the delay is over."""
            from airflow.sdk.exceptions import AirflowFailException

            from leadsquared_provider.exceptions import LeadSquaredError
            from leadsquared_provider.hooks.leadsquared import LeadSquaredHook
            from leadsquared_provider.steps.verify import VerifyParams, verify_run
            from leadsquared_provider.store.state_store import StateStore, run_key

            context = get_current_context()
            key = run_key(context["dag_run"].dag_id, context["dag_run"].run_id)
            try:
                params = VerifyParams.from_params(context["params"])
            except LeadSquaredError as refused:
                raise AirflowFailException(str(refused)) from refused
            with StateStore(STATE_CONN_ID) as store:
                account = store.load_run(key).account
                step = verify_run(
                    store,
                    key,
                    params,
                    hook_factory=lambda: LeadSquaredHook(leadsquared_conn_id=leadsquared_conn_id, account=account),
                )
            print(f"verification: {step.status}")
            return PokeReturnValue(is_done=step.done, xcom_value=step.status if step.done else None)

        # Alerts when the run fails (credentials, failures over the threshold, a guard), and a notice when it
        # deferred leads to the next run (the daily quota): add Slack/e-mail beside them.
        @task(
            trigger_rule="all_done",
            multiple_outputs=False,  # one XCom, the summary (a dict return would be split into one XCom per key)
            on_failure_callback=[RunReportNotifier(state_conn_id=STATE_CONN_ID)],
            on_success_callback=[RunReportNotifier(state_conn_id=STATE_CONN_ID, notice_on_deferred=True)],
        )
        def report() -> dict:
            """Read the run's outcomes back from the state store; fail on keys, failures or rejections."""
            from airflow.sdk.exceptions import AirflowFailException

            from leadsquared_provider.exceptions import LeadSquaredError
            from leadsquared_provider.rules.params import RunParams
            from leadsquared_provider.steps.report import report_run
            from leadsquared_provider.steps.verify import VerifyParams
            from leadsquared_provider.store.state_store import StateStore, run_key
            from leadsquared_provider.warehouse.candidates import run_audit_export

            context = get_current_context()
            key = run_key(context["dag_run"].dag_id, context["dag_run"].run_id)
            try:
                params = RunParams.from_params(context["params"])
                with StateStore(STATE_CONN_ID) as store:
                    return report_run(
                        store,
                        key,
                        params,
                        push=lambda summary: context["ti"].xcom_push(key="return_value", value=summary),
                        effective_rate=lambda: _effective_rate(leadsquared_conn_id, store.load_run(key).account),
                        day_restarts=lambda: _day_restarts(leadsquared_conn_id, store.load_run(key).account),
                        export=run_audit_export(store, key, params.audit_export_table, warehouse_conn_id),
                        verify=VerifyParams.from_params(context["params"]),
                        verify_finished=context["ti"].xcom_pull(task_ids="verify") is not None,
                    )
            except LeadSquaredError as verdict:  # final: a retry reads the same
                if not getattr(verdict, "deterministic", True):
                    raise  # a transient audit-export failure: the task's retry reports and exports again
                raise AirflowFailException(str(verdict)) from verdict

        reset_batch.expand(batch=plan()) >> verify() >> report()

    return account_dag()


def _effective_rate(conn_id: str, account: str | None) -> float | None:
    from leadsquared_provider.hooks.leadsquared import LeadSquaredHook

    if account is None:  # a dry run: it never learnt the account, and asking would be a call
        return None
    return round(LeadSquaredHook(leadsquared_conn_id=conn_id, account=account).budget.effective_limit(), 2)


def _day_restarts(conn_id: str, account: str | None) -> float | None:
    from leadsquared_provider.hooks.leadsquared import LeadSquaredHook

    if account is None:
        return None
    return LeadSquaredHook(leadsquared_conn_id=conn_id, account=account).budget.day_restarts_at()


for _account in load_accounts(accounts_file(PROJECT_DIR), sql_dir=SQL_DIR):
    leadsquared_reset(_account)
