"""Who may read the resets page, over real HTTP against the api-server (simple auth manager).

The plugin app is mounted by Airflow as it is; its routes check the caller with the api-server's own
dependencies. In the simple auth manager a user "may read a DAG" when it has a role (viewer and above, for
every DAG; per-DAG rules exist only through teams in multi-team mode), so the test has an admin, a viewer and
a logged-in user with no role.
"""

from __future__ import annotations

import pytest
import requests

from leadsquared_provider.ui import URL_PREFIX
from tests.conftest import ADMIN_ACCESS, ADMIN_SECRET
from tests.e2e.scenario import MISSING_LEAD
from tests.ui.conftest import NO_ROLE_USER, VIEWER_USER

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def token(finished_run, user: str) -> str:
    response = requests.post(
        f"{finished_run.url}/auth/token",
        json={"username": user, "password": finished_run.password(user)},
        timeout=30,
    )
    response.raise_for_status()
    return response.json()["access_token"]


def get(finished_run, path: str, bearer: str | None = None, **kwargs):
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    return requests.get(f"{finished_run.url}{URL_PREFIX}{path}", headers=headers, timeout=60, **kwargs)


def pages(finished_run) -> list[tuple[str, dict]]:
    """Every route of the app, each with what it needs: the run's page and JSON, the lead search and JSON."""
    run = f"/leadsquared_reset/{finished_run.run_id}"
    return [
        (f"/runs{run}", {}),
        (f"/api/runs{run}", {}),
        ("/leads", {"params": {"lead_id": MISSING_LEAD}}),
        ("/api/leads", {"params": {"lead_id": MISSING_LEAD}}),
    ]


def test_anonymous_requests_are_refused(finished_run):
    for path, kwargs in pages(finished_run):
        response = get(finished_run, path, **kwargs)
        assert response.status_code == 401, (path, response.status_code, response.text[:200])
        assert MISSING_LEAD not in response.text
    # A token that Airflow did not sign is no better.
    response = get(finished_run, "/api/leads", bearer="not.a.token", params={"lead_id": MISSING_LEAD})
    assert response.status_code in (401, 403), response.text[:200]


def test_a_user_who_may_read_no_dag_is_refused(finished_run):
    outsider = token(finished_run, NO_ROLE_USER)  # logged in, but no role: may read no DAG
    for path, kwargs in pages(finished_run):
        response = get(finished_run, path, outsider, **kwargs)
        assert response.status_code == 403, (path, response.status_code, response.text[:200])
        assert MISSING_LEAD not in response.text


def test_a_viewer_reads_the_run_and_the_lead_and_never_a_key(finished_run):
    viewer = token(finished_run, VIEWER_USER)
    for path, kwargs in pages(finished_run):
        response = get(finished_run, path, viewer, **kwargs)
        assert response.status_code == 200, (path, response.status_code, response.text[:200])
        assert ADMIN_ACCESS not in response.text and ADMIN_SECRET not in response.text

    run = get(finished_run, f"/api/runs/leadsquared_reset/{finished_run.run_id}", viewer).json()
    assert run["counts"] == finished_run.summary["counts"]
    assert run["rate"]["limit_per_second"] == 5.0 and run["rate"]["calls"] >= run["counts"]["queued"]
    rejected = {row["lead_id"]: row for row in run["not_reset"]["rows"] if row["outcome"] == "rejected"}
    assert rejected[MISSING_LEAD]["exception_type"] == "MXInvalidEntityReferenceException"

    lead = get(finished_run, "/api/leads", viewer, params={"lead_id": MISSING_LEAD.upper()}).json()
    assert lead["history"]["total"] == 1
    (row,) = lead["history"]["rows"]
    assert (row["run_key"], row["outcome"], row["status_code"]) == (
        f"leadsquared_reset/{finished_run.run_id}",
        "rejected",
        400,
    )


def test_an_out_of_range_page_number_answers_400_naming_the_parameter(finished_run):
    viewer = token(finished_run, VIEWER_USER)
    run = f"leadsquared_reset/{finished_run.run_id}"
    paged = [
        (f"/runs/{run}", "not_reset_page"),
        (f"/runs/{run}", "repeated_page"),
        (f"/runs/{run}", "verification_page"),
        (f"/api/runs/{run}", "not_reset_page"),
        (f"/api/runs/{run}", "repeated_page"),
        ("/leads", "page"),
        ("/leads", "runs_page"),
        ("/api/leads", "page"),
    ]
    for path, param in paged:
        for number in (str(2**64), "0", "x"):
            response = get(finished_run, path, viewer, params={param: number, "lead_id": MISSING_LEAD})
            assert response.status_code == 400, (path, param, number, response.status_code, response.text[:200])
            assert param in response.text and "Bad request" in response.text, (path, param, response.text[:300])
        assert get(finished_run, path, viewer, params={param: "2", "lead_id": MISSING_LEAD}).status_code == 200


def test_the_ui_cookie_is_accepted_and_unknown_runs_are_empty(finished_run):
    cookie = {"_token": token(finished_run, VIEWER_USER)}  # what the browser sends from the UI's frame
    response = get(finished_run, "/runs/leadsquared_reset/no_such_run", cookies=cookie)
    assert response.status_code == 200
    assert "recorded no resets" in response.text


def test_the_plugin_is_registered_with_its_tab_and_navigation_entry(finished_run):
    admin = finished_run.e2e.stack.api("GET", "/plugins")
    (plugin,) = [p for p in admin["plugins"] if p["name"] == "leadsquared_resets"]
    assert [app["url_prefix"] for app in plugin["fastapi_apps"]] == [URL_PREFIX]
    assert {view["destination"] for view in plugin["external_views"]} == {"dag_run", "nav"}
