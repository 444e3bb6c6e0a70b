"""One account, one budget, one day (issue 20), under the real scheduler.

Two keys: two admins' keys of one LeadSquared account, in the connections of two DAGs (an accounts file of
two entries), send at once. Their budget is the account's (keyed by UserByAccessKey.Get's OrgId, one shared
store): together they use the account's 5-s limit and are never refused.

A 3-day backfill whose demand (300 leads) is over the account's share of a day (0.6 of a 200-call day, the
day shortened to 60 s): runs send what fits and defer the rest; runs after the day has rolled send the
deferred leads, once each, for their own window; no rolling day ever holds more than the share.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Mapping
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from bench.measure import max_in_window
from devstack import DAG_ID
from leadsquared_provider.rate_budget import account_tag
from lsq_emulator import Account, EmulatorConfig
from tests.conftest import lsq_lead
from tests.e2e.conftest import E2E, LsqConnection, start_on_sqlite
from tests.e2e.scenario import Scenario, iso_window, utc_window

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

NOT_COUNTED = ("rate_limited", "unauthorized", "not_found_path")  # calls the account's limits did not count


def _warehouse(path: Path, by_day: Mapping[str, list[str]]) -> None:
    """The candidate table: each day's leads requested at the start of that (India-time) day."""
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("CREATE TABLE lsq_reset_requests (prospect_id TEXT, requested_at TEXT)")
        for day, ids in by_day.items():
            conn.executemany("INSERT INTO lsq_reset_requests VALUES (?, ?)", [(i, utc_window(day)[0]) for i in ids])


def _conf(day: str, **params: Any) -> dict[str, Any]:
    frm, to = iso_window(day)
    return {"from_date": frm, "to_date": to, **params}


def _admitted(e2e: E2E) -> list[float]:
    """When each call the emulator counted against the account's limits arrived, in order."""
    return sorted(c["time"] for c in e2e.emulator.calls() if c["outcome"] not in NOT_COUNTED)


# --- Two keys of one account ------------------------------------------------------------------------------

LIMIT, WINDOW = 25, 5.0  # the account's limit: 25 calls per 5 s
PER_DAG = 200  # leads each DAG resets: 400 calls together, 80 s at the account's limit
KEYS = {"north": ("u$acme-north", "north-secret"), "south": ("u$acme-south", "south-secret")}
KEY_DAYS = {"north": "2026-08-10", "south": "2026-08-11"}
TWO_KEYS = """
accounts:
  - name: north
    leadsquared_conn_id: leadsquared_north
    pool: leadsquared_api_north
  - name: south
    leadsquared_conn_id: leadsquared_south
    pool: leadsquared_api_south
"""


@pytest.fixture
def two_keys(tmp_path: Path) -> Iterator[tuple[E2E, dict[str, list[str]]]]:
    """Two admin users of the account ``acme`` (one name: one limit, one OrgId), a DAG and a connection each."""
    leads = {name: [lsq_lead() for _ in range(PER_DAG)] for name in KEYS}
    ids = {name: [lead["ProspectId"] for lead in leads[name]] for name in KEYS}
    _warehouse(tmp_path / "warehouse.db", {KEY_DAYS[name]: ids[name] for name in KEYS})
    accounts = tmp_path / "accounts.yaml"
    accounts.write_text(TWO_KEYS)
    config = EmulatorConfig(
        accounts=[Account("acme", access, secret, admin=True) for access, secret in KEYS.values()],
        rate_limit=LIMIT,
        rate_window_seconds=WINDOW,
        latency=(0.02, 0.08),
    )
    connections = [LsqConnection(f"leadsquared_{name}", *keys) for name, keys in KEYS.items()]
    for e2e in start_on_sqlite(
        tmp_path,
        tmp_path / "warehouse.db",
        Scenario(per_day=1),
        config=config,
        extra_leads=[lead for name in KEYS for lead in leads[name]],
        connections=connections,
        accounts_file=accounts,
    ):
        yield e2e, ids


def test_two_keys_of_one_account_share_its_budget_and_use_its_limit(two_keys):
    e2e, ids = two_keys
    e2e.emulator.clear_calls()
    started = time.monotonic()
    runs = {
        name: e2e.stack.trigger(
            _conf(KEY_DAYS[name], batch_size=PER_DAG, verify_sample=5),  # one batch: each DAG sends throughout
            dag_id=f"leadsquared_reset_{name}",
            run_id=f"{name}__{time.time_ns()}",
        )
        for name in KEYS
    }
    for name, run in runs.items():
        assert e2e.stack.wait_for_run(run, dag_id=f"leadsquared_reset_{name}", timeout=480) == "success"
    elapsed = time.monotonic() - started

    # Sent: every lead once, with its DAG's window; the account never refused a call.
    stats = e2e.emulator.stats()
    assert stats["accepted_by_lead"] == dict.fromkeys(ids["north"] + ids["south"], 1)
    assert sum(stats["rate_limited"].values()) == 0, stats["rate_limited"]
    resets = e2e.reset_calls()
    for name in KEYS:
        assert {c["body"]["FromDate"] for c in resets if c["lead_id"] in ids[name]} == {utc_window(KEY_DAYS[name])[0]}

    # Recorded: each run queued its own leads, sent once; both runs, through their own connections, spent
    # the budget of one account (the OrgId's), which both keys' own budget stores name.
    org = account_tag(Account("acme", "k", "s").org.lower())
    for name, run in runs.items():
        audit = e2e.audit(run, dag_id=f"leadsquared_reset_{name}")
        assert {lead: (row[0], row[7]) for lead, row in audit.items()} == dict.fromkeys(ids[name], ("queued", 1))
        summary = e2e.stack.xcom(run, "report", dag_id=f"leadsquared_reset_{name}")
        assert summary["failures"] == 0 and summary["counts"] == {"queued": PER_DAG}
    assert sorted(e2e.state("SELECT leadsquared_conn_id, account FROM leadsquared_reset_runs")) == [
        ("leadsquared_north", org),
        ("leadsquared_south", org),
    ]
    with closing(sqlite3.connect(e2e.stack.config.home.parent / "budget.sqlite")) as budget:
        noted = {tag: json.loads(state).get("account") for tag, state in budget.execute("SELECT * FROM budget_state")}
    assert {account_tag(access): noted.get(account_tag(access)) for access, _ in KEYS.values()} == {
        account_tag(access): org for access, _ in KEYS.values()
    }

    # Rate: over the span where both runs were sending resets (from the later first reset to the earlier last
    # one), every call the account admitted in it (resets, and any other call: all count against the limit),
    # as (calls - 1) / (last - first), against the account's limit per second.
    spans = {name: [c["time"] for c in resets if c["lead_id"] in ids[name]] for name in KEYS}
    start, end = max(min(t) for t in spans.values()), min(max(t) for t in spans.values())
    both = [t for t in _admitted(e2e) if start <= t <= end]
    use = (len(both) - 1) / (both[-1] - both[0]) / (LIMIT / WINDOW)
    print(
        f"\ntwo keys of one account: {len(resets)} resets, {len(e2e.emulator.calls())} calls, 0 refused, in "
        f"{elapsed:.0f} s; both sending for {end - start:.1f} s: {len(both)} calls, {use:.3f} of the limit"
    )
    assert end - start >= 10 * WINDOW  # the runs overlapped for many windows
    assert use >= 0.95


# --- A 3-day backfill on a daily quota smaller than its demand ----------------------------------------------

QUOTA, SHARE, DAY_SECONDS = 200, 0.6, 60.0  # the account's day: 200 calls; ours: 0.6 of it
CAP = 120  # floor(QUOTA x SHARE)
PER_DAY, VERIFY = 100, 5
BACKFILL_DAYS = ("2026-07-01", "2026-07-02", "2026-07-03")
EMPTY_DAY = "2026-07-10"  # no candidates: its runs send only what earlier runs deferred


@pytest.fixture
def quota_backfill(tmp_path: Path) -> Iterator[tuple[E2E, dict[str, str]]]:
    """100 leads on each of 3 days; the emulator's day holds 200 calls, the connection may use 120 of them."""
    by_day = {day: [lsq_lead() for _ in range(PER_DAY)] for day in BACKFILL_DAYS}
    _warehouse(
        tmp_path / "warehouse.db", {day: [lead["ProspectId"] for lead in leads] for day, leads in by_day.items()}
    )
    config = EmulatorConfig(
        rate_limit=100, rate_window_seconds=1.0, latency=(0.005, 0.02), daily_limit=QUOTA, day_seconds=DAY_SECONDS
    )
    for e2e in start_on_sqlite(
        tmp_path,
        tmp_path / "warehouse.db",
        Scenario(per_day=1),
        config=config,
        extra_leads=[lead for leads in by_day.values() for lead in leads],
        daily_limit=QUOTA,
        daily_share=SHARE,
        daily_window_seconds=DAY_SECONDS,
    ):
        yield e2e, {lead["ProspectId"]: day for day, leads in by_day.items() for lead in leads}


def _wait_for_backfill(e2e: E2E, runs: int, timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        e2e.stack._check_alive()
        found = e2e.stack.api("GET", f"/dags/{DAG_ID}/dagRuns", params={"run_type": "backfill", "limit": 10})
        if len(found["dag_runs"]) == runs and all(r["state"] in ("success", "failed") for r in found["dag_runs"]):
            return found["dag_runs"]
        time.sleep(3)
    raise TimeoutError(f"the backfill's {runs} runs did not finish within {timeout} s")


def test_a_backfill_over_the_days_quota_defers_and_later_runs_send_each_lead_once(quota_backfill):
    e2e, day_of = quota_backfill
    e2e.emulator.clear_calls()
    started = time.monotonic()
    e2e.stack.create_backfill(
        f"{BACKFILL_DAYS[0]}T00:00:00+05:30",
        f"{BACKFILL_DAYS[-1]}T00:00:00+05:30",
        max_active_runs=2,  # two runs race for the day; the third plans when it is spent
        conf={"verify_sample": VERIFY},
    )
    backfill = _wait_for_backfill(e2e, len(BACKFILL_DAYS), timeout=300)
    assert [r["state"] for r in backfill] == ["success"] * len(BACKFILL_DAYS)
    backfill_done = time.monotonic() - started

    # Once the day has rolled past every call so far, a run of an empty window carries the deferred leads
    # over; again, until nothing is deferred.
    later: list[str] = []
    deferred = sum(1 for r in backfill for row in e2e.audit(r["dag_run_id"]).values() if row[0] == "deferred")
    while deferred:
        assert len(later) < 3, f"{deferred} leads still deferred after {len(later)} later runs"
        time.sleep(max(0.0, _admitted(e2e)[-1] + DAY_SECONDS + 2 - time.time()))
        run = e2e.stack.trigger(_conf(EMPTY_DAY, verify_sample=VERIFY), run_id=f"later_{len(later)}__{time.time_ns()}")
        assert e2e.stack.wait_for_run(run, timeout=300) == "success"
        later.append(run)
        deferred = sum(1 for row in e2e.audit(run).values() if row[0] == "deferred")
    elapsed = time.monotonic() - started

    # Sent: every lead reset exactly once, for its own day; no call refused, for the day or the 5-s limit;
    # no rolling day held more than the share of the account's day.
    stats = e2e.emulator.stats()
    assert stats["accepted_by_lead"] == dict.fromkeys(day_of, 1)
    assert {c["lead_id"]: (c["body"]["FromDate"], c["body"]["ToDate"]) for c in e2e.reset_calls()} == {
        lead: utc_window(day) for lead, day in day_of.items()
    }
    assert sum(stats["rate_limited"].values()) == 0
    assert [c for c in e2e.emulator.calls() if c.get("daily_quota")] == []
    busiest = max_in_window(_admitted(e2e), DAY_SECONDS)  # the most admitted calls in any rolling day
    assert busiest <= CAP, f"{busiest} calls in one rolling day; the connection's share is {CAP}"

    # Recorded, run by run in the order they were planned: nothing failed; each lead queued once, for its own
    # window, by the run that had it or by a later run that carried it over; what a run deferred, a later run
    # queued.
    order = [run_id for (run_id,) in e2e.state("SELECT run_id FROM leadsquared_reset_runs ORDER BY planned_at")]
    assert sorted(order) == sorted([r["dag_run_id"] for r in backfill] + later)
    queued_by: dict[str, int] = {}
    deferred_by: dict[str, list[int]] = {}
    plan_tries: dict[str, int] = {}
    for n, run_id in enumerate(order):
        audit = e2e.audit(run_id)
        assert {row[0] for row in audit.values()} <= {"queued", "deferred"}, run_id
        for lead, row in audit.items():
            assert row[4:6] == utc_window(day_of[lead])  # carried over for its original window
            if row[0] == "queued":
                assert lead not in queued_by and row[7] == 1
                queued_by[lead] = n
            else:
                deferred_by.setdefault(lead, []).append(n)
        summary = e2e.stack.xcom(run_id, "report")
        assert summary["failures"] == 0 and summary["deferred"] == len(audit) - summary["counts"].get("queued", 0)
        if summary["deferred"]:
            assert summary["day_restarts"].endswith(" UTC")
        plan_tries[run_id] = {ti["task_id"]: ti["try_number"] for ti in e2e.stack.task_instances(run_id)}["plan"]
    assert set(queued_by) == set(day_of)
    assert all(queued_by[lead] > max(runs) for lead, runs in deferred_by.items())
    calls = e2e.emulator.calls()
    print(
        f"\n3-day backfill over the day's share: {len(calls)} calls ({len(e2e.reset_calls())} resets), "
        f"busiest rolling day {busiest} of {CAP}, 0 refused; {len(deferred_by)} leads deferred, sent by "
        f"{len(later)} later runs; backfill {backfill_done:.0f} s, all {elapsed:.0f} s; plan tries {plan_tries}"
    )
    # A run planned once the day's share is spent defers its leads; its plan does not fail. (Retried, such a plan
    # would fail the run on a real 24-h day, its leads never staged for a later run to carry over.)
    assert set(plan_tries.values()) == {1}, plan_tries
