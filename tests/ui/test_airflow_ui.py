"""The Airflow UI in a real browser: a finished run's batch labels and summary, the DAG's docs, the connection form.

Each test saves the screenshots the README shows (docs/screenshots/*.png).
"""

from __future__ import annotations

import dataclasses
import re

import pytest
from playwright.sync_api import expect

from leadsquared_provider import get_provider_info
from leadsquared_provider.settings import LeadSquaredSettings
from tests.ui.conftest import BATCH_SIZE

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

DAG_URL = "/dags/leadsquared_reset"


def open_grid(page, url: str) -> None:
    """Open ``url`` in the grid view (the UI remembers grid/graph per browser, so choose it explicitly)."""
    page.goto(url)
    page.get_by_role("button", name=re.compile(r"^Show Grid")).click()


def test_dag_page_shows_the_docs(page, finished_run, screenshot):
    page.goto(finished_run.url + DAG_URL)
    expect(page.get_by_role("heading", name="leadsquared_reset")).to_be_visible()

    page.get_by_role("button", name="Dag Docs").click()
    docs = page.get_by_role("dialog")
    expect(docs).to_contain_text("LeadSquared lead reset")
    for words in ("Window.", "Guards.", "max_leads_per_run", "dry_run", "allow_all_time"):
        expect(docs).to_contain_text(words)
    screenshot(page, "dag-docs")


def test_run_grid_labels_each_mapped_group_instance_by_its_batch(page, finished_run, screenshot):
    labels = finished_run.batch_labels
    assert len(labels) >= 3, labels
    assert labels[0] == f"batch 1: leads 1–{BATCH_SIZE}"

    run_url = f"{finished_run.url}{DAG_URL}/runs/{finished_run.run_id}"
    open_grid(page, run_url)
    expect(page.get_by_role("heading", name=finished_run.run_id)).to_be_visible()
    page.get_by_role("button", name="Expand all task groups").click()
    for task in ("reset [ ]", "check [ ]"):  # the group's tasks, shown once the group is expanded
        expect(page.get_by_text(task, exact=True)).to_be_visible()
    for label in labels:  # the run's task instances: reset and check of each batch
        expect(page.get_by_text(label, exact=True)).to_have_count(2)
    screenshot(page, "grid")

    # The mapped task's own list: one row per batch, labelled by map_index_template.
    open_grid(page, f"{run_url}/tasks/reset_batch.reset/mapped")
    expect(page.get_by_text(f"{len(labels)} Task Instances")).to_be_visible()
    for label in labels:
        expect(page.get_by_text(label, exact=True)).to_have_count(1)
    screenshot(page, "mapped-batches")

    page.get_by_role("button", name=re.compile(r"^Show Graph")).click()
    expect(page.get_by_text("reset_batch", exact=True).first).to_be_visible()
    expect(page.get_by_text("Task Group", exact=True)).to_be_visible()
    screenshot(page, "graph")


def test_report_summary_is_in_its_xcom_and_log(page, finished_run, screenshot):
    summary = finished_run.summary
    assert summary["counts"]["queued"] > 0 and summary["failures"] == 0, summary
    task_url = f"{finished_run.url}{DAG_URL}/runs/{finished_run.run_id}/tasks/report"

    open_grid(page, f"{task_url}/xcom")
    page.get_by_role("button", name="Expand all extra JSON").click()

    def row(key: str):
        return page.get_by_role("row").filter(has=page.get_by_role("cell", name=key, exact=True))

    # One XCom, the summary (the report pushes it once, not one XCom per key).
    summary_row = row("return_value")
    expect(summary_row).to_contain_text(f'"queued": {summary["counts"]["queued"]}')
    expect(summary_row).to_contain_text(f'"failures": {summary["failures"]}')
    expect(summary_row).to_contain_text(f'"candidates": {summary["candidates"]}')
    expect(row("counts")).to_have_count(0)
    screenshot(page, "report-xcom")

    # The Logs tab: the report's table (per outcome, the first leads not reset with their reasons).
    open_grid(page, task_url)
    expect(page.get_by_text("LeadSquared reset report")).to_be_visible()
    log = page.locator("body")
    expect(log).to_contain_text(f"candidates: {summary['candidates']} in {summary['batches']} batch(es)")
    expect(log).to_contain_text(re.compile(rf"queued\s+{summary['counts']['queued']}"))
    expect(log).to_contain_text("first leads not reset")
    screenshot(page, "report-log")


def test_connection_form_for_leadsquared_shows_labelled_fields(page, finished_run, screenshot):
    info = get_provider_info()["connection-types"][0]
    page.goto(f"{finished_run.url}/connections")
    page.get_by_role("button", name="Add Connection").click()
    form = page.get_by_role("dialog")
    form.get_by_role("combobox", name=re.compile("Connection Type")).fill("LeadSq")
    page.get_by_role("option", name="LeadSquared", exact=True).click()

    expect(form.get_by_role("button", name="Standard Fields", exact=True)).to_be_visible()
    for label in info["ui-field-behaviour"]["relabeling"].values():  # host, login, password relabelled
        expect(form.get_by_text(label, exact=True)).to_be_visible()
    for placeholder in info["ui-field-behaviour"]["placeholders"].values():
        expect(form.get_by_placeholder(placeholder, exact=True)).to_be_visible()
    for hidden in ("Host", "Login", "Password", "Schema", "Port"):
        expect(form.get_by_text(hidden, exact=True)).to_have_count(0)
    screenshot(form, "connection-form")

    form.get_by_role("button", name="Extra Fields", exact=True).click()
    for field in info["conn-fields"].values():
        expect(form.get_by_text(field["label"], exact=True)).to_be_visible()
    # Every setting of the connection can be set in the form (generated from the settings dataclass).
    assert list(info["conn-fields"]) == [f.name for f in dataclasses.fields(LeadSquaredSettings)]
    expect(form.get_by_label("Rate limit (calls per window)")).to_have_value("25")
    screenshot(form, "connection-form-extra")
