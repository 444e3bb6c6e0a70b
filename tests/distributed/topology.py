"""The scale-out topology of docker-compose.yaml, defined once for the two tests that use it.

``test_celery_e2e.py`` runs it as processes on this machine (127.0.0.1 and free ports instead of service
names); ``test_compose_file.py`` checks that docker-compose.yaml gives the same settings for its own hosts.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

PROJECT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = PROJECT / "docker-compose.yaml"
ENV_EXAMPLE = PROJECT / ".env.example"
DAG_FILE = PROJECT / "dags" / "leadsquared_reset.py"
ACCOUNTS_FILE = PROJECT / "include" / "leadsquared_accounts.yaml"
POOLS_FILE = "include/pools.json"

EXECUTOR = "CeleryExecutor"
BROKER_REDIS_DB = 0
BUDGET_REDIS_DB = 1  # the account's rate budget, next to the broker on the same Redis
# The DAG's state store (runs, claims, outcomes): its own database on the metadata DB's PostgreSQL server,
# created by airflow-init; the warehouse is only read.
STATE_DB = "leadsquared"
# The long-running Airflow commands of the topology, one service each in docker-compose.yaml.
AIRFLOW_COMMANDS = ("api-server", "scheduler", "dag-processor", "triggerer", "celery worker")
WORKER_HOSTNAMES = ("worker-a", "worker-b")
WORKER_CONCURRENCY = 2


@dataclass(frozen=True)
class Endpoints:
    """Where the services answer: compose's service names, or 127.0.0.1 and free ports in the test."""

    postgres: str  # user[:password]@host[:port]
    metadata_db: str
    redis: str  # host:port
    api: str  # http://host:port of the api-server
    state_db: str = STATE_DB

    @property
    def budget_url(self) -> str:
        return f"redis://{self.redis}/{BUDGET_REDIS_DB}"


def cluster_settings(endpoints: Endpoints) -> dict[str, str]:
    """The Airflow settings every component runs with (compose: x-airflow-common's environment)."""
    pg = f"{endpoints.postgres}/{endpoints.metadata_db}"
    return {
        "AIRFLOW__CORE__EXECUTOR": EXECUTOR,
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://{pg}",
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql://{pg}",
        "AIRFLOW__CELERY__BROKER_URL": f"redis://{endpoints.redis}/{BROKER_REDIS_DB}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{endpoints.api}/execution/",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
    }


def leadsquared_connection(
    endpoints: Endpoints,
    *,
    host: str,
    access_key: str,
    secret_key: str,
    rate_limit: int,
    rate_window_seconds: float,
    rate_margin_seconds: float,
    allow_insecure_http: bool,
) -> dict[str, Any]:
    """The DAG's LeadSquared connection, its rate budget on the topology's Redis. ``allow_insecure_http``: the
    keys may go over plain http to a host that is not loopback (the compose demo's emulator); never for
    LeadSquared itself."""
    return {
        "conn_type": "leadsquared",
        "host": host,
        "login": access_key,
        "password": secret_key,
        "extra": {
            "rate_limit": rate_limit,
            "rate_window_seconds": rate_window_seconds,
            "rate_margin_seconds": rate_margin_seconds,
            "rate_budget_url": endpoints.budget_url,
            "allow_insecure_http": allow_insecure_http,
        },
    }


def state_connection(endpoints: Endpoints) -> dict[str, Any]:
    """The DAG's state store connection: database ``endpoints.state_db`` on the topology's PostgreSQL, as the
    metadata DB's user (every worker machine reaches it; SQLite would be one machine's file)."""
    credentials, _, address = endpoints.postgres.rpartition("@")
    login, has_password, password = credentials.partition(":")
    host, has_port, port = address.partition(":")
    conn: dict[str, Any] = {"conn_type": "postgres", "host": host}
    if has_port:
        conn["port"] = int(port)
    conn["login"] = login
    if has_password:
        conn["password"] = password
    conn["schema"] = endpoints.state_db
    return conn


def worker_command(hostname: str) -> str:
    return f"celery worker --concurrency {WORKER_CONCURRENCY} --celery-hostname {hostname}"


def dag_settings() -> dict[str, str]:
    """The shipped DAG's connection ids and pool (no Airflow import): the warehouse's and the state store's
    from the DAG file's source, the LeadSquared connection and the pool from the accounts file's one account."""
    wanted = {"WAREHOUSE_CONN_ID", "STATE_CONN_ID"}
    found = {}
    for node in ast.parse(DAG_FILE.read_text()).body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1):
            continue
        target = node.targets[0]
        if isinstance(target, ast.Name) and target.id in wanted:
            found[target.id] = ast.literal_eval(node.value)
    assert set(found) == wanted, f"{DAG_FILE} no longer defines {wanted - set(found)}"
    (shipped,) = yaml.safe_load(ACCOUNTS_FILE.read_text())["accounts"]
    return {**found, "LEADSQUARED_CONN_ID": shipped["leadsquared_conn_id"], "POOL": shipped["pool"]}


def pool_names() -> set[str]:
    return set(json.loads((PROJECT / POOLS_FILE).read_text()))
