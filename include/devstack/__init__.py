"""A real, project-local Airflow (api-server, scheduler, dag-processor; LocalExecutor) plus the emulator.

Used by ``make run`` (the demo), ``make airflow`` (the UI on the demo set-up), the end-to-end tests and
the benchmarks, so that all of them run the DAG the same way: under the real scheduler, through the real
REST API, against the emulator over real HTTP. ``config`` (where a stack lives, its environment),
``processes`` (the CLI, set-up, the emulator process), ``rest`` (the REST client), ``stack`` (the components).
"""

from devstack.config import (
    ADMIN_USER,
    DAG_ID,
    PROJECT,
    VENV_BIN,
    StackConfig,
    admin_password,
    airflow_env,
    component_hostname,
    free_port,
    state_db,
)
from devstack.processes import airflow_cli, prepare, reset_home, start_emulator, stop_process
from devstack.rest import RestClient
from devstack.stack import AirflowStack

__all__ = [
    "ADMIN_USER",
    "DAG_ID",
    "PROJECT",
    "VENV_BIN",
    "AirflowStack",
    "RestClient",
    "StackConfig",
    "admin_password",
    "airflow_cli",
    "airflow_env",
    "component_hostname",
    "free_port",
    "prepare",
    "reset_home",
    "start_emulator",
    "state_db",
    "stop_process",
]
