"""A run's summary as read back from the state store, and the verdict that fails a bad run.

Two DAG steps read the store this way: :func:`check_batch` judges one batch after its reset, and
:func:`report_step` the whole run at the end; both fail on the same outcomes (:data:`FAILURE_OUTCOMES`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from leadsquared_provider.exceptions import LeadSquaredAuthError, NotApproved, PlanError, ResetFailuresError
from leadsquared_provider.rate_budget.day import utc_text
from leadsquared_provider.rules.approval import NOT_APPROVED, ApprovalDecision, ApprovalRequest, Decision
from leadsquared_provider.rules.outcomes import FAILURE_OUTCOMES, UNFINISHED, Outcome

if TYPE_CHECKING:
    from airflow.sdk import Context

    from leadsquared_provider.rules.params import RunParams, VerifyParams
    from leadsquared_provider.store import LeadRow, StateStore

SHOWN = 10
LETS_THROUGH = frozenset(str(decision) for decision in Decision if decision.lets_through)

log = logging.getLogger(__name__)


def batch_failures(counts: dict[str, int]) -> int:
    return sum(counts.get(outcome, 0) for outcome in FAILURE_OUTCOMES)


def build_summary(store: StateStore, key: str) -> dict[str, Any]:
    """The run's summary: counts per outcome, failures, rejections, repeats and the leads behind them.

    :raises LookupError: the run was never planned.
    """
    run = store.load_run(key)
    counts = store.run_counts(key)
    gate = store.load_approval(key)
    if gate is not None and not gate[1].decision.lets_through and UNFINISHED in counts:
        counts[NOT_APPROVED] = counts.pop(UNFINISHED)  # staged, and never meant to go without an approval
    unfinished = counts.get(UNFINISHED, 0)
    total = run.candidates + run.invalid + run.carried_over
    rejected = counts.get(Outcome.REJECTED, 0)
    return {
        "run": key,
        "dry_run": run.dry_run,
        "window": run.window,
        "candidates": run.candidates,
        "retried_from_earlier_runs": run.carried_over,
        "invalid_ids": run.invalid,
        "batches": run.batches,
        "counts": {str(k): v for k, v in sorted(counts.items())},
        "failures": batch_failures(counts) + unfinished,
        "rejected": rejected,
        "rejected_share": round(rejected / total, 4) if total else 0.0,
        "possibly_repeated": store.repeated_count(key),
        "possibly_repeated_leads": [row.lead_id for row in store.leads_with(key, repeated=True, limit=SHOWN)],
        "held_elsewhere": _listed(store.leads_with(key, [Outcome.IN_PROGRESS_ELSEWHERE], limit=SHOWN)),
        "already_done_leads": _listed(store.leads_with(key, [Outcome.ALREADY_DONE], limit=SHOWN)),
        "rate_limited_answers": store.rate_limited_answers(key),
        # Over today's share of the daily quota: not failures; the next run sends them for their window.
        "deferred": counts.get(Outcome.DEFERRED, 0),
        "first_failed": _listed(store.leads_with(key, [*FAILURE_OUTCOMES, Outcome.REJECTED], limit=SHOWN)),
        "approval": None if gate is None else approval_part(*gate),
        "categories": json.loads(run.scope.categories_text),  # last: the counts come first in the XCom view
    }


def approval_part(request: ApprovalRequest, decision: ApprovalDecision) -> dict[str, Any]:
    """The summary's ``approval``: why the run asked, the answer, who gave it and when."""
    return {
        "needed": request.needed,
        "reasons": [str(reason) for reason in request.reasons],
        "decision": str(decision.decision),
        "by": decision.by,
        "at": utc_text(decision.at) if decision.at else None,
        "text": decision.as_text(),
    }


def _listed(rows: list[LeadRow]) -> list[dict[str, Any]]:
    """Lead rows as the summary (an XCom, JSON) lists them."""
    return [row._asdict() for row in rows]


def unresolved(summary: dict[str, Any]) -> int:
    """Leads the next run should pick up: failures, unfinished, deferred and leads held by owners that may
    fail."""
    counts = summary["counts"]
    if NOT_APPROVED in counts:
        return 0  # turned down: no later run sends its leads without asking
    return int(summary["failures"] + counts.get(Outcome.IN_PROGRESS_ELSEWHERE, 0) + counts.get(Outcome.DEFERRED, 0))


def verdict(summary: dict[str, Any], params: RunParams) -> None:
    """Fail the run on refused keys, failures over ``failure_threshold`` or rejections over their share.

    :raises NotApproved, LeadSquaredAuthError, ResetFailuresError: the run failed; the summary says why.
    """
    approval = summary.get("approval")
    if approval and approval["decision"] not in LETS_THROUGH:
        raise NotApproved(f"the run was not approved: {approval['text']}")
    if summary["counts"].get(Outcome.AUTH_FAILED):
        raise LeadSquaredAuthError(
            "LeadSquared refused the keys, host or permission: fix the connection and clear the run",
            status_code=None,
            exception_type=None,
        )
    if summary["failures"] > params.failure_threshold:
        raise ResetFailuresError(
            f"{summary['failures']} lead(s) not reset, over failure_threshold={params.failure_threshold}: "
            "see the report above"
        )
    if summary["rejected"] and summary["rejected_share"] > params.max_rejected_share:
        raise ResetFailuresError(
            f"{summary['rejected']} lead(s) rejected ({summary['rejected_share']:.0%} of the candidates), over "
            f"max_rejected_share={params.max_rejected_share:g}: check the candidate query's ids and account"
        )


def add_verification(
    store: StateStore, key: str, summary: dict[str, Any], verify: VerifyParams, *, finished: bool
) -> None:
    """Add the verify step's results: ``verification`` (counts, or why nothing was verified) and
    ``still_present_leads`` (the first 10 leads still holding what their reset was to delete)."""
    from leadsquared_provider.steps.verify import verification_summary

    part, still_present = verification_summary(
        store,
        key,
        dry_run=summary["dry_run"],
        queued=summary["counts"].get(Outcome.QUEUED, 0),
        params=verify,
        finished=finished,
    )
    summary["verification"] = part
    summary["still_present_leads"] = still_present


def verification_verdict(summary: dict[str, Any], verify: VerifyParams) -> None:
    """Fail the run when more sampled leads than ``max_still_present`` still hold what their reset was to
    delete, or when the verify step did not finish.

    :raises ResetFailuresError: the run failed; the summary says why.
    """
    part = summary.get("verification") or {}
    if "missing" in part:
        raise ResetFailuresError(f"the resets were not verified: {part['missing']}")
    still = part.get("still_present", 0)
    if still > verify.max_still_present:
        leads = ", ".join(row["lead_id"] for row in summary.get("still_present_leads", [])[:3])
        raise ResetFailuresError(
            f"{still} of {part['sampled']} sampled lead(s) still hold activities their reset was to delete, "
            f"{verify.delay_seconds} s after the last reset was queued (over max_still_present="
            f"{verify.max_still_present}): LeadSquared accepted these resets but did not carry them out "
            f"(e.g. {leads}); see still_present_leads"
        )


def report_run(
    store: StateStore,
    key: str,
    params: RunParams,
    *,
    push: Callable[[dict[str, Any]], None],
    effective_rate: Callable[[], float | None] = lambda: None,
    day_restarts: Callable[[], float | None] = lambda: None,
    export: Callable[[], int] | None = None,
    verify: VerifyParams | None = None,
    verify_finished: bool = False,
) -> dict[str, Any]:
    """Summarise the run, close it for carry-over, push the summary, export its audit if asked, then judge it.

    ``day_restarts`` gives when the account's daily quota frees up again (epoch s; None: no quota stated),
    named in the summary when leads were deferred. With ``verify`` (the verify step's params), the summary
    gains the step's results and the run fails when too many sampled leads still hold their activities;
    ``verify_finished`` says the verify task finished.
    The summary is pushed before the export and before the verdict, so it can be read whatever fails; an
    export that fails is pushed again with ``audit_export_error`` and raised after the verdict:
    an :class:`AuditExportError` whose ``deterministic`` is false is transient, and the task's retry runs the
    whole report again (the export replaces the run's rows).
    """
    from leadsquared_provider.rules.report_text import format_report
    from leadsquared_provider.warehouse.audit_export import AuditExportError

    try:
        summary = build_summary(store, key)
    except LookupError:
        raise PlanError(f"run {key} has no plan (the plan task failed): nothing was sent") from None
    if not summary["dry_run"]:
        summary["effective_rate_per_window"] = effective_rate()
    if summary["deferred"] and (restarts := day_restarts()) is not None:  # when the deferred leads can go
        summary["day_restarts"] = utc_text(restarts)
    if verify is not None:
        add_verification(store, key, summary, verify, finished=verify_finished)
    store.close_run(key, unresolved(summary))
    push(summary)
    export_failed: AuditExportError | None = None
    if export is not None:
        try:
            summary["audit_exported_rows"] = export()
        except AuditExportError as failed:
            summary["audit_export_error"] = str(failed)
            export_failed = failed
        push(summary)
    log.info("\n%s", format_report(summary))
    verdict(summary, params)
    if verify is not None:
        verification_verdict(summary, verify)
    if export_failed is not None:
        raise export_failed
    return summary


def check_batch(context: Context, batch: int | str, *, state_conn_id: str) -> None:
    """The check task after a batch's reset: name the mapped task (``context["batch_label"]``, for its
    ``map_index_template``), log the batch's outcome counts, and fail when it holds leads that were not reset.

    :raises AirflowFailException: the batch holds failures (final: the store says the same on a retry).
    """
    from airflow.sdk.exceptions import AirflowFailException

    from leadsquared_provider.rules.planning import batch_label
    from leadsquared_provider.steps.plan import RunIdentity
    from leadsquared_provider.store import StateStore

    key = RunIdentity.from_context(context).key
    number = int(batch)
    with StateStore(state_conn_id) as store:
        label = batch_label(store.load_run(key).batch(number))
        counts = store.outcome_counts(key, batch=number)
    context["batch_label"] = label  # type: ignore[typeddict-unknown-key]
    log.info("%s: %s", label, counts)  # the task log; no XCom, which would grow with the batch count
    failures = batch_failures(counts)
    if failures:
        raise AirflowFailException(f"{label} holds {failures} lead(s) not reset: {counts}")


def report_step(
    context: Context,
    *,
    leadsquared_conn_id: str,
    warehouse_conn_id: str,
    state_conn_id: str,
    verify_task_id: str | None = "verify",
) -> dict[str, Any]:
    """The report task: :func:`report_run` for the task's DAG run, its summary pushed as the task's XCom.

    :param warehouse_conn_id: where the audit is exported when the param ``audit_export_table`` names a table.
    :param verify_task_id: the run's verify task, whose XCom says it finished (None: the DAG verifies nothing).
    :raises AirflowFailException: the run failed (keys, failures, rejections, verification, no plan); a retry
        reads the same.
    :raises AuditExportError: a transient export failure (``deterministic`` false): the task's retry reports
        and exports again.
    """
    from airflow.sdk.exceptions import AirflowFailException

    from leadsquared_provider.exceptions import LeadSquaredError
    from leadsquared_provider.rules.params import RunParams, VerifyParams
    from leadsquared_provider.steps.plan import RunIdentity
    from leadsquared_provider.store import StateStore
    from leadsquared_provider.warehouse.audit_export import run_audit_export

    key = RunIdentity.from_context(context).key
    ti = context["ti"]
    try:
        params = RunParams.from_params(context["params"])
        with StateStore(state_conn_id) as store:
            return report_run(
                store,
                key,
                params,
                push=lambda summary: ti.xcom_push(key="return_value", value=summary),
                effective_rate=lambda: _effective_rate(leadsquared_conn_id, store.load_run(key).account),
                day_restarts=lambda: _day_restarts(leadsquared_conn_id, store.load_run(key).account),
                export=run_audit_export(store, key, params.audit_export_table, warehouse_conn_id),
                verify=VerifyParams.from_params(context["params"]) if verify_task_id else None,
                verify_finished=verify_task_id is not None and ti.xcom_pull(task_ids=verify_task_id) is not None,
            )
    except LeadSquaredError as failed:
        if not getattr(failed, "deterministic", True):
            raise  # a transient audit-export failure: the task's retry reports and exports again
        raise AirflowFailException(str(failed)) from failed


def _effective_rate(leadsquared_conn_id: str, account: str | None) -> float | None:
    """The calls per window the account's callers may use now (None for a dry run: it never learnt the
    account, and asking would be a call)."""
    from leadsquared_provider.hooks.leadsquared import LeadSquaredHook

    if account is None:
        return None
    return round(LeadSquaredHook(leadsquared_conn_id=leadsquared_conn_id, account=account).budget.effective_limit(), 2)


def _day_restarts(leadsquared_conn_id: str, account: str | None) -> float | None:
    """When the account's daily quota frees up again (epoch s; None: no quota stated, or a dry run)."""
    from leadsquared_provider.hooks.leadsquared import LeadSquaredHook

    if account is None:
        return None
    return LeadSquaredHook(leadsquared_conn_id=leadsquared_conn_id, account=account).budget.day_restarts_at()
