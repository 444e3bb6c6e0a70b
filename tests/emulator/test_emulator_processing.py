"""Accepted resets after the answer: performed after a processing delay, or never (seeded or by lead),
and what the inspection API says about each."""

from __future__ import annotations

import time

import pytest
import requests

from lsq_emulator import EmulatorConfig, run_emulator
from tests.emulator.emulator_support import (
    ADMIN_HEADERS,
    LEAD_ID,
    OTHER_LEAD_ID,
    TIMEOUT,
    config,
    make_lead,
    post_reset,
)

QUEUED = {"Status": "Success", "Message": {"Message": "Your request for lead reset has been queued."}}
RETRIEVE_URL = "/v2/ProspectActivity.svc/Retrieve"


def _reset(emu, lead_id: str = LEAD_ID):
    return post_reset(emu, {"ProspectId": lead_id, "ActivityEventList": [166]})


def _count_166(emu, lead_id: str = LEAD_ID) -> int:
    response = requests.post(
        f"{emu.base_url}{RETRIEVE_URL}",
        params={"leadId": lead_id},
        json={"Parameter": {"ActivityEvent": 166}, "Paging": {"Offset": "0", "RowCount": "25"}},
        headers=ADMIN_HEADERS,
        timeout=TIMEOUT,
    )
    assert response.status_code == 200
    return response.json()["RecordCount"]


def test_processing_delay_keeps_activities_readable_until_it_ends():
    with run_emulator(config(reset_processing_delay_seconds=1.0), leads=[make_lead()]) as emu:
        response = _reset(emu)
        accepted_at = time.monotonic()

        assert response.json() == QUEUED
        assert _count_166(emu) == 4
        assert [c["reset_state"] for c in emu.calls()] == ["pending", None]
        (pending,) = emu.resets("pending")
        assert (pending["seq"], pending["lead_id"]) == (1, LEAD_ID)
        assert pending["due_at"] == pytest.approx(pending["accepted_at"] + 1.0)
        assert emu.stats()["pending_resets"] == 1

        time.sleep(max(0.0, accepted_at + 1.1 - time.monotonic()))
        assert _count_166(emu) == 0
        assert emu.calls()[0]["reset_state"] == "performed"
        assert emu.resets("pending") == []
        assert [r["seq"] for r in emu.resets("performed")] == [1]
        assert emu.stats()["resets_by_state"] == {"pending": {}, "performed": {LEAD_ID: 1}, "unperformed": {}}


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"reset_processing_delay_seconds": 2.5}, id="new-name"),
        pytest.param({"reset_apply_delay": 2.5}, id="old-name"),
    ],
)
def test_the_delay_has_one_value_under_both_names(changes):
    settings = EmulatorConfig(**changes)

    assert (settings.reset_processing_delay_seconds, settings.reset_apply_delay) == (2.5, 2.5)
    assert settings.replace(reset_apply_delay=1.0).reset_processing_delay_seconds == 1.0
    assert settings.replace(reset_processing_delay_seconds=0.0).reset_apply_delay == 0.0


def test_the_two_names_may_not_disagree():
    with pytest.raises(ValueError, match="disagree"):
        EmulatorConfig(reset_processing_delay_seconds=1.0, reset_apply_delay=2.0)


def test_unperformed_leads_answer_success_but_are_never_reset():
    settings = config(unperformed_leads=(LEAD_ID.upper(),))
    with run_emulator(settings, leads=[make_lead(), make_lead(OTHER_LEAD_ID)]) as emu:
        lost = _reset(emu)
        done = _reset(emu, OTHER_LEAD_ID)

        assert (lost.status_code, lost.json()) == (200, QUEUED)
        assert (done.status_code, done.json()) == (200, QUEUED)
        assert _count_166(emu) == 4
        assert _count_166(emu, OTHER_LEAD_ID) == 0
        assert [(c["outcome"], c["reset_state"]) for c in emu.calls()[:2]] == [
            ("queued", "unperformed"),
            ("queued", "performed"),
        ]
        assert [(r["seq"], r["lead_id"]) for r in emu.resets("unperformed")] == [(1, LEAD_ID)]
        stats = emu.stats()
        assert stats["accepted_by_lead"] == {LEAD_ID: 1, OTHER_LEAD_ID: 1}
        assert stats["resets_by_state"]["unperformed"] == {LEAD_ID: 1}
        assert stats["pending_resets"] == 0


def test_unperformed_lead_stays_unreset_after_the_delay():
    settings = config(unperformed_leads=(LEAD_ID,), reset_processing_delay_seconds=0.5)
    with run_emulator(settings, leads=[make_lead(), make_lead(OTHER_LEAD_ID)]) as emu:
        _reset(emu)
        _reset(emu, OTHER_LEAD_ID)
        assert {r["lead_id"]: r["state"] for r in emu.resets()} == {LEAD_ID: "unperformed", OTHER_LEAD_ID: "pending"}

        time.sleep(0.6)
        assert {r["lead_id"]: r["state"] for r in emu.resets()} == {LEAD_ID: "unperformed", OTHER_LEAD_ID: "performed"}
        assert emu.lead(LEAD_ID) == make_lead()


def _lead_id(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def _unperformed_run(seed: int) -> list[str]:
    leads = [make_lead(_lead_id(n)) for n in range(40)]
    with run_emulator(config(seed=seed, unperformed_reset_fraction=0.3), leads=leads) as emu:
        answers = [_reset(emu, _lead_id(n)).json() for n in range(40)]
        assert answers == [QUEUED] * 40
        lost = [r["lead_id"] for r in emu.resets("unperformed")]
        still_there = [_lead_id(n) for n in range(40) if _count_166(emu, _lead_id(n)) == 4]
        assert still_there == lost
        assert len(emu.resets("performed")) == 40 - len(lost)
        return lost


def test_unperformed_fraction_is_seeded():
    first, second, other = _unperformed_run(3), _unperformed_run(3), _unperformed_run(4)

    assert first == second
    assert first != other
    assert 4 <= len(first) <= 20  # about 30 % of 40


def test_resets_endpoint_over_http():
    settings = config(unperformed_leads=(OTHER_LEAD_ID,), reset_processing_delay_seconds=30)
    with run_emulator(settings, leads=[make_lead(), make_lead(OTHER_LEAD_ID)]) as emu:
        _reset(emu)
        _reset(emu, OTHER_LEAD_ID)
        base = f"{emu.base_url}/_emulator/resets"

        every = requests.get(base, timeout=TIMEOUT).json()
        pending = requests.get(base, params={"state": "pending"}, timeout=TIMEOUT).json()
        unperformed = requests.get(base, params={"state": "unperformed"}, timeout=TIMEOUT).json()
        bad = requests.get(base, params={"state": "lost"}, timeout=TIMEOUT)
        calls = requests.get(f"{emu.base_url}/_emulator/calls", timeout=TIMEOUT).json()

    assert [(r["seq"], r["lead_id"], r["state"]) for r in every] == [
        (1, LEAD_ID, "pending"),
        (2, OTHER_LEAD_ID, "unperformed"),
    ]
    assert set(every[0]) == {"seq", "lead_id", "state", "accepted_at", "due_at"}
    assert every[0]["due_at"] - every[0]["accepted_at"] == pytest.approx(30)
    assert [r["lead_id"] for r in pending] == [LEAD_ID]
    assert [r["lead_id"] for r in unperformed] == [OTHER_LEAD_ID]
    assert bad.status_code == 400
    assert [c["reset_state"] for c in calls] == ["pending", "unperformed"]


def test_unperformed_settings_over_the_config_endpoint(emu):
    response = requests.post(
        f"{emu.base_url}/_emulator/config",
        json={"unperformed_leads": [LEAD_ID], "reset_processing_delay_seconds": 0},
        timeout=TIMEOUT,
    )
    _reset(emu)

    assert response.json()["unperformed_leads"] == [LEAD_ID]
    assert emu.calls()[-1]["reset_state"] == "unperformed"
    assert emu.lead(LEAD_ID) == make_lead()
