"""The resets page in the Airflow UI, in Chromium: a finished run's tab and the lead search.

Saves docs/screenshots/resets-run.png and docs/screenshots/resets-lead.png (the README shows them).
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from leadsquared_provider.ui import NAV_ROUTE, RUN_TAB_ROUTE
from tests.conftest import ADMIN_ACCESS, ADMIN_SECRET
from tests.e2e.scenario import DAYS, INVALID_IDS, MISSING_LEAD, utc_window

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

DAG_URL = "/dags/leadsquared_reset"
FRAME = "iframe[title='Lead resets']"


def keys_absent(text: str) -> None:
    for secret in (ADMIN_ACCESS, ADMIN_SECRET):
        assert secret not in text


def verification_counts(finished_run) -> dict[str, int] | None:
    """The run's verification results per result, or None while the DAG has no verify step (no table)."""
    if not finished_run.e2e.state("SELECT 1 FROM sqlite_master WHERE name = 'leadsquared_reset_verification'"):
        return None
    rows = finished_run.e2e.state(
        "SELECT result, COUNT(*) FROM leadsquared_reset_verification WHERE run_key = ? GROUP BY result",
        (f"leadsquared_reset/{finished_run.run_id}",),
    )
    return dict(rows)


def test_run_tab_counts_the_outcomes_and_names_each_rejection(page, finished_run, screenshot):
    counts = finished_run.summary["counts"]
    assert counts.get("rejected") == len(INVALID_IDS) + 1 and counts.get("queued"), counts
    run_url = f"{finished_run.url}{DAG_URL}/runs/{finished_run.run_id}"

    page.set_viewport_size({"width": 1600, "height": 1800})  # the whole tab in the screenshot
    page.goto(run_url)
    page.get_by_role("link", name="Lead resets").click()  # the external view's tab on the DAG run page
    expect(page).to_have_url(re.compile(rf"/runs/{finished_run.run_id}/plugin/{RUN_TAB_ROUTE}$"))
    frame = page.frame_locator(FRAME)
    expect(frame.get_by_role("heading", name=f"Resets of run {finished_run.run_id}")).to_be_visible()

    # Counts per outcome: those of the report's summary, read from the same state store.
    table = frame.get_by_role("table", name="Leads per outcome")
    for outcome, count in counts.items():
        expect(table.locator(f"tr[data-outcome='{outcome}'] td.num")).to_have_text(str(count))
    expect(table.locator("tfoot")).to_contain_text(str(sum(counts.values())))

    # The leads not reset, each with its reason: the lead LeadSquared does not know, and the two non-GUIDs.
    not_reset = frame.get_by_role("table", name="Leads not reset")
    missing = not_reset.locator(f"tr[data-lead='{MISSING_LEAD}']")
    expect(missing).to_contain_text("rejected")
    expect(missing).to_contain_text("400")
    expect(missing).to_contain_text("MXInvalidEntityReferenceException")
    for bad in INVALID_IDS:
        row = not_reset.get_by_role("row").filter(has_text=bad)
        expect(row).to_contain_text("InvalidLeadId")
        expect(row).to_contain_text("never sent")

    # Calls per second against the account's limit (the connection's 25 per 5 s), no key anywhere.
    chart = frame.locator("svg.rate-chart")
    expect(chart).to_be_visible()
    expect(chart).to_contain_text("account limit 5/s (25 per 5 s)")
    # The verify step's results, once the DAG has one: the page reads its table.
    verified = verification_counts(finished_run)
    if verified is not None:
        results = frame.get_by_role("table", name="Verification results")
        for result, count in verified.items():
            expect(results.locator(f"tr[data-result='{result}'] td.num")).to_have_text(str(count))
    keys_absent(frame.locator("body").inner_text())
    screenshot(page, "resets-run")

    # Back to the grid: the link moves the Airflow UI itself (the frame may not navigate the top window).
    frame.get_by_role("link", name="Open the run's grid").click()
    expect(page).to_have_url(run_url)
    expect(page.get_by_role("heading", name=finished_run.run_id)).to_be_visible()


def test_lead_search_lists_every_run_that_touched_the_lead(page, finished_run, screenshot):
    page.goto(f"{finished_run.url}/")
    page.get_by_role("button", name="Browse").click()
    page.get_by_role("menuitem", name="Lead resets").click()  # the external view in the navigation
    expect(page).to_have_url(re.compile(rf"/plugin/{NAV_ROUTE}"))
    frame = page.frame_locator(FRAME)

    # Recent runs, then a search for the lead LeadSquared did not know (typed in capitals: ids are lower-cased).
    expect(frame.get_by_role("table", name="Recent runs")).to_contain_text(finished_run.run_id)
    frame.get_by_label("Lead id").fill(MISSING_LEAD.upper())
    frame.get_by_role("button", name="Search").click()
    expect(page).to_have_url(re.compile(r"lead_id=0F0F0F0F"))  # the UI keeps the frame's address: a shareable link

    history = frame.get_by_role("table", name="Lead history")
    rows = history.locator("tbody tr")
    expect(rows).to_have_count(1)
    row = rows.first
    frm, to = utc_window(DAYS[1])
    for text in (finished_run.run_id, frm, to, "activities 166, 167", "audits", "rejected", "400"):
        expect(row).to_contain_text(text)
    expect(row).to_contain_text("MXInvalidEntityReferenceException")
    expect(row.locator("td.num")).to_have_text("1")  # attempts
    keys_absent(frame.locator("body").inner_text())
    screenshot(page, "resets-lead")

    # The run's link opens its tab on the DAG run page.
    row.get_by_role("link", name=finished_run.run_id).click()
    expect(page).to_have_url(re.compile(rf"{DAG_URL}/runs/{finished_run.run_id}/plugin/{RUN_TAB_ROUTE}$"))
    expect(page.frame_locator(FRAME).get_by_role("table", name="Leads per outcome")).to_be_visible()
