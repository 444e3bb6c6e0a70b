"""LeadSquaredVerifySensor: wait until a sample of the run's queued leads is read back as reset."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue

from leadsquared_provider.rules.params import MAX_VERIFY_DELAY_SECONDS, POKE_INTERVAL_SECONDS
from leadsquared_provider.settings import DEFAULT_STATE_CONN_ID

if TYPE_CHECKING:
    from airflow.sdk import Context


class LeadSquaredVerifySensor(BaseSensorOperator):
    """
    Read back a sample of the DAG run's queued leads until they are verified or the delay is over.

    Each poke is :func:`~leadsquared_provider.steps.verify.verify_run` for the task's DAG run, with the params
    ``verify_sample``, ``verify_delay_seconds`` and ``max_still_present``: it reads what is not settled yet and
    records each lead's check in the state store. Done, the sensor pushes the verification's counts (or why
    nothing was verified) as its XCom, which the report reads to know that verification finished. It never
    fails the run on what it read: the report judges.

    By default it waits in ``reschedule`` mode (no worker slot between pokes, no triggerer), pokes every
    minute, and runs after failed batches too (``trigger_rule="all_done"``): their queued leads are verified
    all the same.

    :param leadsquared_conn_id: LeadSquared connection (the run's account, as the plan recorded it).
    :param state_conn_id: the state store's connection (sqlite or postgres).
    """

    template_fields: Sequence[str] = ("leadsquared_conn_id", "state_conn_id")
    ui_color = "#e2ecfd"

    def __init__(
        self,
        *,
        leadsquared_conn_id: str = "leadsquared_default",
        state_conn_id: str = DEFAULT_STATE_CONN_ID,
        mode: str = "reschedule",
        poke_interval: timedelta | float = POKE_INTERVAL_SECONDS,
        timeout: timedelta | float | None = MAX_VERIFY_DELAY_SECONDS + 3600,
        trigger_rule: str = "all_done",
        **kwargs: Any,
    ) -> None:
        super().__init__(mode=mode, poke_interval=poke_interval, timeout=timeout, trigger_rule=trigger_rule, **kwargs)
        self.leadsquared_conn_id = leadsquared_conn_id
        self.state_conn_id = state_conn_id

    def poke(self, context: Context) -> PokeReturnValue:
        """One round of reads; done when nothing sampled still waits for LeadSquared, or the delay is over.

        :raises AirflowFailException: a verify param is out of its bounds (the message names it).
        """
        from airflow.sdk.exceptions import AirflowFailException

        from leadsquared_provider.exceptions import LeadSquaredError
        from leadsquared_provider.hooks.leadsquared import LeadSquaredHook
        from leadsquared_provider.rules.params import VerifyParams
        from leadsquared_provider.steps.plan import RunIdentity
        from leadsquared_provider.steps.verify import verify_run
        from leadsquared_provider.store import StateStore

        key = RunIdentity.from_context(context).key
        try:
            params = VerifyParams.from_params(context["params"])
        except LeadSquaredError as refused:
            raise AirflowFailException(str(refused)) from refused
        with StateStore(self.state_conn_id) as store:
            step = verify_run(
                store,
                key,
                params,
                hook_factory=lambda: LeadSquaredHook(
                    leadsquared_conn_id=self.leadsquared_conn_id, account=store.load_run(key).account
                ),
            )
        self.log.info("verification: %s", step.status)
        return PokeReturnValue(is_done=step.done, xcom_value=step.status if step.done else None)
