"""
### Naive LeadSquared reset (benchmark only)

The design the product replaces, kept for the benchmark's comparison (``bench/run.py``, scenario 4): one
mapped ``HttpOperator`` task per lead, in the same `leadsquared_api` pool, keys sent as headers from the
http connection `leadsquared_http`'s extras. No client-side rate budget, no ledger: a refused call fails
its task, which Airflow retries.

Not in `dags/`: the bench links it into its own Airflow's dags folder next to the product's DAG.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.providers.http.operators.http import HttpOperator
from airflow.sdk import Param, dag, get_current_context, task

POOL = "leadsquared_api"
FMT = "%Y-%m-%d %H:%M:%S"


@dag(
    dag_id="naive_http_reset",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    doc_md=__doc__,
    tags=["leadsquared", "bench"],
    default_args={"owner": "data-engineering", "retries": 3, "retry_delay": timedelta(seconds=5)},
    params={
        "lead_ids": Param([], type="array", items={"type": "string"}),
        "from_date": Param(None, type=["null", "string"]),
        "to_date": Param(None, type=["null", "string"]),
    },
)
def naive_http_reset():
    @task
    def bodies() -> list[str]:
        """One Lead.Reset body per lead (the default categories of the product's DAG)."""
        import json

        params = get_current_context()["params"]
        window = {
            "FromDate": pendulum.parse(params["from_date"]).in_tz("UTC").strftime(FMT),
            "ToDate": pendulum.parse(params["to_date"]).in_tz("UTC").strftime(FMT),
        }
        return [
            json.dumps(
                {
                    "ProspectId": lead_id,
                    "ActivityEventList": [166, 167],
                    "AuditActivityList": ["OwnerChange", "StageChange"],
                    **window,
                }
            )
            for lead_id in params["lead_ids"]
        ]

    HttpOperator.partial(
        task_id="reset",
        http_conn_id="leadsquared_http",
        endpoint="/v2/LeadManagement.svc/Lead.Reset",
        method="POST",
        headers={"Content-Type": "application/json", "Accept": "application/json"},
        pool=POOL,
    ).expand(data=bodies())


naive_http_reset()
