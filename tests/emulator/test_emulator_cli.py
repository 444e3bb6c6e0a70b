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

from lsq_emulator.cli import build_parser, config_from_args
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


NEW_OPTIONS = (
    "--reset-processing-delay",
    "--reset-apply-delay",
    "--hostile",
    "--hostile-lead",
    "--redirect-url",
    "--missing-lead-status",
    "--unperformed-fraction",
    "--unperformed-lead",
    "--failing-lead",
)


def test_help_lists_the_new_options_and_the_hostile_kinds():
    env = {**os.environ, "PYTHONPATH": str(INCLUDE)}

    result = subprocess.run(
        [sys.executable, "-m", "lsq_emulator", "--help"], env=env, capture_output=True, text=True, timeout=30
    )

    assert result.returncode == 0
    for option in NEW_OPTIONS:
        assert option in result.stdout
    assert "redirect_307" in result.stdout and "transient_error_200" in result.stdout


def test_options_become_settings():
    args = build_parser().parse_args(
        [
            "--reset-processing-delay", "1.5", "--hostile", "json_list=0.25", "--hostile", "redirect_302=0.1",
            "--hostile-lead", f"{LEAD_ID}=forbidden", "--redirect-url", "http://127.0.0.1:9",
            "--missing-lead-status", "500", "--unperformed-fraction", "0.2", "--unperformed-lead", "L-2",
            "--failing-lead", "L-3",
        ]
    )  # fmt: skip
    settings = config_from_args(args)

    assert (settings.reset_processing_delay_seconds, settings.reset_apply_delay) == (1.5, 1.5)
    assert settings.hostile_rates == {"json_list": 0.25, "redirect_302": 0.1}
    assert settings.hostile_leads == {LEAD_ID: "forbidden"}
    assert settings.redirect_url == "http://127.0.0.1:9"
    assert settings.missing_lead_status == 500
    assert (settings.unperformed_reset_fraction, settings.unperformed_leads) == (0.2, ("l-2",))
    assert settings.failing_leads == ("l-3",)
    assert config_from_args(build_parser().parse_args(["--reset-apply-delay", "2"])).reset_processing_delay_seconds == 2


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["--hostile", "teapot=0.5"], id="unknown-kind"),
        pytest.param(["--hostile", "json_list"], id="no-fraction"),
        pytest.param(["--missing-lead-status", "404"], id="bad-status"),
    ],
)
def test_bad_new_options_are_refused(tmp_path, argv):
    env = {**os.environ, "PYTHONPATH": str(INCLUDE)}

    result = subprocess.run(
        [sys.executable, "-m", "lsq_emulator", "--port-file", str(tmp_path / "p"), *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode == 2
    assert not (tmp_path / "p").exists()


def test_cli_serves_hostile_and_unperformed_leads(tmp_path):
    other = "0b1d2c3e-0000-4000-8000-000000000002"
    seed = tmp_path / "leads.json"
    seed.write_text(json.dumps({"leads": [make_lead(), make_lead(other)]}))
    port_file = tmp_path / "port.txt"
    env = {**os.environ, "PYTHONPATH": str(INCLUDE)}
    command = [
        sys.executable, "-m", "lsq_emulator", "--port", "0", "--port-file", str(port_file), "--seed-file", str(seed),
        "--hostile-lead", f"{LEAD_ID}=status_failure", "--unperformed-lead", other, "--missing-lead-status", "500",
    ]  # fmt: skip
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{_wait_for_port(port_file, process)}"

        def reset(lead_id: str) -> requests.Response:
            body = {"ProspectId": lead_id, "ShouldDeleteProspectNotes": True}
            return requests.post(f"{base}{RESET_PATH}", json=body, headers=ADMIN_HEADERS, timeout=TIMEOUT)

        hostile, unperformed, missing = reset(LEAD_ID), reset(other), reset("no-such-lead")
        resets = requests.get(f"{base}/_emulator/resets", timeout=TIMEOUT).json()
        notes = [requests.get(f"{base}/_emulator/leads/{i}", timeout=TIMEOUT).json()["notes"] for i in (LEAD_ID, other)]
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=15)

    assert (hostile.status_code, hostile.json()) == (200, {"Status": "Failure"})
    assert (unperformed.status_code, unperformed.json()["Status"]) == (200, "Success")
    assert (missing.status_code, missing.json()["ExceptionMessage"]) == (500, "Lead does not exist")
    assert [(r["lead_id"], r["state"]) for r in resets] == [(other, "unperformed")]
    assert [len(n) for n in notes] == [2, 2]
