"""The parts without a DAG run: ``parse`` (DAG file parse time), ``planning`` (candidate query + planning on
1,000,000 rows, SQLite and PostgreSQL) and ``state`` (the state store's cost per lead, SQLite and PostgreSQL).

Each ``part_*`` returns ``{"title", "raw", "ok"}`` (figures only); :mod:`bench.report` writes the Markdown.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.planning import PROJECT, candidate_rows, lead_ids
from bench.targets import (
    MAX_MAP_INDEXES,
    PART_TITLES,
    PLANNING_ROWS,
    TARGET_PARSE,
    TARGET_PLAN_RSS,
    TARGET_PLAN_SECONDS,
)

# -- parse time -----------------------------------------------------------------------------------------

_PARSE = """
import importlib.util, json, sys, time
t0 = time.perf_counter()
import airflow.sdk
t1 = time.perf_counter()
if sys.argv[2] == "warm":  # the Airflow definitions the product's DAG file names, loaded before it is parsed
    from airflow.sdk import (
        DAG, BaseNotifier, BaseOperator, CronDataIntervalTimetable, Param, PokeReturnValue, dag,
        get_current_context, task, task_group,
    )
t2 = time.perf_counter()
spec = importlib.util.spec_from_file_location("bench_parsed_dag", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
t3 = time.perf_counter()
print(json.dumps({"sdk": t1 - t0, "dag": t3 - t2}))
"""


_MINIMAL_DAG = """
import pendulum
from airflow.sdk import dag, task


@dag(dag_id="minimal", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"))
def minimal():
    @task
    def hello() -> int:
        return 1

    hello()


minimal()
"""


def measure_parse(out: Path, repeats: int = 9) -> dict[str, Any]:
    """Seconds to execute a DAG file in a fresh interpreter after ``import airflow.sdk`` (median of runs).

    Measured for the product's DAG (bare and warm) and, as a yardstick, for a one-task DAG (bare).
    """
    home = (out / "parse-home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}  # as deployed: byte code cached
    env.update(
        PYTHONPATH=os.pathsep.join(str(PROJECT / p) for p in ("include", "plugins")),
        PYTHONPYCACHEPREFIX=str((out / "pycache").resolve()),  # keeps the repository clean
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
    )
    minimal = home / "minimal_dag.py"
    minimal.write_text(_MINIMAL_DAG)
    files = {"dag": str(PROJECT / "dags" / "leadsquared_reset.py"), "minimal": str(minimal)}

    def once(which: str, mode: str) -> dict[str, float]:
        proc = subprocess.run(
            [sys.executable, "-c", _PARSE, files[which], mode], env=env, capture_output=True, text=True, timeout=300
        )
        if proc.returncode != 0:
            raise RuntimeError(f"parsing {files[which]} failed:\n{proc.stderr[-3000:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])

    once("dag", "bare")  # fills the byte-code cache
    once("minimal", "bare")
    figures: dict[str, Any] = {"repeats": repeats}
    for which, mode in (("dag", "bare"), ("dag", "warm"), ("minimal", "bare")):
        runs = [once(which, mode) for _ in range(repeats)]
        parsed = [r["dag"] for r in runs]
        name = mode if which == "dag" else f"{which}_{mode}"
        figures[name] = {"median": statistics.median(parsed), "min": min(parsed), "max": max(parsed), "all": parsed}
        if name == "bare":
            figures["sdk_import_median"] = statistics.median(r["sdk"] for r in runs)
    return figures


def part_parse(out: Path) -> dict[str, Any]:
    figures = measure_parse(out)
    return {"title": PART_TITLES["parse"], "raw": figures, "ok": figures["bare"]["median"] <= TARGET_PARSE}


# -- planning on 1,000,000 rows ---------------------------------------------------------------------------


def durable(pg: Any) -> None:
    """Turn the throwaway server's durability back on (tests/pg_server.py starts it with fsync, synchronous
    commits and full-page writes off, for speed): the state store's figures are those of a real server."""
    conn = pg.connect()
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            for name in ("fsync", "synchronous_commit", "full_page_writes"):
                cur.execute(f"ALTER SYSTEM SET {name} = on")
            cur.execute("SELECT pg_reload_conf()")
            time.sleep(0.5)
            cur.execute("SELECT current_setting('fsync'), current_setting('synchronous_commit')")
            fsync, sync = cur.fetchone()
    finally:
        conn.close()
    if (fsync, sync) != ("on", "on"):
        raise RuntimeError(f"PostgreSQL kept fsync={fsync}, synchronous_commit={sync}")


def part_planning(out: Path, day: str) -> dict[str, Any]:
    from bench.planning import measure_planning, write_postgres_rows, write_sqlite_rows
    from lsq_emulator import run_emulator
    from tests.pg_server import PostgresServer

    results: dict[str, Any] = {}
    build: dict[str, float] = {}
    sqlite_db = out / "planning-warehouse.db"
    t0 = time.perf_counter()
    write_sqlite_rows(sqlite_db, candidate_rows(lead_ids(PLANNING_ROWS, 7), day))
    build["sqlite"] = time.perf_counter() - t0
    with run_emulator() as lsq:  # the plan checks the keys once: a real plan, not a dry run
        lsq_conn = json.dumps(
            {
                "conn_type": "leadsquared",
                "host": lsq.base_url,
                "login": "u$demo-access",
                "password": "demo-secret",
                "extra": {"rate_budget_url": f"sqlite:///{(out / 'planning-budget.sqlite').resolve()}"},
            }
        )
        conn = json.dumps({"conn_type": "sqlite", "host": str(sqlite_db.resolve())})
        # SQLite warehouse, SQLite state store (a file in the probe's home): one machine, LocalExecutor.
        results["SQLite"] = measure_planning(conn, day=day, home=out / "planning-home", leadsquared_conn=lsq_conn)
        sqlite_db.unlink()
        with PostgresServer() as pg:
            db = pg.create_database("bench_planning")
            t0 = time.perf_counter()
            write_postgres_rows(lambda: pg.connect(db), candidate_rows(lead_ids(PLANNING_ROWS, 7), day))
            build["postgres"] = time.perf_counter() - t0
            state = pg.create_database("bench_planning_state")
            durable(pg)
            # PostgreSQL warehouse, PostgreSQL state store (another database of the same server): CeleryExecutor.
            results["PostgreSQL"] = measure_planning(
                pg.airflow_conn_json(db),
                day=day,
                home=out / "planning-home",
                leadsquared_conn=lsq_conn,
                state_conn=pg.airflow_conn_json(state),
            )
    ok = all(
        r["seconds"] <= TARGET_PLAN_SECONDS
        and r["rss_peak_bytes"] <= TARGET_PLAN_RSS
        and r["batches"] <= MAX_MAP_INDEXES
        for r in results.values()
    )
    return {
        "title": PART_TITLES["planning"],
        "raw": {**results, "build_seconds": build, "rows": PLANNING_ROWS},
        "ok": ok,
    }


# -- the state store's cost per lead ----------------------------------------------------------------------

STATE_LEADS = 1000  # per sender
STATE_SENDERS = (1, 4)  # one batch alone; the pool's 4 slots at once


def part_state(out: Path) -> dict[str, Any]:
    from bench.state_cost import measure_state_cost
    from tests.pg_server import PostgresServer

    home = out / "state-home"
    results: dict[str, dict[str, Any]] = {"SQLite": {}, "PostgreSQL": {}}
    for senders in STATE_SENDERS:
        db = (out / f"state-cost-{senders}.db").resolve()
        conn = json.dumps({"conn_type": "sqlite", "host": str(db)})
        results["SQLite"][str(senders)] = measure_state_cost(conn, home=home, leads=STATE_LEADS, senders=senders)
    with PostgresServer() as pg:
        durable(pg)
        for senders in STATE_SENDERS:
            db = pg.create_database(f"bench_state_{senders}")
            results["PostgreSQL"][str(senders)] = measure_state_cost(
                pg.airflow_conn_json(db), home=home, leads=STATE_LEADS, senders=senders
            )
    ok = all(
        r["not_ours"] == 0 and r["leads"] == r["senders"] * STATE_LEADS for k in results.values() for r in k.values()
    )
    return {"title": PART_TITLES["state"], "raw": {**results, "leads_per_sender": STATE_LEADS}, "ok": ok}
