"""The inspection API under /_emulator/, unknown API paths, the call log and runtime settings."""

from __future__ import annotations

import pytest
import requests

from lsq_emulator import Emulator, EmulatorConfig, run_emulator
from lsq_emulator.app import create_app
from tests.emulator.emulator_support import LEAD_ID, OTHER_LEAD_ID, TIMEOUT, config, make_lead, post_reset

CALL_RECORD_KEYS = {
    "seq", "time", "method", "path", "query", "account", "lead_id", "body", "raw_body",
    "status", "outcome", "exception_type", "rate_limit_style", "reset_state", "duration",
}  # fmt: skip


@pytest.mark.parametrize(
    ("method", "path"),
    [
        pytest.param("GET", "/v2/LeadManagement.svc/Lead.Resets", id="unknown-operation"),
        pytest.param("GET", "/v2/LeadManagement.svc/Lead.Reset", id="reset-with-get"),
        pytest.param("POST", "/", id="root"),
        pytest.param("GET", "/docs", id="no-swagger"),
    ],
)
def test_unknown_api_path_gets_404_with_an_error_body(emu, method, path):
    response = requests.request(method, f"{emu.base_url}{path}", timeout=TIMEOUT)

    assert response.status_code == 404
    assert response.json()["Status"] == "Error"
    assert response.json()["ExceptionType"]
    assert emu.calls()[-1]["outcome"] == "not_found_path"


def test_call_record_holds_what_was_sent(emu):
    post_reset(emu, {"ProspectId": LEAD_ID, "ActivityEventList": [166]}, params={"trace": "1"})

    (record,) = emu.calls()
    assert set(record) == CALL_RECORD_KEYS
    assert record["seq"] == 1
    assert record["method"] == "POST"
    assert record["path"] == "/v2/LeadManagement.svc/Lead.Reset"
    assert record["query"] == "trace=1"
    assert record["account"] == "demo"
    assert record["lead_id"] == LEAD_ID
    assert record["body"] == {"ProspectId": LEAD_ID, "ActivityEventList": [166]}
    assert record["raw_body"] == f'{{"ProspectId": "{LEAD_ID}", "ActivityEventList": [166]}}'
    assert (record["status"], record["outcome"], record["exception_type"]) == (200, "queued", None)
    assert record["reset_state"] == "performed"
    assert record["duration"] >= 0


def test_raw_body_is_cut_at_4_kb(emu):
    post_reset(emu, {"ProspectId": LEAD_ID, "TaskTypeList": ["x" * 10_000]})

    record = emu.calls()[-1]
    assert len(record["raw_body"]) == 4096
    assert record["body"]["TaskTypeList"][0] == "x" * 10_000


def test_inspection_endpoints_over_http(emu):
    base = f"{emu.base_url}/_emulator"
    post_reset(emu, {"ProspectId": LEAD_ID, "ShouldDeleteProspectNotes": True})

    assert requests.get(f"{base}/health", timeout=TIMEOUT).json()["status"] == "ok"
    calls = requests.get(f"{base}/calls", timeout=TIMEOUT).json()
    assert [c["outcome"] for c in calls] == ["queued"]
    stats = requests.get(f"{base}/stats", timeout=TIMEOUT).json()
    assert stats["calls"] == 1
    assert stats["by_outcome"]["queued"] == 1
    assert stats["accepted_by_lead"] == {LEAD_ID: 1}
    assert requests.get(f"{base}/leads/{LEAD_ID.upper()}", timeout=TIMEOUT).json()["notes"] == []
    assert requests.get(f"{base}/leads/nope", timeout=TIMEOUT).status_code == 404
    all_leads = requests.get(f"{base}/leads", timeout=TIMEOUT).json()
    assert [lead["ProspectId"] for lead in all_leads] == [LEAD_ID, OTHER_LEAD_ID]

    added = requests.post(f"{base}/leads", json={"leads": [make_lead("new-lead")]}, timeout=TIMEOUT)
    assert added.json() == {"added": 1}
    assert emu.lead("NEW-LEAD")["ProspectId"] == "new-lead"

    assert requests.post(f"{base}/clear-calls", timeout=TIMEOUT).status_code == 200
    assert emu.calls() == []
    assert requests.get(f"{base}/stats", timeout=TIMEOUT).json()["calls"] == 0
    assert len(emu.calls()) == 0  # inspection calls are not logged


def test_config_endpoint_changes_settings_at_runtime(emu):
    response = requests.post(
        f"{emu.base_url}/_emulator/config",
        json={"rate_limit": 1, "rate_limit_style": "403", "latency": [0, 0.01]},
        timeout=TIMEOUT,
    )

    assert response.status_code == 200
    assert response.json()["rate_limit"] == 1
    assert "secret_key" not in response.text and "demo-secret" not in response.text
    assert emu.config.latency == (0.0, 0.01)
    statuses = [post_reset(emu, {"ProspectId": LEAD_ID, "ActivityEventList": [1]}).status_code for _ in range(2)]
    assert statuses == [200, 403]


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({"rate_limit_style": "418"}, id="bad-style"),
        pytest.param({"no_such_setting": 1}, id="unknown-setting"),
        pytest.param({"fault_5xx_rate": 2}, id="rate-above-one"),
        pytest.param([1], id="not-an-object"),
    ],
)
def test_config_endpoint_refuses_bad_settings(emu, payload):
    before = emu.config

    response = requests.post(f"{emu.base_url}/_emulator/config", json=payload, timeout=TIMEOUT)

    assert response.status_code == 400
    assert emu.config == before


def test_add_leads_endpoint_refuses_malformed_leads(emu):
    response = requests.post(f"{emu.base_url}/_emulator/leads", json={"leads": [{"x": 1}]}, timeout=TIMEOUT)

    assert response.status_code == 400


def test_configure_in_process_and_clear_calls(emu):
    emu.configure(fault_html_rate=1.0)
    assert post_reset(emu, {"ProspectId": LEAD_ID, "ActivityEventList": [1]}).status_code == 502

    emu.clear_calls()
    emu.configure(fault_html_rate=0.0)

    assert emu.calls() == []
    assert post_reset(emu, {"ProspectId": LEAD_ID, "ActivityEventList": [1]}).status_code == 200
    assert emu.calls()[0]["seq"] == 2


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient` is deprecated")
def test_app_factory_serves_without_a_network_server():
    from fastapi.testclient import TestClient

    emulator = Emulator(config(), [make_lead()])
    with TestClient(create_app(emulator)) as client:
        response = client.post(
            "/v2/LeadManagement.svc/Lead.Reset",
            json={"ProspectId": LEAD_ID, "ShouldDeleteProspectNotes": True},
            headers={"x-LSQ-AccessKey": "u$demo-access", "x-LSQ-SecretKey": "demo-secret"},
        )

    assert response.status_code == 200
    assert emulator.lead(LEAD_ID)["notes"] == []


def test_default_config_has_an_admin_and_a_viewer():
    accounts = EmulatorConfig().accounts

    assert [(a.name, a.admin, a.region) for a in accounts] == [("demo", True, "in21"), ("viewer", False, "in21")]
    assert "demo-secret" not in repr(accounts)


def test_two_emulators_run_side_by_side():
    with run_emulator(config()) as one, run_emulator(config()) as two:
        assert one.base_url != two.base_url
        assert requests.get(f"{one.base_url}/_emulator/health", timeout=TIMEOUT).ok
        assert requests.get(f"{two.base_url}/_emulator/health", timeout=TIMEOUT).ok
