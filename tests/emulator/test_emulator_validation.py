"""Request validation: every broken Lead.Reset body gets a 400 with its exception type and changes nothing."""

from __future__ import annotations

import pytest
import requests

from lsq_emulator import run_emulator
from tests.emulator.emulator_support import (
    ADMIN_HEADERS,
    LEAD_ID,
    OTHER_LEAD_ID,
    RESET_PATH,
    TIMEOUT,
    config,
    make_lead,
    post_reset,
)

MISSING = "MXMandatoryAttributeMissingException"
INPUT = "MXInvalidInputException"
JSON = "MXInvalidJsonException"
WINDOW = {"FromDate": "2020-10-14 18:30:00", "ToDate": "2020-10-16 18:29:59"}


@pytest.fixture(scope="module")
def served():
    """One server for the module: these tests only need fresh leads and an empty call log."""
    with run_emulator(config()) as emulator:
        yield emulator


@pytest.fixture
def emu(served):
    served.add_leads([make_lead(), make_lead(OTHER_LEAD_ID)])
    served.clear_calls()
    return served


def _valid(**changes):
    body = {"ProspectId": LEAD_ID, "ActivityEventList": [166]}
    body.update(changes)
    return {k: v for k, v in body.items() if v is not ...}


CASES = [
    pytest.param([1, 2], JSON, id="body-is-a-list"),
    pytest.param("ProspectId", JSON, id="body-is-a-string"),
    pytest.param(_valid(ProspectId=...), MISSING, id="no-prospect-id"),
    pytest.param(_valid(ProspectId=""), MISSING, id="empty-prospect-id"),
    pytest.param(_valid(ProspectId="   "), MISSING, id="blank-prospect-id"),
    pytest.param(_valid(ProspectId=None), MISSING, id="null-prospect-id"),
    pytest.param(_valid(ProspectId=12345), MISSING, id="numeric-prospect-id"),
    pytest.param(_valid(ActivityEventList=...), MISSING, id="no-category"),
    pytest.param(
        _valid(ActivityEventList=[], TaskTypeList=[], AuditActivityList=[], ShouldDeleteProspectNotes=False),
        MISSING,
        id="all-categories-empty-or-false",
    ),
    pytest.param(_valid(ActivityEventList=["166"]), INPUT, id="activity-code-as-string"),
    pytest.param(_valid(ActivityEventList=[True]), INPUT, id="activity-code-as-bool"),
    pytest.param(_valid(ActivityEventList=[166.0]), INPUT, id="activity-code-as-float"),
    pytest.param(_valid(ActivityEventList=166), INPUT, id="activity-codes-not-a-list"),
    pytest.param(_valid(TaskTypeList=[123]), INPUT, id="task-type-not-a-string"),
    pytest.param(_valid(TaskTypeList="3c8c1a5b"), INPUT, id="task-types-not-a-list"),
    pytest.param(_valid(AuditActivityList=["NameChange"]), INPUT, id="unknown-audit-type"),
    pytest.param(_valid(AuditActivityList=[1]), INPUT, id="audit-type-not-a-string"),
    pytest.param(_valid(ShouldDeleteProspectNotes="true"), INPUT, id="notes-flag-as-string"),
    pytest.param(_valid(ShouldDeleteProspectNotes=1), INPUT, id="notes-flag-as-int"),
    pytest.param(_valid(FromDate="2020-10-14T18:30:00", ToDate=WINDOW["ToDate"]), INPUT, id="iso-t-date"),
    pytest.param(_valid(FromDate="2020-10-14", ToDate=WINDOW["ToDate"]), INPUT, id="date-without-time"),
    pytest.param(_valid(FromDate="2020-13-01 00:00:00", ToDate=WINDOW["ToDate"]), INPUT, id="month-13"),
    pytest.param(_valid(FromDate=20201014, ToDate=WINDOW["ToDate"]), INPUT, id="date-as-number"),
    pytest.param(_valid(FromDate=WINDOW["FromDate"]), MISSING, id="from-without-to"),
    pytest.param(_valid(ToDate=WINDOW["ToDate"]), MISSING, id="to-without-from"),
    pytest.param(_valid(FromDate=WINDOW["ToDate"], ToDate=WINDOW["FromDate"]), INPUT, id="from-after-to"),
    pytest.param(_valid(prospectId=LEAD_ID), "MXUnknownAttributeException", id="miscased-attribute"),
    pytest.param(_valid(DeleteEverything=True), "MXUnknownAttributeException", id="unknown-attribute"),
]


@pytest.mark.parametrize(("body", "exception_type"), CASES)
def test_invalid_body_gets_400(emu, leads_unchanged, body, exception_type):
    response = post_reset(emu, body)

    assert response.status_code == 400
    assert response.json()["Status"] == "Error"
    assert response.json()["ExceptionType"] == exception_type
    assert response.json()["ExceptionMessage"]
    record = emu.calls()[-1]
    assert (record["outcome"], record["exception_type"], record["status"]) == ("rejected", exception_type, 400)


@pytest.mark.parametrize(
    ("content_type", "data"),
    [
        pytest.param("text/plain", b'{"ProspectId": "x", "ActivityEventList": [166]}', id="text-plain"),
        pytest.param("application/x-www-form-urlencoded", b"ProspectId=x", id="form"),
        pytest.param(None, b'{"ProspectId": "x", "ActivityEventList": [166]}', id="no-content-type"),
        pytest.param("application/json", b'{"ProspectId": ', id="truncated-json"),
        pytest.param("application/json", b"", id="empty-body"),
        pytest.param("application/json", b"\xff\xfe", id="not-utf8"),
    ],
)
def test_wrong_content_type_or_non_json_gets_400(emu, leads_unchanged, content_type, data):
    headers = dict(ADMIN_HEADERS)
    if content_type:
        headers["Content-Type"] = content_type
    response = requests.post(f"{emu.base_url}{RESET_PATH}", data=data, headers=headers, timeout=TIMEOUT)

    assert response.status_code == 400
    assert response.json()["ExceptionType"] == JSON


def test_json_content_type_with_charset_is_accepted(emu):
    headers = {**ADMIN_HEADERS, "Content-Type": "application/json; charset=utf-8"}
    data = b'{"ProspectId": "%s", "ActivityEventList": [166]}' % LEAD_ID.encode()

    response = requests.post(f"{emu.base_url}{RESET_PATH}", data=data, headers=headers, timeout=TIMEOUT)

    assert response.status_code == 200


def test_null_optional_attributes_count_as_absent(emu):
    body = _valid(TaskTypeList=None, AuditActivityList=None, ShouldDeleteProspectNotes=None, FromDate=None)

    assert post_reset(emu, body).status_code == 200


def test_unknown_lead_gets_400_lead_not_found(emu, leads_unchanged):
    response = post_reset(emu, _valid(ProspectId="00000000-0000-0000-0000-000000000000"))

    assert response.status_code == 400
    assert response.json() == {
        "Status": "Error",
        "ExceptionType": "MXInvalidEntityReferenceException",
        "ExceptionMessage": "Lead not found",
    }
    assert emu.calls()[-1]["outcome"] == "rejected"


def test_validation_comes_before_lead_existence(emu):
    response = post_reset(emu, {"ProspectId": "no-such-lead"})

    assert response.json()["ExceptionType"] == MISSING
