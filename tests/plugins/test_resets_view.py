"""The resets page charts a run against its own account's limit (issue 19, case 11)."""

from __future__ import annotations

import json

from leadsquared_provider.state_store import RunRecord, StateStore
from leadsquared_provider.ui import app, queries
from tests.plugins.test_sender import SCOPE


def _view(dag_id: str, run_id: str) -> dict:
    with queries.read_engine(app.STATE_CONN_ID).connect() as conn:
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
