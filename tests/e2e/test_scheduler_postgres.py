"""The same DAG under the real scheduler with a PostgreSQL warehouse (the candidate query; the state in SQLite)."""

from __future__ import annotations

import time

import pytest

from tests.e2e.checks import check_day_run
from tests.e2e.scenario import DAYS, iso_window

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(900)]


def test_select_only_postgres_warehouse_run_matches_the_emulator(postgres_e2e):
    e2e = postgres_e2e
    for day in DAYS[1:]:
        e2e.emulator.clear_calls()
        frm, to = iso_window(day)
        run_id = e2e.stack.trigger({"from_date": frm, "to_date": to, "batch_size": 4}, run_id=f"pg__{time.time_ns()}")
        assert e2e.stack.wait_for_run(run_id) == "success"
        check_day_run(e2e, run_id, day, e2e.reset_calls())
    assert sum(e2e.emulator.stats()["rate_limited"].values()) == 0
    tables = {r[0] for r in e2e.query("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert tables == {"lsq_reset_requests"}  # the warehouse is only read: nothing of ours was created there
