"""The state store's cost per lead: transactions, statements and milliseconds of the claim + outcome path.

What a reset batch does per lead, minus the request (:class:`leadsquared_provider.steps.send.BatchSender` runs
these on its main thread, one lead after the other, whatever ``max_in_flight``): ``StateStore.claim`` (one
transaction: the claim, inserted or taken over, and the lead's ``sending`` audit row) and, once LeadSquared
answered, ``StateStore.finish`` (one transaction: the outcome's audit row, the claim settled or released).
Per batch it also reads the leads settled earlier (``settled``) and, every ``heartbeat_seconds`` (5 s with
the operator's defaults), refreshes its claims (``heartbeat``: one more transaction).

    python -m bench.state_cost --setup --run-id r --batches 4 --leads 1000      # stage a run (not timed)
    python -m bench.state_cost --run-id r --batch 2 --start-at <epoch>         # one batch, timed

Each command runs in a fresh interpreter with the store as ``AIRFLOW_CONN_LEADSQUARED_STATE`` and prints one
JSON line. :func:`measure_state_cost` stages a run and times ``senders`` batches of it at once, each in its
own process (as the pool's reset tasks are), started together. Statements and transactions are counted with
SQLAlchemy's engine events (``before_cursor_execute``, ``commit``) around each call.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.planning import PROJECT, lead_ids

DAG_ID = "bench_state_cost"
STATE_CONN_ID = "leadsquared_state"
SCOPE = {
    "from_date": "2026-09-26T18:30:00+00:00",
    "to_date": "2026-09-27T18:29:59+00:00",
    "activity_event_codes": [166, 167],
    "task_type_ids": [],
    "audit_types": ["StageChange", "OwnerChange"],
    "delete_notes": False,
}
SCOPE_KEY = "bench-scope-0000000000000000000000000000000000000000000000000000"[:64]
CLAIM_TTL, HEARTBEATS = 30.0, 20


def _key(run_id: str) -> str:
    return f"{DAG_ID}/{run_id}"


def setup(run_id: str, batches: int, leads: int) -> dict[str, Any]:
    """Stage ``batches`` x ``leads`` candidates and the run's record, as the plan does."""
    from leadsquared_provider.rules.request import ResetScope
    from leadsquared_provider.store import RunRecord, StagedLead, StateStore

    total = batches * leads
    scope = ResetScope.from_mapping(SCOPE)
    with StateStore(STATE_CONN_ID) as store:
        store.save_scope(SCOPE_KEY, scope)
        store.stage_candidates(_key(run_id), (StagedLead(lead, SCOPE_KEY) for lead in lead_ids(total, 4242)))
        store.save_run(
            RunRecord(
                run_key=_key(run_id),
                dag_id=DAG_ID,
                run_id=run_id,
                scope=scope,
                scope_key=SCOPE_KEY,
                dry_run=False,
                candidates=total,
                invalid=0,
                batches=batches,
                batch_size=leads,
            )
        )
        return {"staged": total, "dialect": store.dialect}


class _Counts:
    """Statements (by verb) and commits on an engine, read as differences around each call."""

    def __init__(self, engine: Any) -> None:
        from sqlalchemy import event

        self.counter: Counter[str] = Counter()

        @event.listens_for(engine, "before_cursor_execute")
        def _statement(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            verb = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else "?"
            if verb not in ("BEGIN", "COMMIT", "ROLLBACK"):
                self.counter[verb] += 1
                self.counter["statements"] += 1

        @event.listens_for(engine, "commit")
        def _commit(_conn: Any) -> None:
            self.counter["transactions"] += 1

    def snapshot(self) -> Counter[str]:
        return Counter(self.counter)


def _ms(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "mean": statistics.fmean(ordered) * 1000,
        "median": statistics.median(ordered) * 1000,
        "p95": ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))] * 1000,
        "max": ordered[-1] * 1000,
    }


def send_batch(run_id: str, batch: int, start_at: float | None) -> dict[str, Any]:
    """The state-store half of one batch: read the settled leads, then claim + finish each lead; timed."""
    from leadsquared_provider.rules.outcomes import Outcome, ResetResult
    from leadsquared_provider.steps.send import owner_for
    from leadsquared_provider.store import BatchScope, ClaimStatus, StagedLead, StateStore

    key = _key(run_id)
    with StateStore(STATE_CONN_ID) as store:
        run = store.load_run(key)
        bounds = run.batch(batch)
        leads = store.candidate_slice(key, bounds["first"], bounds["last"])
        scopes = store.load_scopes(lead.scope_key for lead in leads)
        scope = BatchScope(run_key=key, dag_id=DAG_ID, batch=batch, scopes=scopes)
        owner = owner_for(key, batch, 1)
        counts = _Counts(store.engine)
        if start_at is not None:
            time.sleep(max(0.0, start_at - time.time()))
        t_start = time.perf_counter()
        before = counts.snapshot()
        settled = store.settled([lead for lead, _ in leads], SCOPE_KEY)
        per_batch = counts.snapshot() - before
        claim_s, finish_s, lead_s = [], [], []
        claim_n: Counter[str] = Counter()
        finish_n: Counter[str] = Counter()
        not_ours = 0
        for lead, sk in leads:
            if lead in settled:
                continue
            t0 = time.perf_counter()
            c0 = counts.snapshot()
            claim = store.claim(owner, scope, StagedLead(lead, sk), CLAIM_TTL)
            t1 = time.perf_counter()
            c1 = counts.snapshot()
            if claim.status not in (ClaimStatus.OURS, ClaimStatus.TAKEN_OVER):
                not_ours += 1
                continue
            now = time.time()
            result = ResetResult(
                lead_id=lead,
                outcome=Outcome.QUEUED,
                status_code=200,
                message="queued",
                attempts=1,
                started_at=now - 0.2,
                finished_at=now,
                budget_wait_seconds=0.05,
            )
            store.finish(owner, scope, sk, result)
            t2 = time.perf_counter()
            claim_n += c1 - c0
            finish_n += counts.snapshot() - c1
            claim_s.append(t1 - t0)
            finish_s.append(t2 - t1)
            lead_s.append(t2 - t0)
        seconds = time.perf_counter() - t_start
        # The heartbeat, timed apart: every heartbeat_seconds per batch, however many leads.
        for lead, sk in leads[:4]:  # four claims in flight, unsettled, as while four requests are out
            store.claim(owner, scope, StagedLead(f"{lead}-hb", sk), CLAIM_TTL)
        c0 = counts.snapshot()
        beats = []
        for _ in range(HEARTBEATS):
            t0 = time.perf_counter()
            store.heartbeat(owner, CLAIM_TTL)
            beats.append(time.perf_counter() - t0)
        beat_n = counts.snapshot() - c0
    sent = len(lead_s)
    return {
        "batch": batch,
        "leads": sent,
        "not_ours": not_ours,
        "seconds": seconds,
        "leads_per_second": sent / seconds if seconds else None,
        "claim_ms": _ms(claim_s),
        "finish_ms": _ms(finish_s),
        "lead_ms": _ms(lead_s),
        "heartbeat_ms": _ms(beats),
        "per_lead": {k: v / sent for k, v in (claim_n + finish_n).items()},
        "claim": {k: v / sent for k, v in claim_n.items()},
        "finish": {k: v / sent for k, v in finish_n.items()},
        "per_batch_read": dict(per_batch),
        "per_heartbeat": {k: v / HEARTBEATS for k, v in beat_n.items()},
    }


def _run(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "bench.state_cost", *args],
        env=env,
        cwd=PROJECT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _answer(proc: subprocess.Popen, timeout: float) -> dict[str, Any]:
    out, err = proc.communicate(timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"state-cost probe failed ({proc.returncode}):\n{out[-2000:]}\n{err[-4000:]}")
    return json.loads(out.strip().splitlines()[-1])


def measure_state_cost(
    state_conn: str, *, home: Path, leads: int = 1000, senders: int = 1, timeout: float = 600
) -> dict[str, Any]:
    """Stage a run of ``senders`` batches of ``leads`` in ``state_conn``, then time all its batches at once,
    each in its own process. Returns the batches' figures and their totals."""
    home = home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(str(PROJECT / p) for p in ("include", "plugins", "")),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW_CONN_LEADSQUARED_STATE": state_conn,
    }
    run_id = f"bench_state__{time.time_ns()}"
    staged = _answer(
        _run(["--setup", "--run-id", run_id, "--batches", str(senders), "--leads", str(leads)], env), timeout
    )
    start_at = time.time() + 8.0  # after every process has imported Airflow and opened its engine
    procs = [
        _run(["--run-id", run_id, "--batch", str(b), "--start-at", f"{start_at:.3f}"], env)
        for b in range(1, senders + 1)
    ]
    batches = [_answer(p, timeout) for p in procs]
    sent = sum(b["leads"] for b in batches)
    span = max(b["seconds"] for b in batches)
    return {
        "dialect": staged["dialect"],
        "senders": senders,
        "leads_per_sender": leads,
        "leads": sent,
        "not_ours": sum(b["not_ours"] for b in batches),
        "seconds": span,
        "leads_per_second": sent / span if span else None,
        "lead_ms_mean": statistics.fmean(b["lead_ms"]["mean"] for b in batches),
        "lead_ms_median": statistics.median(b["lead_ms"]["median"] for b in batches),
        "lead_ms_p95": max(b["lead_ms"]["p95"] for b in batches),
        "batches": batches,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--setup", action="store_true", help="stage the run (batches x leads); nothing timed")
    parser.add_argument("--batches", type=int, default=1)
    parser.add_argument("--leads", type=int, default=1000, help="leads per batch (with --setup)")
    parser.add_argument("--batch", type=int, default=1, help="the batch to send (without --setup)")
    parser.add_argument("--start-at", type=float, default=None, help="epoch seconds to start at (with others)")
    args = parser.parse_args()
    if args.setup:
        print(json.dumps(setup(args.run_id, args.batches, args.leads)))
    else:
        print(json.dumps(send_batch(args.run_id, args.batch, args.start_at)))


if __name__ == "__main__":
    main()
