"""Planning a run end to end: window, keys check, candidates from the warehouse, guards, staged batches.

The warehouse is only read (the candidate query); everything the run must remember goes to the state store.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from leadsquared_provider.exceptions import (
    CandidateQueryError,
    DailyQuotaSpent,
    InvalidConnection,
    LeadSquaredAuthError,
    PlanError,
    RateBudgetError,
)
from leadsquared_provider.rate_budget.day import utc_text
from leadsquared_provider.rules.approval import (
    PREVIEW_ACTIVITY_LEADS,
    PREVIEW_SAMPLE,
    ApprovalRequest,
    BackfillSpan,
    LeadActivities,
    Reason,
    approval_reasons,
    backfill_reach,
    window_days,
)
from leadsquared_provider.rules.outcomes import Outcome, ResetResult
from leadsquared_provider.rules.planning import (
    CleanedCandidates,
    batch_ranges,
    build_scope,
    check_blast_radius,
    clean_candidates,
    resolve_window,
)
from leadsquared_provider.store import BatchScope, LeadResult, RunRecord, StagedLead, StateStore, run_key

if TYPE_CHECKING:
    from airflow.sdk import Context

    from leadsquared_provider.hooks.leadsquared import LeadSquaredHook
    from leadsquared_provider.rules.params import RunParams
    from leadsquared_provider.rules.request import ResetScope

log = logging.getLogger(__name__)

# Executors whose tasks all run on the scheduler's machine: a per-machine (SQLite) budget is shared by all.
ONE_MACHINE_EXECUTORS = frozenset({"LocalExecutor", "SequentialExecutor"})
# Airflow names a backfill's run ``backfill__<run_after, ISO 8601>`` (``DagRun.generate_run_id``).
BACKFILL = "backfill"
BACKFILL_PREFIX = "backfill__"
# How many of the DAG's runs exist among some run ids (``RuntimeTaskInstance.get_dr_count``).
CountRuns = Callable[[list[str]], int]


@dataclass(frozen=True)
class RunIdentity:
    """Which DAG run is planned, and its data interval (scheduled and backfill runs)."""

    dag_id: str
    run_id: str
    run_type: str
    interval_start: datetime | None = None
    interval_end: datetime | None = None

    @classmethod
    def from_context(cls, context: Context) -> RunIdentity:
        """The task's DAG run, with its data interval (None where the run has none)."""
        dag_run = context["dag_run"]
        return cls(
            dag_id=dag_run.dag_id,
            run_id=dag_run.run_id,
            run_type=str(getattr(dag_run.run_type, "value", dag_run.run_type)),
            interval_start=context.get("data_interval_start"),
            interval_end=context.get("data_interval_end"),
        )

    @property
    def key(self) -> str:
        return run_key(self.dag_id, self.run_id)

    @property
    def step(self) -> timedelta | None:
        """The data interval's length (None: the run has none)."""
        if self.interval_start is None or self.interval_end is None or self.interval_end <= self.interval_start:
            return None
        return self.interval_end - self.interval_start

    def backfill_neighbours(self, reach: int) -> tuple[list[str], list[str]] | None:
        """The run ids the ``reach`` runs before and after this one have when they belong to a backfill too
        (nearest first); None when this run is not a backfill's or its run id does not say when it ran after.

        A backfill names its run ``backfill__<run_after>``, and an interval timetable's runs follow each
        other by the interval's length (a time zone with daylight saving shifts it twice a year: the runs
        beyond such a shift are not found, and the span measured is shorter)."""
        step = self.step
        if self.run_type != BACKFILL or step is None or not self.run_id.startswith(BACKFILL_PREFIX):
            return None
        try:
            run_after = datetime.fromisoformat(self.run_id.removeprefix(BACKFILL_PREFIX))
        except ValueError:
            return None

        def ids(sign: int) -> list[str]:
            return [f"{BACKFILL_PREFIX}{(run_after + sign * k * step).isoformat()}" for k in range(1, reach + 1)]

        return ids(-1), ids(1)


def measure_backfill(run: RunIdentity, max_days: int, count_runs: CountRuns) -> BackfillSpan | None:
    """How far the backfill of ``run`` reaches around it, with two counts of the DAG's runs (before, after);
    None for a run that is not a backfill's. Looks no further than it takes to tell a backfill longer than
    ``max_days``."""
    step = run.step
    if step is None:
        return None
    step_days = step.total_seconds() / 86_400
    reach = backfill_reach(max_days, step_days)
    neighbours = run.backfill_neighbours(reach)
    if neighbours is None:
        return None
    before, after = neighbours
    return BackfillSpan(step_days=step_days, before=count_runs(before), after=count_runs(after), reach=reach)


def check_credentials(hook: LeadSquaredHook) -> str:
    """One ``UserByAccessKey.Get`` before any reset: wrong keys, host or a non-admin user stop the run here."""
    conn_id = hook.leadsquared_conn_id
    try:
        user = hook.get_user()
    except (LeadSquaredAuthError, InvalidConnection) as exc:
        raise PlanError(f"connection {conn_id!r} refused, no lead was sent: {exc}") from None
    problem = hook.admin_problem(user)
    if problem:
        raise PlanError(f"connection {conn_id!r}: {problem}; no lead was sent")
    return f"keys of {hook.user_name(user)} ({user.get('Role')}) accepted by {hook.base_url}"


def fits_today(hook: LeadSquaredHook, leads: int, params: RunParams, spent: DailyQuotaSpent | None = None) -> int:
    """How many of ``leads`` this run sends today: all of them without a daily quota, else what the account's
    share of today's quota holds after the verification's reads; none when the day is ``spent`` already (the
    credential check could not be sent). The rest is deferred to the next run, or the run is refused
    (``refuse_over_daily_quota``).

    :raises PlanError: the run does not fit and is to be refused.
    """
    if spent is not None:
        fits, said = 0, f"today's share of the daily quota is spent (connection {hook.leadsquared_conn_id!r}): {spent}"
    else:
        left = hook.budget.day_left()
        if left is None:
            return leads
        reads = min(params.verify_sample, leads)
        fits = max(0, min(leads, left - reads))
        if fits == leads:
            return leads
        restarts = hook.budget.day_restarts_at()
        when = utc_text(restarts) if restarts else "the next day"
        said = (
            f"{leads} leads and {reads} verification reads do not fit in the {left} calls left of today's share "
            f"of the daily quota (connection {hook.leadsquared_conn_id!r}); calls free up from {when}"
        )
    if params.refuse_over_daily_quota:
        raise PlanError(f"{said}: nothing was sent (refuse_over_daily_quota is on)")
    log.warning("%s: %d sent now, %d deferred to the next run", said, fits, leads - fits)
    return fits


def runs_on_several_machines(executor: str) -> bool:
    """Whether ``[core] executor`` (one, or a comma-separated list of them) may run tasks on other machines."""
    executors = {part.strip().split(".")[-1].split(":")[-1] for part in executor.split(",") if part.strip()}
    return not executors <= ONE_MACHINE_EXECUTORS


def check_state_reach(state_conn_id: str, executor: str) -> None:
    """Refuse an SQLite state store when tasks may run on several machines: each would claim leads in a file
    of its own, and two workers could send the same lead."""
    from leadsquared_provider.store import state_is_machine_local

    if runs_on_several_machines(executor) and state_is_machine_local(state_conn_id):
        raise PlanError(
            f"executor {executor!r} may run tasks on several machines, but the state store connection "
            f"{state_conn_id!r} is an SQLite file on one machine: point it at a PostgreSQL database every "
            "worker reaches; no lead was sent"
        )


def check_budget_reach(hook: LeadSquaredHook, executor: str) -> None:
    """Refuse a machine-local budget when tasks may run on several machines (it would not be shared)."""
    from leadsquared_provider.rate_budget import budget_is_machine_local

    if not runs_on_several_machines(executor):
        return
    if budget_is_machine_local(hook.settings.rate_budget_url):
        raise PlanError(
            f"executor {executor!r} may run tasks on several machines, but connection "
            f"{hook.leadsquared_conn_id!r} keeps its rate budget on this machine only: set the connection extra "
            "rate_budget_url to a store every worker reaches (redis://host:6379/0); no lead was sent"
        )


def approval_request(
    hook: LeadSquaredHook | None,
    params: RunParams,
    scope: ResetScope,
    sent: list[StagedLead],
    baseline: int | None,
    *,
    scope_key: str,
    backfill: BackfillSpan | None = None,
) -> ApprovalRequest:
    """What the run asks of the approval gate (nothing for a dry run, ``hook`` None), with the preview's facts:
    a sample of the leads it sends, its calls at the account's effective rate, today's quota left, and with
    ``approval_preview_activities`` the activities a few of its own leads would lose. ``backfill``: how far
    the backfill the run belongs to reaches (None: not a backfill's run)."""
    leads = len(sent)
    backfill_days = backfill.days if backfill is not None else None
    reasons: tuple[Reason, ...] = ()
    if hook is not None:
        reasons = approval_reasons(
            leads,
            threshold=params.approval_threshold,
            baseline=baseline,
            max_growth=params.max_growth_factor,
            growth_floor=params.growth_guard_floor,
            days=window_days(scope),
            max_days=params.approval_max_window_days,
            backfill_days=backfill_days,
        )
    request = ApprovalRequest(
        reasons=reasons,
        leads=leads,
        threshold=params.approval_threshold,
        baseline=baseline,
        max_growth=params.max_growth_factor,
        days=window_days(scope),
        max_days=params.approval_max_window_days,
        backfill_days=backfill_days,
        backfill_more=backfill is not None and backfill.more,
    )
    if not request.needed or hook is None:
        return request
    budget = hook.budget
    try:
        per_window = budget.effective_limit()
        calls_per_second = per_window / (hook.settings.rate_window_seconds + budget.margin_seconds_now())
    except RateBudgetError:
        calls_per_second = None
    own = [lead.lead_id for lead in sent if lead.scope_key == scope_key][:PREVIEW_ACTIVITY_LEADS]
    return dataclasses.replace(
        request,
        sample=tuple(lead.lead_id for lead in sent[:PREVIEW_SAMPLE]),
        calls=leads + min(params.verify_sample, leads),
        calls_per_second=round(calls_per_second, 3) if calls_per_second else None,
        day_left=budget.day_left(),
        activities=preview_activities(hook, scope, own) if params.approval_preview_activities else (),
    )


def preview_activities(hook: LeadSquaredHook, scope: ResetScope, lead_ids: list[str]) -> tuple[LeadActivities, ...]:
    """How many activities each lead holds that the reset would delete (read now, one call for most leads)."""
    from leadsquared_provider.steps.verify import Check, ScopeWindow, check_lead

    window = ScopeWindow.from_scope(scope)
    found = []
    for lead_id in lead_ids:
        check = check_lead(hook, lead_id, scope.key, window)
        if check.result in (Check.STILL_PRESENT, Check.VERIFIED):
            found.append(LeadActivities(lead_id, check.remaining_count))
        else:
            found.append(LeadActivities(lead_id, None, check.message[:200]))
    return tuple(found)


def _candidates(
    params: RunParams, warehouse_conn_id: str, sql: Callable[[], str], query_name: str | None
) -> tuple[CleanedCandidates, str]:
    stop_after = params.max_leads_per_run + 1
    if params.lead_ids:
        return clean_candidates(params.lead_ids, stop_after=stop_after), "param lead_ids"
    from airflow.sdk import BaseHook

    from leadsquared_provider.warehouse.candidates import CANDIDATE_SOURCE, iter_candidate_ids

    query_name = query_name or CANDIDATE_SOURCE
    hook = BaseHook.get_hook(warehouse_conn_id)
    stream = iter_candidate_ids(hook, sql(), source=query_name)
    try:
        return clean_candidates(stream, stop_after=stop_after), query_name
    finally:
        stream.close()  # stops the warehouse's cursor when reading stopped early


def plan_run(
    run: RunIdentity,
    params: RunParams,
    *,
    render_query: Callable[[str | None, str | None], str],
    warehouse_conn_id: str,
    leadsquared_conn_id: str,
    state_conn_id: str,
    executor: str = "LocalExecutor",
    query_name: str | None = None,
    count_runs: CountRuns | None = None,
) -> list[int]:
    """Plan the run and stage its batches; return the batch numbers (≤ 1000 small ints, for XCom).

    :param render_query: renders the candidate query for the window's UTC bounds (``YYYY-MM-DD HH:MM:SS``),
        start inclusive and end exclusive (:attr:`ResetScope.end_text`), or ``None`` for all time.
    :param query_name: the candidate query's file, as messages name it (default: the shipped one).
    :param count_runs: counts the DAG's runs among run ids, to measure a backfill's span (None: a backfill's
        run is judged on its own window only).
    :raises PlanError: refused (bad params, guard, keys, a deterministic query failure): nothing was sent.
    """
    from leadsquared_provider.hooks.leadsquared import LeadSquaredHook

    window = resolve_window(
        from_date=params.from_date,
        to_date=params.to_date,
        run_type=run.run_type,
        interval_start=run.interval_start,
        interval_end=run.interval_end,
    )
    scope = build_scope(params.categories, window, allow_all_time=params.allow_all_time)
    log.info(
        "window %s .. %s (UTC, inclusive), categories %s%s",
        scope.from_text or "lead creation",
        scope.to_text or "now",
        scope.categories_text,
        " - DRY RUN, nothing will be sent" if params.dry_run else "",
    )
    check_state_reach(state_conn_id, executor)  # dry runs too: their report is read from the same store
    account, hook, spent = None, None, None
    if not params.dry_run:
        hook = LeadSquaredHook(leadsquared_conn_id=leadsquared_conn_id)
        check_budget_reach(hook, executor)
        try:
            log.info("LeadSquared: %s", check_credentials(hook))
        except DailyQuotaSpent as exc:  # the account is known (its budget refused the call): defer, not fail
            spent = exc
            log.warning("LeadSquared: the keys were not checked, the account's day is spent: %s", exc)
        account = hook.account  # learnt by the check: every task of the run spends this account's budget
    try:
        cleaned, source = _candidates(
            params, warehouse_conn_id, lambda: render_query(scope.from_text, scope.end_text), query_name
        )
    except CandidateQueryError as exc:
        if getattr(exc, "deterministic", True):
            raise PlanError(str(exc)) from None
        raise
    count = len(cleaned.valid)
    log.info(
        "%s: %s%d candidate leads (%d nulls/blanks, %d duplicates, %d not GUIDs dropped)",
        source,
        "more than " if cleaned.truncated else "",
        count,
        cleaned.nulls,
        cleaned.duplicates,
        len(cleaned.invalid),
    )
    with StateStore(state_conn_id) as store:
        carried: list[StagedLead] = []
        if params.retry_earlier_failures and not params.lead_ids and not params.dry_run:
            earlier = store.carry_over(run.dag_id, run.key)
            own = {lead.lead_id for lead in earlier if lead.scope_key == scope.key}.intersection(cleaned.valid)
            carried = [lead for lead in earlier if not (lead.scope_key == scope.key and lead.lead_id in own)]
        if carried:
            log.info("%d lead(s) left unresolved by earlier runs are retried for their original window", len(carried))
        check_blast_radius(count + len(carried), max_leads=params.max_leads_per_run)
        baseline = store.growth_baseline(run.dag_id, run.key)
        scope_key = scope.key  # hashes the scope on every access: once here, not once per lead
        # Earlier runs' leads first (the oldest work), then this window's, in the query's order.
        staged = [*carried, *(StagedLead(lead_id, scope_key) for lead_id in cleaned.valid)]
        fits = len(staged) if hook is None else fits_today(hook, len(staged), params, spent)
        if hook is not None:
            hook.send_budget_gauges()
        batches = list(batch_ranges(fits, params.batch_size))
        store.save_scope(scope_key, scope)
        store.stage_candidates(run.key, staged)
        record = RunRecord(
            run_key=run.key,
            dag_id=run.dag_id,
            run_id=run.run_id,
            scope=scope,
            scope_key=scope_key,
            dry_run=params.dry_run,
            candidates=count,
            invalid=len(cleaned.invalid),
            batches=len(batches),
            batch_size=(batches[0]["last"] - batches[0]["first"] + 1) if batches else 0,
            carried_over=len(carried),
            run_type=str(run.run_type),
            leadsquared_conn_id=leadsquared_conn_id,
            account=account,
            deferred=len(staged) - fits,
        )
        store.save_run(record)
        backfill = None
        if hook is not None and count_runs is not None:
            backfill = measure_backfill(run, params.approval_max_window_days, count_runs)
        if backfill is not None:
            log.info("part of a backfill of %s%g days", "more than " if backfill.more else "", backfill.days)
        store.save_approval_request(
            run.key,
            approval_request(hook, params, scope, staged[:fits], baseline, scope_key=scope_key, backfill=backfill),
        )
        if record.deferred:
            deferred = staged[fits:]
            scopes = store.load_scopes(lead.scope_key for lead in deferred)
            store.record_many(
                BatchScope(run_key=run.key, dag_id=run.dag_id, batch=0, scopes=scopes),
                (
                    LeadResult.not_sent(lead, Outcome.DEFERRED, "not sent: over today's share of the quota")
                    for lead in deferred
                ),
            )
        batch = BatchScope(run_key=run.key, dag_id=run.dag_id, batch=0, scopes={scope_key: scope})
        store.record_many(
            batch,
            (
                LeadResult(
                    scope_key,
                    ResetResult.not_sent(raw, Outcome.REJECTED, f"never sent: {why}", exception_type="InvalidLeadId"),
                )
                for raw, why in cleaned.invalid
            ),
        )
    if batches:
        log.info("%d batches of up to %d leads", len(batches), record.batch_size)
    else:
        log.info("no candidate leads for this window: nothing to send")
    return [b["batch"] for b in batches]


def plan_step(
    context: Context,
    *,
    candidate_query: str,
    warehouse_conn_id: str,
    leadsquared_conn_id: str,
    state_conn_id: str,
    query_name: str | None = None,
    rendered: Callable[[str], None] | None = None,
) -> list[int]:
    """The plan task: plan the task's DAG run with its params; return the batch numbers to ``expand`` over.

    :param candidate_query: the candidate query's template, found on the DAG's ``template_searchpath`` and
        rendered with the task's context plus ``window_start`` and ``window_end``.
    :param query_name: the query as messages name it (default: ``candidate_query``).
    :param rendered: called with the candidate query as sent to the warehouse (its lineage is parsed from it).
    :raises AirflowFailException: refused (bad params, a guard, keys, a deterministic query failure): nothing
        was sent, and a retry would not help.
    """
    from airflow.sdk import conf
    from airflow.sdk.exceptions import AirflowFailException

    from leadsquared_provider.rules.params import RunParams

    template = context["dag"].get_template_env().get_template(candidate_query)
    run = RunIdentity.from_context(context)
    ti = context["ti"]

    def render(start: str | None, end: str | None) -> str:
        sql = template.render(**context, window_start=start, window_end=end)
        if rendered is not None:
            rendered(sql)
        return sql

    try:
        return plan_run(
            run,
            RunParams.from_params(context["params"]),
            render_query=render,
            warehouse_conn_id=warehouse_conn_id,
            leadsquared_conn_id=leadsquared_conn_id,
            state_conn_id=state_conn_id,
            executor=conf.get("core", "executor"),
            query_name=query_name or candidate_query,
            count_runs=lambda run_ids: ti.get_dr_count(dag_id=run.dag_id, run_ids=run_ids),
        )
    except PlanError as refused:
        raise AirflowFailException(str(refused)) from refused
