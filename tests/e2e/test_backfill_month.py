"""A 30-day ``airflow backfill create`` under the real scheduler: each day reset once, with its interval."""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from datetime import date, timedelta

import pytest

from tests.conftest import lsq_lead
from tests.e2e.conftest import E2E, start_on_sqlite
from tests.e2e.scenario import Scenario, utc_window

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

FIRST = date(2026, 9, 1)
DAYS = [(FIRST + timedelta(days=n)).isoformat() for n in range(30)]


@pytest.fixture(scope="module")
def month(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[E2E, dict[str, list[str]]]]:
    tmp = tmp_path_factory.mktemp("e2e-month")
    leads = [lsq_lead() for _ in range(40)]
    # Two leads a day; some leads are candidates on several days (they are reset once per such day).
    by_day = {day: [leads[n % 40]["ProspectId"], leads[(n * 7 + 3) % 40]["ProspectId"]] for n, day in enumerate(DAYS)}
    warehouse = tmp / "warehouse.db"
    with sqlite3.connect(warehouse) as conn:
        conn.execute("CREATE TABLE lsq_reset_requests (prospect_id TEXT, requested_at TEXT)")
        for day, ids in by_day.items():
            start = utc_window(day)[0]  # an India-time day, in UTC
            conn.executemany("INSERT INTO lsq_reset_requests VALUES (?, ?)", [(i, start) for i in ids])
    conn.close()
    for e2e in start_on_sqlite(tmp, warehouse, Scenario(per_day=1), extra_leads=leads):
        yield e2e, by_day


def test_thirty_day_backfill(month):
    e2e, by_day = month
    e2e.emulator.clear_calls()
    started = time.monotonic()
    # 30 days: past approval_max_window_days, which is not what this test is about (tests/e2e/test_approval.py is)
    e2e.stack.create_backfill(
        f"{DAYS[0]}T00:00:00+05:30",
        f"{DAYS[-1]}T00:00:00+05:30",
        max_active_runs=4,
        conf={"approval_max_window_days": 31},
    )
    deadline = time.monotonic() + 1300
    runs: list[dict] = []
    while time.monotonic() < deadline:
        e2e.stack._check_alive()
        runs = e2e.stack.api("GET", "/dags/leadsquared_reset/dagRuns", params={"run_type": "backfill", "limit": 100})[
            "dag_runs"
        ]
        if len(runs) == 30 and all(r["state"] in ("success", "failed") for r in runs):
            break
        time.sleep(5)
    elapsed = time.monotonic() - started
    assert Counter(r["state"] for r in runs) == {"success": 30}

    calls = e2e.reset_calls()
    by_window = Counter((c["lead_id"], c["body"]["FromDate"], c["body"]["ToDate"]) for c in calls)
    expected = Counter((lead, *utc_window(day)) for day, ids in by_day.items() for lead in set(ids))
    assert by_window == expected  # each lead once per day it was a candidate, with that day's window
    for run in runs:
        start = run["data_interval_start"].replace("T", " ")[:19]
        day = next(d for d in DAYS if utc_window(d)[0] == start)
        audit = e2e.audit(run["dag_run_id"])
        assert {lead for lead, row in audit.items() if row[0] == "queued"} == set(by_day[day])
        assert all(row[4:6] == utc_window(day) for row in audit.values())
    assert sum(e2e.emulator.stats()["rate_limited"].values()) == 0
    overlap = max(sum(1 for r in runs if r["start_date"] <= other["start_date"] < r["end_date"]) for other in runs)
    print(f"\n30-day backfill: {len(calls)} resets in {elapsed:.0f} s; up to {overlap} runs at once; 0 rejections")
    assert overlap >= 2  # runs overlapped and shared the account's budget
