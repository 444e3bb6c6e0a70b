"""Candidate query + planning on a large warehouse table, timed in a fresh process with its peak RSS.

The probe (``python -m bench.planning``) builds the shipped account's DAG (``leadsquared_reset``) from
``dags/leadsquared_reset.py`` for its params and candidate query, and calls what its plan task calls,
:func:`leadsquared_provider.steps.plan.plan_run`, with explicit arguments: keys check (``leadsquared_default``,
the emulator, unless it is a dry run), candidate query on ``warehouse_default`` (only read), cleaning,
earlier failures carried over, guards, batches, and staging of the candidates and the run record in the
state store ``leadsquared_state``. All three are ``AIRFLOW_CONN_*`` variables; the state store is an SQLite
file in the probe's home unless another connection is given (e.g. PostgreSQL). Its tables are created before
the clock starts (as in any deployment after its first run). It prints one JSON line: the seconds the plan
took (split into query + cleaning, carry-over, staging and the rest), the process's peak RSS (``ru_maxrss``)
before and after, the batches (the map indexes a real run would get) and, measured after all that, a yardstick:
the same candidates bulk-inserted by the database driver alone (:func:`staging_yardstick`).
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import logging
import os
import random
import resource
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parents[1]
DAG_FILE = PROJECT / "dags" / "leadsquared_reset.py"
DAG_ID = "leadsquared_reset"  # the shipped account's DAG
STATE_CONN_ID = "leadsquared_state"
IST = timedelta(hours=5, minutes=30)
FMT = "%Y-%m-%d %H:%M:%S"
TABLE_DDL = "CREATE TABLE lsq_reset_requests (prospect_id VARCHAR(200), requested_at VARCHAR(19))"


def lead_ids(count: int, seed: int) -> Iterator[str]:
    """``count`` distinct, deterministic LeadSquared-style GUIDs."""
    rng = random.Random(seed)
    for _ in range(count):
        yield str(uuid.UUID(int=rng.getrandbits(128), version=4))


def day_bounds_utc(day: str) -> tuple[datetime, datetime]:
    """An India-time day (``YYYY-MM-DD``) as its UTC start and end (exclusive)."""
    start = datetime.strptime(day, "%Y-%m-%d") - IST
    return start, start + timedelta(days=1)


def iso_window(day: str) -> tuple[str, str]:
    """The manual-run params ``from_date``/``to_date`` covering an India-time day."""
    return f"{day}T00:00:00+05:30", f"{day}T23:59:59+05:30"


def candidate_rows(ids: Iterable[str], day: str, seed: int = 1) -> Iterator[tuple[str, str]]:
    """Warehouse rows ``(prospect_id, requested_at)`` flagging each id within the day (every 7th upper-cased)."""
    rng = random.Random(seed)
    start, _ = day_bounds_utc(day)
    for n, lead_id in enumerate(ids):
        at = start + timedelta(seconds=rng.randrange(0, 86_400))
        yield (lead_id.upper() if n % 7 == 0 else lead_id, at.strftime(FMT))


def write_sqlite_rows(path: Path, rows: Iterable[tuple[str, str]], create: bool = True) -> None:
    """Append ``rows`` to ``lsq_reset_requests`` in a SQLite warehouse (creating the table when asked)."""
    conn = sqlite3.connect(path)
    try:
        with conn:
            if create:
                conn.execute(TABLE_DDL.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS"))
            conn.executemany("INSERT INTO lsq_reset_requests VALUES (?, ?)", rows)
    finally:
        conn.close()


def write_postgres_rows(connect: Any, rows: Iterable[tuple[str, str]], chunk: int = 200_000) -> None:
    """Create ``lsq_reset_requests`` and fill it with COPY (``connect()`` gives a psycopg2 connection)."""
    conn = connect()
    try:
        with conn, conn.cursor() as cur:
            cur.execute(TABLE_DDL)
            buffer = io.StringIO()
            for count, (lead_id, at) in enumerate(rows, start=1):
                buffer.write(f"{lead_id}\t{at}\n")
                if count % chunk == 0:
                    buffer.seek(0)
                    cur.copy_expert("COPY lsq_reset_requests FROM STDIN", buffer)
                    buffer = io.StringIO()
            buffer.seek(0)
            cur.copy_expert("COPY lsq_reset_requests FROM STDIN", buffer)
            cur.execute("ANALYZE lsq_reset_requests")
    finally:
        conn.close()


def _max_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux


def load_dag(dag_id: str = DAG_ID) -> tuple[Any, Any]:
    """The real DAG of account ``dag_id`` and that account, built by the DAG file (a factory over the
    accounts file; its template search path finds include/sql)."""
    spec = importlib.util.spec_from_file_location("bench_leadsquared_reset_dag", DAG_FILE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    accounts = module.load_accounts(module.accounts_file(module.PROJECT_DIR), sql_dir=module.SQL_DIR)
    account = next((a for a in accounts if a.dag_id == dag_id), None)
    if account is None:
        raise LookupError(f"no account with dag_id {dag_id!r} in {module.accounts_file(module.PROJECT_DIR)}")
    return module.leadsquared_reset(account), account


class _Timed:
    """Adds up the seconds spent in some methods of a class while the probe runs (the bench's own wrappers)."""

    def __init__(self, cls: type, *names: str) -> None:
        self.seconds = dict.fromkeys(names, 0.0)
        for name in names:
            original = getattr(cls, name)

            def timed(*args: Any, _original: Any = original, _name: str = name, **kwargs: Any) -> Any:
                t0 = time.perf_counter()
                try:
                    return _original(*args, **kwargs)
                finally:
                    self.seconds[_name] += time.perf_counter() - t0

            setattr(cls, name, timed)


def staging_yardstick(key: str) -> float | None:
    """Seconds to bulk-insert the run's staged candidates again with the database driver alone (sqlite3's
    ``executemany``, psycopg's ``COPY``) into the same table under another run key, then removed: what
    staging costs without SQLAlchemy's per-row work. None for another driver."""
    from leadsquared_provider.store import StateStore

    other = f"{key}#yardstick"
    insert = "INSERT INTO leadsquared_reset_candidates (run_key, seq, lead_id, scope_key) VALUES (?, ?, ?, ?)"
    with StateStore(STATE_CONN_ID) as store:
        run = store.load_run(key)
        rows = store.candidate_slice(key, 1, run.candidates + run.carried_over)  # every staged lead
        raw = store.engine.raw_connection()
        try:
            cur = raw.cursor()
            t0 = time.perf_counter()
            if store.dialect == "sqlite":
                cur.execute("BEGIN IMMEDIATE")  # the store's connections are in autocommit mode
                cur.executemany(insert, ((other, n, lead, sk) for n, (lead, sk) in enumerate(rows, start=1)))
                cur.execute("COMMIT")
            elif store.dialect == "postgresql" and hasattr(cur, "copy"):
                with cur.copy("COPY leadsquared_reset_candidates (run_key, seq, lead_id, scope_key) FROM STDIN") as cp:
                    for n, (lead, sk) in enumerate(rows, start=1):
                        cp.write_row((other, n, lead, sk))
                raw.commit()
            else:
                return None
            seconds = time.perf_counter() - t0
        finally:
            raw.close()
        store.stage_candidates(other, [])  # removes the yardstick's rows
    return seconds


def probe(day: str, run_id: str, max_leads: int, dry_run: bool) -> dict[str, Any]:
    """Plan a manual run for ``day`` as the plan task does, with explicit arguments; time it."""
    started = time.perf_counter()
    from leadsquared_provider.rules.params import RunParams
    from leadsquared_provider.steps.plan import RunIdentity, plan_run
    from leadsquared_provider.store import StateStore, run_key

    dag, account = load_dag()
    template = dag.get_template_env().get_template(account.candidate_query)
    with StateStore(STATE_CONN_ID) as store:  # the engine and the tables, as after a deployment's first run
        state_dialect = store.dialect
    imported = time.perf_counter()
    marks: dict[str, float] = {}

    class _Marks(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "candidate leads" in record.getMessage():
                marks.setdefault("cleaned", time.perf_counter())

    logger = logging.getLogger("leadsquared_provider.steps.plan")
    logger.setLevel(logging.INFO)
    logger.addHandler(_Marks())
    timed = _Timed(StateStore, "carry_over", "stage_candidates")
    frm, to = iso_window(day)
    params = {name: param.value for name, param in dag.params.items()}
    params.update(from_date=frm, to_date=to, dry_run=dry_run, max_leads_per_run=max_leads)
    rss_before = _max_rss_bytes()
    t0 = time.perf_counter()
    batches = plan_run(
        RunIdentity(dag_id=dag.dag_id, run_id=run_id, run_type="manual"),
        RunParams.from_params(params),
        render_query=lambda start, end: template.render(window_start=start, window_end=end),
        warehouse_conn_id="warehouse_default",
        leadsquared_conn_id="leadsquared_default",
        state_conn_id=STATE_CONN_ID,
        executor="LocalExecutor",
    )
    seconds = time.perf_counter() - t0
    rss_peak = _max_rss_bytes()
    with StateStore(STATE_CONN_ID) as store:
        run = store.load_run(run_key(dag.dag_id, run_id))
    yardstick = staging_yardstick(run.run_key)  # after the figures above: it does not count in them
    return {
        "seconds": seconds,
        "query_and_cleaning_seconds": (marks["cleaned"] - t0) if "cleaned" in marks else None,
        "carry_over_seconds": timed.seconds["carry_over"],
        "staging_seconds": timed.seconds["stage_candidates"],
        "staging_yardstick_seconds": yardstick,
        "import_seconds": imported - started,
        "rss_before_bytes": rss_before,
        "rss_peak_bytes": rss_peak,
        "candidates": run.candidates,
        "batches": len(batches),
        "batch_size": run.batch_size,
        "plan_xcom_bytes": len(json.dumps(batches).encode()),
        "state_store": state_dialect,
    }


def planning_state_db(home: Path) -> Path:
    """The probe's SQLite state store when no other is given: a file in its home, emptied before each probe."""
    return home.resolve() / "planning-state.db"


def measure_planning(
    warehouse_conn: str,
    *,
    day: str,
    home: Path,
    leadsquared_conn: str | None = None,
    state_conn: str | None = None,
    max_leads: int = 2_000_000,
    timeout: float = 600,
) -> dict[str, Any]:
    """Run :func:`probe` in a fresh interpreter with ``warehouse_conn`` as ``warehouse_default``.

    With ``leadsquared_conn`` (``leadsquared_default``, e.g. the emulator) the plan is a real one: the keys
    are checked and earlier runs' failures are looked up; without it, a dry run. ``state_conn`` is the state
    store (``leadsquared_state``); without it, a fresh SQLite file, :func:`planning_state_db`.
    """
    home = home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    if state_conn is None:
        db = planning_state_db(home)
        for leftover in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
            leftover.unlink(missing_ok=True)
        state_conn = json.dumps({"conn_type": "sqlite", "host": str(db)})
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(str(PROJECT / p) for p in ("include", "plugins", "")),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW_CONN_WAREHOUSE_DEFAULT": warehouse_conn,
        "AIRFLOW_CONN_LEADSQUARED_STATE": state_conn,
    }
    command = [sys.executable, "-m", "bench.planning", "--day", day, "--max-leads", str(max_leads)]
    if leadsquared_conn is None:
        command.append("--dry-run")
    else:
        env["AIRFLOW_CONN_LEADSQUARED_DEFAULT"] = leadsquared_conn
    run_id = f"bench_planning__{time.time_ns()}"
    proc = subprocess.run(
        [*command, "--run-id", run_id],
        env=env,
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"planning probe failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--day", required=True, help="India-time day of the candidates, YYYY-MM-DD")
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--max-leads", type=int, default=2_000_000)
    parser.add_argument("--dry-run", action="store_true", help="no LeadSquared connection: plan as a dry run")
    args = parser.parse_args()
    print(json.dumps(probe(args.day, args.run_id, args.max_leads, args.dry_run)))


if __name__ == "__main__":
    main()
