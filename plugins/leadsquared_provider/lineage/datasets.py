"""The datasets of a run's OpenLineage events: the tables the candidate query reads (parsed from the rendered
SQL with the warehouse connection's namespace, as common-sql's operators do) and the account's leads."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from openlineage.client.event_v2 import OutputDataset

    from leadsquared_provider.rules.run_signals import RunSignals

log = logging.getLogger(__name__)

LEADS_DATASET = "leads"


def account_namespace(host: str) -> str:
    """The account's OpenLineage namespace: ``leadsquared://<API host>`` (no scheme, path, key or port 443)."""
    return f"leadsquared://{host}"


def query_lineage(warehouse_conn_id: str, sql: str) -> OperatorLineage[Any, Any]:
    """The candidate query's lineage: its input tables in the warehouse connection's namespace and its SQL job
    facet, from common-sql's parser (``SQLParser``) and the hook's ``get_openlineage_database_info``. No query
    is sent to the warehouse for it (no schema lookup). Empty for a hook that gives no database info."""
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.providers.openlineage.sqlparser import SQLParser
    from airflow.sdk import BaseHook

    hook = BaseHook.get_hook(warehouse_conn_id)
    connection = hook.get_connection(warehouse_conn_id)
    database_info = getattr(hook, "get_openlineage_database_info", lambda _conn: None)(connection)
    if database_info is None:
        log.info("OpenLineage: connection %r's hook names no database namespace: no input dataset", warehouse_conn_id)
        return OperatorLineage()
    parser = SQLParser(
        dialect=hook.get_openlineage_database_dialect(connection),
        default_schema=hook.get_openlineage_default_schema(),
    )
    return parser.generate_openlineage_metadata_from_sql(
        sql=sql, hook=hook, database_info=database_info, use_connection=False
    )


def leads_output(host: str, signals: RunSignals) -> OutputDataset:
    """The account's leads as the run's output, with the leads it queued as the output's row count."""
    from openlineage.client.event_v2 import OutputDataset
    from openlineage.client.facet_v2 import output_statistics_output_dataset

    from leadsquared_provider.rules.outcomes import Outcome

    return OutputDataset(
        namespace=account_namespace(host),
        name=LEADS_DATASET,
        outputFacets={
            "outputStatistics": output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
                rowCount=signals.count(Outcome.QUEUED)
            )
        },
    )
