"""Overlapping runs under the real scheduler: claims in the state store make each lead go out once.

Two manual runs of the same window triggered together, and a backfill whose middle day is also reset by a
manual run at the same time: each (lead, window) is sent exactly once across all runs, and the report of
a run names the leads the other run held or settled.
"""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import closing

import pytest

from lsq_emulator import EmulatorConfig
from tests.conftest import lsq_lead
from tests.e2e.conftest import E2E, start_on_sqlite
from tests.e2e.scenario import Scenario, iso_window, utc_window

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

SAME_DAY = "2026-10-10"  # India-time days
BACKFILL_DAYS = ("2026-10-20", "2026-10-21", "2026-10-22")
SAME_DAY_LEADS, PER_BACKFILL_DAY = 150, 40


@pytest.fixture(scope="module")
def overlap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[E2E, dict[str, list[str]]]]:
    tmp = tmp_path_factory.mktemp("e2e-overlap")
    by_day = {SAME_DAY: [lsq_lead() for _ in range(SAME_DAY_LEADS)]}
    by_day.update({day: [lsq_lead() for _ in range(PER_BACKFILL_DAY)] for day in BACKFILL_DAYS})
    warehouse = tmp / "warehouse.db"
    with closing(sqlite3.connect(warehouse)) as conn, conn:
        conn.execute("CREATE TABLE lsq_reset_requests (prospect_id TEXT, requested_at TEXT)")
        for day, leads in by_day.items():
            at = utc_window(day)[0]
            conn.executemany(
                "INSERT INTO lsq_reset_requests VALUES (?, ?)", [(lead["ProspectId"], at) for lead in leads]
            )
    config = EmulatorConfig(rate_limit=25, rate_window_seconds=5.0, latency=(0.02, 0.08))
    extra = [lead for leads in by_day.values() for lead in leads]
    for e2e in start_on_sqlite(tmp, warehouse, Scenario(per_day=1), config=config, extra_leads=extra):
        yield e2e, {day: [lead["ProspectId"] for lead in leads] for day, leads in by_day.items()}


def _queued(e2e: E2E, run_id: str) -> set[str]:
    return {lead for lead, row in e2e.audit(run_id).items() if row[0] == "queued"}


def test_two_manual_runs_of_one_window_reset_each_lead_once(overlap):
    e2e, by_day = overlap
    e2e.emulator.clear_calls()
    frm, to = iso_window(SAME_DAY)
    conf = {"from_date": frm, "to_date": to, "batch_size": 50}
    first = e2e.stack.trigger(conf, run_id=f"twin_a__{time.time_ns()}")
    second = e2e.stack.trigger(conf, run_id=f"twin_b__{time.time_ns()}")
    assert e2e.stack.wait_for_run(first) == "success"
    assert e2e.stack.wait_for_run(second) == "success"

    calls = Counter(c["lead_id"] for c in e2e.reset_calls() if c["outcome"] == "queued")
    assert calls == Counter(set(by_day[SAME_DAY]))  # every lead accepted exactly once across both runs
    assert sum(e2e.emulator.stats()["rate_limited"].values()) <= 0.03 * len(e2e.reset_calls())
    assert all(c["body"]["FromDate"] == utc_window(SAME_DAY)[0] for c in e2e.reset_calls())
    queued_a, queued_b = _queued(e2e, first), _queued(e2e, second)
    assert queued_a | queued_b == set(by_day[SAME_DAY]) and not queued_a & queued_b
    for run_id, other, mine in ((first, second, queued_a), (second, first, queued_b)):
        audit = e2e.audit(run_id)
        assert {lead for lead, row in audit.items() if row[0] in ("already_done", "in_progress_elsewhere")} == (
            set(by_day[SAME_DAY]) - mine
        )
        summary = e2e.stack.xcom(run_id, "report")
        assert summary["possibly_repeated"] == 0
        assert summary["failures"] == 0
        if len(mine) < SAME_DAY_LEADS:  # the report names leads the other run settled or held
            named = summary["already_done_leads"] + summary["held_elsewhere"]
            assert named and all(other in row["message"] for row in named), named
    print(f"\ntwin runs: {len(queued_a)} + {len(queued_b)} leads queued, {sum(calls.values())} requests")


def test_backfill_overlapping_a_manual_run_resets_each_day_once(overlap):
    e2e, by_day = overlap
    e2e.emulator.clear_calls()
    e2e.stack.create_backfill(f"{BACKFILL_DAYS[0]}T00:00:00+05:30", f"{BACKFILL_DAYS[-1]}T00:00:00+05:30", 3)
    frm, to = iso_window(BACKFILL_DAYS[1])
    manual = e2e.stack.trigger({"from_date": frm, "to_date": to, "batch_size": 10}, run_id=f"beside__{time.time_ns()}")
    assert e2e.stack.wait_for_run(manual) == "success"
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        runs = e2e.stack.api("GET", "/dags/leadsquared_reset/dagRuns", params={"run_type": "backfill", "limit": 10})[
            "dag_runs"
        ]
        if len(runs) == 3 and all(r["state"] in ("success", "failed") for r in runs):
            break
        time.sleep(3)
    assert Counter(r["state"] for r in runs) == {"success": 3}

    calls = e2e.reset_calls()
    accepted = Counter(
        (c["lead_id"], c["body"]["FromDate"], c["body"]["ToDate"]) for c in calls if c["outcome"] == "queued"
    )
    expected = Counter((lead, *utc_window(day)) for day in BACKFILL_DAYS for lead in by_day[day])
    assert accepted == expected  # the middle day's leads once, though two runs had them
    refused = [c for c in calls if c["outcome"] != "queued"]  # rate-limit answers are sent again by the same owner
    assert len(refused) <= len(calls) * 0.03, Counter(c["outcome"] for c in refused)
    middle = next(
        r["dag_run_id"]
        for r in runs
        if r["data_interval_start"].replace("T", " ")[:19] == utc_window(BACKFILL_DAYS[1])[0]
    )
    assert _queued(e2e, middle) | _queued(e2e, manual) == set(by_day[BACKFILL_DAYS[1]])
    assert not _queued(e2e, middle) & _queued(e2e, manual)
