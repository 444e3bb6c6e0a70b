"""The approval gate in a real browser: a user opens the waiting run, reads the preview and approves it.

Its run resets one lead of its own (``lead_ids``), so the other pages' tests read the same finished run as before.
Screenshots: docs/screenshots/approval-*.png.
"""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect

from tests.conftest import lsq_lead
from tests.e2e.test_approval import SETTLE_SECONDS

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

DAG_URL = "/dags/leadsquared_reset"
LEAD = lsq_lead("1e1e1e1e-0000-4000-8000-000000000001")["ProspectId"]  # in the emulator, in no other run
WINDOW = {"from_date": "2026-11-30T00:00:00+05:30", "to_date": "2026-11-30T23:59:59+05:30"}


def wait_for_approve(stack, run_id: str, state: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ti = stack.api("GET", f"{DAG_URL}/dagRuns/{run_id}/taskInstances/approve")
        if ti["state"] == state:
            return
        time.sleep(2)
    raise TimeoutError(f"approve of {run_id} not {state} within {timeout} s")


def test_a_user_reads_the_preview_of_a_waiting_run_and_approves_it(page, finished_run, screenshot):
    stack = finished_run.e2e.stack
    run_id = stack.trigger({**WINDOW, "lead_ids": [LEAD], "approval_threshold": 0}, run_id="ui_approval")
    wait_for_approve(stack, run_id, "awaiting_input")
    time.sleep(SETTLE_SECONDS)  # a person reads first; Airflow 3.3 loses an answer given in the first seconds

    page.goto(f"{finished_run.url}{DAG_URL}/runs/{run_id}")
    page.get_by_role("button", name=re.compile(r"^Show Grid")).click()
    expect(page.get_by_text("Awaiting Input").first).to_be_visible()
    screenshot(page, "approval-waiting-run")

    page.goto(f"{finished_run.url}{DAG_URL}/runs/{run_id}/tasks/approve/required_actions")
    expect(page.get_by_text("Approve resetting 1 LeadSquared lead? (leadsquared_reset)").first).to_be_visible()
    for words in ("waits for approval before it resets", "Window (Asia/Kolkata)", "Estimated duration", LEAD):
        expect(page.get_by_text(words, exact=False).first).to_be_visible()
    screenshot(page, "approval-preview")

    page.get_by_role("button", name="Approve", exact=True).click()
    assert stack.wait_for_run(run_id, timeout=300) == "success"
    page.reload()
    expect(page.get_by_text(re.compile("Approval Received|Response received", re.I)).first).to_be_visible()
    screenshot(page, "approval-approved")

    calls = [c for c in finished_run.e2e.reset_calls() if c["lead_id"] == LEAD]
    assert len(calls) == 1
    approval = stack.xcom(run_id, "report")["approval"]
    assert (approval["decision"], approval["by"]) == ("approved", "admin")
