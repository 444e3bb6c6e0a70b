"""The command line: start on port 0, read the port file, call the API, stop on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.emulator.emulator_support import ADMIN_HEADERS, LEAD_ID, RESET_PATH, TIMEOUT, make_lead

pytestmark = pytest.mark.slow

INCLUDE = Path(__file__).resolve().parents[2] / "include"


def _wait_for_port(path: Path, process: subprocess.Popen, timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"emulator exited early: {process.communicate()}")
        if path.exists() and path.read_text().strip():
            return int(path.read_text())
        time.sleep(0.05)
    raise AssertionError("the emulator wrote no port file in time")


def test_cli_serves_seeded_leads_and_stops_on_sigterm(tmp_path):
    seed = tmp_path / "leads.json"
    seed.write_text(json.dumps({"leads": [make_lead()]}))
    accounts = tmp_path / "accounts.json"
    accounts.write_text(
        json.dumps([{"name": "demo", "access_key": "u$demo-access", "secret_key": "demo-secret", "admin": True}])
    )
    port_file = tmp_path / "port.txt"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(INCLUDE), os.environ.get("PYTHONPATH", "")])}
    command = [
        sys.executable, "-m", "lsq_emulator", "--host", "127.0.0.1", "--port", "0",
        "--port-file", str(port_file), "--seed-file", str(seed), "--accounts-file", str(accounts),
        "--rate-limit", "3", "--rate-window", "5", "--rate-limit-style", "200", "--latency", "0,0.01",
        "--seed", "1",
    ]  # fmt: skip
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = _wait_for_port(port_file, process)
        base = f"http://127.0.0.1:{port}"

        health = requests.get(f"{base}/_emulator/health", timeout=TIMEOUT)
        statuses = [
            requests.post(
                f"{base}{RESET_PATH}",
                json={"ProspectId": LEAD_ID, "ShouldDeleteProspectNotes": True},
                headers=ADMIN_HEADERS,
                timeout=TIMEOUT,
            ).json()["Status"]
            for _ in range(4)
        ]
        lead = requests.get(f"{base}/_emulator/leads/{LEAD_ID}", timeout=TIMEOUT).json()
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=15)

    assert health.json()["status"] == "ok"
    assert statuses == ["Success", "Success", "Success", "Error"]
    assert lead["notes"] == []
    assert process.returncode == 0
    assert stdout.strip() == base
    assert "demo-secret" not in stdout + stderr


def test_cli_refuses_a_bad_seed_file(tmp_path):
    seed = tmp_path / "leads.json"
    seed.write_text('{"leads": [{"no": "id"}]}')
    env = {**os.environ, "PYTHONPATH": str(INCLUDE)}

    result = subprocess.run(
        [sys.executable, "-m", "lsq_emulator", "--seed-file", str(seed), "--port-file", str(tmp_path / "p")],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode == 2
    assert "ProspectId" in result.stderr
    assert not (tmp_path / "p").exists()
