"""BatchSender against the emulator and an SQLite state store: claims make every lead go out once."""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time

import pytest

from leadsquared_provider.hooks.leadsquared import LeadSquaredHook
from leadsquared_provider.rules.outcomes import Outcome
from leadsquared_provider.rules.request import ResetScope
from leadsquared_provider.steps.send import BatchSender, owner_for
from leadsquared_provider.store import BatchScope, ClaimOwner, ClaimStatus, StagedLead, StateStore
from lsq_emulator import EmulatorConfig, run_emulator
from tests.conftest import lsq_lead

SCOPE = {
    "activity_event_codes": [166],
    "task_type_ids": [],
    "audit_types": [],
    "delete_notes": False,
    "from_date": "2026-11-01T00:00:00+00:00",
    "to_date": "2026-11-01T23:59:59+00:00",
    "allow_all_time": False,
}
LEADS = [f"{n:08x}-3333-4000-8000-000000000000" for n in range(1, 25)]


@pytest.fixture
def served():
    config = EmulatorConfig(rate_limit=1000, rate_window_seconds=1.0, latency=(0.01, 0.03))
    with run_emulator(config, leads=[lsq_lead(lead) for lead in LEADS]) as emu:
        yield emu


@pytest.fixture
def setup(served, lsq_connection, state_conn):
    lsq = lsq_connection(served.base_url)
    with StateStore(state_conn) as store:
        store.save_scope("s1", ResetScope.from_mapping(SCOPE))
        yield store, lsq


def sender(store: StateStore, lsq: str, run: str, *, batch: int = 1, ttl: float = 30.0, **kwargs) -> BatchSender:
    return BatchSender(
        store=store,
        hook=kwargs.pop("hook", None) or LeadSquaredHook(leadsquared_conn_id=lsq),
        batch=BatchScope(run_key=run, dag_id="dag", batch=batch, scopes={"s1": ResetScope.from_mapping(SCOPE)}),
        owner=owner_for(run, batch, 1),
        claim_ttl_seconds=ttl,
        heartbeat_seconds=min(ttl / 6, 5.0),
        held_poll_seconds=0.1,
        log=logging.getLogger("test-sender"),
        **kwargs,
    )


def sent_ids(served) -> list[str]:
    return sorted(c["body"]["ProspectId"] for c in served.calls() if c["path"].endswith("Lead.Reset"))


def outcomes(store: StateStore, run: str) -> dict[str, str]:
    return {row["lead_id"]: row["outcome"] for row in store.iter_audit(run)}


def test_a_batch_is_sent_once_and_a_rerun_sends_nothing(setup, served):
    store, lsq = setup
    leads = [StagedLead(lead, "s1") for lead in LEADS[:6]]
    report = sender(store, lsq, "dag/r1").send(leads)
    assert report.counts == {Outcome.QUEUED: 6}
    assert sent_ids(served) == sorted(LEADS[:6])
    again = sender(store, lsq, "dag/r2").send(leads)
    assert again.counts == {Outcome.ALREADY_DONE: 6}
    assert sent_ids(served) == sorted(LEADS[:6])  # nothing more went out
    assert set(outcomes(store, "dag/r2").values()) == {"already_done"}


def test_two_runs_at_once_send_each_lead_once(setup, served):
    store, lsq = setup
    leads = [StagedLead(lead, "s1") for lead in LEADS]
    reports = {}

    def run(name: str) -> None:
        with StateStore(store.conn_id) as own:
            reports[name] = sender(own, lsq, name).send(leads)

    threads = [threading.Thread(target=run, args=(name,)) for name in ("dag/a", "dag/b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sent_ids(served) == sorted(LEADS)  # each lead exactly once across both runs
    a, b = outcomes(store, "dag/a"), outcomes(store, "dag/b")
    assert {lead for lead, o in a.items() if o == "queued"} | {lead for lead, o in b.items() if o == "queued"} == set(
        LEADS
    )
    assert not {lead for lead, o in a.items() if o == "queued"} & {lead for lead, o in b.items() if o == "queued"}
    for name in ("dag/a", "dag/b"):
        assert set(reports[name].counts) <= {Outcome.QUEUED, Outcome.ALREADY_DONE}
        assert store.repeated_count(name) == 0


def _zombie(conn_env: dict[str, str], lsq: str, out: multiprocessing.Queue) -> None:
    import os

    os.environ.update(conn_env)
    with StateStore("leadsquared_state") as store:
        report = sender(store, lsq, "dag/z").send([StagedLead(lead, "s1") for lead in LEADS])
    out.put(dict(report.counts))


def test_a_zombie_running_the_same_batch_sends_nothing_twice(setup, served):
    import os

    store, lsq = setup
    env = {k: v for k, v in os.environ.items() if k.startswith("AIRFLOW_CONN_")}
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_zombie, args=(env, lsq, out)) for _ in range(2)]
    for proc in procs:
        proc.start()
    counts = [out.get(timeout=180) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
    assert sent_ids(served) == sorted(LEADS)
    assert sum(c.get("queued", 0) for c in counts) == len(LEADS)
    assert set(outcomes(store, "dag/z").values()) == {"queued"}  # a twin's late note never hides a queued row


def test_an_expired_claim_is_taken_over_and_reported_possibly_repeated(setup, served):
    store, lsq = setup
    dead = ClaimOwner("dead", "dag/old", 1, 1, "gone-host", 999)
    old = BatchScope(run_key="dag/old", dag_id="dag", batch=1, scopes={"s1": ResetScope.from_mapping(SCOPE)})
    assert store.claim(dead, old, StagedLead(LEADS[0], "s1"), ttl=0.5).status is ClaimStatus.OURS
    report = sender(store, lsq, "dag/new", ttl=2.0).send([StagedLead(LEADS[0], "s1"), StagedLead(LEADS[1], "s1")])
    assert report.counts == {Outcome.QUEUED: 2}
    assert sent_ids(served) == sorted(LEADS[:2])
    row = next(r for r in store.iter_audit("dag/new") if r["lead_id"] == LEADS[0])
    assert (row["possibly_repeated"], row["sends"]) == (True, 2)
    assert store.repeated_count("dag/new") == 1


def test_a_lead_held_by_a_live_owner_is_not_sent_and_says_by_whom(setup, served):
    store, lsq = setup
    live = ClaimOwner("live", "dag/other", 7, 1, "busy-host", 4242)
    other = BatchScope(run_key="dag/other", dag_id="dag", batch=7, scopes={"s1": ResetScope.from_mapping(SCOPE)})
    store.claim(live, other, StagedLead(LEADS[2], "s1"), ttl=1.0)
    stop = threading.Event()

    def keep_alive() -> None:
        while not stop.wait(0.2):
            store.heartbeat(live, ttl=1.0)

    beating = threading.Thread(target=keep_alive)
    beating.start()
    try:
        report = sender(store, lsq, "dag/mine", ttl=1.0).send([StagedLead(LEADS[2], "s1"), StagedLead(LEADS[3], "s1")])
    finally:
        stop.set()
        beating.join()
    assert report.counts == {Outcome.QUEUED: 1, Outcome.IN_PROGRESS_ELSEWHERE: 1}
    assert sent_ids(served) == [LEADS[3]]
    [held] = store.leads_with("dag/mine", [Outcome.IN_PROGRESS_ELSEWHERE])
    assert held.lead_id == LEADS[2]
    assert "run dag/other, batch 7" in held.message and "busy-host pid 4242" in held.message


class _BrokenForOneLead(LeadSquaredHook):
    def reset_lead(self, request):
        if request.lead_id == LEADS[4]:
            raise KeyError("ExceptionType")
        return super().reset_lead(request)


def test_one_leads_unexpected_error_fails_that_lead_only(setup, served):
    store, lsq = setup
    hook = _BrokenForOneLead(leadsquared_conn_id=lsq)
    report = sender(store, lsq, "dag/x", hook=hook).send([StagedLead(lead, "s1") for lead in LEADS[4:8]])
    assert report.counts == {Outcome.FAILED: 1, Outcome.QUEUED: 3}
    row = next(r for r in store.iter_audit("dag/x") if r["lead_id"] == LEADS[4])
    assert (row["outcome"], row["exception_type"]) == ("failed", "KeyError")
    assert store.settled([LEADS[4]], "s1") == {}  # released: the next run may send it
    assert sent_ids(served) == sorted(LEADS[5:8])


def test_refused_keys_stop_the_batch_and_skip_the_rest(setup, served, lsq_connection):
    store, _ = setup
    bad = lsq_connection(served.base_url, conn_id="bad_keys", login="u$nobody", password="nope")
    report = sender(store, bad, "dag/k", max_in_flight=1).send([StagedLead(lead, "s1") for lead in LEADS[8:14]])
    assert report.auth_failure is not None
    assert report.counts[Outcome.AUTH_FAILED] == 1
    assert report.counts[Outcome.SKIPPED] == 5
    # One request: the one that asked which account the keys belong to, refused; no reset went out.
    assert [c["path"].rsplit("/", 1)[1] for c in served.calls()] == ["UserByAccessKey.Get"]
    time.sleep(0)  # the claims of skipped leads were released
    assert store.settled(LEADS[8:14], "s1") == {}


@pytest.mark.parametrize("later", ["next run", "same run's retry"])
def test_a_send_after_an_attempt_whose_answer_was_never_read_is_possibly_repeated(
    served, lsq_connection, state_conn, later
):
    """The lead's only attempt timed out (no retry left) though LeadSquared queued the reset: whoever sends it
    again, a later run or the same run's next try, reports it possibly repeated."""
    lsq = lsq_connection(served.base_url, timeout_seconds=0.5, max_retries=0)
    lead = [StagedLead(LEADS[0], "s1")]
    with StateStore(state_conn) as store:
        store.save_scope("s1", ResetScope.from_mapping(SCOPE))
        served.configure(latency=(1.0, 1.0))  # the answer comes after the client's timeout
        first = sender(store, lsq, "dag/r1").send(lead)
        served.configure(latency=(0.01, 0.02))
        time.sleep(0.6)  # the slow answer of the first request has been written by now
        assert first.counts == {Outcome.FAILED: 1}
        assert [row["possibly_repeated"] for row in store.iter_audit("dag/r1")] == [False]

        run = "dag/r2" if later == "next run" else "dag/r1"
        second = sender(store, lsq, run, batch=1 if later == "next run" else 2).send(lead)

        assert second.counts == {Outcome.QUEUED: 1}
        row = next(r for r in store.iter_audit(run) if r["lead_id"] == LEADS[0])
        assert (row["outcome"], row["possibly_repeated"]) == ("queued", True)
    accepted = [reset["lead_id"] for reset in served.resets()]
    assert accepted == [LEADS[0], LEADS[0]]  # LeadSquared did queue it twice: the flag was the truth


def _open_scope(seconds_left: float) -> dict:
    """SCOPE with a window from yesterday to ``seconds_left`` from now (its ToDate the last whole second)."""
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC).replace(microsecond=0)
    last = now + timedelta(seconds=seconds_left - 1)
    return {**SCOPE, "from_date": (now - timedelta(days=1)).isoformat(), "to_date": last.isoformat()}


def _send_with_scope(store: StateStore, lsq: str, run: str, scope: dict, leads: list[str]) -> dict:
    batch_sender = sender(store, lsq, run)
    batch_sender.batch = BatchScope(
        run_key=run, dag_id="dag", batch=1, scopes={"s-open": ResetScope.from_mapping(scope)}
    )
    return dict(batch_sender.send([StagedLead(lead, "s-open") for lead in leads]).counts)


def test_a_reset_queued_before_its_window_closed_settles_it_for_its_own_run_only(setup, served):
    # A manual run of a window that is still open (today, at noon) queues two leads. Its own retry sends
    # nothing more; once the window has closed, the night's run of the same window sends them again, for
    # what was created after noon; from then on the lead is settled for the window for good.
    store, lsq = setup
    scope = _open_scope(seconds_left=3)
    store.save_scope("s-open", ResetScope.from_mapping(scope))
    leads = LEADS[14:16]
    assert _send_with_scope(store, lsq, "dag/manual-noon", scope, leads) == {Outcome.QUEUED: 2}
    assert _send_with_scope(store, lsq, "dag/manual-noon", scope, leads) == {Outcome.ALREADY_DONE: 2}
    assert sent_ids(served) == sorted(leads)
    time.sleep(3.5)  # the window closes
    assert _send_with_scope(store, lsq, "dag/scheduled-night", scope, leads) == {Outcome.QUEUED: 2}
    assert sent_ids(served) == sorted(leads * 2)
    assert store.repeated_count("dag/scheduled-night") == 0  # a new reset, not a repeat
    assert _send_with_scope(store, lsq, "dag/manual-later", scope, leads) == {Outcome.ALREADY_DONE: 2}
    assert sent_ids(served) == sorted(leads * 2)


def test_all_time_resets_weeks_apart_both_go_out(setup, served):
    store, lsq = setup
    scope = {**SCOPE, "from_date": None, "to_date": None, "allow_all_time": True}
    store.save_scope("s-open", ResetScope.from_mapping(scope))
    leads = LEADS[16:18]
    assert _send_with_scope(store, lsq, "dag/all-time-1", scope, leads) == {Outcome.QUEUED: 2}
    assert _send_with_scope(store, lsq, "dag/all-time-1", scope, leads) == {Outcome.ALREADY_DONE: 2}  # its retry
    assert _send_with_scope(store, lsq, "dag/all-time-2", scope, leads) == {Outcome.QUEUED: 2}
    assert sent_ids(served) == sorted(leads * 2)


def test_refusals_left_by_an_earlier_try_do_not_stop_the_cleared_run(setup, served):
    # Decided: after the keys were fixed and the run cleared, the auth_failed rows of its first try stay in
    # the audit (what happened), but only a refusal met since this try started stops its batches.
    from leadsquared_provider.rules.outcomes import ResetResult
    from leadsquared_provider.steps.send import refused_meanwhile

    store, lsq = setup
    run = "dag/cleared"
    first_try = BatchScope(run_key=run, dag_id="dag", batch=2, scopes={"s1": ResetScope.from_mapping(SCOPE)})
    store.record(first_try, "s1", ResetResult.not_sent(LEADS[18], Outcome.AUTH_FAILED, "keys refused (401)"))
    stopped = refused_meanwhile(store, run)
    assert not stopped()
    report = sender(store, lsq, run, run_stopped=stopped).send([StagedLead(lead, "s1") for lead in LEADS[19:22]])
    assert report.counts == {Outcome.QUEUED: 3} and report.auth_failure is None
    assert sent_ids(served) == sorted(LEADS[19:22])
    # A refusal met meanwhile by another batch of the run does stop it.
    store.record(first_try, "s1", ResetResult.not_sent(LEADS[22], Outcome.AUTH_FAILED, "keys refused (401)"))
    assert stopped()
