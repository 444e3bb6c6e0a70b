"""ProspectActivity.Retrieve, the read that verifies resets: shape, filter, paging, auth, limit, not found."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from lsq_emulator import run_emulator
from tests.emulator.emulator_support import (
    ADMIN_HEADERS,
    LEAD_ID,
    TIMEOUT,
    VIEWER_HEADERS,
    config,
    make_lead,
    post_reset,
)

RETRIEVE_PATH = "/v2/ProspectActivity.svc/Retrieve"


def retrieve(emu, body: Any, *, lead_id: str = LEAD_ID, headers: dict[str, str] | None = None, **params: str):
    return requests.post(
        f"{emu.base_url}{RETRIEVE_PATH}",
        params={"leadId": lead_id, **params},
        json=body,
        headers=ADMIN_HEADERS if headers is None else headers,
        timeout=TIMEOUT,
    )


def _many_activities(count: int) -> dict[str, Any]:
    lead = make_lead()
    lead["activities"] = [
        {"Id": f"act-{n:02d}", "ActivityEvent": 201, "CreatedOn": f"2021-01-01 00:{n:02d}:00"} for n in range(count)
    ]
    return lead


def test_answer_has_the_documented_shape(emu):
    response = retrieve(emu, {"Parameter": {"ActivityEvent": 167}, "Paging": {"Offset": "0", "RowCount": "25"}})

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {
        "RecordCount": 1,
        "ProspectActivities": [
            {
                "Id": "a-inside-167",
                "EventCode": 167,
                "EventName": "Custom Activity 167",
                "CreatedOn": "2020-10-15 12:00:00",
                "ActivityType": 2,
            }
        ],
    }
    record = emu.calls()[-1]
    assert (record["path"], record["lead_id"], record["outcome"], record["account"]) == (
        RETRIEVE_PATH,
        LEAD_ID,
        "ok",
        "demo",
    )
    assert record["body"] == {"Parameter": {"ActivityEvent": 167}, "Paging": {"Offset": "0", "RowCount": "25"}}


def test_a_stored_event_name_is_kept():
    lead = make_lead()
    lead["activities"] = [
        {"Id": "x", "ActivityEvent": 201, "EventName": "Demo Booked", "CreatedOn": "2021-01-01 00:00:00"}
    ]
    with run_emulator(config(), leads=[lead]) as emu:
        (activity,) = retrieve(emu, {}).json()["ProspectActivities"]

    assert (activity["EventCode"], activity["EventName"]) == (201, "Demo Booked")


def test_without_an_event_every_activity_comes_in_stored_order(emu):
    response = retrieve(emu, {"Parameter": {}, "Paging": {"Offset": 0, "RowCount": 25}})

    assert response.json()["RecordCount"] == 6
    assert [a["Id"] for a in response.json()["ProspectActivities"]] == [
        "a-before",
        "a-from",
        "a-inside-167",
        "a-inside-200",
        "a-to",
        "a-after",
    ]


@pytest.mark.parametrize(
    ("paging", "expected_ids"),
    [
        pytest.param({"Offset": "0", "RowCount": "25"}, [f"act-{n:02d}" for n in range(25)], id="strings-first-page"),
        pytest.param({"Offset": 25, "RowCount": 25}, [f"act-{n:02d}" for n in range(25, 30)], id="ints-last-page"),
        pytest.param({"Offset": "0", "RowCount": "100"}, [f"act-{n:02d}" for n in range(25)], id="capped-at-25"),
        pytest.param({"Offset": "3", "RowCount": 2}, ["act-03", "act-04"], id="fewer-rows"),
        pytest.param({}, [f"act-{n:02d}" for n in range(25)], id="no-paging-means-first-25"),
        pytest.param({"Offset": 40, "RowCount": 5}, [], id="past-the-end"),
    ],
)
def test_paging(paging, expected_ids):
    with run_emulator(config(), leads=[_many_activities(30)]) as emu:
        response = retrieve(emu, {"Parameter": {"ActivityEvent": 201}, "Paging": paging})

    assert response.status_code == 200
    assert response.json()["RecordCount"] == 30
    assert [a["Id"] for a in response.json()["ProspectActivities"]] == expected_ids


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"Paging": {"Offset": "-1", "RowCount": "25"}}, id="negative-offset"),
        pytest.param({"Paging": {"Offset": "0", "RowCount": "ten"}}, id="word-row-count"),
        pytest.param({"Paging": {"Offset": 1.5, "RowCount": 25}}, id="float-offset"),
        pytest.param({"Paging": {"Offset": True, "RowCount": 25}}, id="bool-offset"),
        pytest.param({"Parameter": {"ActivityEvent": "201"}}, id="event-as-string"),
        pytest.param({"Parameter": [201]}, id="parameter-not-an-object"),
        pytest.param([1], id="body-is-a-list"),
    ],
)
def test_malformed_query_gets_400(emu, body):
    response = retrieve(emu, body)

    assert response.status_code == 400
    assert response.json()["Status"] == "Error"
    assert response.json()["ExceptionType"] in {"MXInvalidInputException", "MXInvalidJsonException"}
    assert emu.calls()[-1]["outcome"] == "rejected"


def test_missing_lead_id_gets_400(emu):
    response = requests.post(f"{emu.base_url}{RETRIEVE_PATH}", json={}, headers=ADMIN_HEADERS, timeout=TIMEOUT)

    assert response.status_code == 400
    assert response.json()["ExceptionType"] == "MXMandatoryAttributeMissingException"


def test_unknown_lead_gets_the_reset_not_found_answer(emu):
    reset = post_reset(emu, {"ProspectId": "no-such-lead", "ShouldDeleteProspectNotes": True})
    read = retrieve(emu, {}, lead_id="no-such-lead")

    assert (read.status_code, read.json()) == (reset.status_code, reset.json())
    assert read.json()["ExceptionType"] == "MXInvalidEntityReferenceException"


@pytest.mark.parametrize(
    "auth",
    [
        pytest.param({"headers": ADMIN_HEADERS}, id="headers"),
        pytest.param({"headers": {}, "accessKey": "u$demo-access", "secretKey": "demo-secret"}, id="query-keys"),
        pytest.param({"headers": VIEWER_HEADERS}, id="non-admin-may-read"),
    ],
)
def test_auth_by_headers_or_query_keys(emu, auth):
    response = retrieve(emu, {}, **auth)

    assert response.status_code == 200
    assert response.json()["RecordCount"] == 6


def test_bad_keys_get_401(emu):
    response = retrieve(emu, {}, headers={"x-LSQ-AccessKey": "u$demo-access", "x-LSQ-SecretKey": "nope"})

    assert response.status_code == 401
    assert emu.calls()[-1]["outcome"] == "unauthorized"


def test_each_read_counts_against_the_account_rate_limit():
    with run_emulator(config(rate_limit=3), leads=[make_lead()]) as emu:
        reads = [retrieve(emu, {}).status_code for _ in range(2)]
        reset = post_reset(emu, {"ProspectId": LEAD_ID, "ShouldDeleteProspectNotes": True}).status_code
        refused = retrieve(emu, {})

        assert (reads, reset, refused.status_code) == ([200, 200], 200, 429)
        assert refused.json()["ExceptionType"] == "MXAPIRateLimitExceededException"
        assert [c["outcome"] for c in emu.calls()] == ["ok", "ok", "queued", "rate_limited"]


def test_a_performed_reset_shows_in_the_read(emu):
    post_reset(emu, {"ProspectId": LEAD_ID, "ActivityEventList": [166]})

    response = retrieve(emu, {"Parameter": {"ActivityEvent": 166}})

    assert response.json() == {"RecordCount": 0, "ProspectActivities": []}
    assert retrieve(emu, {}).json()["RecordCount"] == 2
