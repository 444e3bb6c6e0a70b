"""docker-compose.yaml gives the settings the distributed test runs with (tests/distributed/topology.py).

The file is read as Docker Compose reads it: YAML (anchors and merge keys) then ``${VAR}`` interpolation,
here from .env.example, so the committed example is also checked to define every variable the file needs.
"""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

import pytest
import yaml

from tests.distributed.topology import (
    AIRFLOW_COMMANDS,
    COMPOSE_FILE,
    ENV_EXAMPLE,
    EXECUTOR,
    POOLS_FILE,
    PROJECT,
    Endpoints,
    cluster_settings,
    dag_settings,
    leadsquared_connection,
    pool_names,
)

_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)
MOUNTED = ("dags", "plugins", "include")


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
    for name, service in airflow_services(compose).items():
        env = service["environment"]
        conn_ids = {key.removeprefix("AIRFLOW_CONN_").lower() for key in env if key.startswith("AIRFLOW_CONN_")}
        assert conn_ids == {dag["LEADSQUARED_CONN_ID"], dag["WAREHOUSE_CONN_ID"]}, name
        assert json.loads(env["AIRFLOW_CONN_LEADSQUARED_DEFAULT"]) == leadsquared_connection(
            compose_endpoints(example_env),
            host=example_env["LEADSQUARED_HOST"],
            access_key=example_env["LEADSQUARED_ACCESS_KEY"],
            secret_key=example_env["LEADSQUARED_SECRET_KEY"],
            rate_limit=int(example_env["LEADSQUARED_RATE_LIMIT"]),
            rate_window_seconds=int(example_env["LEADSQUARED_RATE_WINDOW_SECONDS"]),
            rate_margin_seconds=float(example_env["LEADSQUARED_RATE_MARGIN_SECONDS"]),
        )
        assert env["AIRFLOW_CONN_WAREHOUSE_DEFAULT"] == example_env["WAREHOUSE_CONNECTION"]
    assert json.loads(example_env["WAREHOUSE_CONNECTION"])["conn_type"] == "sqlite"  # the demo's warehouse


def test_init_migrates_and_imports_the_pool_and_connections(compose):
    init = compose["services"]["airflow-init"]
    script = "\n".join(init["command"])
    assert dag_settings()["POOL"] in pool_names()
    for step in (
        "airflow db migrate",
        f"airflow pools import /opt/airflow/{POOLS_FILE}",
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
