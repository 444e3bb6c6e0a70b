"""The account's daily quota (issue 20): counted per account by every call, in both budget stores; a run that
does not fit sends what fits and defers the rest; a run that meets the end of the day defers what is left."""

from __future__ import annotations

import logging
import sqlite3
import time
import uuid
from contextlib import closing

import pytest

from leadsquared_provider.exceptions import DailyQuotaSpent, InvalidConnection, PlanError
from leadsquared_provider.rate_budget import DailyQuota, RateBudget, parse_daily_reset
from leadsquared_provider.rules.outcomes import Outcome
from leadsquared_provider.rules.request import ResetScope
from leadsquared_provider.store import StagedLead, StateStore
from lsq_emulator import EmulatorConfig, run_emulator
from tests.conftest import lsq_lead
from tests.provider.rate_budget import test_budget as test_rate_budget
from tests.provider.steps import test_plan as test_plan_bad_input
from tests.provider.steps.test_plan import call_plan
from tests.provider.steps.test_send import LEADS, SCOPE, sender

dag = test_plan_bad_input.dag  # the DAG fixture

backend_url = test_rate_budget.backend_url  # the budget store: SQLite, or Redis


def test_the_day_caps_every_caller_of_the_account_and_frees_up_as_it_rolls(backend_url):
    tag = uuid.uuid4().hex[:16]
    quota = DailyQuota(cap=5, window_seconds=3.0)
    first, second = (
        RateBudget(limit=1000, window_seconds=1, tag=tag, backend_url=backend_url, daily=quota) for _ in range(2)
    )
    for budget in (first, second, first, second, first):  # two processes' budgets of one account
        budget.acquire()
    assert first.day_left() == second.day_left() == 0
    with pytest.raises(DailyQuotaSpent, match="5 of 5 calls") as spent:
        second.acquire()
    assert time.time() < spent.value.resets_at <= time.time() + 3.5
    time.sleep(spent.value.resets_at - time.time() + 0.2)  # the rolling day moves past the first calls
    assert first.day_left() == 5
    first.acquire()
    assert second.day_left() == 4


def test_a_named_restart_counts_since_it():
    assert parse_daily_reset("00:00 Asia/Kolkata") == (0, 0, "Asia/Kolkata")
    with pytest.raises(InvalidConnection, match="daily_reset"):
        parse_daily_reset("midnight")
    quota = DailyQuota(cap=10, reset="05:30 UTC")
    now = int(time.mktime(time.strptime("2026-12-06 04:00:00", "%Y-%m-%d %H:%M:%S")) - time.timezone) * 1000
    assert quota.start_ms(now) == now - (22 * 3600 + 30 * 60) * 1000  # yesterday 05:30
    assert quota.restarts_ms(now, None) == now + 90 * 60 * 1000  # today 05:30


@pytest.fixture
def quota_served():
    org = str(uuid.uuid4())  # an account of its own: no day left over from another test
    from lsq_emulator.config import Account

    config = EmulatorConfig(
        accounts=[Account("quota", "u$quota", "quota-secret", org_id=org)],
        rate_limit=1000,
        rate_window_seconds=1.0,
        daily_limit=8,
        day_seconds=60.0,
    )
    with run_emulator(config, leads=[lsq_lead(lead) for lead in LEADS]) as emu:
        yield emu


def _quota_connection(lsq_connection, served) -> str:
    """The quota account's connection, stating its day: 8 calls a minute, all of them ours."""
    return lsq_connection(
        served.base_url, login="u$quota", password="quota-secret", daily_limit=8, daily_share=1, daily_window_seconds=60
    )


def test_a_batch_that_meets_the_end_of_the_day_defers_the_rest_and_is_never_refused(
    quota_served, lsq_connection, state_conn
):
    # The day holds 8 calls: the one that learns the account, then 7 resets; the other 5 leads are deferred,
    # not sent: LeadSquared never refuses a call, and the batch does not fail.
    lsq = _quota_connection(lsq_connection, quota_served)
    with StateStore(state_conn) as store:
        store.save_scope("s1", ResetScope.from_mapping(SCOPE))
        report = sender(store, lsq, "dag/day", max_in_flight=1).send([StagedLead(lead, "s1") for lead in LEADS[:12]])
        rows = {row["lead_id"]: row for row in store.iter_audit("dag/day")}
    assert report.counts == {Outcome.QUEUED: 7, Outcome.DEFERRED: 5}
    assert report.quota_spent is not None and report.stopped_by is None
    assert sum(quota_served.stats()["rate_limited"].values()) == 0
    resets = [c for c in quota_served.calls() if c["path"].endswith("Lead.Reset")]
    assert len(resets) == 7
    deferred = [lead for lead, row in rows.items() if row["outcome"] == "deferred"]
    assert deferred == LEADS[7:12] and all(rows[lead]["sends"] == 0 for lead in deferred)
    assert "calls free up from" in rows[deferred[0]]["message"]


def test_a_plan_over_todays_share_sends_what_fits_and_defers_the_rest(
    dag, quota_served, lsq_connection, sqlite_warehouse, state_conn, caplog
):
    # 12 candidates, a day of 8 calls at a share of 1. Refused first (its credential check took 1 call);
    # then the plan's own check takes 1 and the verification keeps 2 (verify_sample): 4 fit, 8 are deferred,
    # before anything is sent.
    conn_id, path = sqlite_warehouse
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("CREATE TABLE lsq_reset_requests (prospect_id TEXT, requested_at TEXT)")
        db.executemany("INSERT INTO lsq_reset_requests VALUES (?, '2026-11-01 06:00:00')", [(i,) for i in LEADS[:12]])
    lsq = _quota_connection(lsq_connection, quota_served)
    window = {"from_date": "2026-11-01T00:00:00+05:30", "to_date": "2026-11-01T23:59:59+05:30", "verify_sample": 2}
    caplog.set_level(logging.WARNING)
    with pytest.raises(PlanError, match="do not fit in the 7 calls left"):
        call_plan(
            dag,
            {**window, "refuse_over_daily_quota": True},
            "manual__refused",
            warehouse=conn_id,
            lsq=lsq,
            state=state_conn,
        )
    batches = call_plan(dag, window, "manual__1", warehouse=conn_id, lsq=lsq, state=state_conn)
    with StateStore(state_conn) as store:
        run = store.load_run(f"{dag.dag_id}/manual__1")
        rows = list(store.iter_audit(f"{dag.dag_id}/manual__1"))
    assert (run.candidates, run.deferred, run.batched) == (12, 8, 4)
    assert batches == [1] and run.batch(1) == {"batch": 1, "first": 1, "last": 4}
    assert sorted(r["lead_id"] for r in rows if r["outcome"] == "deferred") == sorted(LEADS[4:12])
    assert not [c for c in quota_served.calls() if c["path"].endswith("Lead.Reset")]  # the plan sends no reset
    assert "4 sent now, 8 deferred to the next run" in caplog.text

    # The day's 8 calls are spent (2 credential checks, 4 resets, 2 reads, as the run's batch would): the next
    # plan cannot even check the keys. It defers every lead, its own and those carried over, and sends nothing.
    from leadsquared_provider.hooks.leadsquared import LeadSquaredHook

    budget = LeadSquaredHook(leadsquared_conn_id=lsq).budget
    while budget.day_left():
        budget.acquire()
    calls = len(quota_served.calls())
    batches = call_plan(dag, window, "manual__2", warehouse=conn_id, lsq=lsq, state=state_conn)
    with StateStore(state_conn) as store:
        run = store.load_run(f"{dag.dag_id}/manual__2")
        rows = list(store.iter_audit(f"{dag.dag_id}/manual__2"))
    assert batches == [] and (run.deferred, run.batched) == (12, 0)
    assert {r["outcome"] for r in rows} == {"deferred"} and len(rows) == 12
    assert len(quota_served.calls()) == calls  # not one call
    assert "the keys were not checked, the account's day is spent" in caplog.text
    with pytest.raises(PlanError, match="today's share of the daily quota is spent"):
        call_plan(
            dag, {**window, "refuse_over_daily_quota": True}, "manual__3", warehouse=conn_id, lsq=lsq, state=state_conn
        )


def test_an_unstated_quota_is_learnt_from_the_answer_and_stops_every_caller_of_the_account(lsq_connection, state_conn):
    # The connection states no daily quota; LeadSquared's day allows 6 calls and says so when it refuses one
    # ("...limit of 6 in 3600 second(s)"). The batch stops at that first refusal, defers the rest and does not
    # fail; another connection of the account then sends nothing either.
    from lsq_emulator.config import Account

    org = str(uuid.uuid4())
    accounts = [Account("quiet", f"u$quiet-{n}", f"quiet-secret-{n}", org_id=org) for n in (1, 2)]
    config = EmulatorConfig(
        accounts=accounts, rate_limit=1000, rate_window_seconds=1.0, daily_limit=6, day_seconds=3600.0
    )
    with run_emulator(config, leads=[lsq_lead(lead) for lead in LEADS]) as emu:
        first, second = (
            lsq_connection(emu.base_url, conn_id=f"quiet_{n}", login=f"u$quiet-{n}", password=f"quiet-secret-{n}")
            for n in (1, 2)
        )
        with StateStore(state_conn) as store:
            store.save_scope("s1", ResetScope.from_mapping(SCOPE))
            report = sender(store, first, "dag/quiet", max_in_flight=1).send(
                [StagedLead(lead, "s1") for lead in LEADS[:10]]
            )
            assert report.counts == {Outcome.QUEUED: 5, Outcome.DEFERRED: 5}  # 1 call learnt the account
            assert report.quota_spent is not None and report.stopped_by is None
            refused = [c for c in emu.calls() if c["outcome"] == "rate_limited"]
            assert len(refused) == 1  # the one call that told us; none after it
            other = sender(store, second, "dag/quiet-2", max_in_flight=1).send(
                [StagedLead(lead, "s1") for lead in LEADS[10:13]]
            )
        assert other.counts == {Outcome.DEFERRED: 3}
        # The second connection learnt its account (1 call, refused too: the day is spent) and sent no reset.
        assert len([c for c in emu.calls() if c["path"].endswith("Lead.Reset")]) == 6


def test_refusals_that_go_on_at_one_call_per_window_are_the_days_quota(lsq_connection, state_conn):
    # LeadSquared's day allows 6 calls and its refusal names no window. The connection states neither the day nor
    # a window long enough to explain it: each refusal lowers the rate (10 → 9, margin widened; then a fifth off
    # down to 1 call per window); one more refusal at that floor cannot be the 5-s limit. The batch stops there,
    # defers the rest, fails nothing, and every caller of the account stops with it.
    from lsq_emulator.config import Account

    org = str(uuid.uuid4())
    config = EmulatorConfig(
        accounts=[Account("floor", "u$floor", "floor-secret", org_id=org)],
        rate_limit=1000,  # never the 5-s limit: every refusal is the day's
        rate_window_seconds=1.0,
        daily_limit=6,
        day_seconds=3600.0,
        daily_message_names_window=False,
    )
    with run_emulator(config, leads=[lsq_lead(lead) for lead in LEADS]) as emu:
        lsq = lsq_connection(
            emu.base_url, login="u$floor", password="floor-secret", rate_limit=10, rate_window_seconds=1
        )
        with StateStore(state_conn) as store:
            store.save_scope("s1", ResetScope.from_mapping(SCOPE))
            report = sender(store, lsq, "dag/floor", max_in_flight=1).send(
                [StagedLead(lead, "s1") for lead in LEADS[:12]]
            )
            again = sender(store, lsq, "dag/floor-2", max_in_flight=1).send(
                [StagedLead(lead, "s1") for lead in LEADS[12:14]]
            )
        refused = [c for c in emu.calls() if c["outcome"] == "rate_limited"]
    assert report.counts == {Outcome.QUEUED: 5, Outcome.DEFERRED: 7}, report.counts  # 1 call learnt the account
    assert report.quota_spent is not None and report.stopped_by is None
    # 10 → 9 (at the ceiling: the margin), 9 → 7 → 5 → 4 → 3 → 2 → 1, and one refusal at 1: 8 in all (a few
    # more if a loaded machine lets a clean window pass between two refusals: the rate then rises a step).
    assert 8 <= len(refused) <= 11, len(refused)
    assert again.counts == {Outcome.DEFERRED: 2}
    assert len([c for c in emu.calls() if c["path"].endswith("Lead.Reset")]) == 5 + len(refused)
