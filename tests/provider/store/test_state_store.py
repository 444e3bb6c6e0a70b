"""The state store on SQLite and PostgreSQL: schema version, atomic claims, audit upserts, carry-over."""

from __future__ import annotations

import json
import multiprocessing
import time
from pathlib import Path

import pytest

from leadsquared_provider.rules.approval import ApprovalDecision, ApprovalRequest, Decision, Reason
from leadsquared_provider.rules.outcomes import Outcome, ResetResult
from leadsquared_provider.rules.request import ResetScope
from leadsquared_provider.store import (
    BatchScope,
    ClaimOwner,
    ClaimStatus,
    RunRecord,
    StagedLead,
    StateStore,
    StateStoreError,
    parse_run_key,
)
from leadsquared_provider.store import schema as state_schema

SCOPE = ResetScope.from_mapping(
    {
        "activity_event_codes": [166],
        "task_type_ids": [],
        "audit_types": [],
        "delete_notes": False,
        "from_date": "2026-11-01T00:00:00+00:00",
        "to_date": "2026-11-01T23:59:59+00:00",
        "allow_all_time": False,
    }
)
LEADS = [f"{n:08x}-0000-4000-8000-000000000000" for n in range(1, 7)]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request, monkeypatch, tmp_path) -> StateStore:
    if request.param == "sqlite":
        conn = {"conn_type": "sqlite", "host": str(tmp_path / "state.db")}
    else:
        server = request.getfixturevalue("postgres_server")
        conn = json.loads(server.airflow_conn_json(request.getfixturevalue("postgres_db")))
    monkeypatch.setenv("AIRFLOW_CONN_LEADSQUARED_STATE", json.dumps(conn))
    with StateStore("leadsquared_state") as opened:
        yield opened


def owner(name: str, run: str = "dag/run1", batch: int = 1) -> ClaimOwner:
    return ClaimOwner(owner_id=name, run_key=run, batch=batch, try_number=1, hostname="host", pid=1)


def batch_of(run: str = "dag/run1") -> BatchScope:
    return BatchScope(run_key=run, dag_id="dag", batch=1, scopes={"s1": SCOPE})


def queued(lead: str) -> ResetResult:
    now = time.time()
    return ResetResult(lead, Outcome.QUEUED, 200, None, "queued", 1, now, now)


def audit_row(store: StateStore, lead: str, run: str = "dag/run1") -> dict:
    return next(r for r in store.iter_audit(run) if r["lead_id"] == lead)


def test_schema_is_created_once_with_its_version(store):
    with store.engine.connect() as conn:
        version = conn.execute(state_schema.schema_version.select()).all()
    assert [(row.id, row.version) for row in version] == [(1, state_schema.SCHEMA_VERSION)]


def test_a_newer_schema_is_refused(store, monkeypatch):
    from leadsquared_provider.store import engine as module

    with store.engine.begin() as conn:
        conn.execute(state_schema.schema_version.update().values(version=state_schema.SCHEMA_VERSION + 1))
    monkeypatch.setattr(module, "_schema_ready", set())
    newer, ours = state_schema.SCHEMA_VERSION + 1, state_schema.SCHEMA_VERSION
    with pytest.raises(StateStoreError, match=rf"schema version {newer}, newer than this provider's {ours}"):
        StateStore("leadsquared_state").ensure_schema()


def test_a_version_1_store_is_migrated_and_keeps_its_runs(store, monkeypatch):
    """A store written by the provider before version 2 (run types, unread answers, final claims): the
    columns are added, the version set, its runs still load (type unknown) and count for the growth guard as
    runs of any type, its audit rows read as answered, and its settled claims stay settled for good."""
    from sqlalchemy import text

    from leadsquared_provider.store import engine as module

    old = RunRecord("dag/old", "dag", "scheduled__old", SCOPE, "s1", False, 40, 0, 1, 40)
    store.save_run(old)
    store.claim(owner("old", run="dag/old"), batch_of("dag/old"), StagedLead(LEADS[0], "s1"), ttl=60)
    store.finish(owner("old", run="dag/old"), batch_of("dag/old"), "s1", queued(LEADS[0]))
    with store.engine.begin() as conn:
        conn.execute(text("ALTER TABLE leadsquared_reset_runs DROP COLUMN run_type"))
        conn.execute(text("ALTER TABLE leadsquared_reset_audit DROP COLUMN unread"))
        conn.execute(text("ALTER TABLE leadsquared_reset_claims DROP COLUMN final"))
        for column in ("leadsquared_conn_id", "account", "deferred"):
            conn.execute(text(f"ALTER TABLE leadsquared_reset_runs DROP COLUMN {column}"))
        conn.execute(state_schema.schema_version.update().values(version=1))
    monkeypatch.setattr(module, "_schema_ready", set())

    with StateStore("leadsquared_state") as migrated:
        with migrated.engine.connect() as conn:
            assert conn.execute(state_schema.schema_version.select()).one().version == state_schema.SCHEMA_VERSION
        assert migrated.load_run("dag/old").run_type is None
        assert migrated.settled([LEADS[0]], "s1") == {LEADS[0]: "queued by run dag/old"}
        with migrated.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM leadsquared_reset_audit WHERE unread")).scalar() == 0
        assert migrated.growth_baseline("dag", "dag/new") == 40  # no typed scheduled run yet: any type
        migrated.save_run(
            RunRecord("dag/s1", "dag", "scheduled__1", SCOPE, "s1", False, 300, 0, 1, 300, run_type="scheduled")
        )
        assert migrated.growth_baseline("dag", "dag/new") == 300  # scheduled runs, once there are any


def test_claim_is_insert_or_nothing_and_settles(store):
    first, second = owner("a"), owner("b", run="dag/run2")
    assert store.claim(first, batch_of(), StagedLead(LEADS[0], "s1"), ttl=60).status is ClaimStatus.OURS
    held = store.claim(second, batch_of("dag/run2"), StagedLead(LEADS[0], "s1"), ttl=60)
    assert held.status is ClaimStatus.HELD and "run dag/run1, batch 1" in held.detail
    assert audit_row(store, LEADS[0])["outcome"] == "sending"
    store.finish(first, batch_of(), "s1", queued(LEADS[0]))
    settled = store.claim(second, batch_of("dag/run2"), StagedLead(LEADS[0], "s1"), ttl=60)
    assert settled.status is ClaimStatus.SETTLED and settled.detail == "queued by run dag/run1"
    assert store.settled(LEADS, "s1") == {LEADS[0]: "queued by run dag/run1"}
    row = audit_row(store, LEADS[0])
    assert (row["outcome"], row["attempts"], row["sends"], row["possibly_repeated"]) == ("queued", 1, 1, False)


def test_a_failed_lead_releases_its_claim_for_later_runs(store):
    first, later = owner("a"), owner("b", run="dag/run2")
    store.claim(first, batch_of(), StagedLead(LEADS[1], "s1"), ttl=60)
    failed = ResetResult(LEADS[1], Outcome.FAILED, 503, None, "gave up", 3, time.time(), time.time())
    store.finish(first, batch_of(), "s1", failed)
    assert store.settled([LEADS[1]], "s1") == {}
    assert store.claim(later, batch_of("dag/run2"), StagedLead(LEADS[1], "s1"), ttl=60).status is ClaimStatus.OURS


def test_an_expired_claim_is_taken_over_and_marked_possibly_repeated(store):
    dead, alive = owner("dead"), owner("alive")
    store.claim(dead, batch_of(), StagedLead(LEADS[2], "s1"), ttl=0.2)
    assert store.claim(alive, batch_of(), StagedLead(LEADS[2], "s1"), ttl=60).status is ClaimStatus.HELD
    time.sleep(0.3)
    seen = store.claim(alive, batch_of(), StagedLead(LEADS[2], "s1"), ttl=60, grace=0.3)
    assert seen.status is ClaimStatus.EXPIRED and seen.sighting is not None  # seen once: not yet taken
    assert seen.sighting.owner_id == "dead"
    early = store.claim(alive, batch_of(), StagedLead(LEADS[2], "s1"), ttl=60, sighting=seen.sighting, grace=0.3)
    assert early.status is ClaimStatus.EXPIRED and early.sighting == seen.sighting  # grace not over
    time.sleep(0.35)
    taken = store.claim(alive, batch_of(), StagedLead(LEADS[2], "s1"), ttl=60, sighting=seen.sighting, grace=0.3)
    assert taken.status is ClaimStatus.TAKEN_OVER and "dead" not in taken.detail and "batch 1" in taken.detail
    store.finish(alive, batch_of(), "s1", queued(LEADS[2]), extra_sends=1, repeated=True)
    row = audit_row(store, LEADS[2])
    assert (row["outcome"], row["sends"], row["possibly_repeated"]) == ("queued", 2, True)
    assert store.repeated_count("dag/run1") == 1
    # The dead owner's late answer cannot settle a claim it lost.
    store.finish(dead, batch_of(), "s1", queued(LEADS[2]))
    assert store.settled([LEADS[2]], "s1") == {LEADS[2]: "queued by run dag/run1"}


def test_an_owner_whose_heartbeat_lands_late_keeps_its_claim(store):
    # Its claim expired while the store was held; its heartbeat landed before the second sighting.
    slow, other = owner("slow"), owner("other")
    store.claim(slow, batch_of(), StagedLead(LEADS[5], "s1"), ttl=0.2)
    time.sleep(0.3)
    seen = store.claim(other, batch_of(), StagedLead(LEADS[5], "s1"), ttl=60, grace=0.2)
    assert seen.status is ClaimStatus.EXPIRED
    assert store.heartbeat(slow, ttl=0.2) == 1
    time.sleep(0.3)  # expired again, but not the claim that was seen: a new sighting, not a takeover
    again = store.claim(other, batch_of(), StagedLead(LEADS[5], "s1"), ttl=60, sighting=seen.sighting, grace=0.2)
    assert again.status is ClaimStatus.EXPIRED and again.sighting != seen.sighting
    assert audit_row(store, LEADS[5])["outcome"] == "sending"


def test_a_queued_lead_is_settled_even_when_its_claim_was_lost(store):
    # A store that lost its last commits in a crash (no fsync, synchronous_commit off) may have lost the
    # claim; the answer read afterwards still settles the lead, so no later run sends it again.
    from sqlalchemy import delete

    from leadsquared_provider.store import schema as t

    worker = owner("w")
    store.claim(worker, batch_of(), StagedLead(LEADS[4], "s1"), ttl=60)
    with store.engine.begin() as conn:
        conn.execute(delete(t.claims))
    store.finish(worker, batch_of(), "s1", queued(LEADS[4]))
    assert store.settled([LEADS[4]], "s1") == {LEADS[4]: "queued by run dag/run1"}


def test_heartbeat_keeps_a_claim_alive(store):
    worker, other = owner("w"), owner("o")
    store.claim(worker, batch_of(), StagedLead(LEADS[3], "s1"), ttl=0.5)
    for _ in range(4):
        time.sleep(0.2)
        assert store.heartbeat(worker, ttl=0.5) == 1
        assert store.claim(other, batch_of(), StagedLead(LEADS[3], "s1"), ttl=60).status is ClaimStatus.HELD


def test_a_not_sent_outcome_never_hides_a_settled_one(store):
    zombie, twin = owner("z"), owner("t")
    store.claim(zombie, batch_of(), StagedLead(LEADS[4], "s1"), ttl=60)
    store.finish(zombie, batch_of(), "s1", queued(LEADS[4]))
    store.record(batch_of(), "s1", ResetResult.not_sent(LEADS[4], Outcome.IN_PROGRESS_ELSEWHERE, "held"))
    store.record(batch_of(), "s1", ResetResult.not_sent(LEADS[4], Outcome.ALREADY_DONE, "done"))
    assert audit_row(store, LEADS[4])["outcome"] == "queued"
    assert twin  # the twin never sent it: its claim was refused above


def test_odd_answers_are_cut_to_their_columns(store):
    worker = owner("w")
    store.claim(worker, batch_of(), StagedLead(LEADS[5], "s1"), ttl=60)
    odd = ResetResult(LEADS[5], Outcome.FAILED, 200, "X" * 5000, "m" * 5000, 1, time.time(), time.time())
    store.finish(worker, batch_of(), "s1", odd)
    row = audit_row(store, LEADS[5])
    assert len(row["exception_type"]) == state_schema.EXCEPTION_TYPE_SIZE
    assert len(row["message"]) == state_schema.MESSAGE_SIZE


def _plan(store: StateStore, run: str, leads: list[str], *, reported: bool = True) -> None:
    store.save_scope("s1", SCOPE)
    store.stage_candidates(run, [(lead, "s1") for lead in leads])
    store.save_run(RunRecord(run, "dag", parse_run_key(run).run_id, SCOPE, "s1", False, len(leads), 0, 1, len(leads)))
    if reported:
        store.close_run(run, unresolved=1)


def test_carry_over_takes_unresolved_and_unreached_leads_of_closed_runs_only(store):
    _plan(store, "dag/run1", LEADS[:4])
    worker = owner("w")
    store.claim(worker, batch_of(), StagedLead(LEADS[0], "s1"), ttl=60)
    store.finish(worker, batch_of(), "s1", queued(LEADS[0]))  # settled: never carried
    store.claim(worker, batch_of(), StagedLead(LEADS[1], "s1"), ttl=60)
    failed = ResetResult(LEADS[1], Outcome.FAILED, 503, None, "gave up", 3, time.time(), time.time())
    store.finish(worker, batch_of(), "s1", failed)  # failed: carried
    store.claim(worker, batch_of(), StagedLead(LEADS[2], "s1"), ttl=60)  # left sending: carried
    # LEADS[3] never reached (no audit row): carried
    assert store.carry_over("dag", "dag/run9") == sorted((lead, "s1") for lead in LEADS[1:4])
    _plan(store, "dag/run2", LEADS[4:], reported=False)  # a run still going is left to its own batches
    assert (LEADS[4], "s1") not in store.carry_over("dag", "dag/run9")


def test_carry_over_stops_after_three_runs(store):
    for n in range(1, 5):
        run = f"dag/run{n}"
        _plan(store, run, [LEADS[0]])
        worker = owner(f"w{n}", run=run)
        store.claim(worker, batch_of(run), StagedLead(LEADS[0], "s1"), ttl=60)
        store.finish(worker, batch_of(run), "s1", ResetResult(LEADS[0], Outcome.FAILED, 503, None, "x", 1, 0, 0))
        expected = [(LEADS[0], "s1")] if n <= 3 else []
        assert store.carry_over("dag", "dag/next") == expected


def _claim_all(conn_json: str, name: str, leads: list[str], out: multiprocessing.Queue) -> None:
    import os

    os.environ["AIRFLOW_CONN_LEADSQUARED_STATE"] = conn_json
    got = []
    with StateStore("leadsquared_state") as store:
        me = owner(name)
        for lead in leads:
            if store.claim(me, batch_of(), StagedLead(lead, "s1"), ttl=60).status is ClaimStatus.OURS:
                got.append(lead)
    out.put((name, got))


def test_concurrent_processes_never_claim_the_same_lead_twice(store, monkeypatch):
    import os

    conn_json = os.environ["AIRFLOW_CONN_LEADSQUARED_STATE"]
    leads = [f"{n:08x}-2222-4000-8000-000000000000" for n in range(200)]
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_claim_all, args=(conn_json, f"p{i}", leads, out)) for i in range(4)]
    for proc in procs:
        proc.start()
    results = dict(out.get(timeout=120) for _ in procs)
    for proc in procs:
        proc.join(timeout=30)
    claimed = [lead for got in results.values() for lead in got]
    assert sorted(claimed) == sorted(leads)  # every lead exactly once across the four processes


def test_unknown_connection_type_names_the_connection(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("AIRFLOW_CONN_BAD_STATE", json.dumps({"conn_type": "mysql", "host": "x"}))
    with pytest.raises(StateStoreError, match=r"'bad_state' is of type 'mysql': use sqlite .* or postgres"):
        StateStore("bad_state").ensure_schema()


def test_the_gate_keeps_a_runs_request_and_its_answer_and_a_new_plan_asks_again(store):
    """The approvals table on SQLite and PostgreSQL: the plan's request, the answer, a re-plan resetting it."""
    asks = ApprovalRequest(
        reasons=(Reason.OVER_THRESHOLD, Reason.GROWTH),
        leads=1500,
        threshold=1000,
        baseline=120,
        max_growth=10.0,
        days=1.0,
        max_days=7,
        sample=tuple(LEADS[:3]),
        calls=1520,
        calls_per_second=4.9,
        day_left=4000,
    )
    assert store.load_approval("dag/run1") is None  # a run planned before the gate existed

    store.save_approval_request("dag/run1", asks)
    assert store.load_approval("dag/run1") == (asks, ApprovalDecision(Decision.WAITING))

    store.record_decision("dag/run1", ApprovalDecision(Decision.APPROVED, "alice", 1_700_000_000.5, "looks right"))
    request, decision = store.load_approval("dag/run1")
    assert request == asks
    assert decision == ApprovalDecision(Decision.APPROVED, "alice", 1_700_000_000.5, "looks right")
    assert decision.decision.lets_through

    store.save_approval_request("dag/run1", asks)  # planned again (a cleared plan): asks again, the answer gone
    assert store.load_approval("dag/run1") == (asks, ApprovalDecision(Decision.WAITING))
    quiet = ApprovalRequest(reasons=(), leads=5, threshold=1000, baseline=None, max_growth=10.0, days=1.0, max_days=7)
    store.save_approval_request("dag/run2", quiet)
    assert store.load_approval("dag/run2") == (quiet, ApprovalDecision(Decision.NOT_NEEDED))


def test_a_backfills_latest_answer_is_found_among_its_runs_and_waiting_or_refused_ones_are_not(store):
    """A backfill's run looks for the answer given to its neighbours: the latest approval, rejection or
    timeout among the keys asked for, not older than ``since``; a run still waiting, a refused approval, a
    run not asked for and a run that needed nobody are no answer."""
    asks = ApprovalRequest(
        reasons=(Reason.LONG_BACKFILL,), leads=8, threshold=1000, baseline=None, max_growth=10.0, days=1.0, max_days=2
    )
    keys = [f"dag/backfill__2026-09-0{day}T18:30:00+00:00" for day in range(1, 7)]
    for key in keys:
        store.save_approval_request(key, asks)
    assert store.latest_answer(keys, since=0) is None  # all waiting
    assert store.latest_answer([], since=0) is None

    store.record_decision(keys[0], ApprovalDecision(Decision.REJECTED, "bob", 1_700_000_000.0))
    store.record_decision(keys[1], ApprovalDecision(Decision.APPROVED, "alice", 1_700_000_100.0))
    store.record_decision(keys[2], ApprovalDecision(Decision.REFUSED, "admin", 1_700_000_200.0, "four eyes"))
    store.record_decision(keys[5], ApprovalDecision(Decision.TIMED_OUT, None, 1_700_000_300.0))
    store.save_approval_request("dag/manual__1", ApprovalRequest((), 5, 1000, None, 10.0, 1.0, 7))

    assert store.latest_answer(keys[:5], since=0) == (
        keys[1],
        ApprovalDecision(Decision.APPROVED, "alice", 1_700_000_100.0),
    )
    assert store.latest_answer(keys, since=0) == (keys[5], ApprovalDecision(Decision.TIMED_OUT, None, 1_700_000_300.0))
    assert store.latest_answer([keys[0], keys[3]], since=0) == (
        keys[0],
        ApprovalDecision(Decision.REJECTED, "bob", 1_700_000_000.0),
    )
    assert store.latest_answer(keys[:5], since=1_700_000_150.0) is None  # older than since: an earlier backfill's
    assert store.latest_answer([keys[2], keys[3], "dag/manual__1"], since=0) is None
