"""LeadSquaredPlanOperator: plan a run (window, keys, candidates, guards, staged batches), with the candidate
query's lineage."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from leadsquared_provider.settings import DEFAULT_STATE_CONN_ID

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Context


class LeadSquaredPlanOperator(BaseOperator):
    """
    Plan the task's DAG run (:func:`~leadsquared_provider.steps.plan.plan_step`) and return its batch numbers.

    OpenLineage: the event of this task names as inputs the tables the candidate query read, parsed from the
    query as rendered for the run, in the warehouse connection's namespace (as common-sql's
    ``SQLExecuteQueryOperator`` does), on success and on failure. A run of the ``lead_ids`` param reads none.

    :param candidate_query: the candidate query's template on the DAG's ``template_searchpath``.
    :param warehouse_conn_id: any common-sql connection, only read.
    :param leadsquared_conn_id: LeadSquared connection.
    :param state_conn_id: the state store's connection (sqlite or postgres).
    :param query_name: the query as messages name it (default: ``candidate_query``).
    """

    template_fields: Sequence[str] = ("warehouse_conn_id", "leadsquared_conn_id", "state_conn_id")
    ui_color = "#e2ecfd"

    def __init__(
        self,
        *,
        candidate_query: str,
        warehouse_conn_id: str,
        leadsquared_conn_id: str = "leadsquared_default",
        state_conn_id: str = DEFAULT_STATE_CONN_ID,
        query_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.candidate_query = candidate_query
        self.warehouse_conn_id = warehouse_conn_id
        self.leadsquared_conn_id = leadsquared_conn_id
        self.state_conn_id = state_conn_id
        self.query_name = query_name
        self.candidate_sql: str | None = None  # as the warehouse ran it, once executed

    def execute(self, context: Context) -> list[int]:
        from leadsquared_provider.steps.plan import plan_step

        def ran(sql: str) -> None:
            self.candidate_sql = sql

        return plan_step(
            context,
            candidate_query=self.candidate_query,
            query_name=self.query_name,
            warehouse_conn_id=self.warehouse_conn_id,
            leadsquared_conn_id=self.leadsquared_conn_id,
            state_conn_id=self.state_conn_id,
            rendered=ran,
        )

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage[Any, Any]:
        """The candidate query's input tables and SQL (none when the run read no query)."""
        from airflow.providers.openlineage.extractors import OperatorLineage

        from leadsquared_provider.lineage.datasets import query_lineage

        if not self.candidate_sql:
            return OperatorLineage()
        return query_lineage(self.warehouse_conn_id, self.candidate_sql)

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> OperatorLineage[Any, Any]:
        """As on success: a refused plan may have read the query before a guard stopped it."""
        return self.get_openlineage_facets_on_complete(task_instance)
