"""Candidate query + planning on a large warehouse table, timed in a fresh process with its peak RSS.

The probe (``python -m bench.planning``) builds the real DAG from ``dags/leadsquared_reset.py`` and calls
the plan task's own body, :func:`leadsquared_provider.run_tasks.plan_run` (keys check, candidate query,
cleaning, earlier failures carried over, guards, batches, staging in the warehouse) against the warehouse
connection ``warehouse_default`` given as an ``AIRFLOW_CONN_*`` variable (and ``leadsquared_default``, the
emulator, unless it is a dry run). It prints one JSON line: the
seconds the plan took (and how much of it went to query + cleaning), the process's peak RSS
(``ru_maxrss``) before and after, and the batches (the map indexes a real run would get).
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
from types import SimpleNamespace
from typing import Any

PROJECT = Path(__file__).resolve().parents[1]
DAG_FILE = PROJECT / "dags" / "leadsquared_reset.py"
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


def load_dag() -> Any:
    """The real DAG object, built by the DAG file (its template search path finds include/sql)."""
    spec = importlib.util.spec_from_file_location("bench_leadsquared_reset_dag", DAG_FILE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.leadsquared_reset()


def probe(day: str, run_id: str, max_leads: int, dry_run: bool) -> dict[str, Any]:
    """Run the plan task's body on ``warehouse_default`` (and ``leadsquared_default`` unless a dry run)."""
    started = time.perf_counter()
    from leadsquared_provider.ledger import ResetLedger, run_key
    from leadsquared_provider.run_tasks import plan_run

    dag = load_dag()
    imported = time.perf_counter()
    marks: dict[str, float] = {}

    class _Marks(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "candidate leads" in record.getMessage():
                marks.setdefault("cleaned", time.perf_counter())

    logger = logging.getLogger("leadsquared_provider.run_tasks")
    logger.setLevel(logging.INFO)
    logger.addHandler(_Marks())
    frm, to = iso_window(day)
    params = {**dag.params.dump(), "from_date": frm, "to_date": to, "dry_run": dry_run, "max_leads_per_run": max_leads}
    context = {
        "params": params,
        "dag": dag,
        "dag_run": SimpleNamespace(dag_id=dag.dag_id, run_id=run_id, run_type="manual"),
        "data_interval_start": None,
        "data_interval_end": None,
    }
    rss_before = _max_rss_bytes()
    t0 = time.perf_counter()
    batches = plan_run(context, warehouse_conn_id="warehouse_default", leadsquared_conn_id="leadsquared_default")
    seconds = time.perf_counter() - t0
    rss_peak = _max_rss_bytes()
    ledger = ResetLedger("warehouse_default")
    try:
        run = ledger.load_run(run_key(dag.dag_id, run_id))
    finally:
        ledger.close()
    return {
        "seconds": seconds,
        "query_and_cleaning_seconds": (marks["cleaned"] - t0) if "cleaned" in marks else None,
        "import_seconds": imported - started,
        "rss_before_bytes": rss_before,
        "rss_peak_bytes": rss_peak,
        "candidates": run.candidates,
        "batches": len(batches),
        "batch_size": run.batch_size,
        "plan_xcom_bytes": len(json.dumps(batches).encode()),
    }


def measure_planning(
    warehouse_conn: str,
    *,
    day: str,
    home: Path,
    leadsquared_conn: str | None = None,
    max_leads: int = 2_000_000,
    timeout: float = 600,
) -> dict[str, Any]:
    """Run :func:`probe` in a fresh interpreter with ``warehouse_conn`` as ``warehouse_default``.

    With ``leadsquared_conn`` (``leadsquared_default``, e.g. the emulator) the plan is a real one: the keys
    are checked and earlier runs' failures are looked up; without it, a dry run.
    """
    home = home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(str(PROJECT / p) for p in ("include", "plugins", "")),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW_CONN_WAREHOUSE_DEFAULT": warehouse_conn,
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
