"""A real, project-local Airflow (api-server, scheduler, dag-processor; LocalExecutor) plus the emulator.

Used by ``make run`` (the demo), ``make airflow`` (the UI on the demo set-up), the end-to-end tests and
the benchmarks, so that all of them run the DAG the same way: under the real scheduler, through the real
REST API, against the emulator over real HTTP.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

PROJECT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
DAG_ID = "leadsquared_reset"
ADMIN_USER = "admin"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class StackConfig:
    """Where the stack lives and how it is sized."""

    home: Path
    api_port: int = 8080
    parallelism: int = 8
    extra_env: dict[str, str] = field(default_factory=dict)
    # Per component (the command as given to AirflowStack, e.g. "celery worker --celery-hostname w1"): env
    # applied on top of the stack's, for what must differ between processes on one machine (ports, hostname).
    component_env: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"


def _secret(home: Path, name: str) -> str:
    path = home / name
    if not path.exists():
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


def component_hostname() -> str:
    """A ``[core] hostname_callable``: ``$DEVSTACK_HOSTNAME``, else the FQDN (Airflow's default).

    Several Celery workers on one machine would all record the same task-instance hostname; each gets its own
    name this way, as each container of docker-compose.yaml has its own host name.
    """
    return os.environ.get("DEVSTACK_HOSTNAME") or socket.getfqdn()


def admin_password(home: Path) -> str:
    """The UI/REST login's password, generated once per Airflow home (printed by ``make airflow``)."""
    passwords = home / "passwords.json"
    if not passwords.exists():
        passwords.write_text(json.dumps({ADMIN_USER: secrets.token_urlsafe(12)}))
        passwords.chmod(0o600)
    return json.loads(passwords.read_text())[ADMIN_USER]


def state_db(home: Path) -> Path:
    """The stack's SQLite state store (connection ``leadsquared_state``)."""
    return home / "leadsquared_state.db"


def airflow_env(config: StackConfig) -> dict[str, str]:
    """The environment every Airflow component of the stack runs with."""
    home = config.home
    home.mkdir(parents=True, exist_ok=True)
    admin_password(home)
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": str(config.parallelism),
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": str(config.parallelism * 2),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{config.api_url}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "PYTHONPATH": os.pathsep.join(
            [str(PROJECT / "include"), str(PROJECT / "plugins"), *filter(None, [os.environ.get("PYTHONPATH")])]
        ),
        "AIRFLOW__API__BASE_URL": config.api_url,
        "AIRFLOW__API__PORT": str(config.api_port),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API_AUTH__JWT_SECRET": _secret(home, "jwt_secret"),
        "AIRFLOW__API__SECRET_KEY": _secret(home, "api_secret_key"),
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        "PYTHONUNBUFFERED": "1",
    }
    env.update(config.extra_env)
    # Our own state store (runs, claims, outcomes): an SQLite file in the Airflow home, unless set.
    env.setdefault("AIRFLOW_CONN_LEADSQUARED_STATE", json.dumps({"conn_type": "sqlite", "host": str(state_db(home))}))
    if env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("sqlite"):
        env.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS", "devstack.sqlite_connect_args.CONNECT_ARGS")
    return env


def airflow_cli(env: Mapping[str, str], *args: str, check: bool = True, timeout: float = 300) -> str:
    """Run ``airflow ARGS`` with the stack's environment; return its stdout."""
    proc = subprocess.run(
        [str(VENV_BIN / "airflow"), *args], env=dict(env), capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise RuntimeError(f"airflow {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def prepare(env: Mapping[str, str], connections: Mapping[str, Mapping[str, Any]]) -> None:
    """Migrate the metadata DB, import every account's pool and the connections (from a file, overwriting)."""
    from leadsquared_provider.accounts import accounts_file, load_accounts, write_pools_file

    home = Path(env["AIRFLOW_HOME"])
    airflow_cli(env, "db", "migrate")
    # The pools of the accounts file the DAG file reads (include/leadsquared_accounts.yaml, or
    # $LEADSQUARED_ACCOUNTS_FILE): a task in a pool that does not exist is never scheduled.
    pools = write_pools_file(load_accounts(accounts_file(PROJECT, env)), home / "pools.json")
    airflow_cli(env, "pools", "import", str(pools))
    if not connections:
        return
    conn_file = home / "connections.json"
    conn_file.write_text(json.dumps(connections, indent=1))
    conn_file.chmod(0o600)
    airflow_cli(env, "connections", "import", "--overwrite", str(conn_file))


class AirflowStack:
    """api-server + scheduler + dag-processor as child processes; logs under ``$AIRFLOW_HOME/stack-logs``.

    ``components`` are ``airflow`` commands, e.g. ``("api-server", "scheduler", "dag-processor", "triggerer",
    "celery worker --concurrency 2 --celery-hostname w1")`` for a CeleryExecutor topology (its settings in
    ``StackConfig.extra_env``, per-process ones in ``StackConfig.component_env``).
    """

    COMPONENTS = ("api-server", "scheduler", "dag-processor")

    def __init__(self, config: StackConfig, components: tuple[str, ...] = COMPONENTS) -> None:
        self.config = config
        self.env = airflow_env(config)
        self.components = components
        self.procs: dict[str, subprocess.Popen] = {}
        self._token: str | None = None

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

    # -- REST API -----------------------------------------------------------------------------------

    def token(self) -> str:
        if self._token is None:
            response = requests.post(
                f"{self.config.api_url}/auth/token",
                json={"username": ADMIN_USER, "password": admin_password(self.config.home)},
                timeout=30,
            )
            response.raise_for_status()
            self._token = response.json()["access_token"]
        return self._token

    def api(self, method: str, path: str, headers: Mapping[str, str] | None = None, **kwargs: Any) -> Any:
        response = requests.request(
            method,
            f"{self.config.api_url}/api/v2{path}",
            headers={"Authorization": f"Bearer {self.token()}", **(headers or {})},
            timeout=60,
            **kwargs,
        )
        if not response.ok:
            raise RuntimeError(f"{method} {path} -> {response.status_code}: {response.text[:500]}")
        return response.json() if response.content else None

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

    def trigger(self, conf: Mapping[str, Any], dag_id: str = DAG_ID, run_id: str | None = None) -> str:
        body: dict[str, Any] = {"conf": dict(conf), "logical_date": None}
        if run_id:
            body["dag_run_id"] = run_id
        return self.api("POST", f"/dags/{dag_id}/dagRuns", json=body)["dag_run_id"]

    def wait_for_run(self, run_id: str, dag_id: str = DAG_ID, timeout: float = 900) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            state = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")["state"]
            if state in ("success", "failed"):
                return state
            time.sleep(2)
        raise TimeoutError(f"run {run_id} did not finish within {timeout} s")

    def create_backfill(self, from_date: str, to_date: str, max_active_runs: int, dag_id: str = DAG_ID) -> None:
        """``airflow backfill create`` for the DAG. On an SQLite metadata DB another writer (scheduler,
        dag-processor) can make it fail half-way with "database is locked" (PostgreSQL does not need this):
        they pause while the backfill is created, which is retried if need be."""
        paused = [name for name in ("scheduler", "dag-processor") if name in self.procs]
        if self.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("sqlite"):
            for name in paused:
                self.stop_component(name)
        else:
            paused = []
        args = ("backfill", "create", "--dag-id", dag_id, "--from-date", from_date, "--to-date", to_date)
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

    def task_instances(self, run_id: str, dag_id: str = DAG_ID) -> list[dict[str, Any]]:
        return self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 1000})[
            "task_instances"
        ]

    def xcom(self, run_id: str, task_id: str, dag_id: str = DAG_ID) -> Any:
        entry = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value")
        return entry["value"]


def start_emulator(seed_file: Path, port: int, log_file: Path, *extra: str) -> subprocess.Popen:
    """The emulator as its own process on 127.0.0.1:port (waits until it answers)."""
    env = {**os.environ, "PYTHONPATH": str(PROJECT / "include")}
    out = open(log_file, "ab")  # noqa: SIM115 - kept open for the child's lifetime
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lsq_emulator",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--seed-file",
            str(seed_file),
            *extra,
        ],
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the emulator exited with {proc.returncode}; see {log_file}")
        try:
            if requests.get(f"http://127.0.0.1:{port}/_emulator/health", timeout=1).ok:
                return proc
        except requests.RequestException:
            time.sleep(0.3)
    raise TimeoutError("the emulator did not start within 60 s")


def stop_process(proc: subprocess.Popen, timeout: float = 15) -> None:
    """SIGTERM the process group, SIGKILL it after ``timeout`` seconds."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def reset_home(home: Path) -> None:
    """Remove a stack's run state but keep its secrets (so a second ``make run`` works the same)."""
    for name in ("airflow.db", "logs", "stack-logs", *(state_db(home).name + end for end in ("", "-wal", "-shm"))):
        path = home / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
