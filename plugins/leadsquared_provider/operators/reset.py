"""LeadSquaredResetOperator: reset every lead of one planned batch, each under an atomic claim."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from leadsquared_provider.rules.kinds import whole_number
from leadsquared_provider.rules.params import MAX_IN_FLIGHT
from leadsquared_provider.settings import DEFAULT_STATE_CONN_ID

if TYPE_CHECKING:
    from airflow.sdk import Context


class LeadSquaredResetOperator(BaseOperator):
    """
    Reset the leads of one planned batch through :class:`LeadSquaredHook`.

    The run's scope and candidates are read from the state store written by the plan task; the batch is
    sent by :class:`~leadsquared_provider.steps.send.BatchSender` (claims, requests in flight, progress), and
    each lead's outcome is written to the store as it comes. Returns only counts. A run that waits at the
    approval gate, or was turned down there, sends nothing, whatever the approval task's state says. Wrong
    keys, host or a redirect fail the task without retry; a broken rate budget fails it (its unsent leads are
    carried over).

    :param batch: the batch's number (1-based) from the plan task; its bounds are in the run's record.
    :param leadsquared_conn_id: LeadSquared connection.
    :param state_conn_id: the state store's connection (sqlite or postgres).
    :param max_in_flight: requests of this task in flight at once (the shared budget still paces them).
    :param claim_ttl_seconds: a claim of this task not refreshed for this long may be taken over.
    :param progress_every_seconds: how often progress is logged.

    Unless ``execution_timeout`` is given, each try gets one derived from its batch's size and the
    connection's rate (:func:`~leadsquared_provider.rules.planning.batch_time_limit`), set in :meth:`pre_execute`.
    """

    template_fields: Sequence[str] = ("batch", "leadsquared_conn_id", "state_conn_id", "max_in_flight")
    ui_color = "#fde2e4"

    def __init__(
        self,
        *,
        batch: int | str,
        leadsquared_conn_id: str = "leadsquared_default",
        state_conn_id: str = DEFAULT_STATE_CONN_ID,
        max_in_flight: int | str = MAX_IN_FLIGHT.default,
        claim_ttl_seconds: float = 30.0,
        progress_every_seconds: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.batch = batch
        self.leadsquared_conn_id = leadsquared_conn_id
        self.state_conn_id = state_conn_id
        self.max_in_flight = max_in_flight
        self.claim_ttl_seconds = claim_ttl_seconds
        self.progress_every_seconds = progress_every_seconds

    def pre_execute(self, context: Context) -> None:
        """Bound the try by its batch's size and the account's rate, unless the DAG set its own limit."""
        if self.execution_timeout is not None:
            return
        from leadsquared_provider.hooks.leadsquared import LeadSquaredHook
        from leadsquared_provider.rules.planning import batch_time_limit
        from leadsquared_provider.steps.plan import RunIdentity
        from leadsquared_provider.store import StateStore

        number = whole_number("batch", self.batch, minimum=1)
        with StateStore(self.state_conn_id) as store:
            bounds = store.load_run(RunIdentity.from_context(context).key).batch(number)
        leads = bounds["last"] - bounds["first"] + 1
        settings = LeadSquaredHook(leadsquared_conn_id=self.leadsquared_conn_id).settings
        self.execution_timeout = batch_time_limit(leads, settings)
        self.log.info("batch %d: %d leads, time limit %s", number, leads, self.execution_timeout)

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException

        from leadsquared_provider.hooks.leadsquared import LeadSquaredHook
        from leadsquared_provider.rules.outcomes import Outcome
        from leadsquared_provider.rules.planning import batch_label
        from leadsquared_provider.steps.plan import RunIdentity
        from leadsquared_provider.steps.send import BatchSender, owner_for, refused_meanwhile
        from leadsquared_provider.store import BatchScope, LeadResult, StateStore

        in_flight = MAX_IN_FLIGHT.parse(self.max_in_flight)  # rendered text: "4", or "4.0" for a JSON 4.0
        number = whole_number("batch", self.batch, minimum=1)
        key = RunIdentity.from_context(context).key
        with StateStore(self.state_conn_id) as store:
            run = store.load_run(key)
            gate = store.load_approval(key)
            if gate is not None and not gate[1].decision.lets_through:  # e.g. the approval marked success by hand
                raise AirflowFailException(f"the run's approval is {gate[1].as_text()}: this batch sends nothing")
            bounds = run.batch(number)
            label = batch_label(bounds)
            context["batch_label"] = label  # type: ignore[typeddict-unknown-key]
            leads = store.candidate_slice(key, bounds["first"], bounds["last"])
            scopes = store.load_scopes(lead.scope_key for lead in leads)
            batch = BatchScope(run_key=key, dag_id=run.dag_id, batch=number, scopes=scopes)
            carried = sum(1 for lead in leads if lead.scope_key != run.scope_key)
            self.log.info(
                "%s: %d leads (%d retried from earlier runs)%s",
                label,
                len(leads),
                carried,
                " - dry run" if run.dry_run else "",
            )
            if run.dry_run:
                store.record_many(
                    batch,
                    (LeadResult.not_sent(lead, Outcome.DRY_RUN, "dry run: would have been sent") for lead in leads),
                )
                self.log.info("%s: %d leads would have been sent (dry run)", label, len(leads))
                return {"batch": number, "leads": len(leads), Outcome.DRY_RUN.value: len(leads)}
            hook = LeadSquaredHook(leadsquared_conn_id=self.leadsquared_conn_id, account=run.account)
            sender = BatchSender(
                store=store,
                hook=hook,
                batch=batch,
                owner=owner_for(key, number, int(getattr(context.get("ti"), "try_number", 1) or 1)),
                max_in_flight=in_flight,
                claim_ttl_seconds=self.claim_ttl_seconds,
                heartbeat_seconds=max(self.claim_ttl_seconds / 6, 0.5),
                progress_every_seconds=self.progress_every_seconds,
                run_stopped=refused_meanwhile(store, key),
                log=self.log,
            )
            report = sender.send(leads)
        counts = dict(report.counts)
        self.log.info("%s done: %s", label, counts)
        if report.stopped_by is None:  # a budget store that stopped the batch has no rate to give
            hook.send_budget_gauges()
        if report.auth_failure is not None:
            failure = report.auth_failure
            raise AirflowFailException(
                f"LeadSquared refused the keys, host or permission ({failure.status_code} {failure.exception_type}: "
                f"{failure.message}); {counts.get(Outcome.SKIPPED, 0)} lead(s) of this batch were not sent. "
                f"Fix connection {self.leadsquared_conn_id!r}, then clear the run."
            )
        if report.quota_spent is not None:  # a notice, not a failure: the next run sends the deferred leads
            self.log.warning(
                "%s: %d lead(s) deferred to the next run: %s",
                label,
                counts.get(Outcome.DEFERRED, 0),
                report.quota_spent,
            )
        if report.stopped_by is not None:
            raise RuntimeError(
                f"{label} stopped: {report.stopped_by}. Its unsent leads are retried by the next run "
                "(or clear this task once the cause is fixed)."
            )
        return {"batch": number, "leads": len(leads), **counts}
