"""LeadSquaredResetOperator: reset every lead of one batch, recording each lead's outcome as it goes."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from leadsquared_provider.exceptions import LeadSquaredAuthError
from leadsquared_provider.ledger import ResetLedger, run_key
from leadsquared_provider.outcomes import Outcome, ResetResult
from leadsquared_provider.planning import batch_label

if TYPE_CHECKING:
    from airflow.sdk import Context

    from leadsquared_provider.hooks.leadsquared import LeadSquaredHook
    from leadsquared_provider.ledger import RunRecord


class _Progress:
    """Logs done/total, rate and ETA at a steady pace so a long batch is never silent."""

    def __init__(self, log: Any, total: int, every_seconds: float) -> None:
        self.log, self.total, self.every = log, total, every_seconds
        self.started = self.last = time.monotonic()

    def tick(self, done: int, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < self.every:
            return
        self.last = now
        rate = done / (now - self.started) if now > self.started else 0.0
        eta = (self.total - done) / rate if rate else float("nan")
        self.log.info("progress: %d/%d leads, %.2f resets/s, ETA %.0f s", done, self.total, rate, eta)


class LeadSquaredResetOperator(BaseOperator):
    """
    Reset the leads of one planned batch through :class:`LeadSquaredHook`.

    The run's scope (categories and window) and candidates are read from the ledger written by the plan
    task; each lead's outcome is written to the audit table as it comes. Leads already queued under the
    same scope key (by this run's earlier try or by any other run) are not sent again. The task returns
    only counts. Wrong keys or host fail the task without retry, after marking the unsent leads skipped.

    :param batch: the batch's number (1-based) from the plan task; its bounds are in the run's record.
    :param leadsquared_conn_id: LeadSquared connection.
    :param warehouse_conn_id: common-sql connection of the warehouse holding the ledger.
    :param max_in_flight: requests of this task in flight at once (the shared budget still paces them); a
        crash of the task can repeat at most this many requests.
    :param progress_every_seconds: how often progress is logged.
    """

    template_fields: Sequence[str] = ("batch", "leadsquared_conn_id", "warehouse_conn_id", "max_in_flight")
    ui_color = "#fde2e4"

    def __init__(
        self,
        *,
        batch: int | str,
        leadsquared_conn_id: str = "leadsquared_default",
        warehouse_conn_id: str = "warehouse_default",
        max_in_flight: int | str = 4,
        progress_every_seconds: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.batch = batch
        self.leadsquared_conn_id = leadsquared_conn_id
        self.warehouse_conn_id = warehouse_conn_id
        self.max_in_flight = max_in_flight
        self.progress_every_seconds = progress_every_seconds

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException

        from leadsquared_provider.hooks.leadsquared import LeadSquaredHook

        try:
            self.max_in_flight = int(self.max_in_flight)
        except (TypeError, ValueError):
            raise ValueError(f"max_in_flight must be a whole number, got {self.max_in_flight!r}") from None
        if not 1 <= self.max_in_flight <= 32:
            raise ValueError(f"max_in_flight must be between 1 and 32, got {self.max_in_flight}")
        try:
            number = int(self.batch)
        except (TypeError, ValueError):
            raise ValueError(f"batch must be a batch number, got {self.batch!r}") from None
        dag_run = context["dag_run"]
        key = run_key(dag_run.dag_id, dag_run.run_id)
        ledger = ResetLedger(self.warehouse_conn_id)
        try:
            run = ledger.load_run(key)
            batch = run.batch(number)
            context["batch_label"] = batch_label(batch)  # type: ignore[typeddict-unknown-key]
            leads = ledger.candidate_slice(key, batch["first"], batch["last"])
            scopes = ledger.load_scopes(scope_key for _, scope_key in leads)
            work = _BatchWork(ledger, run, batch["batch"], scopes)
            already = {
                (lead, scope_key)
                for scope_key in scopes
                for lead in ledger.already_done([lead for lead, sk in leads if sk == scope_key], scope_key)
            }
            todo = [pair for pair in leads if pair not in already]
            carried = sum(1 for _, scope_key in leads if scope_key != run.scope_key)
            self.log.info(
                "%s: %d leads (%d retried from earlier runs), %d already done under their window and categories, "
                "%d to send%s",
                batch_label(batch),
                len(leads),
                carried,
                len(already),
                len(todo),
                " (dry run)" if run.dry_run else "",
            )
            counts: Counter[str] = Counter()
            now = time.time()
            for lead, scope_key in sorted(already):
                message = "not sent: already queued or rejected under this window and categories"
                work.record(ResetResult(lead, Outcome.ALREADY_DONE, None, None, message, 0, now, now), scope_key, 0)
                counts[Outcome.ALREADY_DONE] += 1
            if run.dry_run:
                for lead, scope_key in todo:
                    result = ResetResult(
                        lead, Outcome.DRY_RUN, None, None, "dry run: would have been sent", 0, now, now
                    )
                    work.record(result, scope_key, 0)
                    counts[Outcome.DRY_RUN] += 1
            else:
                hook = LeadSquaredHook(leadsquared_conn_id=self.leadsquared_conn_id)
                auth = self._send_all(work, todo, hook, counts)
                if auth is not None:
                    raise AirflowFailException(
                        f"LeadSquared refused the keys or host ({auth.status_code} {auth.exception_type}: "
                        f"{auth.message}); {counts[Outcome.SKIPPED]} lead(s) of this batch were not sent. "
                        f"Fix connection {self.leadsquared_conn_id!r}, then clear the run."
                    )
        finally:
            ledger.close()
        self.log.info("%s done: %s", batch_label(batch), dict(counts))
        return {"batch": batch["batch"], "leads": len(leads), **counts}

    def _send_all(
        self,
        work: _BatchWork,
        todo: list[tuple[str, str]],
        hook: LeadSquaredHook,
        counts: Counter[str],
    ) -> ResetResult | None:
        """Send the batch with at most ``max_in_flight`` requests out; return the auth failure, if any."""
        from leadsquared_provider.reset_request import ResetRequest

        maybe_sent = work.ledger.in_flight(work.run.run_key)
        if maybe_sent & set(todo):
            self.log.warning(
                "%d lead(s) were being sent when an earlier try died; they are sent again and reported "
                "as possibly repeated",
                len(maybe_sent & set(todo)),
            )
        auth_failure: ResetResult | None = None
        progress = _Progress(self.log, len(todo), self.progress_every_seconds)
        pending: dict[Future[ResetResult], tuple[str, str]] = {}
        queue = iter(todo)
        done = 0
        last_run_check = float("-inf")
        with ThreadPoolExecutor(max_workers=self.max_in_flight, thread_name_prefix="lsq-reset") as pool:
            while True:
                if auth_failure is None and time.monotonic() - last_run_check > 2.0:
                    # Another batch of this run met wrong keys: stop sending here too.
                    last_run_check = time.monotonic()
                    if work.ledger.outcome_counts(work.run.run_key).get(Outcome.AUTH_FAILED):
                        auth_failure = ResetResult(
                            "", Outcome.AUTH_FAILED, None, None, "another batch of this run was refused", 0, 0, 0
                        )
                while auth_failure is None and len(pending) < self.max_in_flight:
                    item = next(queue, None)
                    if item is None:
                        break
                    lead, scope_key = item
                    now = time.time()
                    work.record(
                        ResetResult(lead, Outcome.SENDING, None, None, "request in flight", 0, now, now), scope_key, 0
                    )
                    pending[pool.submit(hook.reset_lead, ResetRequest(lead, work.scope(scope_key)))] = item
                if not pending:
                    break
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    item = pending.pop(future)
                    try:
                        result = future.result()
                    except LeadSquaredAuthError as exc:
                        now = time.time()
                        result = ResetResult(
                            item[0],
                            Outcome.SKIPPED,
                            exc.status_code,
                            exc.exception_type,
                            f"not sent: {exc}",
                            0,
                            now,
                            now,
                        )
                    work.record(result, item[1], result.attempts + (1 if item in maybe_sent else 0))
                    counts[result.outcome] += 1
                    done += 1
                    if result.outcome is Outcome.AUTH_FAILED and auth_failure is None:
                        auth_failure = result
                progress.tick(done)
        for lead, scope_key in queue:  # left unsent after an auth failure
            now = time.time()
            message = "not sent: the run stopped after LeadSquared refused the keys or host"
            work.record(ResetResult(lead, Outcome.SKIPPED, None, None, message, 0, now, now), scope_key, 0)
            counts[Outcome.SKIPPED] += 1
        progress.tick(done, force=True)
        return auth_failure


class _BatchWork:
    """The ledger, run and scopes of one batch, and how one lead's result is written."""

    def __init__(self, ledger: ResetLedger, run: RunRecord, batch: int, scopes: dict[str, dict[str, Any]]) -> None:
        from leadsquared_provider.reset_request import ResetScope

        self.ledger, self.run, self.batch, self.scopes = ledger, run, batch, scopes
        self._typed = {key: ResetScope.from_mapping(scope) for key, scope in scopes.items()}

    def scope(self, scope_key: str) -> Any:
        return self._typed[scope_key]

    def record(self, result: ResetResult, scope_key: str, sends: int) -> None:
        self.ledger.record(
            key=self.run.run_key,
            dag_id=self.run.dag_id,
            batch=self.batch,
            scope=self.scopes[scope_key],
            scope_key=scope_key,
            result=result,
            sends=sends,
        )
