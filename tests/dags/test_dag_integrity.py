"""Every DAG imports cleanly, with no connections and no network, and follows the house rules."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


def test_dags_import_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert "leadsquared_reset" in dagbag.dags


def test_dags_have_tags_owner_retries_and_docs(dagbag):
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, dag_id
        assert dag.doc_md, dag_id
        for task in dag.tasks:
            assert task.retries is not None and task.retries >= 1, task.task_id
            assert task.owner != "airflow", task.task_id


def test_reset_dag_shape(dagbag):
    dag = dagbag.dags["leadsquared_reset"]
    tasks = {t.task_id: t for t in dag.tasks}
    assert set(tasks) == {"plan", "approve", "reset_batch.reset", "reset_batch.check", "verify", "report"}
    assert tasks["reset_batch.reset"].pool == "leadsquared_api"
    # The approval gate sits between the plan and the batches (Airflow's HITL ApprovalOperator).
    approve = tasks["approve"]
    assert type(approve).__mro__[1].__name__ == "ApprovalOperator"
    assert approve.upstream_task_ids == {"plan"} and approve.downstream_task_ids == {"reset_batch.reset"}
    assert approve.defaults == ["Reject"]  # no answer in time: rejected
    assert tasks["report"].trigger_rule == "all_done"
    # verify runs after every batch, failed ones too, and waits between pokes without a worker slot.
    verify = tasks["verify"]
    assert verify.upstream_task_ids == {"reset_batch.check"} and verify.downstream_task_ids == {"report"}
    assert (verify.trigger_rule, verify.mode, verify.poke_interval) == ("all_done", "reschedule", 60)
    assert verify.pool == "default_pool"  # not in the batches' pool: it never waits behind them
    assert {"verify_sample", "verify_delay_seconds", "max_still_present"} <= set(dag.params)
    assert (dag.params["verify_sample"], dag.params["verify_delay_seconds"], dag.params["max_still_present"]) == (
        20,
        300,
        0,
    )
    assert tasks["reset_batch.reset"].map_index_template == "{{ batch_label }}"
    # Real data intervals (a plain cron string would give zero-length ones in Airflow 3).
    assert type(dag.timetable).__name__ == "CronDataIntervalTimetable"


def test_dag_parses_with_no_connections_and_no_network(tmp_path):
    """Parse the DAG file in a clean process: no AIRFLOW_CONN_*, proxies pointing nowhere."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
    env.update(
        {
            "HTTP_PROXY": "http://127.0.0.1:9",
            "HTTPS_PROXY": "http://127.0.0.1:9",
            "AIRFLOW_HOME": str(tmp_path),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        }
    )
    code = (
        "import time, runpy; t=time.perf_counter(); "
        f"runpy.run_path({str(DAGS / 'leadsquared_reset.py')!r}); print(time.perf_counter()-t)"
    )
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert time.perf_counter() - started < 120


def test_pools_file_declares_every_pool_the_dags_use(dagbag):
    """A task whose pool does not exist is silently never scheduled: the set-up's pools file must cover them."""
    import json

    declared = set(json.loads((DAGS.parent / "include" / "pools.json").read_text()))
    used = {task.pool for dag in dagbag.dags.values() for task in dag.tasks} - {"default_pool"}
    assert used and used <= declared
