"""The resets page's lead search over a large audit table, timed on SQLite and PostgreSQL.

Fills the state store's tables (:mod:`leadsquared_provider.store.schema`, with their indexes) with
``--rows`` audit rows: runs of ``--leads-per-run`` leads drawn from a pool of ``rows / --touches`` leads, so a
lead was touched by about ``--touches`` runs. Then it times ``--searches`` searches of leads picked at random
(and one id that no run touched), each doing what the page does per search, with the page's own queries
(:mod:`leadsquared_provider.store.reads`): the DAGs with runs, the lead's history (first page + its count,
filtered by DAG) and the recent runs. SQLite is read through the page's read-only engine, PostgreSQL through
SQLAlchemy as the state store does. Prints the figures (median, p95, max in ms) and each query plan, and one
JSON line per backend.

    python -m bench.lead_search --rows 1000000 --searches 50 --backend sqlite --backend postgres
"""

from __future__ import annotations

import argparse
import io
import json
import math
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, Engine

from leadsquared_provider.rules.request import ResetScope
from leadsquared_provider.store import reads
from leadsquared_provider.store import schema as t
from leadsquared_provider.store.engine import sqlite_read_engine
from leadsquared_provider.store.runs import scope_json

DAG_ID = "leadsquared_reset"
CATEGORIES = json.dumps(
    {"activity_event_codes": [166, 167], "audit_types": ["StageChange"], "delete_notes": False, "task_type_ids": []},
    sort_keys=True,
)
# (outcome, status, exception type, message, weight)
OUTCOMES = (
    ("queued", 200, None, "queued", 90),
    ("already_done", None, None, "queued by an earlier run under the same window and categories", 4),
    ("rejected", 404, "MXInvalidEntityReferenceException", "Lead not found", 3),
    ("failed", 503, "HTTPError", "503 Service Unavailable after 5 retries", 2),
    ("skipped", None, None, "not sent: the run stopped (credentials refused)", 1),
)
AUDIT_COLUMNS = [column.name for column in t.audit.columns]
CHUNK = 50_000


def lead_pool(size: int, seed: int) -> list[str]:
    """``size`` distinct GUIDs, deterministic."""
    rng = random.Random(seed)
    return [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(size)]


def audit_rows(rows: int, leads_per_run: int, touches: float, seed: int = 5) -> tuple[list[str], Iterator[tuple]]:
    """The lead pool and ``rows`` audit rows as tuples in :data:`AUDIT_COLUMNS` order (runs one day apart)."""
    pool = lead_pool(max(leads_per_run, int(rows / touches)), seed)
    weights = [weight for *_, weight in OUTCOMES]

    def generate() -> Iterator[tuple]:
        rng = random.Random(seed + 1)
        produced, run = 0, 0
        start = 1_780_000_000.0
        while produced < rows:
            count = min(leads_per_run, rows - produced)
            day = time.strftime("%Y-%m-%d", time.gmtime(start + run * 86_400))
            next_day = time.strftime("%Y-%m-%d", time.gmtime(start + (run + 1) * 86_400))
            key = f"{DAG_ID}/scheduled__{day}T18:30:00+00:00"
            at = start + run * 86_400 + 3600
            for n, lead in enumerate(rng.sample(pool, count)):
                outcome, status, exc, message, _ = rng.choices(OUTCOMES, weights)[0]
                sends = 0 if outcome in ("already_done", "skipped") else (6 if outcome == "failed" else 1)
                finished = at + n * 0.2
                record = {
                    "run_key": key,
                    "lead_id": lead,
                    "scope_key": "0" * 64,
                    "dag_id": DAG_ID,
                    "batch": n // 200 + 1,
                    "from_date": f"{day} 18:30:00",
                    "to_date": f"{next_day} 18:29:59",
                    "categories": CATEGORIES,
                    "outcome": outcome,
                    "status_code": status,
                    "exception_type": exc,
                    "message": message,
                    "attempts": sends,
                    "sends": sends,
                    "possibly_repeated": outcome == "failed" and n % 7 == 0,
                    "unread": False,
                    "rate_limited": 1 if n % 97 == 0 else 0,
                    "started_at": finished - 0.15,
                    "finished_at": finished,
                    "budget_wait": 0.05,
                }
                yield tuple(record[name] for name in AUDIT_COLUMNS)
            produced += count
            run += 1

    return pool, generate()


def run_rows(rows: int, leads_per_run: int) -> list[dict[str, Any]]:
    """One ``leadsquared_reset_runs`` row per run of :func:`audit_rows`."""
    runs = -(-rows // leads_per_run)
    start = 1_780_000_000.0
    found = []
    for run in range(runs):
        day = time.strftime("%Y-%m-%d", time.gmtime(start + run * 86_400))
        found.append(
            {
                "run_key": f"{DAG_ID}/scheduled__{day}T18:30:00+00:00",
                "dag_id": DAG_ID,
                "run_id": f"scheduled__{day}T18:30:00+00:00",
                "scope_json": scope_json(
                    ResetScope(
                        activity_event_codes=(166, 167),
                        audit_types=("StageChange",),
                        from_date=f"{day}T18:30:00+00:00",
                        to_date=time.strftime("%Y-%m-%dT18:29:59+00:00", time.gmtime(start + (run + 1) * 86_400)),
                    )
                ),
                "scope_key": "0" * 64,
                "dry_run": False,
                "candidates": min(leads_per_run, rows - run * leads_per_run),
                "invalid": 0,
                "batches": 50,
                "batch_size": 200,
                "carried_over": 0,
                "planned_at": start + run * 86_400,
                "reported_at": start + run * 86_400 + 7200,
                "unresolved": 0,
            }
        )
    return found


def fill_sqlite(path: Path, rows: int, leads_per_run: int, touches: float) -> list[str]:
    """Create the state store's tables in a new SQLite file and fill them; return the lead pool."""
    engine = create_engine(f"sqlite:///{path}")
    t.metadata.create_all(engine)
    engine.dispose()
    pool, generated = audit_rows(rows, leads_per_run, touches)
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        marks = ", ".join("?" for _ in AUDIT_COLUMNS)
        with conn:
            while chunk := [row for _, row in zip(range(CHUNK), generated, strict=False)]:
                conn.executemany(f"INSERT INTO {t.audit.name} VALUES ({marks})", chunk)
            runs = run_rows(rows, leads_per_run)
            names = list(runs[0])
            conn.executemany(
                f"INSERT INTO {t.runs.name} ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)})",
                [tuple(run[name] for name in names) for run in runs],
            )
        conn.execute("ANALYZE")
    finally:
        conn.close()
    return pool


def _copy_value(value: Any) -> str:
    if value is None:
        return r"\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    return str(value).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def fill_postgres(engine: Engine, rows: int, leads_per_run: int, touches: float) -> list[str]:
    """Create the tables on PostgreSQL and fill the audit with COPY; return the lead pool."""
    t.metadata.create_all(engine)
    pool, generated = audit_rows(rows, leads_per_run, touches)
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        while chunk := [row for _, row in zip(range(CHUNK), generated, strict=False)]:
            buffer = io.StringIO("".join("\t".join(_copy_value(v) for v in row) + "\n" for row in chunk))
            cur.copy_expert(f"COPY {t.audit.name} ({', '.join(AUDIT_COLUMNS)}) FROM STDIN", buffer)
        raw.commit()
        cur.close()
    finally:
        raw.close()
    with engine.begin() as conn:
        conn.execute(t.runs.insert(), run_rows(rows, leads_per_run))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f"ANALYZE {t.audit.name}"))
        conn.execute(text(f"ANALYZE {t.runs.name}"))
    return pool


def search(conn: Connection, lead_id: str) -> int:
    """What the page reads for one search (auth aside): DAGs with runs, the lead's first page, recent runs."""
    dags = reads.dags_with_runs(conn)
    history = reads.lead_history(conn, lead_id, dags, page=1, size=20)
    reads.recent_runs(conn, dags, page=1, size=10)
    return history.total


def query_plan(conn: Connection, lead_id: str) -> str:
    """The database's plan of the lead history query (it must use the (lead_id, finished_at) index)."""
    stmt = reads.lead_history_select(lead_id, [DAG_ID]).limit(20)
    compiled = stmt.compile(conn, compile_kwargs={"literal_binds": True})
    if conn.dialect.name == "sqlite":
        return " | ".join(row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}"))
    return " | ".join(row[0].strip() for row in conn.exec_driver_sql(f"EXPLAIN {compiled}"))


def time_searches(engine: Engine, pool: list[str], searches: int, seed: int = 9) -> dict[str, Any]:
    """Time ``searches`` searches (random leads of the pool, then one unknown id) after one warm-up search."""
    rng = random.Random(seed)
    picked = [rng.choice(pool) for _ in range(searches - 1)] + [str(uuid.UUID(int=0, version=4))]
    times, found = [], []
    with engine.connect() as conn:
        search(conn, pool[0])  # warm-up: connection, statement caches
        for lead_id in picked:
            started = time.perf_counter()
            found.append(search(conn, lead_id.upper() if len(found) % 5 == 0 else lead_id))
            times.append((time.perf_counter() - started) * 1000)
        plan = query_plan(conn, picked[0])
    times.sort()
    return {
        "searches": len(times),
        "median_ms": round(statistics.median(times), 2),
        "p95_ms": round(times[math.ceil(len(times) * 0.95) - 1], 2),  # nearest rank
        "max_ms": round(times[-1], 2),
        "runs_per_lead_mean": round(statistics.mean(found[:-1]), 2) if len(found) > 1 else 0,
        "unknown_lead_runs": found[-1],
        "plan": plan,
    }


@contextmanager
def sqlite_store(rows: int, leads_per_run: int, touches: float, folder: Path) -> Iterator[tuple[Engine, list[str]]]:
    path = folder / "leadsquared_state.db"
    pool = fill_sqlite(path, rows, leads_per_run, touches)
    yield sqlite_read_engine(path), pool


@contextmanager
def postgres_store(
    rows: int, leads_per_run: int, touches: float, folder: Path, server: Any = None
) -> Iterator[tuple[Engine, list[str]]]:
    """A fresh database on ``server`` (a started ``tests.pg_server.PostgresServer``), else on a throwaway one."""
    from tests.pg_server import PostgresServer, unique_db_name

    with PostgresServer() if server is None else nullcontext(server) as pg:
        db = pg.create_database(unique_db_name("bench"))
        engine = create_engine(f"postgresql+psycopg2://{pg.user}@{pg.host}:{pg.port}/{db}")
        try:
            yield engine, fill_postgres(engine, rows, leads_per_run, touches)
        finally:
            engine.dispose()
            pg.drop_database(db)


BACKENDS: dict[str, Callable[..., Any]] = {"sqlite": sqlite_store, "postgres": postgres_store}


def measure(
    backend: str, *, rows: int, searches: int, leads_per_run: int, touches: float, pg_server: Any = None
) -> dict[str, Any]:
    """Fill a fresh store of ``backend`` and time the searches; the figures as a dict."""
    extra = {"server": pg_server} if backend == "postgres" else {}
    with tempfile.TemporaryDirectory(prefix="bench-lead-search-") as folder:
        started = time.perf_counter()
        with BACKENDS[backend](rows, leads_per_run, touches, Path(folder), **extra) as (engine, pool):
            built = time.perf_counter() - started
            figures = time_searches(engine, pool, searches)
    return {"backend": backend, "rows": rows, "leads": len(pool), "build_seconds": round(built, 1), **figures}


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="audit rows (default 1,000,000)")
    parser.add_argument("--searches", type=int, default=50)
    parser.add_argument("--leads-per-run", type=int, default=10_000)
    parser.add_argument("--touches", type=float, default=5.0, help="runs per lead on average")
    parser.add_argument("--backend", action="append", choices=sorted(BACKENDS), help="default: both")
    args = parser.parse_args(argv)
    results = []
    for backend in args.backend or ["sqlite", "postgres"]:
        figures = measure(
            backend, rows=args.rows, searches=args.searches, leads_per_run=args.leads_per_run, touches=args.touches
        )
        print(
            f"{backend}: {figures['rows']:,} audit rows, {figures['leads']:,} leads (built in "
            f"{figures['build_seconds']} s); {figures['searches']} searches: median {figures['median_ms']} ms, "
            f"p95 {figures['p95_ms']} ms, max {figures['max_ms']} ms; {figures['runs_per_lead_mean']} runs per "
            f"lead found\n  plan: {figures['plan']}",
            file=sys.stderr,
        )
        print(json.dumps(figures))
        results.append(figures)
    return results


if __name__ == "__main__":
    main()
