"""One bench session: a fresh Airflow home under ``bench/out/``, the real stack, the emulator, the warehouse.

The stack's dags folder holds links to ``dags/leadsquared_reset.py`` (the product) and
``bench/dags/naive_http_reset.py`` (the naive design), so both run under the same scheduler, pool and
executor. Connections that change between scenarios (the emulator's rate limit, its port) live in the
metadata DB and are replaced through the REST API; the warehouse (only read: the candidate query) and the
DAG's state store (``leadsquared_state``: an SQLite file in the session's Airflow home, as ``devstack``
sets it up) are ``AIRFLOW_CONN_*`` variables.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.measure import RssSampler, parse_time, wait_until
from bench.planning import write_sqlite_rows
from devstack import AirflowStack, StackConfig, airflow_cli, free_port, prepare, state_db

PROJECT = Path(__file__).resolve().parents[1]
DAG_ID = "leadsquared_reset"
NAIVE_DAG_ID = "naive_http_reset"
DAG_FILES = (PROJECT / "dags" / "leadsquared_reset.py", PROJECT / "bench" / "dags" / "naive_http_reset.py")
ACCESS_KEY, SECRET_KEY = "u$demo-access", "demo-secret"  # the emulator's default admin account
PARALLELISM = 8  # LocalExecutor slots: the pool's 4 reset tasks plus plan/check/report of up to 3 runs


def emulator_leads(ids: Sequence[str]) -> list[dict[str, Any]]:
    """Leads for the emulator's store (no records: the bench measures pacing, not deletions)."""
    empty: dict[str, list] = {"activities": [], "audits": [], "tasks": [], "notes": []}
    return [{"ProspectId": lead_id, "CreatedOn": "2026-01-01 00:00:00", **empty} for lead_id in ids]


NO_APPROVAL = 10**9  # approval_threshold of bench runs: sizes are what they measure, nobody approves


@dataclass
class RunDone:
    """A finished DAG run as the REST API shows it."""

    dag_id: str
    run_id: str
    trigger_at: float
    state: str
    start: float | None
    end: float | None
    tis: list[dict[str, Any]] = field(default_factory=list)

    def ti_end(self, task_id: str) -> float | None:
        ends = [parse_time(ti.get("end_date")) for ti in self.tis if ti["task_id"] == task_id]
        return max((e for e in ends if e is not None), default=None)


class BenchSession:
    """The stack and everything around it, for the length of one ``python -m bench.run``."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.home = out / "airflow"
        self.warehouse = out / "warehouse.db"
        self.state_db = state_db(self.home)  # runs, candidates, claims, audit (connection leadsquared_state)
        self.budget_url = ""  # set by set_connections: a store per part (see there)
        self._parts = 0
        self.emulator_port = free_port()
        dags = out / "dags"
        dags.mkdir(parents=True, exist_ok=True)
        for path in DAG_FILES:
            link = dags / path.name
            if not link.exists():
                link.symlink_to(path)
        write_sqlite_rows(self.warehouse, [])
        self.stack = AirflowStack(
            StackConfig(
                home=self.home,
                api_port=free_port(),
                parallelism=PARALLELISM,
                extra_env={
                    "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
                    "AIRFLOW_CONN_WAREHOUSE_DEFAULT": json.dumps({"conn_type": "sqlite", "host": str(self.warehouse)}),
                    # devstack's default, set here so that an AIRFLOW_CONN_LEADSQUARED_STATE of the caller's
                    # shell cannot point the bench at another store
                    "AIRFLOW_CONN_LEADSQUARED_STATE": json.dumps({"conn_type": "sqlite", "host": str(self.state_db)}),
                },
            )
        )

    @property
    def metadata_db(self) -> Path:
        return self.home / "airflow.db"

    @property
    def emulator_url(self) -> str:
        return f"http://127.0.0.1:{self.emulator_port}"

    def start(self) -> None:
        prepare(self.stack.env, {})
        self.stack.start()
        self.set_connections(rate_limit=25, window=5.0)  # before the DAG is unpaused and schedules its first run
        for dag_id in (DAG_ID, NAIVE_DAG_ID):
            self.stack.wait_for_dag(dag_id, timeout=300)

    def stop(self) -> None:
        self.stack.stop()

    def set_connections(self, *, rate_limit: int, window: float) -> None:
        """Point both LeadSquared connections at the emulator; the product's with the account's limit.

        Each part gets a budget store of its own: the emulator's account is the same in every part, and a
        stricter limit stated by the part before would hold for the 5 minutes a caller's limit counts.
        """
        self._parts += 1
        self.budget_url = f"sqlite:///{self.out / f'budget-{self._parts}.sqlite'}"
        extra = {
            "rate_limit": rate_limit,
            "rate_window_seconds": window,
            "timeout_seconds": 30,
            "rate_budget_url": self.budget_url,
        }
        entities = [
            {
                "connection_id": "leadsquared_default",
                "conn_type": "leadsquared",
                "host": self.emulator_url,
                "login": ACCESS_KEY,
                "password": SECRET_KEY,
                "extra": json.dumps(extra),
            },
            {  # the naive design: plain HTTP, keys as headers from the connection's extras
                "connection_id": "leadsquared_http",
                "conn_type": "http",
                "host": self.emulator_url,
                "extra": json.dumps({"x-LSQ-AccessKey": ACCESS_KEY, "x-LSQ-SecretKey": SECRET_KEY}),
            },
        ]
        answer = self.stack.api(
            "PATCH",
            "/connections",
            json={"actions": [{"action": "create", "entities": entities, "action_on_existence": "overwrite"}]},
        )
        errors = (answer or {}).get("create", {}).get("errors")
        if errors:
            raise RuntimeError(f"connections not saved: {errors}")

    def add_candidates(self, rows: Sequence[tuple[str, str]]) -> None:
        write_sqlite_rows(self.warehouse, rows)

    # -- runs ---------------------------------------------------------------------------------------

    def trigger(self, conf: Mapping[str, Any], *, dag_id: str = DAG_ID, name: str = "bench") -> tuple[str, float]:
        """Trigger a run; a bench run never waits at the approval gate (no person watches it)."""
        trigger_at = time.time()
        if dag_id == DAG_ID:
            conf = {"approval_threshold": NO_APPROVAL, **conf}
        run_id = self.stack.trigger(conf, dag_id=dag_id, run_id=f"{name}__{time.time_ns()}")
        return run_id, trigger_at

    def finished(self, run_id: str, trigger_at: float, *, dag_id: str = DAG_ID, timeout: float = 1800) -> RunDone:
        state = self.stack.wait_for_run(run_id, dag_id=dag_id, timeout=timeout)
        run = self.stack.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
        return RunDone(
            dag_id=dag_id,
            run_id=run_id,
            trigger_at=trigger_at,
            state=state,
            start=parse_time(run.get("start_date")),
            end=parse_time(run.get("end_date")),
            tis=self.task_instances(run_id, dag_id=dag_id),
        )

    def task_instances(self, run_id: str, *, dag_id: str = DAG_ID, page: int = 100) -> list[dict[str, Any]]:
        """All task instances of a run (the REST API gives at most ``[api] maximum_page_limit`` per page)."""
        found: list[dict[str, Any]] = []
        while True:
            answer = self.stack.api(
                "GET",
                f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances",
                params={"limit": page, "offset": len(found), "order_by": "id"},
            )
            found += answer["task_instances"]
            if not answer["task_instances"] or len(found) >= answer["total_entries"]:
                return found

    def backfill(self, from_date: str, to_date: str, runs: int, timeout: float = 1800) -> tuple[list[str], float]:
        """``airflow backfill create`` over the days; wait for its runs to finish; return their ids."""
        trigger_at = time.time()
        airflow_cli(
            self.stack.env,
            "backfill",
            "create",
            "--dag-id",
            DAG_ID,
            "--from-date",
            from_date,
            "--to-date",
            to_date,
            "--max-active-runs",
            str(runs),
        )

        def all_done() -> list[str] | None:
            found = self.stack.api("GET", f"/dags/{DAG_ID}/dagRuns", params={"run_type": "backfill", "limit": 100})
            listed = found["dag_runs"]
            if len(listed) >= runs and all(r["state"] in ("success", "failed") for r in listed):
                return [r["dag_run_id"] for r in listed]
            return None

        return wait_until(all_done, timeout, every=2, what="backfill runs finished"), trigger_at

    def rss_sampler(self) -> RssSampler:
        return RssSampler(self.stack.procs["scheduler"].pid)

    def audit_times(self, dag_id: str, run_id: str) -> list[tuple[float | None, float | None, float | None]]:
        """(started_at, finished_at, budget_wait) of each lead the run sent, from the state store's audit."""
        from leadsquared_provider.store import reads, run_key
        from leadsquared_provider.store.engine import sqlite_read_engine

        with sqlite_read_engine(self.state_db).connect() as conn:
            return list(reads.sent_lead_timings(conn, run_key(dag_id, run_id)))


@contextmanager
def bench_session(out: Path) -> Iterator[BenchSession]:
    """A started session in ``out`` (a new ``bench/out/<date-time>``); the stack is stopped afterwards."""
    out.mkdir(parents=True, exist_ok=True)
    session = BenchSession(out)
    try:
        session.start()
        yield session
    finally:
        session.stop()
