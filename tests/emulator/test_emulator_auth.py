"""Authentication: header and query-string keys, and the 401 answers for bad, non-admin or foreign keys."""

from __future__ import annotations

import pytest
import requests

from lsq_emulator import Account, run_emulator
from tests.emulator.emulator_support import (
    ADMIN_HEADERS,
    LEAD_ID,
    RESET_PATH,
    TIMEOUT,
    VIEWER_HEADERS,
    config,
    post_reset,
)

BODY = {"ProspectId": LEAD_ID, "ActivityEventList": [166]}


def test_header_keys_are_accepted(emu):
    response = post_reset(emu, BODY, headers=ADMIN_HEADERS)

    assert response.status_code == 200
    assert response.json()["Status"] == "Success"
    assert emu.calls()[-1]["account"] == "demo"


def test_query_string_keys_are_accepted(emu):
    response = requests.post(
        f"{emu.base_url}{RESET_PATH}",
        params={"accessKey": "u$demo-access", "secretKey": "demo-secret"},
        json=BODY,
        timeout=TIMEOUT,
    )

    assert response.status_code == 200
    assert emu.calls()[-1]["outcome"] == "queued"


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-keys"),
        pytest.param({"x-LSQ-AccessKey": "u$demo-access"}, id="no-secret"),
        pytest.param({"x-LSQ-AccessKey": "u$demo-access", "x-LSQ-SecretKey": "wrong"}, id="wrong-secret"),
        pytest.param({"x-LSQ-AccessKey": "u$nobody", "x-LSQ-SecretKey": "demo-secret"}, id="unknown-access"),
    ],
)
def test_bad_keys_get_401_and_change_nothing(emu, leads_unchanged, headers):
    response = post_reset(emu, BODY, headers=headers)

    assert response.status_code == 401
    assert response.json()["Status"] == "Error"
    assert response.json()["ExceptionType"] == "MXUnAuthorizedAccessException"
    record = emu.calls()[-1]
    assert (record["outcome"], record["account"]) == ("unauthorized", None)


def test_non_admin_keys_get_401_with_their_own_message(emu, leads_unchanged):
    wrong = post_reset(emu, BODY, headers={**ADMIN_HEADERS, "x-LSQ-SecretKey": "nope"}).json()

    response = post_reset(emu, BODY, headers=VIEWER_HEADERS)

    assert response.status_code == 401
    assert response.json()["ExceptionType"] == "MXUnAuthorizedAccessException"
    assert "Administrator" in response.json()["ExceptionMessage"]
    assert response.json()["ExceptionMessage"] != wrong["ExceptionMessage"]
    assert emu.calls()[-1]["account"] == "viewer"


def test_non_admin_keys_may_read(emu):
    response = requests.get(
        f"{emu.base_url}/v2/LeadManagement.svc/Leads.GetById",
        params={"id": LEAD_ID},
        headers=VIEWER_HEADERS,
        timeout=TIMEOUT,
    )

    assert response.status_code == 200
    assert response.json()[0]["ProspectId"] == LEAD_ID


def test_keys_of_another_region_get_401_but_can_find_their_host():
    foreign = Account(name="mumbai2", access_key="u$in22", secret_key="in22-secret", region="in22")
    keys = {"x-LSQ-AccessKey": "u$in22", "x-LSQ-SecretKey": "in22-secret"}
    with run_emulator(config(accounts=[foreign], region="in21")) as emu:
        reset = post_reset(emu, BODY, headers=keys)
        user = requests.get(f"{emu.base_url}/v2/Authentication.svc/UserByAccessKey.Get", headers=keys, timeout=TIMEOUT)

    assert reset.status_code == 401
    assert reset.json()["ExceptionType"] == "MXUnAuthorizedAccessException"
    assert user.status_code == 200
    assert user.json()["LSQApiHost"] == "api-in22.leadsquared.com"


@pytest.mark.parametrize(
    ("headers", "role"),
    [pytest.param(ADMIN_HEADERS, "Administrator", id="admin"), pytest.param(VIEWER_HEADERS, "Sales User", id="viewer")],
)
def test_user_by_access_key_names_role_org_and_host(emu, headers, role):
    response = requests.get(
        f"{emu.base_url}/v2/Authentication.svc/UserByAccessKey.Get", headers=headers, timeout=TIMEOUT
    )

    assert response.status_code == 200
    user = response.json()
    assert user["Role"] == role
    assert user["OrgId"]
    assert user["LSQApiHost"] == "api-in21.leadsquared.com"


def test_secret_never_reaches_the_call_log(emu):
    post_reset(emu, BODY, headers=ADMIN_HEADERS)
    post_reset(emu, BODY, headers={**ADMIN_HEADERS, "x-LSQ-SecretKey": "a-wrong-secret"})
    requests.get(f"{emu.base_url}/v2/Authentication.svc/UserByAccessKey.Get", headers=ADMIN_HEADERS, timeout=5)

    over_http = requests.get(f"{emu.base_url}/_emulator/calls", timeout=TIMEOUT).text
    in_process = repr(emu.calls()) + repr(emu.stats()) + repr(emu.config)

    for text in (over_http, in_process):
        assert "demo-secret" not in text
        assert "a-wrong-secret" not in text
        assert "u$demo-access" not in text
