"""docker-compose.yaml gives the settings the distributed test runs with (tests/distributed/topology.py).

The file is read as Docker Compose reads it: YAML (anchors and merge keys) then ``${VAR}`` interpolation,
here from .env.example, so the committed example is also checked to define every variable the file needs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from typing import Any

import pytest
import yaml

from tests.distributed.topology import (
    AIRFLOW_COMMANDS,
    COMPOSE_FILE,
    ENV_EXAMPLE,
    EXECUTOR,
    PROJECT,
    STATE_DB,
    Endpoints,
    cluster_settings,
    dag_settings,
    leadsquared_connection,
    pool_names,
    state_connection,
)
from tests.pg_server import unique_db_name

_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)
MOUNTED = ("dags", "plugins", "include")
# The Python that airflow-init runs (a bash here-document) to create the state store's database.
_INIT_PYTHON = re.compile(r"^python - <<'PY'\n(?P<code>.*?)^PY$", re.M | re.S)


def read_env_file(text: str) -> dict[str, str]:
    """KEY=VALUE lines as Compose reads them: comments skipped, single quotes literal, double quotes stripped."""
    env = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not KEY=VALUE: {line!r}"
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[key.strip()] = value
    return env


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's ``$$``, ``$VAR``, ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}``, ``${VAR:+other}`` (and
    the forms without colon) over every string of a parsed file."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match) -> str:
        if match["escaped"]:
            return "$"
        name = match["name"] or match["bare"]
        op, arg = match["op"], match["arg"]
        is_set = name in env and (env[name] != "" or not (op or "").startswith(":"))
        if op and op.endswith("-"):
            return env[name] if is_set else arg
        if op and op.endswith("?"):
            if not is_set:
                raise AssertionError(f"{name} is required by docker-compose.yaml ({arg}) but not set")
            return env[name]
        if op and op.endswith("+"):
            return arg if is_set else ""
        return env.get(name, "")

    return _VARIABLE.sub(substitute, value)


@pytest.fixture(scope="module")
def example_env() -> dict[str, str]:
    return read_env_file(ENV_EXAMPLE.read_text())


@pytest.fixture(scope="module")
def compose(example_env: dict[str, str]) -> dict[str, Any]:
    """docker-compose.yaml as Compose sees it with .env copied from .env.example."""
    return interpolate(yaml.safe_load(COMPOSE_FILE.read_text()), example_env)


def init_script(compose: dict[str, Any]) -> str:
    command = compose["services"]["airflow-init"]["command"]
    assert command[:2] == ["bash", "-c"]
    return command[2]


def airflow_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services made from x-airflow-common: the long-running components and airflow-init."""
    common_image = compose["x-airflow-common"]["image"]
    return {
        name: service
        for name, service in compose["services"].items()
        if service.get("image") == common_image and "demo" not in service.get("profiles", [])
    }


def compose_endpoints(example_env: dict[str, str]) -> Endpoints:
    return Endpoints(
        postgres=f"airflow:{example_env['POSTGRES_PASSWORD']}@postgres",
        metadata_db="airflow",
        redis="redis:6379",
        api="http://airflow-apiserver:8080",
    )


def test_each_command_of_the_distributed_test_is_one_service_plus_init(compose):
    services = airflow_services(compose)
    commands = sorted(s["command"] for n, s in services.items() if n != "airflow-init")
    assert commands == sorted(AIRFLOW_COMMANDS)
    assert "airflow-init" in services


def test_every_airflow_service_runs_the_one_image_built_from_the_dockerfile(compose):
    services = airflow_services(compose)
    images = {(s["image"], json.dumps(s.get("build"), sort_keys=True)) for s in compose["services"].values()}
    assert len(images) == 1 + 2  # the Airflow image (every Airflow service and the emulator), postgres, redis
    for name, service in services.items():
        assert service["build"] == {"context": ".", "dockerfile": "Dockerfile"}, name
        assert service["image"] == compose["x-airflow-common"]["image"], name
    dockerfile = (PROJECT / "Dockerfile").read_text()
    airflow_pin = re.search(r"^apache-airflow==(\S+)$", (PROJECT / "requirements.txt").read_text(), re.M)[1]
    assert re.search(rf"^FROM apache/airflow:{re.escape(airflow_pin)}-python3\.11$", dockerfile, re.M)
    assert re.search(r"pip install .*-r \S*requirements\.txt\s*\\?\s*-c \S*constraints\.txt", dockerfile)
    assert re.search(r"pip install .*\S*/plugins$", dockerfile, re.M)
    assert "_PIP_ADDITIONAL_REQUIREMENTS" not in COMPOSE_FILE.read_text()


def test_every_airflow_service_has_the_distributed_test_settings(compose, example_env):
    expected = cluster_settings(compose_endpoints(example_env))
    assert expected["AIRFLOW__CORE__EXECUTOR"] == EXECUTOR == "CeleryExecutor"
    for name, service in airflow_services(compose).items():
        env = service["environment"]
        assert {key: env.get(key) for key in expected} == expected, name


def test_connections_are_the_dags_and_the_rate_budget_is_the_compose_redis(compose, example_env):
    dag = dag_settings()
    endpoints = compose_endpoints(example_env)
    for name, service in airflow_services(compose).items():
        env = service["environment"]
        conn_ids = {key.removeprefix("AIRFLOW_CONN_").lower() for key in env if key.startswith("AIRFLOW_CONN_")}
        assert conn_ids == {dag["LEADSQUARED_CONN_ID"], dag["WAREHOUSE_CONN_ID"], dag["STATE_CONN_ID"]}, name
        assert json.loads(env["AIRFLOW_CONN_LEADSQUARED_DEFAULT"]) == leadsquared_connection(
            endpoints,
            host=example_env["LEADSQUARED_HOST"],
            access_key=example_env["LEADSQUARED_ACCESS_KEY"],
            secret_key=example_env["LEADSQUARED_SECRET_KEY"],
            rate_limit=int(example_env["LEADSQUARED_RATE_LIMIT"]),
            rate_window_seconds=int(example_env["LEADSQUARED_RATE_WINDOW_SECONDS"]),
            rate_margin_seconds=float(example_env["LEADSQUARED_RATE_MARGIN_SECONDS"]),
            allow_insecure_http=True,
        )
        assert env["AIRFLOW_CONN_WAREHOUSE_DEFAULT"] == example_env["WAREHOUSE_CONNECTION"]
        assert json.loads(env["AIRFLOW_CONN_LEADSQUARED_STATE"]) == state_connection(endpoints), name
    assert json.loads(example_env["WAREHOUSE_CONNECTION"])["conn_type"] == "sqlite"  # the demo's warehouse
    # The state store is the compose PostgreSQL's database `leadsquared`, as the metadata DB's user.
    assert state_connection(endpoints) == {
        "conn_type": "postgres",
        "host": "postgres",
        "login": "airflow",
        "password": example_env["POSTGRES_PASSWORD"],
        "schema": STATE_DB,
    }
    assert STATE_DB == "leadsquared"


def test_plain_http_to_leadsquared_is_off_unless_env_turns_it_on(example_env):
    """.env.example turns it on for its default host, the demo emulator over http; without the variable (or
    with false) the connection refuses plain http to any host but loopback."""
    assert example_env["LEADSQUARED_HOST"].startswith("http://lsq-emulator:")
    assert example_env["LEADSQUARED_ALLOW_INSECURE_HTTP"] == "true"
    assert "Real accounts use https" in ENV_EXAMPLE.read_text()
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    for env, expected in (
        ({k: v for k, v in example_env.items() if k != "LEADSQUARED_ALLOW_INSECURE_HTTP"}, False),
        ({**example_env, "LEADSQUARED_ALLOW_INSECURE_HTTP": "false"}, False),
        ({**example_env, "LEADSQUARED_ALLOW_INSECURE_HTTP": "true"}, True),
    ):
        compose = interpolate(raw, env)
        for name, service in airflow_services(compose).items():
            extra = json.loads(service["environment"]["AIRFLOW_CONN_LEADSQUARED_DEFAULT"])["extra"]
            assert extra["allow_insecure_http"] is expected, (name, env.get("LEADSQUARED_ALLOW_INSECURE_HTTP"))


def test_init_migrates_and_imports_the_pool_and_connections(compose):
    script = init_script(compose)
    assert dag_settings()["POOL"] in pool_names()
    for step in (
        "airflow db migrate",
        "python - <<'PY'",  # the state store's database (test_init_creates_the_state_database_once)
        "python -m leadsquared_provider.accounts pools --project /opt/airflow --output /tmp/leadsquared_pools.json",
        "airflow pools import /tmp/leadsquared_pools.json",  # one pool per account of the accounts file
        "airflow connections import --overwrite /opt/airflow/secrets/connections.json",
        "/opt/airflow/auth/simple_auth_manager_passwords.json",
    ):
        assert step in script
    assert "set -euo pipefail" in script  # a failed step fails the init, so nothing else starts
    for name, service in airflow_services(compose).items():
        if name != "airflow-init":
            assert service["depends_on"]["airflow-init"] == {"condition": "service_completed_successfully"}, name
            assert service["environment"]["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"].startswith(
                "/opt/airflow/auth/"
            )


@pytest.mark.postgres
def test_init_creates_the_state_database_once(compose, postgres_server):
    """airflow-init's Python, run here against the test PostgreSQL as airflow-init runs it (its environment's
    AIRFLOW_CONN_LEADSQUARED_STATE): it creates the connection's database, and a second init leaves it."""
    code = _INIT_PYTHON.search(init_script(compose))["code"]
    assert "AIRFLOW_CONN_LEADSQUARED_STATE" in code
    endpoints = Endpoints(
        postgres=f"{postgres_server.user}@{postgres_server.host}:{postgres_server.port}",
        metadata_db="unused",
        redis="unused:6379",
        api="http://unused",
        state_db=unique_db_name(STATE_DB),
    )
    env = {**os.environ, "AIRFLOW_CONN_LEADSQUARED_STATE": json.dumps(state_connection(endpoints))}

    def databases() -> set[str]:
        with postgres_server.connect("postgres") as conn, conn.cursor() as cur:
            cur.execute("SELECT datname FROM pg_database")
            names = {row[0] for row in cur.fetchall()}
        conn.close()
        return names

    try:
        outputs = []
        for _ in range(2):
            run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
            assert run.returncode == 0, run.stderr
            outputs.append(run.stdout)
        assert endpoints.state_db in databases()
        assert endpoints.state_db in outputs[0] and outputs[1] == ""  # created once, then left as it is
    finally:
        postgres_server.drop_database(endpoints.state_db)


def test_dags_plugins_and_include_are_mounted_into_every_airflow_service(compose):
    for name, service in airflow_services(compose).items():
        targets = {volume.split(":")[1]: volume.split(":")[0] for volume in service["volumes"]}
        for folder in MOUNTED:
            assert targets.get(f"/opt/airflow/{folder}") == f"./{folder}", (name, folder)


def test_every_long_running_service_has_a_health_check(compose):
    for name, service in compose["services"].items():
        if name == "airflow-init":
            assert "healthcheck" not in service and "restart" not in service  # one-shot
            continue
        check = service.get("healthcheck", {}).get("test")
        assert check and check[0] in ("CMD", "CMD-SHELL"), name
    worker = compose["services"]["airflow-worker"]
    assert worker["depends_on"]["airflow-apiserver"] == {"condition": "service_healthy"}  # the execution API
    assert "inspect ping" in worker["healthcheck"]["test"][1]


def test_the_emulator_is_an_optional_demo_service(compose, example_env):
    services = compose["services"]
    profiled = {name for name, service in services.items() if service.get("profiles")}
    assert profiled == {"lsq-emulator"}
    emulator = services["lsq-emulator"]
    assert emulator["profiles"] == ["demo"]
    assert emulator["image"] == compose["x-airflow-common"]["image"]
    assert emulator["environment"]["PYTHONPATH"] == "/opt/airflow/include"
    assert "python -m lsq_emulator --host 0.0.0.0 --port 8090" in "\n".join(emulator["command"])
    assert example_env["LEADSQUARED_HOST"] == "http://lsq-emulator:8090"  # the example runs the demo


def test_secrets_come_from_an_env_file_that_is_not_committed(compose, example_env):
    assert compose["x-airflow-common"]["env_file"] == [".env"]
    ignored = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=PROJECT, check=False)
    assert ignored.returncode == 0, ".env must be listed in .gitignore"
    tracked = subprocess.run(["git", "ls-files", "--error-unmatch", ".env"], cwd=PROJECT, capture_output=True)
    assert tracked.returncode != 0, ".env is committed"
    assert ".env" in (PROJECT / ".dockerignore").read_text().split()  # nor baked into the image
    raw = COMPOSE_FILE.read_text()
    for secret in ("LEADSQUARED_SECRET_KEY", "_AIRFLOW_WWW_USER_PASSWORD", "POSTGRES_PASSWORD"):
        assert example_env[secret] not in raw, f"{secret}'s value is written in docker-compose.yaml"
    required = {m["name"] for m in _VARIABLE.finditer(raw) if m["op"] in (":?", "?")}
    assert required <= set(example_env), f".env.example lacks {required - set(example_env)}"
