"""Where a local stack lives and the environment every Airflow component of it runs with."""

from __future__ import annotations

import json
import os
import secrets
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

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
