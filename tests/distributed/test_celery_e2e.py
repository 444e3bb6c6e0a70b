"""The DAG on CeleryExecutor with PostgreSQL and Redis: docker-compose.yaml's topology as processes here.

Two Celery workers (concurrency 2 each) share the account's rate budget through Redis and the DAG's state
store (connection leadsquared_state) on PostgreSQL; the checks are the local end-to-end test's
(tests/e2e/checks.py, its audit read from that state store), against a PostgreSQL warehouse that is only read.
"""

from __future__ import annotations

import bisect
import json
import subprocess
import time
from collections import Counter

import pytest
import requests

from devstack import VENV_BIN, airflow_cli, state_db
from tests.distributed.conftest import RATE_LIMIT, RATE_WINDOW_SECONDS
from tests.distributed.topology import WORKER_HOSTNAMES
from tests.e2e.checks import check_day_run
from tests.e2e.scenario import DAYS, INVALID_IDS, MISSING_LEAD, iso_window, utc_window

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(600)]

CELERY_APP = "airflow.providers.celery.executors.celery_executor.app"
# Every run's conf: batches of 2, so both workers get some.
RUN_CONF = {"batch_size": 2}


def busiest_window(calls: list[dict], seconds: float) -> int:
    """The most calls the emulator received in any span ``[t, t + seconds)``."""
    times = sorted(call["time"] for call in calls)
    return max((bisect.bisect_left(times, t + seconds) - i for i, t in enumerate(times)), default=0)


def test_every_component_passes_its_compose_health_check(celery_e2e):
    """The checks docker-compose.yaml runs, against the processes (``--local`` for the container's host)."""
    env = celery_e2e.stack.env
    destinations = ",".join(f"celery@{hostname}" for hostname in WORKER_HOSTNAMES)
    checks = {
        "dag-processor": [str(VENV_BIN / "airflow"), "jobs", "check", "--job-type", "DagProcessorJob", "--local"],
        "triggerer": [str(VENV_BIN / "airflow"), "jobs", "check", "--job-type", "TriggererJob", "--local"],
        "workers": [str(VENV_BIN / "celery"), "--app", CELERY_APP, "inspect", "ping", "-d", destinations],
    }
    procs = {
        name: subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for name, cmd in checks.items()
    }
    assert requests.get(f"{celery_e2e.stack.config.api_url}/api/v2/monitor/health", timeout=10).ok
    assert requests.get(celery_e2e.scheduler_health_url, timeout=10).ok
    for name, proc in procs.items():
        output, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"{name}: {output[-2000:]}"
    assert all(f"celery@{hostname}: OK" in output for hostname in WORKER_HOSTNAMES), output


def test_triggered_run_on_celery_workers_matches_the_emulator(celery_e2e):
    e2e = celery_e2e
    day = DAYS[1]  # the day with junk ids and a deleted lead
    frm, to = iso_window(day)
    e2e.emulator.clear_calls()

    run_id = e2e.stack.trigger({"from_date": frm, "to_date": to, **RUN_CONF}, run_id=f"celery__{time.time_ns()}")
    assert e2e.stack.wait_for_run(run_id, timeout=300) == "success"

    check_day_run(e2e, run_id, day, e2e.reset_calls())
    assert sum(e2e.emulator.stats()["rate_limited"].values()) == 0
    tis = e2e.stack.task_instances(run_id)
    assert len([ti for ti in tis if ti["task_id"] == "reset_batch.reset"]) == 5  # 9 valid candidates, 2 a batch
    assert {ti["state"] for ti in tis} == {"success"}
    assert {ti["hostname"] for ti in tis} <= set(WORKER_HOSTNAMES)  # every task ran on a Celery worker


def test_backfill_spreads_batches_over_both_workers_within_the_rate_limit(celery_e2e):
    import redis

    from leadsquared_provider.rate_budget import account_tag
    from tests.conftest import ADMIN_ACCESS

    e2e = celery_e2e
    e2e.emulator.clear_calls()
    budget = redis.Redis.from_url(e2e.endpoints.budget_url)
    budget_keys: set[bytes] = set()

    airflow_cli(
        e2e.stack.env,
        "backfill",
        "create",
        "--dag-id",
        "leadsquared_reset",
        "--from-date",
        "2026-11-21T00:00:00+05:30",
        "--to-date",
        "2026-11-23T00:00:00+05:30",
        "--max-active-runs",
        "3",
        "--dag-run-conf",
        json.dumps(RUN_CONF),
    )
    runs: list[dict] = []
    deadline = time.monotonic() + 360
    while time.monotonic() < deadline:
        budget_keys |= set(budget.keys("leadsquared_budget:*"))  # the log of calls lives in Redis while in use
        runs = e2e.stack.api("GET", "/dags/leadsquared_reset/dagRuns", params={"run_type": "backfill"})["dag_runs"]
        if len(runs) == 3 and all(r["state"] in ("success", "failed") for r in runs):
            break
        time.sleep(2)
    assert sorted(r["state"] for r in runs) == ["success"] * 3

    calls = e2e.reset_calls()
    # DAYS[1] was reset by the triggered run above (same window, same categories): nothing is sent again.
    assert {(c["body"]["FromDate"], c["body"]["ToDate"]) for c in calls} == {utc_window(DAYS[0]), utc_window(DAYS[2])}
    for run in runs:
        day = next(d for d in DAYS if run["data_interval_start"].startswith(utc_window(d)[0][:10]))
        day_calls = [c for c in calls if (c["body"]["FromDate"], c["body"]["ToDate"]) == utc_window(day)]
        if day == DAYS[1]:
            assert day_calls == []
        else:
            check_day_run(e2e, run["dag_run_id"], day, day_calls)

    # Both workers took reset batches, and together they kept the account's limit: no call was refused.
    tis = [ti for run in runs for ti in e2e.stack.task_instances(run["dag_run_id"])]
    resets = [ti for ti in tis if ti["task_id"] == "reset_batch.reset"]
    assert {ti["hostname"] for ti in resets} == set(WORKER_HOSTNAMES)
    assert sum(e2e.emulator.stats()["rate_limited"].values()) == 0
    # The workers wanted more than the plan allows, and no 5-s span held more than the limit (as the API counts).
    assert busiest_window(e2e.emulator.calls(), RATE_WINDOW_SECONDS) == RATE_LIMIT
    # One budget, the account's (its OrgId's tag), in the topology's Redis; the keys' own tag only paid for
    # the plans' UserByAccessKey.Get, which is how they learnt the account.
    org = next(a.org for a in e2e.emulator.config.accounts if a.access_key == ADMIN_ACCESS)
    tags = {key.decode().split(":")[1] for key in budget_keys}
    assert account_tag(org) in tags and tags <= {account_tag(org), account_tag(ADMIN_ACCESS)}


def test_outcomes_are_in_the_postgres_state_store_and_the_warehouse_is_only_read(celery_e2e):
    """After the runs above: every run and every lead's outcome is in the PostgreSQL state store, the queued
    leads are exactly the resets the emulator accepted (each lead sent once), and the warehouse holds only
    its candidate table."""
    e2e = celery_e2e
    runs = e2e.stack.api("GET", "/dags/leadsquared_reset/dagRuns")["dag_runs"]
    assert len(runs) == 4, "runs after the triggered run and the backfill above"  # 1 triggered + 3 backfill
    planned = {row[0] for row in e2e.state("SELECT run_id FROM leadsquared_reset_runs")}
    assert planned == {run["dag_run_id"] for run in runs}

    queued = e2e.state(
        "SELECT lead_id, from_date, to_date, attempts, sends FROM leadsquared_reset_audit WHERE outcome = ?",
        ("queued",),
    )
    accepted = e2e.emulator.resets()
    assert accepted, "the runs above queued resets"
    assert Counter(row[0] for row in queued) == Counter(reset["lead_id"] for reset in accepted)
    assert all(row[3:] == (1, 1) for row in queued), queued  # each lead sent once, at its first attempt
    assert len({row[:3] for row in queued}) == len(queued)  # one queued outcome per lead and window
    rejected = e2e.state("SELECT lead_id, exception_type FROM leadsquared_reset_audit WHERE outcome = ?", ("rejected",))
    assert {lead for lead, _ in rejected} == {*INVALID_IDS, MISSING_LEAD}  # DAYS[1]'s junk ids and deleted lead
    audited = {row[0] for row in e2e.state("SELECT DISTINCT run_key FROM leadsquared_reset_audit")}
    assert audited == {f"leadsquared_reset/{run['dag_run_id']}" for run in runs}  # every run's outcomes

    # Nothing of ours anywhere else: not in the warehouse, not in an SQLite file of one machine.
    warehouse_tables = e2e.query(
        "SELECT schemaname, tablename FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
    )
    assert warehouse_tables == [("public", "lsq_reset_requests")]
    assert not state_db(e2e.stack.config.home).exists()
