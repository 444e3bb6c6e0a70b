"""Accepted resets: the success answer, exactly which records go, delayed application, and the read APIs."""

from __future__ import annotations

import time

import pytest
import requests

from lsq_emulator import Emulator, load_seed_file, run_emulator
from tests.emulator.emulator_support import (
    ADMIN_HEADERS,
    LEAD_ID,
    OTHER_LEAD_ID,
    TASK_TYPE_A,
    TIMEOUT,
    config,
    ids,
    make_lead,
    post_reset,
)

WINDOW = {"FromDate": "2020-10-14 18:30:00", "ToDate": "2020-10-16 18:29:59"}
QUEUED = {"Status": "Success", "Message": {"Message": "Your request for lead reset has been queued."}}


def test_success_answer_is_the_documented_one(emu):
    response = post_reset(emu, {"ProspectId": LEAD_ID, "ActivityEventList": [166], **WINDOW})

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == QUEUED
    assert emu.calls()[-1]["outcome"] == "queued"
    assert emu.stats()["accepted_by_lead"] == {LEAD_ID: 1}


def test_window_is_inclusive_at_both_ends_and_only_chosen_codes_go(emu):
    post_reset(emu, {"ProspectId": LEAD_ID, "ActivityEventList": [166], **WINDOW})

    lead = emu.lead(LEAD_ID)
    assert ids(lead, "activities") == {"a-before", "a-inside-167", "a-inside-200", "a-after"}
    assert lead["audits"] == make_lead()["audits"]
    assert lead["tasks"] == make_lead()["tasks"]
    assert lead["notes"] == make_lead()["notes"]


def test_several_kinds_in_one_call_delete_only_those_kinds_in_the_window(emu):
    body = {
        "ProspectId": LEAD_ID,
        "ActivityEventList": [167],
        "TaskTypeList": [TASK_TYPE_A.upper()],
        "AuditActivityList": ["StageChange"],
        "ShouldDeleteProspectNotes": True,
        **WINDOW,
    }

    post_reset(emu, body)

    lead = emu.lead(LEAD_ID)
    assert ids(lead, "activities") == {"a-before", "a-from", "a-inside-200", "a-to", "a-after"}
    assert ids(lead, "tasks") == {"t-b-inside", "t-a-before"}
    assert ids(lead, "audits") == {"o-inside", "s-after"}
    assert ids(lead, "notes") == {"n-after"}


def test_no_window_deletes_every_record_of_the_kinds_since_creation(emu):
    post_reset(emu, {"ProspectId": LEAD_ID, "ActivityEventList": [166], "ShouldDeleteProspectNotes": True})

    lead = emu.lead(LEAD_ID)
    assert ids(lead, "activities") == {"a-inside-167", "a-inside-200"}
    assert lead["notes"] == []
    assert len(lead["tasks"]) == 3
    assert len(lead["audits"]) == 3


def test_lead_ids_match_case_insensitively(emu):
    response = post_reset(emu, {"ProspectId": LEAD_ID.upper(), "AuditActivityList": ["OwnerChange"]})

    assert response.status_code == 200
    assert ids(emu.lead(LEAD_ID.upper()), "audits") == {"s-inside", "s-after"}
    assert emu.stats()["accepted_by_lead"] == {LEAD_ID: 1}


def test_other_leads_are_untouched(emu):
    post_reset(emu, {"ProspectId": LEAD_ID, "ActivityEventList": [166, 167, 200], "ShouldDeleteProspectNotes": True})

    assert emu.lead(OTHER_LEAD_ID) == make_lead(OTHER_LEAD_ID)


def test_reset_is_applied_only_after_the_delay():
    with run_emulator(config(reset_apply_delay=0.4), leads=[make_lead()]) as emu:
        response = post_reset(emu, {"ProspectId": LEAD_ID, "ShouldDeleteProspectNotes": True})
        accepted_at = time.monotonic()

        assert response.json() == QUEUED
        assert len(emu.lead(LEAD_ID)["notes"]) == 2
        assert emu.stats()["pending_resets"] == 1
        time.sleep(max(0.0, accepted_at + 0.5 - time.monotonic()))
        assert emu.lead(LEAD_ID)["notes"] == []
        assert emu.stats()["pending_resets"] == 0


def test_delayed_reset_shows_in_the_read_api_only_after_the_delay():
    with run_emulator(config(reset_apply_delay=0.3), leads=[make_lead()]) as emu:
        post_reset(emu, {"ProspectId": LEAD_ID, "ActivityEventList": [166]})
        url = f"{emu.base_url}/v2/ProspectActivity.svc/Retrieve"

        def count() -> int:
            return requests.post(url, params={"leadId": LEAD_ID}, headers=ADMIN_HEADERS, timeout=TIMEOUT).json()[
                "RecordCount"
            ]

        assert count() == 6
        time.sleep(0.4)
        assert count() == 2


def test_leads_get_by_id_returns_lead_fields_or_empty_list(emu):
    url = f"{emu.base_url}/v2/LeadManagement.svc/Leads.GetById"

    found = requests.get(url, params={"id": LEAD_ID.upper()}, headers=ADMIN_HEADERS, timeout=TIMEOUT)
    missing = requests.get(url, params={"id": "nope"}, headers=ADMIN_HEADERS, timeout=TIMEOUT)

    assert found.status_code == 200
    assert found.json() == [{"ProspectId": LEAD_ID, "CreatedOn": "2020-10-01 00:00:00", "FirstName": "Asha"}]
    assert missing.json() == []
    assert emu.calls()[-1]["outcome"] == "ok"
    assert emu.calls()[-1]["lead_id"] == "nope"


def test_activity_retrieve_filters_by_event_and_pages(emu):
    url = f"{emu.base_url}/v2/ProspectActivity.svc/Retrieve"
    body = {"Parameter": {"ActivityEvent": 166}, "Paging": {"Offset": 1, "RowCount": 2}}

    response = requests.post(url, params={"leadId": LEAD_ID}, json=body, headers=ADMIN_HEADERS, timeout=TIMEOUT)

    assert response.status_code == 200
    assert response.json()["RecordCount"] == 4
    assert [a["Id"] for a in response.json()["ProspectActivities"]] == ["a-from", "a-to"]


def test_seed_file_loads_leads(tmp_path):
    path = tmp_path / "leads.json"
    path.write_text(
        '{"leads": [{"ProspectId": "L-1", "CreatedOn": "2021-01-01 00:00:00", "notes": '
        '[{"CreatedOn": "2021-02-01 00:00:00"}]}]}'
    )

    leads = load_seed_file(path)
    emulator = Emulator(config(), leads)

    lead = emulator.lead("l-1")
    assert lead["ProspectId"] == "L-1"
    assert lead["activities"] == [] and lead["tasks"] == [] and lead["audits"] == []
    assert lead["notes"][0]["Id"]


@pytest.mark.parametrize(
    "bad_lead",
    [
        pytest.param({"CreatedOn": "2021-01-01 00:00:00"}, id="no-id"),
        pytest.param({"ProspectId": "x", "notes": [{"CreatedOn": "2021-01-01"}]}, id="bad-record-date"),
        pytest.param({"ProspectId": "x", "activities": [{"CreatedOn": "2021-01-01 00:00:00"}]}, id="no-event"),
    ],
)
def test_malformed_seed_leads_are_refused(bad_lead):
    emulator = Emulator(config())

    with pytest.raises(ValueError):
        emulator.add_leads([bad_lead])
    assert emulator.leads() == []
