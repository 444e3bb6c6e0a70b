"""The resets page charts a run against its own account's limit (issue 19, case 11)."""

from __future__ import annotations

import json

from leadsquared_provider.rules.request import ResetScope
from leadsquared_provider.store import RunRecord, StateStore, reads
from leadsquared_provider.ui import app
from tests.provider.steps.test_send import SCOPE as SCOPE_FIELDS

SCOPE = ResetScope.from_mapping(SCOPE_FIELDS)


def _view(dag_id: str, run_id: str) -> dict:
    with reads.connect(app.STATE_CONN_ID) as conn:
        return app.run_view(conn, dag_id, run_id, not_reset_page=1, repeated_page=1, verification_page=1)


def test_a_run_is_charted_against_its_own_connections_limit(state_conn, monkeypatch):
    for conn_id, limit in (("leadsquared_default", 25), ("leadsquared_eu", 10)):
        extra = {"rate_limit": limit, "rate_window_seconds": 5, "rate_share": 0.5}
        conn = {"conn_type": "leadsquared", "host": "https://api.example", "extra": extra}
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    with StateStore(state_conn) as store:
        for dag_id, conn_id in (("eu_resets", "leadsquared_eu"), ("old_resets", None)):
            store.save_run(
                RunRecord(f"{dag_id}/r1", dag_id, "r1", SCOPE, "s1", False, 3, 0, 1, 3, leadsquared_conn_id=conn_id)
            )

    eu = _view("eu_resets", "r1")
    assert (eu["limit"].calls, eu["limit"].share, eu["limit_note"]) == (10, 0.5, None)  # not the default's 25
    old = _view("old_resets", "r1")  # planned before the store recorded the connection: no guess
    assert old["limit"] is None and "before its connection was recorded" in old["limit_note"]


def test_the_page_and_the_report_count_a_run_alike(state_conn):
    # 4 staged leads: one queued, one left `sending` (its process died with the request in flight), one never
    # reached, one deferred. The page and the report read the same counts: the `sending` lead is unfinished.
    from leadsquared_provider.rules.outcomes import Outcome, ResetResult
    from leadsquared_provider.steps.report import build_summary
    from leadsquared_provider.store import BatchScope, LeadResult

    leads = [f"{n:08x}-4444-4000-8000-000000000000" for n in range(1, 5)]
    with StateStore(state_conn) as store:
        store.save_scope("s1", SCOPE)
        store.save_run(RunRecord("view/r2", "view", "r2", SCOPE, "s1", False, 4, 0, 1, 4))
        store.stage_candidates("view/r2", [(lead, "s1") for lead in leads])
        batch = BatchScope(run_key="view/r2", dag_id="view", batch=1, scopes={"s1": SCOPE})
        store.record_many(
            batch,
            [
                LeadResult("s1", ResetResult.not_sent(leads[0], Outcome.QUEUED, "queued")),
                LeadResult("s1", ResetResult.not_sent(leads[1], Outcome.SENDING, "request in flight")),
                LeadResult("s1", ResetResult.not_sent(leads[3], Outcome.DEFERRED, "over today's share")),
            ],
        )
        summary = build_summary(store, "view/r2")
    page = _view("view", "r2")["counts"]
    assert page == {"queued": 1, "deferred": 1, "unfinished": 2}
    assert summary["counts"] == {"deferred": 1, "queued": 1, "unfinished": 2} and summary["failures"] == 2
