"""Injected faults and latency: each kind forced at rate 1.0, never applied, and reproducible under a seed."""

from __future__ import annotations

import contextlib
import threading
import time

import pytest
import requests

from lsq_emulator import run_emulator
from lsq_emulator.config import EmulatorConfig
from lsq_emulator.faults import FaultDice
from tests.emulator.emulator_support import LEAD_ID, OTHER_LEAD_ID, TIMEOUT, config, make_lead, post_reset

pytestmark = pytest.mark.slow

NOTES_RESET = {"ProspectId": LEAD_ID, "ShouldDeleteProspectNotes": True}


def _notes_left(emu) -> int:
    return len(emu.lead(LEAD_ID)["notes"])


def test_5xx_fault_answers_500_with_an_error_body_and_applies_nothing():
    with run_emulator(config(fault_5xx_rate=1.0), leads=[make_lead()]) as emu:
        response = post_reset(emu, NOTES_RESET)

        assert response.status_code == 500
        assert response.json()["Status"] == "Error"
        assert response.json()["ExceptionType"]
        assert _notes_left(emu) == 2
        assert emu.calls()[-1]["outcome"] == "fault_5xx"


def test_timeout_fault_hangs_past_the_client_timeout_and_applies_nothing():
    with run_emulator(config(fault_timeout_rate=1.0, hang_seconds=1.0), leads=[make_lead()]) as emu:
        started = time.monotonic()
        with pytest.raises(requests.exceptions.ReadTimeout):
            post_reset(emu, NOTES_RESET, timeout=0.3)

        assert time.monotonic() - started < 0.9
        assert _notes_left(emu) == 2
        record = emu.calls()[-1]
        assert (record["outcome"], record["status"]) == ("timeout", 504)


def test_timeout_fault_answers_504_after_hanging():
    with run_emulator(config(fault_timeout_rate=1.0, hang_seconds=0.3), leads=[make_lead()]) as emu:
        started = time.monotonic()
        response = post_reset(emu, NOTES_RESET)

        assert time.monotonic() - started >= 0.3
        assert response.status_code == 504
        assert _notes_left(emu) == 2
        assert emu.calls()[-1]["duration"] >= 0.3


def test_a_frozen_server_carries_out_a_reset_its_client_gave_up_on():
    """What a stalled server means for a client: no answer within its timeout, yet the reset is accepted."""
    with run_emulator(config(), leads=[make_lead()]) as emu:
        freezer = threading.Thread(target=emu.freeze, args=(1.0,))
        freezer.start()
        time.sleep(0.1)
        started = time.monotonic()
        with pytest.raises(requests.exceptions.ReadTimeout):
            post_reset(emu, NOTES_RESET, timeout=0.5)
        assert time.monotonic() - started < 0.9  # the client gave up while the server was frozen
        freezer.join()

        deadline = time.monotonic() + 5
        while _notes_left(emu) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _notes_left(emu) == 0  # carried out after the freeze all the same
        assert [c["outcome"] for c in emu.calls()] == ["queued"]


def test_drop_fault_breaks_the_connection_mid_response():
    with run_emulator(config(fault_drop_rate=1.0), leads=[make_lead()]) as emu:
        with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError)):
            post_reset(emu, NOTES_RESET)

        assert _notes_left(emu) == 2
        assert emu.calls()[-1]["outcome"] == "dropped"
        emu.configure(fault_drop_rate=0.0)
        assert post_reset(emu, NOTES_RESET).status_code == 200  # the server lives on


def test_html_fault_answers_502_with_an_html_page():
    with run_emulator(config(fault_html_rate=1.0), leads=[make_lead()]) as emu:
        response = post_reset(emu, NOTES_RESET)

        assert response.status_code == 502
        assert response.headers["content-type"].startswith("text/html")
        assert "<html>" in response.text
        assert _notes_left(emu) == 2
        assert emu.calls()[-1]["outcome"] == "html"


def test_non_json_fault_answers_200_with_a_body_that_is_not_json():
    with run_emulator(config(fault_non_json_200_rate=1.0), leads=[make_lead()]) as emu:
        response = post_reset(emu, NOTES_RESET)

        assert response.status_code == 200
        assert not response.headers["content-type"].startswith("application/json")
        with pytest.raises(requests.exceptions.JSONDecodeError):
            response.json()
        assert _notes_left(emu) == 2
        assert emu.calls()[-1]["outcome"] == "non_json"


def test_faults_come_after_auth_and_rate_limit_and_count_toward_it():
    with run_emulator(config(fault_5xx_rate=1.0, rate_limit=1), leads=[make_lead()]) as emu:
        statuses = [post_reset(emu, NOTES_RESET, headers={}).status_code]
        statuses += [post_reset(emu, NOTES_RESET).status_code for _ in range(2)]

    assert statuses == [401, 500, 429]


def test_faults_never_touch_the_inspection_api_or_unknown_paths():
    with run_emulator(config(fault_5xx_rate=1.0)) as emu:
        health = requests.get(f"{emu.base_url}/_emulator/health", timeout=TIMEOUT)
        unknown = requests.get(f"{emu.base_url}/v2/Nope.svc/Nothing", timeout=TIMEOUT)

    assert health.status_code == 200
    assert unknown.status_code == 404


def _outcomes(seed: int) -> list[str]:
    settings = config(
        seed=seed,
        fault_5xx_rate=0.15,
        fault_html_rate=0.15,
        fault_non_json_200_rate=0.15,
        fault_drop_rate=0.1,
        rate_limit_burst_rate=0.1,
    )
    with run_emulator(settings, leads=[make_lead()]) as emu:
        for _ in range(40):
            with contextlib.suppress(requests.exceptions.ChunkedEncodingError, requests.ConnectionError):
                post_reset(emu, {"ProspectId": LEAD_ID, "ActivityEventList": [1]})
        return [call["outcome"] for call in emu.calls()]


def test_same_seed_gives_the_same_fault_sequence():
    first, second, other = _outcomes(7), _outcomes(7), _outcomes(8)

    assert first == second
    assert len(set(first)) >= 5  # queued, fault_5xx, html, non_json, dropped, rate_limited mixed
    assert first != other


def test_latency_draws_are_reproducible_and_within_range():
    settings = EmulatorConfig(latency=(0.1, 0.3), seed=3)
    one, two = FaultDice(3), FaultDice(3)
    first = [one.draw(settings).latency for _ in range(20)]
    second = [two.draw(settings).latency for _ in range(20)]

    assert first == second
    assert all(0.1 <= x <= 0.3 for x in second)
    assert len(set(second)) > 1


def test_fixed_latency_delays_every_api_answer():
    with run_emulator(config(latency=(0.5, 0.5)), leads=[make_lead()]) as emu:
        started = time.monotonic()
        post_reset(emu, NOTES_RESET)
        post_reset(emu, NOTES_RESET, headers={})
        elapsed = time.monotonic() - started

        inspection_started = time.monotonic()
        requests.get(f"{emu.base_url}/_emulator/stats", timeout=TIMEOUT)
        inspection_elapsed = time.monotonic() - inspection_started

    assert elapsed >= 1.0
    assert inspection_elapsed < 0.4  # no latency: well under the 0.5 s an API call waits


def test_failing_leads_always_answer_500_and_others_are_untouched():
    with run_emulator(config(failing_leads=(LEAD_ID.upper(),)), leads=[make_lead(), make_lead(OTHER_LEAD_ID)]) as emu:
        failing = [post_reset(emu, {"ProspectId": LEAD_ID, "ShouldDeleteProspectNotes": True}) for _ in range(3)]
        fine = post_reset(emu, {"ProspectId": OTHER_LEAD_ID, "ShouldDeleteProspectNotes": True})
        assert [r.status_code for r in failing] == [500, 500, 500]
        assert fine.status_code == 200
        assert emu.stats()["accepted_by_lead"] == {OTHER_LEAD_ID: 1}
        assert emu.lead(LEAD_ID)["notes"] == make_lead()["notes"]
