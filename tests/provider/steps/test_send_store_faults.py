"""The state store failing mid-batch, and a worker whose clock runs ahead (issue 19, cases 1 and 2).

Real servers and real time: an SQLite file locked by another connection, a PostgreSQL server stopped and
started again, a process whose wall clock runs 45 s ahead (libfaketime). The promises: an answer that was
read is recorded whatever the store does meanwhile, and a live owner's claim is never taken over.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from leadsquared_provider.rules.request import ResetScope
from leadsquared_provider.store import StagedLead, StateStore
from lsq_emulator import EmulatorConfig, run_emulator
from tests.clock_skew import skewed_env
from tests.conftest import lsq_lead
from tests.pg_server import PostgresServer, unique_db_name
from tests.provider.steps.test_send import LEADS, SCOPE, sender

REPO = Path(__file__).resolve().parents[3]


def _reset_ids(emu) -> Counter[str]:
    return Counter(c["body"]["ProspectId"] for c in emu.calls() if c["path"].endswith("Lead.Reset"))


def _when_requests_in_flight(emu, count: int, then) -> threading.Thread:
    """Start a thread that runs ``then()`` once the emulator has seen ``count`` resets."""

    def watch() -> None:
        deadline = time.monotonic() + 60
        while sum(_reset_ids(emu).values()) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        then()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def _rows(store: StateStore, *runs: str) -> list[dict]:
    return [row for run in runs for row in store.iter_audit(run)]


def _run_in_thread(conn_id: str, lsq: str, run: str, leads: list[str], out: dict, **kwargs) -> threading.Thread:
    def work() -> None:
        try:
            with StateStore(conn_id) as store:
                out[run] = sender(store, lsq, run, **kwargs).send([StagedLead(lead, "s1") for lead in leads])
        except BaseException as exc:  # the test asserts there was none
            out[run] = exc

    thread = threading.Thread(target=work)
    thread.start()
    return thread


def test_a_store_lock_longer_than_the_claim_lifetime_loses_no_answer_and_lets_no_run_take_live_claims(
    tmp_path, monkeypatch, lsq_connection
):
    # Run A has requests in flight when another connection takes SQLite's write lock for 4 s: longer than
    # the claims' 2 s lifetime and eight times the 0.5 s busy timeout. Run B starts on the same leads while
    # the lock is held. A's answers must all be recorded, and B must never send a lead A still holds.
    path = tmp_path / "state.db"
    conn = {"conn_type": "sqlite", "host": str(path), "extra": {"busy_timeout_seconds": 0.5}}
    monkeypatch.setenv("AIRFLOW_CONN_LEADSQUARED_STATE_LOCKED", json.dumps(conn))
    leads = LEADS[:16]
    config = EmulatorConfig(rate_limit=1000, rate_window_seconds=1.0, latency=(0.3, 0.5))
    with run_emulator(config, leads=[lsq_lead(lead) for lead in leads]) as emu:
        lsq = lsq_connection(emu.base_url)
        with StateStore("leadsquared_state_locked") as store:
            store.save_scope("s1", ResetScope.from_mapping(SCOPE))
        locked, out = threading.Event(), {}

        def hold_the_lock() -> None:
            db = sqlite3.connect(path, timeout=30, isolation_level=None)
            db.execute("BEGIN IMMEDIATE")
            locked.set()
            time.sleep(4.0)
            db.execute("COMMIT")
            db.close()

        locker = _when_requests_in_flight(emu, 4, hold_the_lock)
        a = _run_in_thread("leadsquared_state_locked", lsq, "dag/a", leads, out, ttl=2.0)
        assert locked.wait(30)
        time.sleep(0.5)
        b = _run_in_thread("leadsquared_state_locked", lsq, "dag/b", leads, out, ttl=2.0)
        for thread in (locker, a, b):
            thread.join(120)

    assert not isinstance(out["dag/a"], BaseException), out["dag/a"]
    assert not isinstance(out["dag/b"], BaseException), out["dag/b"]
    sent = _reset_ids(emu)
    assert set(sent) == set(leads) and set(sent.values()) == {1}, sent  # each lead once, by A or B
    with StateStore("leadsquared_state_locked") as store:
        rows = _rows(store, "dag/a", "dag/b")
        assert Counter(row["outcome"] for row in rows if row["outcome"] == "queued") == {"queued": len(leads)}
        assert not [row for row in rows if row["outcome"] == "sending"]  # every answer read was recorded
        assert store.repeated_count("dag/a") == store.repeated_count("dag/b") == 0
        assert len(store.settled(leads, "s1")) == len(leads)


@pytest.mark.postgres
def test_a_postgres_outage_mid_batch_loses_no_read_answer(monkeypatch, lsq_connection):
    # The server stops at once (every connection drops) while four requests are in flight, and comes back
    # 3 s later: past the claims' 2 s lifetime. The answers read meanwhile wait in memory and are recorded.
    leads = LEADS[:12]
    config = EmulatorConfig(rate_limit=1000, rate_window_seconds=1.0, latency=(0.4, 0.6))
    with PostgresServer() as pg, run_emulator(config, leads=[lsq_lead(lead) for lead in leads]) as emu:
        monkeypatch.setenv("AIRFLOW_CONN_LEADSQUARED_STATE_OUTAGE", pg.airflow_conn_json(pg.create_database("s")))
        lsq = lsq_connection(emu.base_url)
        with StateStore("leadsquared_state_outage") as store:
            store.save_scope("s1", ResetScope.from_mapping(SCOPE))
        out: dict = {}
        outage = _when_requests_in_flight(emu, 4, lambda: pg.outage(3.0))
        run = _run_in_thread("leadsquared_state_outage", lsq, "dag/a", leads, out, ttl=2.0)
        for thread in (outage, run):
            thread.join(120)
        assert not isinstance(out["dag/a"], BaseException), out["dag/a"]
        assert out["dag/a"].counts == {"queued": len(leads)}
        sent = _reset_ids(emu)
        assert set(sent) == set(leads) and set(sent.values()) == {1}, sent
        with StateStore("leadsquared_state_outage") as store:
            assert Counter(row["outcome"] for row in store.iter_audit("dag/a")) == {"queued": len(leads)}
            assert store.repeated_count("dag/a") == 0
            assert len(store.settled(leads, "s1")) == len(leads)


def test_a_worker_whose_clock_runs_45_s_ahead_takes_no_live_claim(postgres_server, lsq_connection, monkeypatch):
    # A healthy owner in this process holds four leads' claims (30 s lifetime, freshly written). A worker
    # whose wall clock is 45 s ahead runs a batch over those leads and four more. By its own clock the
    # claims expired 15 s ago; by the store's clock they are live, so it must leave them alone.
    from leadsquared_provider.store import BatchScope, ClaimOwner, ClaimStatus

    db = postgres_server.create_database(unique_db_name("skew"))
    monkeypatch.setenv("AIRFLOW_CONN_LEADSQUARED_STATE_SKEW", postgres_server.airflow_conn_json(db))
    leads = LEADS[:8]
    config = EmulatorConfig(rate_limit=1000, rate_window_seconds=1.0, latency=(0.01, 0.03))
    with run_emulator(config, leads=[lsq_lead(lead) for lead in leads]) as emu:
        lsq = lsq_connection(emu.base_url)
        live = ClaimOwner("live-owner", "dag/live", 3, 1, "healthy-host", 4242)
        with StateStore("leadsquared_state_skew") as store:
            store.save_scope("s1", ResetScope.from_mapping(SCOPE))
            live_batch = BatchScope(
                run_key="dag/live", dag_id="dag", batch=3, scopes={"s1": ResetScope.from_mapping(SCOPE)}
            )
            for lead in leads[:4]:
                assert store.claim(live, live_batch, StagedLead(lead, "s1"), ttl=30).status is ClaimStatus.OURS
        spec = {"state_conn": "leadsquared_state_skew", "lsq_conn": lsq, "run": "dag/skewed", "scope": SCOPE}
        spec.update(leads=leads, ttl=2.0)
        done = subprocess.run(
            [sys.executable, "-m", "tests.provider.steps.sender_worker", json.dumps(spec)],
            env=skewed_env(45),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        worker = json.loads(done.stdout.strip().splitlines()[-1])

    assert 40 < worker["clock"] - time.time() < 50  # the worker's clock really was 45 s ahead
    assert worker["counts"] == {"queued": 4, "in_progress_elsewhere": 4}
    assert sorted(_reset_ids(emu)) == sorted(leads[4:])  # the live owner's leads were never sent
    with StateStore("leadsquared_state_skew") as store:
        held = store.leads_with("dag/skewed", ["in_progress_elsewhere"])
        assert sorted(row.lead_id for row in held) == sorted(leads[:4])
        assert all("healthy-host pid 4242" in row.message for row in held)
        assert store.repeated_count("dag/skewed") == 0
