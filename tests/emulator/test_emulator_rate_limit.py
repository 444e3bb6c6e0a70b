"""Rate limiting: per-account sliding window log, three answer styles, exact counts, nothing changed."""

from __future__ import annotations

import time

import pytest
import requests

from lsq_emulator import Account, run_emulator
from tests.emulator.emulator_support import (
    ADMIN_HEADERS,
    LEAD_ID,
    TIMEOUT,
    VIEWER_HEADERS,
    config,
    make_lead,
    post_reset,
)

pytestmark = pytest.mark.slow

LIMIT_BODY = {
    "Status": "Error",
    "ExceptionType": "MXAPIRateLimitExceededException",
    "ExceptionMessage": "API calls exceeded the limit of 25 in 5 second(s)",
}


def _lead_id(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


@pytest.mark.parametrize("style", ["429", "200", "403"])
def test_thirty_quick_calls_at_25_per_5s_give_25_accepted_and_5_refused(style):
    leads = [make_lead(_lead_id(n)) for n in range(30)]
    with run_emulator(config(rate_limit=25, rate_window_seconds=5.0, rate_limit_style=style), leads=leads) as emu:
        responses = [post_reset(emu, {"ProspectId": _lead_id(n), "ShouldDeleteProspectNotes": True}) for n in range(30)]

        assert [r.status_code for r in responses[:25]] == [200] * 25
        assert all(r.json()["Status"] == "Success" for r in responses[:25])
        assert [r.status_code for r in responses[25:]] == [int(style)] * 5
        assert all(r.json() == LIMIT_BODY for r in responses[25:])
        assert [emu.lead(_lead_id(n))["notes"] for n in range(25)] == [[]] * 25
        assert [len(emu.lead(_lead_id(n))["notes"]) for n in range(25, 30)] == [2] * 5
        stats = emu.stats()
        assert stats["by_outcome"]["queued"] == 25
        assert stats["by_outcome"]["rate_limited"] == 5
        assert stats["rate_limited"] == {"429": 0, "200": 0, "403": 0, style: 5}
        refused = emu.calls()[25:]
        assert {(c["outcome"], c["rate_limit_style"], c["status"]) for c in refused} == {
            ("rate_limited", style, int(style))
        }


def test_message_carries_the_configured_numbers():
    with run_emulator(config(rate_limit=2, rate_window_seconds=0.5), leads=[make_lead()]) as emu:
        responses = [post_reset(emu, {"ProspectId": LEAD_ID, "ActivityEventList": [1]}) for _ in range(3)]

    assert responses[2].json()["ExceptionMessage"] == "API calls exceeded the limit of 2 in 0.5 second(s)"


def test_window_slides_and_refused_calls_do_not_count():
    body = {"ProspectId": LEAD_ID, "ActivityEventList": [1]}
    with run_emulator(config(rate_limit=3, rate_window_seconds=1.0), leads=[make_lead()]) as emu:
        start = time.monotonic()

        def at(offset: float) -> int:
            time.sleep(max(0.0, start + offset - time.monotonic()))
            return post_reset(emu, body).status_code

        statuses = [at(0.0), at(0.0), at(0.5), at(0.55)]  # A B C accepted, D refused
        statuses += [at(1.15), at(1.15), at(1.15)]  # A B expired; D was never logged, so only C is left
        statuses += [at(1.65)]  # C expired too, the two from 1.15 remain

    assert statuses == [200, 200, 200, 429, 200, 200, 429, 200]


def test_limit_is_per_account_and_shared_by_its_users():
    accounts = [
        Account(name="acme", access_key="u$acme-1", secret_key="s1"),
        Account(name="acme", access_key="u$acme-2", secret_key="s2"),
        Account(name="other", access_key="u$other", secret_key="s3"),
    ]
    user_path = "/v2/Authentication.svc/UserByAccessKey.Get"
    with run_emulator(config(accounts=accounts, rate_limit=2, rate_window_seconds=5.0)) as emu:

        def get(access: str, secret: str) -> int:
            headers = {"x-LSQ-AccessKey": access, "x-LSQ-SecretKey": secret}
            return requests.get(f"{emu.base_url}{user_path}", headers=headers, timeout=TIMEOUT).status_code

        statuses = [get("u$acme-1", "s1"), get("u$acme-2", "s2"), get("u$acme-1", "s1"), get("u$other", "s3")]

    assert statuses == [200, 200, 429, 200]


def test_unauthorized_calls_do_not_count_but_rejected_ones_do():
    with run_emulator(config(rate_limit=2, rate_window_seconds=5.0), leads=[make_lead()]) as emu:
        unauthorized = [post_reset(emu, {}, headers={}).status_code for _ in range(5)]
        non_admin = post_reset(emu, {"ProspectId": LEAD_ID}, headers=VIEWER_HEADERS).status_code
        invalid = post_reset(emu, {"ProspectId": LEAD_ID}).status_code
        valid = post_reset(emu, {"ProspectId": LEAD_ID, "ActivityEventList": [1]}).status_code
        over = post_reset(emu, {"ProspectId": LEAD_ID, "ActivityEventList": [1]}).status_code

    assert unauthorized == [401] * 5
    assert (non_admin, invalid, valid, over) == (401, 400, 200, 429)


def test_burst_answers_rate_limited_under_the_limit_without_counting():
    with run_emulator(config(rate_limit=2, rate_limit_burst_rate=1.0), leads=[make_lead()]) as emu:
        burst = [post_reset(emu, {"ProspectId": LEAD_ID, "ShouldDeleteProspectNotes": True}) for _ in range(4)]
        assert [r.status_code for r in burst] == [429] * 4
        assert len(emu.lead(LEAD_ID)["notes"]) == 2

        emu.configure(rate_limit_burst_rate=0.0, rate_limit_style="403")
        after = [post_reset(emu, {"ProspectId": LEAD_ID, "ActivityEventList": [1]}).status_code for _ in range(3)]

    assert burst[0].json()["ExceptionType"] == "MXAPIRateLimitExceededException"
    assert after == [200, 200, 403]


def test_reads_count_toward_the_limit():
    with run_emulator(config(rate_limit=2), leads=[make_lead()]) as emu:
        url = f"{emu.base_url}/v2/LeadManagement.svc/Leads.GetById"
        reads = [
            requests.get(url, params={"id": LEAD_ID}, headers=ADMIN_HEADERS, timeout=TIMEOUT).status_code
            for _ in range(2)
        ]
        reset = post_reset(emu, {"ProspectId": LEAD_ID, "ActivityEventList": [1]}).status_code

    assert (reads, reset) == ([200, 200], 429)


def test_concurrent_calls_are_counted_exactly():
    from concurrent.futures import ThreadPoolExecutor

    leads = [make_lead(_lead_id(n)) for n in range(40)]
    with run_emulator(config(rate_limit=25, rate_window_seconds=5.0), leads=leads) as emu:
        with ThreadPoolExecutor(max_workers=10) as pool:
            statuses = list(
                pool.map(
                    lambda n: (
                        post_reset(emu, {"ProspectId": _lead_id(n), "ShouldDeleteProspectNotes": True}).status_code
                    ),
                    range(40),
                )
            )
        emptied = sum(1 for n in range(40) if emu.lead(_lead_id(n))["notes"] == [])
        seqs = [call["seq"] for call in emu.calls()]

    assert sorted(statuses) == [200] * 25 + [429] * 15
    assert emptied == 25
    assert seqs == list(range(1, 41))
