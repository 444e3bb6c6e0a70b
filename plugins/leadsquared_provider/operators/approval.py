"""LeadSquaredApprovalOperator: the run waits for a person when its plan says so, with a preview of the reset."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.standard.operators.hitl import ApprovalOperator

from leadsquared_provider.accounts import Approver
from leadsquared_provider.settings import DEFAULT_STATE_CONN_ID

if TYPE_CHECKING:
    from airflow.sdk import Context

    from leadsquared_provider.rules.approval import ApprovalRequest

# How an answer adopted from another run of the backfill is noted: "for the backfill, at run <run id>".
BACKFILL_NOTE = "for the backfill, at run "


class LeadSquaredApprovalOperator(ApprovalOperator):
    """
    The approval gate between the plan and the batches (Airflow's human-in-the-loop ``ApprovalOperator``).

    A run whose plan recorded no reason to ask (:func:`~leadsquared_provider.rules.approval.approval_reasons`),
    and every dry run, succeeds at once without asking. Any other run waits in ``awaiting_input`` (no worker
    slot, no triggerer) with the preview as the page's body, until a person answers in the UI or the REST API,
    or ``approval_timeout_minutes`` pass (then it counts as rejected). The answer, who gave it and when go to
    the state store; the batches and the report read it there. Reject or a timeout skips the batches.

    A backfill asks once: a run of a backfill longer than ``approval_max_window_days`` first looks for an
    answer given to one of the backfill's neighbouring runs (within ``approval_timeout_minutes``), and adopts
    it without asking: it records it as its own (``approved by alice (for the backfill, at run X)``) and goes
    on, or skips its batches. Runs that start before the first answer (up to the DAG's ``max_active_runs``)
    each ask.

    :param state_conn_id: the state store the plan recorded the request in.
    :param timezone: the account's time zone, for the window in the preview.
    :param approvers: who may answer (Airflow refuses anyone else); empty: anyone who may edit the DAG.
    :param four_eyes: the user who triggered the run may not approve it: left out of ``approvers``, and an
        approval they give anyway (no ``approvers``: Airflow cannot leave one user out) fails this task.
    :param leads_url: the resets page's lead search, linked from each sampled lead (default: ``[api] base_url``
        + ``/leadsquared/leads``).
    """

    template_fields: Sequence[str] = ()  # subject and body are built from the store at run time

    def __init__(
        self,
        *,
        state_conn_id: str = DEFAULT_STATE_CONN_ID,
        timezone: str = "UTC",
        approvers: Sequence[Approver] = (),
        four_eyes: bool = False,
        leads_url: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(subject="LeadSquared reset: approval", defaults=self.REJECT, **kwargs)
        self.state_conn_id = state_conn_id
        self.timezone = timezone
        self.approvers = tuple(approvers)
        self.four_eyes = four_eyes
        self.leads_url = leads_url

    def execute(self, context: Context) -> Any:
        from airflow.sdk.exceptions import AirflowFailException

        from leadsquared_provider.rules.approval import preview_body, preview_subject
        from leadsquared_provider.rules.params import RunParams
        from leadsquared_provider.store import StateStore, run_key

        dag_run = context["dag_run"]
        key = run_key(dag_run.dag_id, dag_run.run_id)
        with StateStore(self.state_conn_id) as store:
            gate = store.load_approval(key)
            scope = store.load_run(key).scope
        if gate is None or not gate[0].needed:
            self.log.info("no approval needed: the plan found no reason to ask (or this is a dry run)")
            return {"approval": "not_needed"}
        request, _ = gate
        timeout = timedelta(minutes=RunParams.from_params(context["params"]).approval_timeout_minutes)
        self.response_timeout = timeout
        adopted = self._backfill_answer(context, request, timeout)
        if adopted is not None:
            return adopted
        trigger_user = getattr(dag_run, "triggering_user_name", None)
        assigned = [a for a in self.approvers if not (self.four_eyes and trigger_user in (a.name, a.id))]
        if self.approvers and not assigned:
            raise AirflowFailException(
                f"nobody may approve: the account's only approvers triggered the run ({trigger_user}) and "
                "four_eyes is on; nothing was sent"
            )
        if assigned:
            self.assigned_users = [a.as_hitl_user() for a in assigned]
        self.subject = preview_subject(request, dag_run.dag_id)
        self.body = preview_body(
            request,
            scope,
            dag_id=dag_run.dag_id,
            run_id=dag_run.run_id,
            timezone=self.timezone,
            leads_url=self.leads_url or _leads_url(),
        ) + _who_may_text(assigned, self.four_eyes, trigger_user, self.response_timeout)
        self.log.info("waiting for approval (%s): %s", ", ".join(request.reasons), self.subject)
        return super().execute(context)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        """Record the answer (who, when) and go on as Airflow's ApprovalOperator does; a refused approval
        (four eyes, not an approver) fails the task: clear it to ask again."""
        from airflow.sdk.exceptions import AirflowFailException

        from leadsquared_provider.rules.approval import ApprovalDecision, Decision
        from leadsquared_provider.store import StateStore, run_key

        dag_run = context["dag_run"]
        key = run_key(dag_run.dag_id, dag_run.run_id)
        user = event.get("responded_by_user") or {}
        by = user.get("name") or user.get("id")
        at = _epoch(event.get("responded_at"))
        chosen = event.get("chosen_options") or []
        if "error" in event or event.get("timedout"):  # the default (Reject) after approval_timeout_minutes
            decision = ApprovalDecision(Decision.TIMED_OUT, at=at)
        elif chosen == [self.APPROVE]:
            why_not = self._refusal(user, getattr(dag_run, "triggering_user_name", None))
            decision = ApprovalDecision(Decision.REFUSED if why_not else Decision.APPROVED, by, at, why_not or "")
        else:
            decision = ApprovalDecision(Decision.REJECTED, by, at)
        with StateStore(self.state_conn_id) as store:
            store.record_decision(key, decision)
        self.log.info("approval: %s", decision.as_text())
        if decision.decision is Decision.REFUSED:
            raise AirflowFailException(f"{decision.as_text()}: clear this task to ask again")
        return super().execute_complete(context, event)

    def _backfill_answer(self, context: Context, request: ApprovalRequest, timeout: timedelta) -> Any:
        """Adopt the answer given to another run of this run's backfill, as if given here (None: none was, or
        the run is not a long backfill's: ask)."""
        from leadsquared_provider.rules.approval import ApprovalDecision, Decision, Reason, backfill_reach
        from leadsquared_provider.steps.plan import RunIdentity
        from leadsquared_provider.store import StateStore, parse_run_key

        run = RunIdentity.from_context(context)
        step = run.step
        if Reason.LONG_BACKFILL not in request.reasons or step is None:
            return None
        neighbours = run.backfill_neighbours(backfill_reach(request.max_days, step.total_seconds() / 86_400))
        if neighbours is None:
            return None
        keys = [RunIdentity(run.dag_id, run_id, run.run_type).key for side in neighbours for run_id in side]
        since = time.time() - timeout.total_seconds()
        with StateStore(self.state_conn_id) as store:
            found = store.latest_answer(keys, since=since)
            if found is None:
                self.log.info("no run of this backfill was answered yet: this run asks")
                return None
            origin, given = found
            note = given.note if given.note.startswith(BACKFILL_NOTE) else BACKFILL_NOTE + parse_run_key(origin).run_id
            decision = ApprovalDecision(given.decision, given.by, given.at, note)
            store.record_decision(run.key, decision)
        self.log.info("approval adopted, not asked again: %s", decision.as_text())
        by = {"id": given.by, "name": given.by} if given.by else None
        event = {
            "chosen_options": [self.APPROVE if given.decision is Decision.APPROVED else self.REJECT],
            "params_input": {},
            "responded_at": datetime.fromtimestamp(given.at or time.time(), UTC),
            "responded_by_user": by,
        }
        return super().execute_complete(context, event)  # as Airflow's answer: approve goes on, else skips

    def _refusal(self, user: dict[str, Any], trigger_user: str | None) -> str | None:
        """Why this approval does not count (None: it does)."""
        names = {str(user.get("name") or ""), str(user.get("id") or "")} - {""}
        if self.four_eyes and trigger_user and trigger_user in names:
            return f"{trigger_user} triggered this run and may not approve it (four_eyes); someone else must"
        if self.approvers and not names & {n for a in self.approvers for n in (a.id, a.name)}:
            return f"{', '.join(sorted(names))} is not one of the account's approvers"
        return None


def _epoch(moment: object) -> float | None:
    if isinstance(moment, datetime):
        return moment.timestamp()
    if isinstance(moment, str):
        return datetime.fromisoformat(moment).timestamp()
    return None


def _leads_url() -> str:
    from airflow.sdk import conf

    from leadsquared_provider.ui import URL_PREFIX

    base = conf.get("api", "base_url", fallback="http://localhost:8080").rstrip("/")
    return f"{base}{URL_PREFIX}/leads"


def _who_may_text(assigned: Sequence[Approver], four_eyes: bool, trigger_user: str | None, timeout: timedelta) -> str:
    who = ", ".join(a.name for a in assigned) if assigned else "anyone who may edit this DAG"
    if four_eyes and trigger_user:
        who += f" (not {trigger_user}, who triggered the run: four eyes)"
    hours = timeout.total_seconds() / 3600
    return f"\n\nWho may answer: {who}. Without an answer in {hours:g} h the run is rejected."
