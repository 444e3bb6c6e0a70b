"""Shared fixtures: an isolated Airflow environment, the emulator, and connections from env vars."""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# Parallel workers (pytest-xdist, `make test`) share no file: each has its own temp folder (where a rate
# budget's default SQLite file lives) and its own scratch Airflow home.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
if _WORKER:
    _WORKER_TMP = Path(tempfile.gettempdir()) / f"leadsquared-tests-{_WORKER}"
    _WORKER_TMP.mkdir(parents=True, exist_ok=True)
    _WORKER_TMP.chmod(0o1777)  # as /tmp: the throwaway servers run as their own users (MariaDB as mysql)
    os.environ["TMPDIR"] = tempfile.tempdir = str(_WORKER_TMP)

# Airflow reads its configuration on first import: isolate it before any test imports it.
_AIRFLOW_HOME = Path(
    os.environ.get("PYTEST_AIRFLOW_HOME", "/tmp/leadsquared-tests-airflow-home") + (f"-{_WORKER}" if _WORKER else "")
)
_AIRFLOW_HOME.mkdir(parents=True, exist_ok=True)
os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_AIRFLOW_HOME / 'airflow.db'}"

ADMIN_ACCESS, ADMIN_SECRET = "u$demo-access", "demo-secret"
VIEWER_ACCESS, VIEWER_SECRET = "u$viewer-access", "viewer-secret"


# What `make check` leaves out (marker needs_services): a real PostgreSQL, MariaDB or Redis server, a browser
# or an Airflow stack. Every other test runs there, the emulator's in-process HTTP server included.
_SERVICE_FIXTURES = frozenset({"postgres_server", "mariadb_server", "redis_server"})
_SERVICE_DIRS = frozenset({"e2e", "ui"})
_TESTS = Path(__file__).parent


# Parallel workers (`make test`, pytest-xdist) take whole groups: a module, or tests/ui as one (its stack is
# package-scoped), so that a module's stack or server starts once and its tests run in order. The slowest
# groups go first, so that no long one starts last (from `make test`'s --durations, slowest first).
_SLOWEST_FIRST = (
    "tests/e2e/test_reliability.py",
    "tests/e2e/test_account_budget.py",
    "tests/e2e/test_daily_quota.py",
    "tests/e2e/test_verification.py",
    "tests/e2e/test_overlapping_runs.py",
    "tests/distributed/test_celery_e2e.py",
    "tests/e2e/test_scheduler_sqlite.py",
    "tests/e2e/test_backfill_month.py",
    "tests/ui",
    "tests/provider/rate_budget/test_budget.py",
    "tests/e2e/test_scheduler_postgres.py",
    "tests/e2e/test_scheduler_mariadb.py",
    "tests/provider/hooks/test_leadsquared.py",
    "tests/bench/test_cotenant_smoke.py",
)


def worker_group(nodeid: str) -> str:
    """The group a test runs in on one worker: ``tests/ui``, or its module's path."""
    path = nodeid.split("::", 1)[0]
    return "tests/ui" if path.startswith("tests/ui/") else path


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """xdist's scope scheduling, by :func:`worker_group` (its own ``xdist_group`` mark has no effect on pytest 9)."""
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return worker_group(nodeid)

    return GroupScheduling(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if (
            item.path.relative_to(_TESTS).parts[0] in _SERVICE_DIRS
            or _SERVICE_FIXTURES & set(getattr(item, "fixturenames", ()))
            or any(item.iter_markers("postgres"))
            or any(item.iter_markers("redis"))  # a server taken by a param
        ):
            item.add_marker(pytest.mark.needs_services)
    rank = {group: n for n, group in enumerate(_SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(worker_group(item.nodeid), len(rank)))  # stable: a group keeps its order


def new_lead_id() -> str:
    return str(uuid.uuid4())


def lsq_lead(lead_id: str | None = None, records: dict[str, list] | None = None) -> dict[str, Any]:
    """A lead for the emulator's store, with no records unless given."""
    lead = {
        "ProspectId": lead_id or new_lead_id(),
        "CreatedOn": "2026-01-01 00:00:00",
        "activities": [],
        "audits": [],
        "tasks": [],
        "notes": [],
    }
    lead.update(records or {})
    return lead


@pytest.fixture
def lsq_connection(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[..., str]:
    """Define a LeadSquared connection as an AIRFLOW_CONN_* env var; returns its conn id."""

    def define(
        host: str,
        *,
        conn_id: str = "leadsquared_test",
        login: str | None = ADMIN_ACCESS,
        password: str | None = ADMIN_SECRET,
        **extra: Any,
    ) -> str:
        extra.setdefault("rate_budget_url", f"sqlite:///{tmp_path / 'budget.sqlite'}")
        extra.setdefault("backoff_initial_seconds", 0.01)
        extra.setdefault("backoff_max_seconds", 0.05)
        conn = {"conn_type": "leadsquared", "host": host, "extra": extra}
        if login is not None:
            conn["login"] = login
        if password is not None:
            conn["password"] = password
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
        return conn_id

    return define


@pytest.fixture
def sqlite_warehouse(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An empty SQLite warehouse as connection ``warehouse_test``."""
    path = tmp_path / "warehouse.db"
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE_TEST", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    yield "warehouse_test", path


# --- Throwaway PostgreSQL server (tests/pg_server.py); needs Debian's `postgresql` package, no skipping ---
from tests.pg_server import PostgresServer, unique_db_name  # noqa: E402


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A started throwaway PostgreSQL server on 127.0.0.1 (trust auth, user ``postgres``), one per session."""
    with PostgresServer() as server:
        yield server


@pytest.fixture
def postgres_db(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, uniquely named database on ``postgres_server``; yields its name, drops it afterwards."""
    name = postgres_server.create_database(unique_db_name())
    yield name
    postgres_server.drop_database(name)


# --- Throwaway Redis server (tests/redis_server.py); needs Debian's `redis-server`, no skipping ---
from tests.redis_server import RedisServer  # noqa: E402


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A started throwaway ``redis-server`` on 127.0.0.1 and a free port, nothing saved to disk, one per session."""
    try:
        server = RedisServer().start()
    except RuntimeError as missing:
        pytest.fail(str(missing), pytrace=False)
    yield server
    server.stop()


# --- Throwaway MariaDB server (tests/mariadb_server.py); needs Debian's `mariadb-server`, no skipping ---
from tests.mariadb_server import MariaDBServer  # noqa: E402


@pytest.fixture(scope="session")
def mariadb_server() -> Iterator[MariaDBServer]:
    """A started throwaway MariaDB server on 127.0.0.1 and a free port (user ``root``, no password), one per
    session."""
    try:
        server = MariaDBServer().start()
    except RuntimeError as missing:
        pytest.fail(str(missing), pytrace=False)
    yield server
    server.stop()


@pytest.fixture
def mariadb_db(mariadb_server: MariaDBServer) -> Iterator[str]:
    """A fresh, uniquely named database on ``mariadb_server``; yields its name, drops it afterwards."""
    name = mariadb_server.create_database(unique_db_name("wh"))
    yield name
    mariadb_server.drop_database(name)
