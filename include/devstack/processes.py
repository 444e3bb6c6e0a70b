"""Processes around a stack: the ``airflow`` CLI, its set-up, the emulator as a process, clean-up."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import requests

from devstack.config import PROJECT, VENV_BIN, state_db


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
