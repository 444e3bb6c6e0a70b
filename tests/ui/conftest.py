"""A real Airflow with one finished run, and Debian's Chromium (driven by Playwright) logged in to its UI."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devstack import ADMIN_USER, PROJECT, admin_password
from tests.e2e.conftest import E2E, start_on_sqlite
from tests.e2e.scenario import DAYS, Scenario, iso_window

CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags Chromium waits on Google services a closed network never answers.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = PROJECT / "docs" / "screenshots"
RUN_ID = "ui_demo"
BATCH_SIZE = 3  # the day's 9 valid candidates in 3 batches


@dataclass
class FinishedRun:
    e2e: E2E
    run_id: str
    batch_labels: list[str]  # rendered_map_index of reset_batch.reset, as the REST API reports them
    summary: dict[str, Any]  # the report's return value

    @property
    def url(self) -> str:
        return self.e2e.stack.config.api_url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Debian Chromium; fails (never skips) when it is not installed: CI installs it."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's browser with `apt-get install chromium` (.ci/run does it)",
            pytrace=False,
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(headless=True, executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def finished_run(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FinishedRun]:
    """The stack of tests/e2e (emulator + SQLite warehouse) after one successful manual run of a day."""
    tmp = tmp_path_factory.mktemp("ui")
    scenario = Scenario()
    warehouse = tmp / "warehouse.db"
    scenario.sqlite_warehouse(warehouse)
    with closing(start_on_sqlite(tmp, warehouse, scenario)) as started:
        e2e = next(started)
        frm, to = iso_window(DAYS[1])
        run_id = e2e.stack.trigger({"from_date": frm, "to_date": to, "batch_size": BATCH_SIZE}, run_id=RUN_ID)
        assert e2e.stack.wait_for_run(run_id, timeout=300) == "success"
        labels = sorted(
            ti["rendered_map_index"] for ti in e2e.stack.task_instances(run_id) if ti["task_id"] == "reset_batch.reset"
        )
        yield FinishedRun(e2e, run_id, labels, e2e.stack.xcom(run_id, "report"))


@pytest.fixture(scope="module")
def ui_context(browser: Any, finished_run: FinishedRun) -> Iterator[Any]:
    """A browser context logged in through the UI's own login page (simple auth manager)."""
    from playwright.sync_api import expect

    expect.set_options(timeout=90_000)  # the React app fetches everything after the first paint (slow under load)
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    context.set_default_timeout(90_000)
    page = context.new_page()
    page.goto(f"{finished_run.url}/")
    expect(page).to_have_url(re.compile(r"/auth/login"))  # not logged in yet: the UI redirects to its login
    page.get_by_label("Username").fill(ADMIN_USER)
    page.get_by_label("Password").fill(admin_password(finished_run.e2e.stack.config.home))
    page.get_by_role("button", name="Sign in").click()
    expect(page).not_to_have_url(re.compile(r"/auth/login"))
    expect(page.get_by_role("button", name="Admin")).to_be_visible()
    page.close()
    yield context
    context.close()


@pytest.fixture
def page(ui_context: Any) -> Iterator[Any]:
    page = ui_context.new_page()
    yield page
    page.close()


@pytest.fixture(scope="session")
def screenshot() -> Any:
    """``screenshot(page_or_locator, name)`` saves docs/screenshots/NAME.png (the README shows them)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def save(target: Any, name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        target.screenshot(path=str(path), animations="disabled")
        return path

    return save
