"""docker-compose.yaml's topology as processes on this machine: PostgreSQL (metadata DB, the DAG's state store
and the warehouse), Redis (Celery broker and rate budget), api-server, scheduler, dag-processor, triggerer and
two Celery workers."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import pytest

from devstack import PROJECT, AirflowStack, StackConfig, free_port, prepare
from lsq_emulator import EmulatorConfig, run_emulator
from tests.conftest import ADMIN_ACCESS, ADMIN_SECRET, lsq_lead
from tests.distributed.topology import (
    AIRFLOW_COMMANDS,
    STATE_DB,
    WORKER_HOSTNAMES,
    Endpoints,
    cluster_settings,
    leadsquared_connection,
    state_connection,
    worker_command,
)
from tests.e2e.conftest import E2E
from tests.e2e.scenario import Scenario
from tests.pg_server import unique_db_name
from tests.redis_server import RedisServer

# A small plan (Pro: 5 calls per 5 s), so that the batches on the two workers contend for the budget; the
# budget's former fixed margin (see tests/e2e/conftest.py: these tests assert that no call is refused).
RATE_LIMIT, RATE_WINDOW_SECONDS, RATE_MARGIN_SECONDS = 5, 5, 0.2


@dataclass
class CeleryE2E(E2E):
    endpoints: Endpoints
    scheduler_health_url: str
    state_dsn: str

    def state(self, sql: str, params: tuple = ()) -> list[tuple]:
        """Query the PostgreSQL state store (every worker's outcomes), not the SQLite file of one machine.

        The shared checks (tests/e2e) write SQLite's ``?`` placeholders: psycopg2's are ``%s``."""
        import psycopg2

        with psycopg2.connect(self.state_dsn) as conn, conn.cursor() as cur:
            cur.execute(sql.replace("%", "%%").replace("?", "%s"), params)
            rows = cur.fetchall() if cur.description else []
        conn.close()
        return rows


def _machine_local_env(health_port: int) -> dict[str, str]:
    """What differs from docker-compose.yaml because every process shares one machine: ports and binds."""
    return {
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST": "127.0.0.1",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(health_port),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
    }


def _worker_env(hostname: str) -> dict[str, str]:
    """Each worker its own log-server port and task-instance hostname, as each container has its own host."""
    return {
        "DEVSTACK_HOSTNAME": hostname,
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "devstack.component_hostname",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "PYTHONPATH": os.pathsep.join(p for p in (str(PROJECT / "include"), os.environ.get("PYTHONPATH")) if p),
    }


@pytest.fixture(scope="module")
def celery_e2e(tmp_path_factory: pytest.TempPathFactory, postgres_server: Any, redis_server: RedisServer):
    import psycopg2

    tmp = tmp_path_factory.mktemp("celery")
    scenario = Scenario()
    metadata_db = postgres_server.create_database(unique_db_name("airflow"))
    # What airflow-init does in compose (test_compose_file.py runs its code): the state store's database.
    state_db = postgres_server.create_database(STATE_DB)
    warehouse_db = postgres_server.create_database(unique_db_name("warehouse"))
    dsn = postgres_server.dsn(warehouse_db)

    def query(sql: str, params: tuple = ()) -> list[tuple]:
        with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
            cur.execute(sql, params)
            rows = cur.fetchall() if cur.description else []
        conn.close()
        return rows

    conn = psycopg2.connect(dsn)
    with conn, conn.cursor() as cur:
        scenario.write_warehouse_rows(lambda sql, rows: cur.executemany(sql, rows) if rows else cur.execute(sql))
    conn.close()

    api_port, health_port = free_port(), free_port()
    endpoints = Endpoints(
        postgres=f"{postgres_server.user}@{postgres_server.host}:{postgres_server.port}",
        metadata_db=metadata_db,
        redis=f"{redis_server.host}:{redis_server.port}",
        api=f"http://127.0.0.1:{api_port}",
        state_db=state_db,
    )
    workers = {worker_command(hostname): _worker_env(hostname) for hostname in WORKER_HOSTNAMES}
    leads = [*scenario.leads, lsq_lead("1e1e1e1e-0000-4000-8000-000000000001")]
    emulator_config = EmulatorConfig(
        rate_limit=RATE_LIMIT, rate_window_seconds=RATE_WINDOW_SECONDS, latency=(0.02, 0.1)
    )
    try:
        with run_emulator(emulator_config, leads=leads) as emu:
            lsq = leadsquared_connection(
                endpoints,
                host=emu.base_url,
                access_key=ADMIN_ACCESS,
                secret_key=ADMIN_SECRET,
                rate_limit=RATE_LIMIT,
                rate_window_seconds=RATE_WINDOW_SECONDS,
                rate_margin_seconds=RATE_MARGIN_SECONDS,
                allow_insecure_http=False,  # the emulator is on 127.0.0.1: http is allowed without it
            )
            stack = AirflowStack(
                StackConfig(
                    home=tmp / "airflow",
                    api_port=api_port,
                    parallelism=8,
                    extra_env={
                        **cluster_settings(endpoints),
                        "AIRFLOW_CONN_LEADSQUARED_DEFAULT": json.dumps(lsq),
                        "AIRFLOW_CONN_WAREHOUSE_DEFAULT": postgres_server.airflow_conn_json(warehouse_db),
                        "AIRFLOW_CONN_LEADSQUARED_STATE": json.dumps(state_connection(endpoints)),
                        **_machine_local_env(health_port),
                    },
                    component_env=workers,
                ),
                components=(*(c for c in AIRFLOW_COMMANDS if c != "celery worker"), *workers),
            )
            prepare(stack.env, {})  # what airflow-init does: migrate, import include/pools.json
            with stack:
                stack.wait_for_dag()
                yield CeleryE2E(
                    stack,
                    emu,
                    scenario,
                    "postgres",
                    query,
                    endpoints,
                    f"http://127.0.0.1:{health_port}/health",
                    postgres_server.dsn(state_db),
                )
    finally:
        postgres_server.drop_database(metadata_db)
        postgres_server.drop_database(state_db)
        postgres_server.drop_database(warehouse_db)
