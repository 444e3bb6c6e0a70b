"""LeadSquaredReportOperator: a run's summary and verdict, and what the run tells the data platform: its
OpenLineage output and facets, its asset event and its metrics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from leadsquared_provider.lineage.assets import resets_alias
from leadsquared_provider.settings import DEFAULT_STATE_CONN_ID

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Context

    from leadsquared_provider.rules.run_signals import RunSignals


class LeadSquaredReportOperator(BaseOperator):
    """
    Report the task's DAG run (:func:`~leadsquared_provider.steps.report.report_step`): the summary as XCom,
    then the verdict that fails a bad run.

    Then, unless the run was a dry run:

    - the asset event: ``leadsquared://<API host>/resets`` (:func:`~leadsquared_provider.lineage.assets.resets_asset`),
      through the outlet :func:`~leadsquared_provider.lineage.assets.resets_alias`, with extra ``{window, queued,
      rejected, failed, verified, still_present}`` (only when the task succeeds: Airflow keeps no event of a
      failed task);
    - OpenLineage: the output dataset ``leadsquared://<API host>`` / ``leads`` and the run facet
      ``leadsquaredReset`` (:mod:`~leadsquared_provider.lineage.facets`), on success and on failure;

    and the metrics :data:`~leadsquared_provider.metrics.LEADS` and
    :data:`~leadsquared_provider.metrics.VERIFICATION` (a dry run's ``dry_run`` leads too). No key, no lead id.

    :param leadsquared_conn_id: LeadSquared connection (its host names the account's dataset and asset).
    :param warehouse_conn_id: where the audit is exported when the param ``audit_export_table`` names a table.
    :param state_conn_id: the state store's connection (sqlite or postgres).
    :param verify_task_id: the run's verify task (None: the DAG verifies nothing).
    """

    template_fields: Sequence[str] = ("warehouse_conn_id", "state_conn_id")
    ui_color = "#e4f5e1"

    def __init__(
        self,
        *,
        leadsquared_conn_id: str = "leadsquared_default",
        warehouse_conn_id: str,
        state_conn_id: str = DEFAULT_STATE_CONN_ID,
        verify_task_id: str | None = "verify",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.leadsquared_conn_id = leadsquared_conn_id
        self.warehouse_conn_id = warehouse_conn_id
        self.state_conn_id = state_conn_id
        self.verify_task_id = verify_task_id
        self.outlets = [*self.outlets, resets_alias(leadsquared_conn_id)]
        self.signals: RunSignals | None = None  # the run's totals, once reported

    def execute(self, context: Context) -> dict[str, Any]:
        from leadsquared_provider.steps.report import report_step

        try:
            summary = report_step(
                context,
                leadsquared_conn_id=self.leadsquared_conn_id,
                warehouse_conn_id=self.warehouse_conn_id,
                state_conn_id=self.state_conn_id,
                verify_task_id=self.verify_task_id,
            )
        except Exception:
            # The summary is pushed before the verdict: a failed run is counted and traced as well.
            self._signal(context, context["ti"].xcom_pull(task_ids=self.task_id), succeeded=False)
            raise
        self._signal(context, summary, succeeded=True)
        return summary

    def _signal(self, context: Context, summary: dict[str, Any] | None, *, succeeded: bool) -> None:
        from leadsquared_provider import metrics
        from leadsquared_provider.rules.run_signals import RunSignals

        if not summary:
            return
        signals = self.signals = RunSignals.from_summary(self.dag_id, summary)
        for outcome, leads in signals.counts.items():
            metrics.count(metrics.LEADS, leads, outcome=outcome)
        for result, leads in signals.verification.items():
            if result != "sampled":
                metrics.count(metrics.VERIFICATION, leads, result=result)
        if signals.effective_rate is not None:
            metrics.gauge(metrics.EFFECTIVE_RATE, signals.effective_rate)
        if succeeded and not signals.dry_run:
            from leadsquared_provider.lineage.assets import resets_asset

            asset = resets_asset(self._host())
            context["outlet_events"][resets_alias(self.leadsquared_conn_id)].add(asset, extra=signals.asset_extra())
            self.log.info("asset event %s: %s", asset.uri, signals.asset_extra())

    def _host(self) -> str:
        """The account's API host (read from the connection: no call)."""
        from leadsquared_provider.hooks.leadsquared import LeadSquaredHook

        return LeadSquaredHook(leadsquared_conn_id=self.leadsquared_conn_id).api_host

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage[Any, Any]:
        """The account's leads as output, and the run facet with the run's totals (nothing for a dry run)."""
        from airflow.providers.openlineage.extractors import OperatorLineage

        from leadsquared_provider.lineage.datasets import leads_output
        from leadsquared_provider.lineage.facets import FACET_NAME, LeadSquaredResetRunFacet

        signals = self.signals
        if signals is None or signals.dry_run:
            return OperatorLineage()
        return OperatorLineage(
            outputs=[leads_output(self._host(), signals)],
            run_facets={FACET_NAME: LeadSquaredResetRunFacet.of(signals)},
        )

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> OperatorLineage[Any, Any]:
        """As on success: the summary was pushed before the verdict failed the run."""
        return self.get_openlineage_facets_on_complete(task_instance)
