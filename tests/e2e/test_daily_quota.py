"""The daily quota under the real scheduler (issue 20).

Stated: a run sends what fits in the day and defers the rest; once the day has rolled on, the next run sends
the deferred leads exactly once (the emulator's day shortened to 90 s, as is the connection's
``daily_window_seconds``). Unstated: the connection says nothing; LeadSquared's refusal names its hour-long
window, and the run stops there, deferring the rest.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from lsq_emulator import EmulatorConfig
from tests.conftest import lsq_lead
from tests.e2e.conftest import E2E, start_on_sqlite
from tests.e2e.scenario import Scenario

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

QUOTA, CANDIDATES, DAY_SECONDS = 150, 250, 90.0
DAY, EMPTY_DAY = "2026-09-01", "2026-09-02"


def _start(tmp_path_factory: pytest.TempPathFactory, day_seconds: float, **conn_extra: object) -> Iterator[E2E]:
    tmp = tmp_path_factory.mktemp("e2e-quota")
    leads = [lsq_lead() for _ in range(CANDIDATES)]
    warehouse = tmp / "warehouse.db"
    with sqlite3.connect(warehouse) as conn:
        conn.execute("CREATE TABLE lsq_reset_requests (prospect_id TEXT, requested_at TEXT)")
        conn.executemany(
            "INSERT INTO lsq_reset_requests VALUES (?, ?)", [(lead["ProspectId"], f"{DAY} 10:00:00") for lead in leads]
        )
    conn.close()
    config = EmulatorConfig(
        rate_limit=100, rate_window_seconds=1.0, latency=(0.005, 0.02), daily_limit=QUOTA, day_seconds=day_seconds
    )
    yield from start_on_sqlite(tmp, warehouse, Scenario(per_day=1), config=config, extra_leads=leads, **conn_extra)


@pytest.fixture(scope="module")
def quota_e2e(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2E]:
    yield from _start(tmp_path_factory, DAY_SECONDS, daily_limit=QUOTA, daily_share=1, daily_window_seconds=DAY_SECONDS)


@pytest.fixture(scope="module")
def unstated_e2e(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2E]:
    yield from _start(tmp_path_factory, 3600.0)  # the connection states no daily quota


def alerts(e2e: E2E) -> list[dict]:
    path = e2e.stack.config.home / "logs" / "leadsquared_alerts.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def window(day: str) -> dict[str, str]:
    return {"from_date": f"{day}T00:00:00+00:00", "to_date": f"{day}T23:59:59+00:00", "verify_sample": 5}


def test_a_stated_quota_defers_what_does_not_fit_and_the_next_day_sends_it_once(quota_e2e):
    e2e = quota_e2e
    e2e.emulator.clear_calls()
    first = e2e.stack.trigger(window(DAY), run_id=f"quota_1__{time.time_ns()}")
    assert e2e.stack.wait_for_run(first, timeout=600) == "success"
    last_call = max(c["time"] for c in e2e.emulator.calls())
    summary = e2e.stack.xcom(first, "report")
    outcomes = Counter(row[0] for row in e2e.audit(first).values())
    # 150 calls: the plan's credential check, 5 verification reads, 144 resets; 106 leads deferred.
    assert outcomes == {"queued": QUOTA - 1 - 5, "deferred": CANDIDATES - (QUOTA - 1 - 5)}, outcomes
    assert summary["deferred"] == outcomes["deferred"] and summary["failures"] == 0
    assert summary["day_restarts"].endswith(" UTC")  # when the deferred leads can go
    assert sum(e2e.emulator.stats()["rate_limited"].values()) == 0  # the account never refused a call
    assert len(e2e.emulator.calls()) <= QUOTA
    # A notice, not a failure: the run succeeded, and says what it left for the next one.
    [notice] = [a for a in alerts(e2e) if a["run_id"] == first]
    assert notice["level"] == "notice" and notice["summary"]["deferred"] == outcomes["deferred"]
    assert notice["reason"].startswith(f"{outcomes['deferred']} lead(s) deferred to the next run")

    # The day rolls on (past run 1's last call); the next run, of an empty window, carries the deferred leads
    # over for their own window: 1 + 106 + 5 calls fit in the new day.
    time.sleep(max(0.0, last_call + DAY_SECONDS + 2 - time.time()))
    second = e2e.stack.trigger(window(EMPTY_DAY), run_id=f"quota_2__{time.time_ns()}")
    assert e2e.stack.wait_for_run(second, timeout=600) == "success"
    carried = Counter(row[0] for row in e2e.audit(second).values())
    assert carried == {"queued": outcomes["deferred"]}, carried
    accepted = e2e.emulator.stats()["accepted_by_lead"]
    assert len(accepted) == CANDIDATES and set(accepted.values()) == {1}  # every lead reset exactly once
    assert {row[4] for row in e2e.audit(second).values()} == {f"{DAY} 00:00:00"}  # their original window
    assert sum(e2e.emulator.stats()["rate_limited"].values()) == 0
    assert not [a for a in alerts(e2e) if a["run_id"] == second]  # nothing deferred, nothing to say


def test_an_unstated_quota_stops_the_run_at_the_first_refusal_and_defers_the_rest(unstated_e2e):
    # LeadSquared's day holds 150 calls and the connection does not say so. When the day is spent, its refusal
    # names the hour-long window: every batch stops; what was in flight is refused at most once more.
    e2e = unstated_e2e
    e2e.emulator.clear_calls()
    run = e2e.stack.trigger(window(DAY), run_id=f"unstated__{time.time_ns()}")
    assert e2e.stack.wait_for_run(run, timeout=600) == "success"
    outcomes = Counter(row[0] for row in e2e.audit(run).values())
    refused = sum(e2e.emulator.stats()["rate_limited"].values())
    in_flight = 4 * 4  # pool slots x requests in flight per batch
    assert set(outcomes) == {"queued", "deferred"}, outcomes  # nothing failed
    assert outcomes["queued"] + outcomes["deferred"] == CANDIDATES
    assert 1 <= refused <= in_flight + 3, refused
    accepted = e2e.emulator.stats()["accepted_by_lead"]
    assert len(accepted) == outcomes["queued"] and set(accepted.values()) == {1}
    summary = e2e.stack.xcom(run, "report")
    assert summary["deferred"] == outcomes["deferred"] and summary["failures"] == 0
