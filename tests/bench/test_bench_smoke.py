"""The bench's own measurements, fast and without an Airflow stack, so that the harness cannot silently rot."""

from __future__ import annotations

import importlib.util
import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from bench.measure import (
    max_in_window,
    rate_figures,
    task_instance_figures,
    task_instance_id,
    union_length,
    wall_figures,
    xcom_bytes,
)
from bench.planning import candidate_rows, lead_ids, measure_planning, planning_state_db, write_sqlite_rows
from bench.report import EARLIER_MARK, END_MARKER, explain_rate, render, write_results
from bench.targets import DESIGN, PARTS

RESET = "/v2/LeadManagement.svc/Lead.Reset"


def paced_calls(count: int, limit: int, window: float, start: float = 1000.0) -> list[dict]:
    """Calls of a client that keeps a sliding-window account exactly at its limit: ``limit`` every window."""
    return [
        {"time": start + (n // limit) * window, "path": RESET, "outcome": "queued", "lead_id": f"lead-{n}"}
        for n in range(count)
    ]


def test_rate_of_a_client_at_the_limit_is_one_net_of_the_opening_burst():
    figures = rate_figures(paced_calls(1000, 25, 5.0), limit=25, window=5.0)
    assert (figures.calls, figures.admitted, figures.rejections) == (1000, 1000, 0)
    assert figures.span == pytest.approx(39 * 5.0)
    assert figures.net_ratio == pytest.approx(1.0)
    assert figures.ratio == pytest.approx(999 / 195 / 5)  # the literal figure counts the opening burst
    assert figures.max_in_window == 25
    assert figures.quarter_ratios == pytest.approx([250 / 48.75 / 5] * 4, abs=0.001)  # 40 bursts of 25 over 195 s


def test_rejections_and_other_endpoints_are_told_apart():
    calls = paced_calls(50, 25, 5.0)
    calls[10]["outcome"] = "rate_limited"
    calls.append({"time": 1001.0, "path": "/v2/Authentication.svc/UserByAccessKey.Get", "outcome": "ok"})
    figures = rate_figures(calls, limit=25, window=5.0)
    assert (figures.calls, figures.admitted, figures.rejections) == (50, 49, 1)


@pytest.mark.parametrize(
    ("times", "window", "most"),
    [
        ([0.0, 1.0, 2.0, 5.0], 5.0, 3),  # (t - window, t]: the call at 0 has left the window at 5
        ([0.0, 0.0, 0.0], 5.0, 3),
        ([], 5.0, 0),
        ([3.0, 0.5, 9.0, 8.9], 1.0, 2),
    ],
    ids=["edge-excluded", "burst", "empty", "unsorted"],
)
def test_max_in_window_follows_the_emulators_rule(times, window, most):
    assert max_in_window(times, window) == most


def test_airflow_share_is_the_time_with_no_lead_in_the_clients_hands():
    leads = [(110.0, 150.0, 1.0), (140.0, 160.0, 3.0), (170.0, 180.0, None), (None, None, None)]
    figures = wall_figures(100.0, 200.0, leads)
    assert union_length([(s, f) for s, f, _ in leads[:3]]) == pytest.approx(60.0)
    assert (figures.wall, figures.sending) == (100.0, 60.0)
    assert (figures.before_first, figures.gaps, figures.after_last) == (10.0, 10.0, 20.0)
    assert figures.airflow_share == pytest.approx(0.4)
    assert (figures.leads, figures.budget_wait_mean, figures.budget_wait_max) == (3, 2.0, 3.0)


def test_explain_rate_names_the_lost_seconds_only_for_a_miss():
    slow = paced_calls(200, 25, 6.0)  # a client at 25 per 6 s: 0.833 of the limit
    figures = {"rate": rate_figures(slow, limit=25, window=5.0).as_dict(), "wall": {"gaps": 3.0}}
    assert "0.833 of the limit" in explain_rate(figures, 0.95)
    fast = {"rate": rate_figures(paced_calls(200, 25, 5.0), limit=25, window=5.0).as_dict(), "wall": {"gaps": 0}}
    assert explain_rate(fast, 0.95) is None


def test_task_processes_and_task_instances_are_recognised():
    ti_id = "0199a4c2-1f2e-7c3d-9a8b-0123456789ab"
    assert task_instance_id([f"airflow worker -- {ti_id}"]) == ti_id
    assert task_instance_id(["airflow worker -- LocalExecutor: <idle>"]) is None
    tis = [
        {"task_id": "plan", "map_index": -1, "state": "success"},
        *({"task_id": "reset_batch.reset", "map_index": i, "state": "success"} for i in range(3)),
        {"task_id": "report", "map_index": -1, "state": "failed"},
    ]
    figures = task_instance_figures(tis)
    assert figures["total"] == 5
    assert figures["map_indexes"] == {"reset_batch.reset": 3}
    assert figures["states"] == {"success": 4, "failed": 1}


def test_xcom_bytes_are_summed_per_run_from_the_metadata_db(tmp_path: Path):
    db = tmp_path / "airflow.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE xcom (dag_id TEXT, run_id TEXT, task_id TEXT, map_index INT, key TEXT, value TEXT)")
        rows = [
            ("d", "r1", "plan", -1, "return_value", json.dumps([{"batch": 1, "first": 1, "last": 200}])),
            ("d", "r1", "report", -1, "return_value", json.dumps({"queued": 200})),
            ("d", "r2", "plan", -1, "return_value", json.dumps(["other run"])),
        ]
        conn.executemany("INSERT INTO xcom VALUES (?, ?, ?, ?, ?, ?)", rows)
    conn.close()
    figures = xcom_bytes(db, "d", "r1")
    assert figures["rows"] == 2
    assert figures["bytes"] == len(rows[0][5]) + len(rows[1][5])
    assert figures["by_task"]["plan"] == {"rows": 1, "bytes": len(rows[0][5])}


def test_planning_probe_on_a_10000_row_sqlite_table(tmp_path: Path):
    day = "2026-12-10"
    warehouse = tmp_path / "warehouse.db"
    rows = list(candidate_rows(lead_ids(10_000, 3), day))
    rows += list(candidate_rows(lead_ids(10, 4), "2026-12-12"))  # outside the window
    write_sqlite_rows(warehouse, rows)
    conn = json.dumps({"conn_type": "sqlite", "host": str(warehouse)})
    figures = measure_planning(conn, day=day, home=tmp_path / "home", timeout=120)
    assert figures["candidates"] == 10_000
    assert (figures["batches"], figures["batch_size"]) == (50, 200)
    assert 0 < figures["query_and_cleaning_seconds"] <= figures["seconds"] < 30
    assert figures["rss_peak_bytes"] >= figures["rss_before_bytes"] > 0
    assert 0 < figures["staging_seconds"] <= figures["seconds"]
    assert figures["state_store"] == "sqlite"
    assert 0 < figures["plan_xcom_bytes"] < 4096  # the batch numbers only
    with closing(sqlite3.connect(planning_state_db(tmp_path / "home"))) as db:  # staged in the state store
        assert db.execute("SELECT COUNT(*) FROM leadsquared_reset_candidates").fetchone() == (10_000,)
        assert db.execute("SELECT candidates, batches FROM leadsquared_reset_runs").fetchall() == [(10_000, 50)]
    with closing(sqlite3.connect(warehouse)) as db:  # the warehouse is only read
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"lsq_reset_requests"}


INFO = {
    "machine": {
        "nproc": 2,
        "cpu": "cpu",
        "memory_bytes": 2**31,
        "python": "3.11",
        "airflow": "3.3.2",
        "os": "linux",
        "load_average": [1.0, 1.0, 1.0],
        "other_schedulers": 0,
    },
    "date": "today",
    "args": "",
}
PARSE_RAW = {
    "repeats": 9,
    **{k: {"median": 0.04, "min": 0.03, "max": 0.05} for k in ("bare", "warm", "minimal_bare")},
    "sdk_import_median": 1.5,
}


def test_results_render_with_a_failed_part_and_a_measured_one():
    results = {
        "parse": {"title": "parse", "raw": PARSE_RAW, "ok": True, "design": DESIGN, "date": "d1"},
        "2": {"title": "two", "error": "Traceback: boom", "ok": False, "design": DESIGN},
        "4": {"title": "four", "rows": [["x", "1", "2", "3"]], "notes": ["an old note"], "ok": True},  # earlier
    }
    text = render(results, INFO)
    assert "| parse | parse | d1 | pass |" in text and "**ERROR**" in text and "- an old note" in text
    assert "`.venv/bin/python -m bench.run --only parse`" in text  # how to measure it again
    four = text.split("## 4. four")[1]
    assert EARLIER_MARK in four and EARLIER_MARK not in text.split("## 4. four")[0]
    assert text.rstrip().endswith(END_MARKER)
    assert set(PARTS) == {"parse", "planning", "state", "1", "2", "3", "4"}


OTHERS = """## Shared accounts: our budget beside a co-tenant (`bench/cotenant.py`)

Command: `.venv/bin/python -m bench.cotenant --write`.

### co5. A co-tenant at 5 per 5 s

| figure | measured |
| --- | --- |
| share | 0.8 |

## Lead search (`bench/lead_search.py`)

median 3 ms
"""

EARLIER = """# Benchmark results

Old preamble.

## Summary

| part | what | measured | the issue's targets |
| --- | --- | --- | --- |
| parse | DAG file parse time | 2026-11-26 19:55 | **MISS** |
| 2 | 2,000 leads at 100 per 5 s (a fast account) | 2026-11-26 20:02 | pass |

## parse. DAG file parse time

Measured 2026-11-26 19:55 by `python -m bench.run`.

| figure | measured | target | verdict |
| --- | --- | --- | --- |
| parse | 74 ms | ≤ 50 ms | **MISS** |

## 2. 2,000 leads at 100 per 5 s (a fast account)

Measured 2026-11-26 20:02 by `python -m bench.run`.

| figure | measured | target | verdict |
| --- | --- | --- | --- |
| ratio | 0.975 | ≥ 0.95 | pass |

"""


@pytest.mark.parametrize("marker", [False, True], ids=["as-appended-by-cotenant", "after-our-marker"])
def test_rewriting_keeps_other_tools_sections_and_parts_not_measured_again(tmp_path: Path, marker: bool):
    path = tmp_path / "RESULTS.md"
    path.write_text(EARLIER + (END_MARKER + "\n\n" if marker else "") + OTHERS)
    results = {"parse": {"title": "DAG file parse time", "raw": PARSE_RAW, "ok": True, "design": DESIGN, "date": "d"}}
    write_results(results, INFO, path)
    text = path.read_text()
    ours, others = text.split(END_MARKER)
    assert others.strip() == OTHERS.strip()  # kept as they were, after ours
    assert (
        ours.count("## parse. ") == 1 and "74 ms" not in ours and "| parse | DAG file parse time | d | pass |" in ours
    )
    assert "| 2 | 2,000 leads at 100 per 5 s (a fast account) | 2026-11-26 20:02 (earlier version) | pass |" in ours
    kept = ours.split("## 2. ")[1]
    assert "| ratio | 0.975 | ≥ 0.95 | pass |" in kept and EARLIER_MARK in kept
    assert "Old preamble" not in text
    write_results(results, INFO, path)  # a second time: the same document (nothing doubled)
    assert path.read_text() == text


def test_state_cost_probe_counts_two_transactions_per_lead(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from bench.state_cost import send_batch, setup

    state = tmp_path / "state.db"
    monkeypatch.setenv("AIRFLOW_CONN_LEADSQUARED_STATE", json.dumps({"conn_type": "sqlite", "host": str(state)}))
    assert setup("r1", batches=2, leads=30) == {"staged": 60, "dialect": "sqlite"}
    figures = send_batch("r1", 2, start_at=None)
    assert (figures["leads"], figures["not_ours"]) == (30, 0)
    assert figures["per_lead"]["transactions"] == 2  # the claim (+ sending row), the outcome (+ settled claim)
    # The claim also looks for an earlier attempt of the lead whose answer was never read (possibly repeated).
    assert figures["claim"] == {"transactions": 1, "statements": 3, "INSERT": 2, "SELECT": 1}
    assert figures["finish"] == {"transactions": 1, "statements": 2, "INSERT": 1, "UPDATE": 1}
    assert figures["per_heartbeat"] == {"transactions": 1, "statements": 1, "UPDATE": 1}
    assert 0 < figures["lead_ms"]["median"] <= figures["lead_ms"]["max"]
    with closing(sqlite3.connect(state)) as db:
        settled = db.execute("SELECT COUNT(*) FROM leadsquared_reset_claims WHERE settled_outcome = 'queued'")
        assert settled.fetchone() == (30,)
        outcomes = db.execute("SELECT outcome, COUNT(*) FROM leadsquared_reset_audit GROUP BY outcome").fetchall()
    assert outcomes == [("queued", 30), ("sending", 4)]  # the 4 heartbeat claims stay in flight


def test_naive_dag_maps_one_http_task_per_lead_in_the_pool():
    path = Path(__file__).resolve().parents[2] / "bench" / "dags" / "naive_http_reset.py"
    spec = importlib.util.spec_from_file_location("naive_http_reset_dag", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dag = module.naive_http_reset()
    reset = dag.get_task("reset")
    assert type(reset).__name__ == "MappedOperator"
    assert reset.partial_kwargs["pool"] == "leadsquared_api"
    assert reset.partial_kwargs["http_conn_id"] == "leadsquared_http"
