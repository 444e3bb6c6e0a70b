"""AirflowStack: the api-server, scheduler and dag-processor (or any components) as child processes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Mapping
from typing import Any

import requests

from devstack.config import DAG_ID, VENV_BIN, StackConfig, airflow_env
from devstack.processes import airflow_cli, stop_process
from devstack.rest import RestClient


class AirflowStack(RestClient):
    """api-server + scheduler + dag-processor as child processes; logs under ``$AIRFLOW_HOME/stack-logs``.

    ``components`` are ``airflow`` commands, e.g. ``("api-server", "scheduler", "dag-processor", "triggerer",
    "celery worker --concurrency 2 --celery-hostname w1")`` for a CeleryExecutor topology (its settings in
    ``StackConfig.extra_env``, per-process ones in ``StackConfig.component_env``).
    """

    COMPONENTS = ("api-server", "scheduler", "dag-processor")

    def __init__(self, config: StackConfig, components: tuple[str, ...] = COMPONENTS) -> None:
        super().__init__(config)
        self.env = airflow_env(config)
        self.components = components
        self.procs: dict[str, subprocess.Popen] = {}

    def start_component(self, name: str) -> None:
        """Start one component (``airflow NAME``); its output goes to ``stack-logs/``."""
        logs = self.config.home / "stack-logs"
        logs.mkdir(parents=True, exist_ok=True)
        out = open(logs / f"{self.log_name(name)}.log", "ab")  # noqa: SIM115 - kept open for the child's lifetime
        self.procs[name] = subprocess.Popen(
            [str(VENV_BIN / "airflow"), *name.split()],
            env={**self.env, **self.config.component_env.get(name, {})},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop_component(self, name: str) -> None:
        stop_process(self.procs.pop(name), timeout=30)

    def start(self, timeout: float = 180) -> AirflowStack:
        logs = self.config.home / "stack-logs"
        for name in self.components:
            self.start_component(name)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                if requests.get(f"{self.config.api_url}/api/v2/monitor/health", timeout=2).ok:
                    return self
            except requests.RequestException:
                pass
            time.sleep(1)
        raise TimeoutError(f"the api-server did not answer within {timeout} s; see {logs}")

    @staticmethod
    def log_name(component: str) -> str:
        """Its log's name under stack-logs/: ``celery worker --concurrency 2`` -> ``celery-worker-concurrency-2``."""
        return re.sub(r"[^A-Za-z0-9_.]+", "-", component).strip("-")

    def _check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(
                    f"airflow {name} exited with {proc.returncode}; see stack-logs/{self.log_name(name)}.log"
                )

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.procs.clear()

    def __enter__(self) -> AirflowStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_for_dag(self, dag_id: str = DAG_ID, timeout: float = 180) -> None:
        """Wait until the dag-processor has parsed the DAG, then unpause it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                self.api("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
                return
            except RuntimeError:
                time.sleep(2)
        raise TimeoutError(f"DAG {dag_id} was not parsed within {timeout} s")

    def wait_for_run(self, run_id: str, dag_id: str = DAG_ID, timeout: float = 900) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            state = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")["state"]
            if state in ("success", "failed"):
                return state
            time.sleep(2)
        raise TimeoutError(f"run {run_id} did not finish within {timeout} s")

    def create_backfill(
        self,
        from_date: str,
        to_date: str,
        max_active_runs: int,
        dag_id: str = DAG_ID,
        conf: Mapping[str, Any] | None = None,
    ) -> None:
        """``airflow backfill create`` for the DAG (``conf``: every run's params, ``--dag-run-conf``). On an
        SQLite metadata DB another writer (scheduler, dag-processor) can make it fail half-way with "database
        is locked" (PostgreSQL does not need this): they pause while the backfill is created, which is
        retried if need be."""
        paused = [name for name in ("scheduler", "dag-processor") if name in self.procs]
        if self.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("sqlite"):
            for name in paused:
                self.stop_component(name)
        else:
            paused = []
        args = ("backfill", "create", "--dag-id", dag_id, "--from-date", from_date, "--to-date", to_date)
        if conf:
            args = (*args, "--dag-run-conf", json.dumps(dict(conf)))
        try:
            for attempt in range(5):
                try:
                    airflow_cli(self.env, *args, "--max-active-runs", str(max_active_runs))
                    return
                except RuntimeError as exc:
                    if "database is locked" not in str(exc) or attempt == 4:
                        raise
                    time.sleep(2)
        finally:
            for name in reversed(paused):
                self.start_component(name)
