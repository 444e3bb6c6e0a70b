"""bench/lead_search.py on a small store: it fills the tables, finds each lead's runs through the index, and
prints its figures (the real measure is 1,000,000 rows: ``python -m bench.lead_search``)."""

from __future__ import annotations

import json

import pytest

from bench.lead_search import main, measure

ROWS, LEADS_PER_RUN, TOUCHES = 6_000, 1_000, 3.0


def check(figures: dict, backend: str) -> None:
    assert figures["backend"] == backend and figures["rows"] == ROWS
    assert figures["leads"] == ROWS / TOUCHES
    assert figures["searches"] == 10 and 0 < figures["median_ms"] <= figures["p95_ms"] <= figures["max_ms"]
    assert 1 <= figures["runs_per_lead_mean"] <= ROWS / LEADS_PER_RUN  # each search found the lead's runs
    assert figures["unknown_lead_runs"] == 0
    assert "leadsquared_reset_audit_lead" in figures["plan"], figures["plan"]  # the (lead_id, finished_at) index


def test_lead_search_bench_on_sqlite(capsys):
    args = ["--rows", ROWS, "--searches", 10, "--leads-per-run", LEADS_PER_RUN, "--touches", TOUCHES]
    (figures,) = main([str(arg) for arg in [*args, "--backend", "sqlite"]])
    check(figures, "sqlite")
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == figures


@pytest.mark.postgres
def test_lead_search_bench_on_postgres(postgres_server):
    figures = measure(
        "postgres", rows=ROWS, searches=10, leads_per_run=LEADS_PER_RUN, touches=TOUCHES, pg_server=postgres_server
    )
    check(figures, "postgres")
