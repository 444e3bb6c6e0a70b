"""A DAG of the platform-signals test (tests/e2e/test_platform_signals.py): scheduled on the account's resets
asset, it returns the extra of the event that triggered it.

A user's DAG names its host: ``Asset("leadsquared://api-in21.leadsquared.com/resets")``. The test's emulator
port is only known when the stack starts, so this one reads it from the stack's LeadSquared connection.
"""

from __future__ import annotations

import json
import os
from urllib.parse import urlsplit

import pendulum
from airflow.sdk import Asset, dag, get_current_context, task

HOST = urlsplit(
    json.loads(os.environ.get("AIRFLOW_CONN_LEADSQUARED_DEFAULT", '{"host": "http://unset"}'))["host"]
).netloc
RESETS = Asset(f"leadsquared://{HOST}/resets")


@dag(
    dag_id="leadsquared_resets_downstream",
    schedule=[RESETS],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["leadsquared", "test"],
    default_args={"owner": "data-engineering", "retries": 1},
)
def leadsquared_resets_downstream():
    @task
    def read_counts() -> dict:
        """The counts of the reset run that triggered this run."""
        events = get_current_context()["triggering_asset_events"][RESETS]
        return dict(events[-1].extra)

    read_counts()


leadsquared_resets_downstream()
