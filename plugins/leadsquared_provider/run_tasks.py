"""The bodies of the DAG's plan, check and report tasks (the DAG file only wires them together)."""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterator, Mapping
from typing import Any

from leadsquared_provider.exceptions import (
    CandidateQueryError,
    InvalidConnection,
    LeadSquaredAuthError,
    PlanError,
    ResetFailuresError,
)
from leadsquared_provider.ledger import ResetLedger, RunRecord, run_key
from leadsquared_provider.outcomes import Outcome, ResetResult
from leadsquared_provider.planning import (
    batch_ranges,
    build_scope,
    check_blast_radius,
    clean_candidates,
    resolve_window,
)

log = logging.getLogger(__name__)

FAILURE_OUTCOMES = (Outcome.FAILED, Outcome.AUTH_FAILED, Outcome.SKIPPED)
CANDIDATE_QUERY = "candidates.sql"


def _query_lead_ids(ledger: ResetLedger, sql: str, chunk: int = 10_000) -> Iterator[object]:
    """Stream the first column of the candidate query, so a large result never sits in memory twice."""
    conn = ledger.hook.get_conn()
    # PostgreSQL's client keeps a whole result in memory unless the cursor is a server-side (named) one.
    cursor = conn.cursor(name="leadsquared_candidates") if ledger.hook.dialect_name == "postgresql" else conn.cursor()
    try:
        cursor.execute(sql)
    except Exception as exc:  # the driver's own error class varies by warehouse
        cursor.close()
        raise CandidateQueryError(
            f"candidate query include/sql/{CANDIDATE_QUERY} failed, nothing was sent: {exc}"
        ) from exc
    try:
        while rows := cursor.fetchmany(chunk):
            for row in rows:
                yield row[0]
    finally:
        cursor.close()


def check_credentials(leadsquared_conn_id: str) -> str:
    """One ``UserByAccessKey.Get`` before any reset: wrong keys, host or a non-admin user stop the run here."""
    from leadsquared_provider.hooks.leadsquared import LeadSquaredHook

    hook = LeadSquaredHook(leadsquared_conn_id=leadsquared_conn_id)
    try:
        user = hook.get_user()
    except (LeadSquaredAuthError, InvalidConnection) as exc:
        raise PlanError(f"connection {leadsquared_conn_id!r} refused, no lead was sent: {exc}") from None
    problem = hook.admin_problem(user)
    if problem:
        raise PlanError(f"connection {leadsquared_conn_id!r}: {problem}; no lead was sent")
    return f"keys of {user.get('EmailAddress') or '?'} ({user.get('Role')}) accepted by {hook.base_url}"


def plan_run(context: Mapping[str, Any], *, warehouse_conn_id: str, leadsquared_conn_id: str) -> list[int]:
    """Resolve the scope, check the keys, run and clean the candidate query, apply the guards, stage batches."""
    params = context["params"]
    dag_run = context["dag_run"]
    key = run_key(dag_run.dag_id, dag_run.run_id)
    window = resolve_window(
        params=params,
        run_type=getattr(dag_run.run_type, "value", dag_run.run_type),
        interval_start=context.get("data_interval_start"),
        interval_end=context.get("data_interval_end"),
    )
    scope = build_scope(params, window)
    log.info(
        "window %s .. %s (UTC, inclusive), categories %s%s",
        scope.from_text or "lead creation",
        scope.to_text or "now",
        scope.categories_text,
        " - DRY RUN, nothing will be sent" if params.get("dry_run") else "",
    )
    if not params.get("dry_run"):
        log.info("LeadSquared: %s", check_credentials(leadsquared_conn_id))
    ledger = ResetLedger(warehouse_conn_id)
    try:
        ledger.ensure_tables()
        if params.get("lead_ids"):
            lead_ids = params["lead_ids"]
            if isinstance(lead_ids, str):
                lead_ids = [part for part in lead_ids.replace(",", "\n").splitlines()]
            source = "param lead_ids"
            cleaned = clean_candidates(lead_ids)
        else:
            sql = (
                context["dag"]
                .get_template_env()
                .get_template(CANDIDATE_QUERY)
                .render(
                    **context,
                    window_start=scope.from_text,
                    window_end=scope.to_text,
                )
            )
            source = f"include/sql/{CANDIDATE_QUERY}"
            cleaned = clean_candidates(_query_lead_ids(ledger, sql))
        carried: list[tuple[str, str]] = []
        if params.get("retry_earlier_failures", True) and not params.get("lead_ids") and not params.get("dry_run"):
            earlier = ledger.carry_over(dag_run.dag_id, key)
            # Earlier failures of this scope that are candidates anyway (no set of every candidate: 32 MB at 1M).
            own = {lead for lead, scope_key in earlier if scope_key == scope.key}.intersection(cleaned.valid)
            carried = [(lead, scope_key) for lead, scope_key in earlier if not (scope_key == scope.key and lead in own)]
        count = len(cleaned.valid)
        log.info(
            "%s: %d candidate leads (%d nulls/blanks, %d duplicates, %d not GUIDs dropped)",
            source,
            count,
            cleaned.nulls,
            cleaned.duplicates,
            len(cleaned.invalid),
        )
        if carried:
            log.info("%d lead(s) that failed in earlier runs are retried for their original window", len(carried))
        check_blast_radius(
            count + len(carried),
            max_leads=int(params.get("max_leads_per_run", 10_000)),
            previous=ledger.previous_candidate_count(dag_run.dag_id, key),
            max_growth=float(params.get("max_growth_factor", 10)),
            growth_floor=int(params.get("growth_guard_floor", 100)),
        )
        batches = list(batch_ranges(count + len(carried), int(params.get("batch_size", 200))))
        ledger.save_scope(scope.key, scope.to_dict())
        scope_key = scope.key  # hashes the scope on every access: once here, not once per lead
        ledger.stage_candidates(key, itertools.chain(((lead, scope_key) for lead in cleaned.valid), carried))
        record = RunRecord(
            run_key=key,
            dag_id=dag_run.dag_id,
            run_id=dag_run.run_id,
            scope=scope.to_dict(),
            scope_key=scope.key,
            dry_run=bool(params.get("dry_run", False)),
            candidates=count,
            invalid=len(cleaned.invalid),
            batches=len(batches),
            batch_size=(batches[0]["last"] - batches[0]["first"] + 1) if batches else 0,
            carried_over=len(carried),
        )
        ledger.save_run(record)
        now = time.time()
        for raw, reason in cleaned.invalid:
            result = ResetResult(raw, Outcome.REJECTED, None, "InvalidLeadId", f"never sent: {reason}", 0, now, now)
            ledger.record(
                key=key,
                dag_id=dag_run.dag_id,
                batch=0,
                scope=record.scope,
                scope_key=record.scope_key,
                result=result,
                sends=0,
            )
    finally:
        ledger.close()
    if not batches:
        log.info("no candidate leads for this window: nothing to send")
    else:
        log.info("%d batches of up to %d leads", len(batches), record.batch_size)
    # Only the batch numbers go to XCom (≤ 1000 small ints); each batch reads its bounds from the run record.
    return [b["batch"] for b in batches]


def check_batch(number: int, dag_run: Any, *, warehouse_conn_id: str) -> tuple[str, dict[str, int], str | None]:
    """The batch's label, outcome counts, and why it fails (failed, refused or unsent leads), if it does."""
    from leadsquared_provider.planning import batch_label

    key = run_key(dag_run.dag_id, dag_run.run_id)
    ledger = ResetLedger(warehouse_conn_id)
    try:
        label = batch_label(ledger.load_run(key).batch(int(number)))
        counts = ledger.outcome_counts(key, batch=int(number))
    finally:
        ledger.close()
    failures = sum(counts.get(outcome, 0) for outcome in FAILURE_OUTCOMES)
    return label, counts, f"{label} holds {failures} lead(s) not reset: {counts}" if failures else None


def build_summary(ledger: ResetLedger, key: str) -> dict[str, Any]:
    """The run's summary as read back from the ledger."""
    run = ledger.load_run(key)
    counts = ledger.outcome_counts(key)
    counts.pop(Outcome.SENDING, None)
    unfinished = ledger.unfinished(key)
    if unfinished:
        counts["unfinished"] = unfinished
    return {
        "run": key,
        "dry_run": run.dry_run,
        "window": {"from": run.scope.get("from_date"), "to": run.scope.get("to_date")},
        "candidates": run.candidates,
        "retried_from_earlier_runs": run.carried_over,
        "invalid_ids": run.invalid,
        "batches": run.batches,
        "counts": {str(k): v for k, v in sorted(counts.items())},
        "failures": sum(counts.get(outcome, 0) for outcome in FAILURE_OUTCOMES) + unfinished,
        "possibly_repeated": ledger.repeated_sends(key),
        "first_failed": ledger.leads_with(key, [*FAILURE_OUTCOMES, Outcome.REJECTED], limit=10),
    }


def format_report(summary: Mapping[str, Any]) -> str:
    """A readable table of the summary, for the task log."""
    lines = [
        f"LeadSquared reset report - {summary['run']}{'  (DRY RUN: nothing was sent)' if summary['dry_run'] else ''}",
        f"window (UTC): {summary['window']['from'] or 'lead creation'} .. {summary['window']['to'] or 'now'}",
        f"candidates: {summary['candidates']} in {summary['batches']} batch(es);"
        f" ids that were not GUIDs: {summary['invalid_ids']};"
        f" leads retried from earlier runs: {summary.get('retried_from_earlier_runs', 0)}",
        "",
        f"{'outcome':<14}{'leads':>8}",
        f"{'-' * 14}{'-' * 8}",
    ]
    for outcome, count in summary["counts"].items():
        lines.append(f"{outcome:<14}{count:>8}")
    if not summary["counts"]:
        lines.append(f"{'(none)':<14}{0:>8}")
    lines.append(f"possibly repeated requests (a crash mid-request): {summary['possibly_repeated']}")
    if summary["first_failed"]:
        lines += ["", "first leads not reset:"]
        for row in summary["first_failed"]:
            lines.append(
                f"  {row['lead_id']:<38} {row['outcome']:<12} {row['status_code'] or '-':<5} "
                f"{row['exception_type'] or '-'}: {row['message']}"
            )
    return "\n".join(lines)


def report_run(dag_run: Any, params: Mapping[str, Any], *, warehouse_conn_id: str) -> dict[str, Any]:
    """Log the run's report, return its summary, fail on credentials or failures over the threshold."""
    key = run_key(dag_run.dag_id, dag_run.run_id)
    ledger = ResetLedger(warehouse_conn_id)
    try:
        ledger.ensure_tables()
        try:
            summary = build_summary(ledger, key)
        except LookupError:
            raise PlanError(f"run {key} has no plan (the plan task failed): nothing was sent") from None
    finally:
        ledger.close()
    log.info("\n%s", format_report(summary))
    threshold = int(params.get("failure_threshold", 0))
    if summary["counts"].get(Outcome.AUTH_FAILED):
        raise LeadSquaredAuthError(
            "LeadSquared refused the keys or host: fix the connection and clear the run",
            status_code=None,
            exception_type=None,
        )
    if summary["failures"] > threshold:
        raise ResetFailuresError(
            f"{summary['failures']} lead(s) not reset, over failure_threshold={threshold}: see the report above"
        )
    return summary
