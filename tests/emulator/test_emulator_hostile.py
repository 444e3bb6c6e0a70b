"""Hostile answers: redirects, 200s that are not a Success, 403 permission denied, odd error bodies,
the 500 not-found answer; each by seeded fraction or by lead, none performing the reset."""

from __future__ import annotations

import json

import pytest
import requests

from lsq_emulator import HOSTILE_KINDS, EmulatorConfig, run_emulator
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

NOTES_RESET = {"ProspectId": LEAD_ID, "ShouldDeleteProspectNotes": True}
QUEUED = {"Status": "Success", "Message": {"Message": "Your request for lead reset has been queued."}}

# kind -> (status, JSON body); written out here, not imported, so a changed answer fails a test.
JSON_ANSWERS = {
    "empty_object": (200, {}),
    "status_failure": (200, {"Status": "Failure"}),
    "json_list": (200, [QUEUED]),
    "json_string": (200, "Success"),
    "forbidden": (
        403,
        {"Status": "Error", "ExceptionType": "MXUnAuthorizedAccessException", "ExceptionMessage": "Permission denied"},
    ),
    "exception_type_object": (
        200,
        {"Status": "Error", "ExceptionType": {"Name": "MXException", "Code": 500}, "ExceptionMessage": "Failed"},
    ),
    "exception_message_list": (
        500,
        {"Status": "Error", "ExceptionType": "MXException", "ExceptionMessage": ["Something went wrong", "retry"]},
    ),
    "exception_message_number": (
        400,
        {"Status": "Error", "ExceptionType": "MXInvalidInputException", "ExceptionMessage": 400},
    ),
    "transient_error_200": (
        200,
        {
            "Status": "Error",
            "ExceptionType": "MXException",
            "ExceptionMessage": "Something went wrong, please try again",
        },
    ),
}


def test_every_kind_is_covered_here():
    assert set(HOSTILE_KINDS) == {*JSON_ANSWERS, "redirect_302", "redirect_307", "maintenance_html"}


def _assert_not_performed(emu, kind: str, status: int) -> None:
    assert emu.lead(LEAD_ID) == make_lead()
    record = emu.calls()[-1]
    assert (record["outcome"], record["status"], record["reset_state"]) == (kind, status, "not_queued")
    assert record["body"] == NOTES_RESET
    assert emu.resets() == []
    assert emu.stats()["by_outcome"][kind] == 1
    assert emu.stats()["accepted_by_lead"] == {}


@pytest.mark.parametrize(("kind", "status", "body"), [pytest.param(k, *v, id=k) for k, v in JSON_ANSWERS.items()])
def test_json_hostile_answer_at_rate_one(kind, status, body):
    with run_emulator(config(hostile_rates={kind: 1.0}), leads=[make_lead()]) as emu:
        response = post_reset(emu, NOTES_RESET)

        assert response.status_code == status
        assert response.headers["content-type"].startswith("application/json")
        assert response.json() == body
        _assert_not_performed(emu, kind, status)


def test_maintenance_page_is_a_200_html_page():
    with run_emulator(config(hostile_rates={"maintenance_html": 1.0}), leads=[make_lead()]) as emu:
        response = post_reset(emu, NOTES_RESET)

        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        assert "maintenance" in response.text.lower()
        with pytest.raises(requests.exceptions.JSONDecodeError):
            response.json()
        _assert_not_performed(emu, "maintenance_html", 200)


@pytest.mark.parametrize(("kind", "status"), [("redirect_302", 302), ("redirect_307", 307)])
def test_redirect_points_at_the_other_host_with_the_same_path_and_query(kind, status):
    with (
        run_emulator(config(), leads=[make_lead()]) as other,
        run_emulator(config(hostile_rates={kind: 1.0}, redirect_url=other.base_url), leads=[make_lead()]) as emu,
    ):
        response = post_reset(emu, NOTES_RESET, params={"trace": "1"}, allow_redirects=False)

        assert response.status_code == status
        assert response.headers["location"] == f"{other.base_url}{RESET_PATH}?trace=1"
        assert response.headers["content-type"].startswith("text/html")
        _assert_not_performed(emu, kind, status)
        assert other.calls() == []


def test_a_client_following_a_307_sends_the_reset_to_the_other_host():
    """What a careless client does: the body and the key headers go to the other host."""
    with (
        run_emulator(config(), leads=[make_lead()]) as other,
        run_emulator(
            config(hostile_rates={"redirect_307": 1.0}, redirect_url=other.base_url), leads=[make_lead()]
        ) as emu,
    ):
        response = post_reset(emu, NOTES_RESET)  # requests follows redirects by default

        assert response.status_code == 200
        assert [r.status_code for r in response.history] == [307]
        assert emu.lead(LEAD_ID) == make_lead()
        (followed,) = other.calls()
        assert (followed["path"], followed["account"], followed["outcome"]) == (RESET_PATH, "demo", "queued")
        assert other.lead(LEAD_ID)["notes"] == []


def test_default_redirect_url_never_resolves():
    with run_emulator(config(hostile_rates={"redirect_302": 1.0}), leads=[make_lead()]) as emu:
        response = post_reset(emu, NOTES_RESET, allow_redirects=False)

    assert response.headers["location"] == f"https://maintenance.leadsquared.invalid{RESET_PATH}"


def test_hostile_leads_always_get_their_answer_and_others_succeed():
    leads = [make_lead(), make_lead(OTHER_LEAD_ID)]
    with run_emulator(config(hostile_leads={LEAD_ID.upper(): "status_failure"}), leads=leads) as emu:
        hostile = [post_reset(emu, NOTES_RESET) for _ in range(3)]
        fine = post_reset(emu, {"ProspectId": OTHER_LEAD_ID, "ShouldDeleteProspectNotes": True})

        assert [(r.status_code, r.json()) for r in hostile] == [(200, {"Status": "Failure"})] * 3
        assert fine.json() == QUEUED
        assert [c["reset_state"] for c in emu.calls()] == ["not_queued"] * 3 + ["performed"]
        assert emu.lead(LEAD_ID) == make_lead()
        assert emu.lead(OTHER_LEAD_ID)["notes"] == []
        assert emu.stats()["resets_by_state"]["performed"] == {OTHER_LEAD_ID: 1}


def test_hostile_answers_apply_to_lead_reset_only():
    with run_emulator(config(hostile_rates={"json_string": 1.0}), leads=[make_lead()]) as emu:
        user = requests.get(
            f"{emu.base_url}/v2/Authentication.svc/UserByAccessKey.Get", headers=ADMIN_HEADERS, timeout=TIMEOUT
        )
        activities = requests.post(
            f"{emu.base_url}/v2/ProspectActivity.svc/Retrieve",
            params={"leadId": LEAD_ID},
            json={},
            headers=ADMIN_HEADERS,
            timeout=TIMEOUT,
        )

    assert (user.status_code, user.json()["Role"]) == (200, "Administrator")
    assert activities.json()["RecordCount"] == 6


def test_hostile_answers_come_after_auth_and_the_rate_limit():
    with run_emulator(config(hostile_rates={"empty_object": 1.0}, rate_limit=1), leads=[make_lead()]) as emu:
        responses = [
            post_reset(emu, NOTES_RESET, headers={}),
            post_reset(emu, NOTES_RESET),
            post_reset(emu, NOTES_RESET),
        ]

        assert [r.status_code for r in responses] == [401, 200, 429]
        assert responses[1].json() == {}
        assert [c["outcome"] for c in emu.calls()] == ["unauthorized", "empty_object", "rate_limited"]
        assert {c["reset_state"] for c in emu.calls()} == {"not_queued"}


def test_forbidden_is_told_apart_from_a_rate_limit_answered_as_403():
    settings = config(hostile_leads={LEAD_ID: "forbidden"}, rate_limit=1, rate_limit_style="403")
    with run_emulator(settings, leads=[make_lead()]) as emu:
        denied = post_reset(emu, NOTES_RESET)
        limited = post_reset(emu, NOTES_RESET)

        assert (denied.status_code, limited.status_code) == (403, 403)
        assert denied.json()["ExceptionType"] == "MXUnAuthorizedAccessException"
        assert limited.json()["ExceptionType"] == "MXAPIRateLimitExceededException"
        assert [(c["outcome"], c["rate_limit_style"]) for c in emu.calls()] == [
            ("forbidden", None),
            ("rate_limited", "403"),
        ]
        assert emu.lead(LEAD_ID) == make_lead()


def _lead_id(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def _mixed_run(seed: int) -> tuple[list[tuple[int, str]], set[str], set[str]]:
    """60 resets on 60 leads under a mix of hostile answers: (status, outcome) per call, the leads
    answered Success and the leads whose notes are gone."""
    rates = {"redirect_302": 0.1, "empty_object": 0.1, "json_list": 0.1, "transient_error_200": 0.1}
    leads = [make_lead(_lead_id(n)) for n in range(60)]
    with run_emulator(config(seed=seed, hostile_rates=rates), leads=leads) as emu:
        success = set()
        for n in range(60):
            response = post_reset(
                emu, {"ProspectId": _lead_id(n), "ShouldDeleteProspectNotes": True}, allow_redirects=False
            )
            if response.headers["content-type"].startswith("application/json") and response.json() == QUEUED:
                success.add(_lead_id(n))
        emptied = {_lead_id(n) for n in range(60) if emu.lead(_lead_id(n))["notes"] == []}
        calls = [(c["status"], c["outcome"]) for c in emu.calls()]
        assert {c["lead_id"] for c in emu.calls() if c["reset_state"] == "performed"} == success
    return calls, success, emptied


def test_seeded_hostile_mix_is_reproducible_and_resets_exactly_the_success_answers():
    first, second, other = _mixed_run(5), _mixed_run(5), _mixed_run(6)

    calls, success, emptied = first
    assert first == second
    assert calls != other[0]
    assert emptied == success
    assert {outcome for _, outcome in calls} == {
        "queued",
        "redirect_302",
        "empty_object",
        "json_list",
        "transient_error_200",
    }
    assert 15 <= len(calls) - len(success) <= 35  # about 40 % of 60


def test_hostile_draws_leave_the_transport_fault_sequence_of_a_seed_unchanged():
    def outcomes(**extra) -> list[str]:
        with run_emulator(config(seed=11, fault_5xx_rate=0.3, **extra), leads=[make_lead()]) as emu:
            for _ in range(30):
                post_reset(emu, NOTES_RESET, allow_redirects=False)
            return [c["outcome"] for c in emu.calls()]

    plain = outcomes()
    with_hostile = outcomes(hostile_rates={"status_failure": 0.5})

    assert [o == "fault_5xx" for o in plain] == [o == "fault_5xx" for o in with_hostile]
    assert "status_failure" in with_hostile


@pytest.mark.parametrize(
    ("status", "message"),
    [pytest.param(400, "Lead not found", id="400"), pytest.param(500, "Lead does not exist", id="500")],
)
def test_missing_lead_answer_is_configurable(status, message):
    with run_emulator(config(missing_lead_status=status), leads=[make_lead()]) as emu:
        reset = post_reset(emu, {"ProspectId": "no-such-lead", "ShouldDeleteProspectNotes": True})
        read = requests.post(
            f"{emu.base_url}/v2/ProspectActivity.svc/Retrieve",
            params={"leadId": "no-such-lead"},
            json={},
            headers=ADMIN_HEADERS,
            timeout=TIMEOUT,
        )

        expected = {
            "Status": "Error",
            "ExceptionType": "MXInvalidEntityReferenceException",
            "ExceptionMessage": message,
        }
        assert (reset.status_code, reset.json()) == (status, expected)
        assert (read.status_code, read.json()) == (status, expected)
        reset_record, read_record = emu.calls()
        assert (reset_record["status"], reset_record["outcome"], reset_record["reset_state"]) == (
            status,
            "rejected",
            "not_queued",
        )
        assert (read_record["status"], read_record["reset_state"]) == (status, None)


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"hostile_rates": {"teapot": 0.1}}, id="unknown-kind"),
        pytest.param({"hostile_rates": {"json_list": 0.7, "json_string": 0.7}}, id="rates-above-one"),
        pytest.param({"hostile_rates": {"json_list": -0.1}}, id="negative-rate"),
        pytest.param({"hostile_leads": {LEAD_ID: "teapot"}}, id="unknown-lead-kind"),
        pytest.param({"redirect_url": "/relative"}, id="relative-redirect"),
        pytest.param({"missing_lead_status": 404}, id="missing-lead-404"),
    ],
)
def test_bad_hostile_settings_are_refused(changes):
    with pytest.raises(ValueError):
        EmulatorConfig(**changes)


def test_hostile_settings_change_over_the_config_endpoint(emu):
    payload = {"hostile_leads": {LEAD_ID: "redirect_307"}, "redirect_url": "http://127.0.0.1:9"}

    response = requests.post(f"{emu.base_url}/_emulator/config", json=payload, timeout=TIMEOUT)
    answer = post_reset(emu, NOTES_RESET, allow_redirects=False)

    assert response.status_code == 200
    assert json.loads(response.text)["hostile_leads"] == {LEAD_ID: "redirect_307"}
    assert answer.status_code == 307
    assert answer.headers["location"] == f"http://127.0.0.1:9{RESET_PATH}"
    assert emu.lead(LEAD_ID) == make_lead()
