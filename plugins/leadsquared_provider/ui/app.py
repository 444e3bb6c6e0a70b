"""The resets page: a FastAPI app that Airflow's api-server mounts at :data:`URL_PREFIX` (``fastapi_apps``).

Pages (HTML, shown in the Airflow UI's plugin frames):

- ``GET /leadsquared/runs/{dag_id}/{run_id}``: a run's resets (the DAG run tab);
- ``GET /leadsquared/leads?lead_id=...``: every run that touched a lead, and the recent runs (navigation).

The same as JSON: ``GET /leadsquared/api/runs/{dag_id}/{run_id}`` and ``GET /leadsquared/api/leads?lead_id=``.

Access. Airflow mounts plugin apps as they are, so every route checks the caller itself, with the api-server's
own dependencies: the user comes from the Airflow token (``Authorization: Bearer`` or the UI's ``_token``
cookie, :func:`airflow.api_fastapi.core_api.security.get_user`; none or an invalid one: 401/403); a run's page
needs ``requires_access_dag("GET", DagAccessEntity.RUN)`` on its DAG; a lead search shows only runs of the
DAGs whose runs the user may read (the same check, per DAG), and refuses a user who may read none.
Nothing of the LeadSquared connection but its rate extras is read; keys are never shown.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote, urlencode

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag
from airflow.models.dag import DagModel
from fastapi import Depends, FastAPI, HTTPException, Query, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from leadsquared_provider.rules.outcomes import NOT_RESET_OUTCOMES
from leadsquared_provider.settings import DEFAULT_STATE_CONN_ID
from leadsquared_provider.store import RunRecord, RunRef, StoreUnavailable, parse_run_key, reads, run_key
from leadsquared_provider.ui import NAV_ROUTE, RUN_TAB_ROUTE, URL_PREFIX, chart, pages

if TYPE_CHECKING:
    from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
    from sqlalchemy.engine import Connection

MAX_PAGE = 1_000_000  # far past any run's pages; a larger number would overflow the database's OFFSET
PageNumber = Annotated[int, Query(ge=1, le=MAX_PAGE)]
LeadQuery = Annotated[str | None, Query(max_length=200)]
PageSize = Annotated[int, Query(ge=1, le=200)]
# A run's pages: may the user read the runs of the DAG in the path (the api-server's own dependency).
RUN_ACCESS = [Depends(requires_access_dag("GET", DagAccessEntity.RUN))]

STATE_CONN_ID = DEFAULT_STATE_CONN_ID  # the store the page reads
NOT_RESET_PAGE, REPEATED_PAGE, HISTORY_PAGE, RUNS_PAGE = 25, 25, 20, 10
_RATE_EXTRAS = ("rate_limit", "rate_window_seconds", "rate_share")

log = logging.getLogger(__name__)


def may_read_runs(user: BaseUser, dag_id: str) -> bool:
    """What ``requires_access_dag("GET", DagAccessEntity.RUN)`` checks, for one DAG."""
    return get_auth_manager().is_authorized_dag(
        method="GET",
        access_entity=DagAccessEntity.RUN,
        details=DagDetails(id=dag_id, team_name=DagModel.get_team_name(dag_id)),
        user=user,
    )


def account_limit(conn_id: str | None) -> tuple[chart.Limit | None, str | None]:
    """The limit of the run's account from its connection's rate extras, or None and why not. Keys are not
    read. ``conn_id`` is None for a run planned before the store recorded its connection."""
    from leadsquared_provider.exceptions import InvalidConnection
    from leadsquared_provider.settings import LeadSquaredSettings

    if conn_id is None:
        return None, "The account's limit is not shown: this run was planned before its connection was recorded."
    try:
        from airflow.sdk import BaseHook

        extra = BaseHook.get_connection(conn_id).extra_dejson
    except Exception as exc:  # any secrets backend's error: the page works without the limit
        log.info("connection %s not readable here: %s", conn_id, type(exc).__name__)
        return None, f"The account's limit is not shown: connection {conn_id} is not defined here."
    picked = {}
    for name in _RATE_EXTRAS:
        for key in (name, f"extra__leadsquared__{name}"):
            if key in extra:
                picked[key] = extra[key]
    try:
        settings = LeadSquaredSettings.from_extra(picked)
    except InvalidConnection:
        return None, f"The account's limit is not shown: connection {conn_id} has invalid rate extras."
    return chart.Limit(settings.rate_limit, settings.rate_window_seconds, settings.rate_share), None


def _links(request: Request) -> dict[str, Any]:
    """URL helpers: the Airflow UI's root and this app's root (both behind any ``[api] base_url`` path)."""
    app_root = request.scope.get("root_path", "").rstrip("/")
    ui_root = request.scope.get("app_root_path", app_root.removesuffix(URL_PREFIX)).rstrip("/") + "/"

    def run_url(run: RunRef | RunRecord) -> str:
        """The run's resets tab in the Airflow UI."""
        return f"{ui_root}dags/{quote(run.dag_id, safe='')}/runs/{quote(run.run_id, safe='')}/plugin/{RUN_TAB_ROUTE}"

    def page_link(param: str, number: int, anchor: str = "") -> str:
        params = dict(request.query_params)
        params[param] = str(number)
        return f"?{urlencode(params)}" + (f"#{anchor}" if anchor else "")

    return {
        "app_root": app_root,
        "ui_root": ui_root,
        "nav_url": f"{ui_root}plugin/{NAV_ROUTE}{app_root}/leads",
        "run_url": run_url,
        "run_of": parse_run_key,
        "page_link": page_link,
    }


def _html(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    body = pages.render(template, **_links(request), **context)
    return HTMLResponse(body, status_code=status_code, headers={"Cache-Control": "no-store"})


def _jsonable(page: reads.Page[dict[str, Any]]) -> dict[str, Any]:
    return {"total": page.total, "page": page.number, "pages": page.pages, "size": page.size, "rows": page.rows}


# -- what the pages show ----------------------------------------------------------------------------------


def run_view(
    conn: Connection, dag_id: str, run_id: str, *, not_reset_page: int, repeated_page: int, verification_page: int
) -> dict[str, Any]:
    key = run_key(dag_id, run_id)
    counts = reads.outcome_counts(conn, key)
    facts = reads.run_facts(conn, key)
    limit, limit_note = account_limit(facts.leadsquared_conn_id if facts else None)
    window = limit.window_seconds if limit else 5.0
    series = chart.rate_series(reads.send_times(conn, key), window)
    return {
        "dag_id": dag_id,
        "run_id": run_id,
        "facts": facts,
        "counts": counts,
        "totals": reads.run_totals(conn, key),
        "series": series,
        "limit": limit,
        "limit_note": limit_note,
        "chart": chart.render_svg(series, limit) if series else None,
        "not_reset": reads.run_leads(conn, key, outcomes=NOT_RESET_OUTCOMES, page=not_reset_page, size=NOT_RESET_PAGE),
        "repeated": reads.run_leads(conn, key, repeated=True, page=repeated_page, size=REPEATED_PAGE),
        "verification": reads.verification(conn, key, page=verification_page),
    }


def readable_dags(conn: Connection, user: BaseUser) -> tuple[list[str], bool]:
    """The DAGs with runs whose runs ``user`` may read, and whether some were left out.

    :raises HTTPException: 403 when there are runs and the user may read those of none of their DAGs.
    """
    dags = reads.dags_with_runs(conn)
    readable = [dag_id for dag_id in dags if may_read_runs(user, dag_id)]
    if dags and not readable:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "Forbidden")
    return readable, len(readable) < len(dags)


def lead_view(
    conn: Connection, user: BaseUser, lead_id: str | None, *, page: int, runs_page: int, size: int = HISTORY_PAGE
) -> dict[str, Any]:
    dags, filtered = readable_dags(conn, user)
    history = reads.lead_history(conn, lead_id, dags, page=page, size=size) if lead_id else None
    return {
        "lead_id": lead_id,
        "history": history,
        "filtered": filtered,
        "runs": reads.recent_runs(conn, dags, page=runs_page, size=RUNS_PAGE),
    }


# -- the app ----------------------------------------------------------------------------------------------


def create_app() -> FastAPI:
    """The app Airflow mounts; its routes check access with the api-server's own auth dependencies."""
    app = FastAPI(
        title="LeadSquared resets",
        description="What happened to a lead, and to a run, read from the LeadSquared state store.",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    @app.exception_handler(StarletteHTTPException)
    def _http_error(request: Request, exc: StarletteHTTPException) -> Any:
        if request.scope.get("path", "").startswith(f"{request.scope.get('root_path', '')}/api/"):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
        heading = {401: "Log in to Airflow", 403: "Not allowed"}.get(exc.status_code, "Not available")
        detail = {
            401: "This page shows LeadSquared resets to logged-in Airflow users: open it from the Airflow UI.",
            403: "Your Airflow user may not read the runs of this DAG.",
        }.get(exc.status_code, str(exc.detail))
        return _html(request, "error.html", exc.status_code, title=heading, heading=heading, detail=detail)

    @app.exception_handler(RequestValidationError)
    def _bad_query(request: Request, exc: RequestValidationError) -> Any:
        # A page number out of range (0, 2^64, "x") or a lead id too long: 400 naming the parameter.
        said = "; ".join(f"{'.'.join(map(str, e['loc'][1:])) or 'request'}: {e['msg']}" for e in exc.errors())
        detail = f"Bad request: {said}"
        if request.scope.get("path", "").startswith(f"{request.scope.get('root_path', '')}/api/"):
            return JSONResponse({"detail": detail}, status_code=status.HTTP_400_BAD_REQUEST)
        return _html(request, "error.html", 400, title="Bad request", heading="Bad request", detail=detail)

    @app.exception_handler(StoreUnavailable)
    def _no_store(request: Request, exc: StoreUnavailable) -> Any:
        if request.scope.get("path", "").startswith(f"{request.scope.get('root_path', '')}/api/"):
            return JSONResponse({"detail": str(exc)}, status_code=status.HTTP_503_SERVICE_UNAVAILABLE)
        return _html(request, "error.html", 503, title="No resets yet", heading="No resets yet", detail=str(exc))

    @app.get("/runs/{dag_id}/{run_id:path}", response_class=HTMLResponse, dependencies=RUN_ACCESS)
    def run_page(
        request: Request,
        dag_id: str,
        run_id: str,
        not_reset_page: PageNumber = 1,
        repeated_page: PageNumber = 1,
        verification_page: PageNumber = 1,
    ) -> HTMLResponse:
        with reads.connect(STATE_CONN_ID) as conn:
            view = run_view(
                conn,
                dag_id,
                run_id,
                not_reset_page=not_reset_page,
                repeated_page=repeated_page,
                verification_page=verification_page,
            )
        ui_root = _links(request)["ui_root"]
        grid = f"{ui_root}dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"
        return _html(request, "run.html", title=f"Resets of {run_id}", grid_url=grid, **view)

    @app.get("/leads", response_class=HTMLResponse)
    def lead_page(
        request: Request, user: GetUserDep, lead_id: LeadQuery = None, page: PageNumber = 1, runs_page: PageNumber = 1
    ) -> HTMLResponse:
        lead_id = (lead_id or "").strip() or None
        with reads.connect(STATE_CONN_ID) as conn:
            view = lead_view(conn, user, lead_id, page=page, runs_page=runs_page)
        title = f"Lead {lead_id}" if lead_id else "LeadSquared lead resets"
        return _html(request, "leads.html", title=title, **view)

    @app.get("/api/runs/{dag_id}/{run_id:path}", dependencies=RUN_ACCESS)
    def run_json(
        dag_id: str, run_id: str, not_reset_page: PageNumber = 1, repeated_page: PageNumber = 1
    ) -> dict[str, Any]:
        with reads.connect(STATE_CONN_ID) as conn:
            view = run_view(
                conn, dag_id, run_id, not_reset_page=not_reset_page, repeated_page=repeated_page, verification_page=1
            )
        series, limit, facts, verification = view["series"], view["limit"], view["facts"], view["verification"]
        return {
            "run_key": run_key(dag_id, run_id),
            "planned": facts is not None,
            "dry_run": facts.dry_run if facts else None,
            "window": facts.window if facts else None,
            "counts": view["counts"],
            "totals": view["totals"]._asdict(),
            "not_reset": _jsonable(view["not_reset"]),
            "possibly_repeated": _jsonable(view["repeated"]),
            "verification": None
            if verification is None
            else {"counts": verification.counts, "not_verified": _jsonable(verification.not_verified)},
            "rate": None
            if series is None
            else {
                "calls": series.calls,
                "seconds": round(series.duration, 3),
                "window_seconds": series.window_seconds,
                "busiest_window_calls": series.busiest,
                "peak_per_second": round(series.peak_per_second, 3),
                "limit_per_second": limit.per_second if limit else None,
            },
        }

    @app.get("/api/leads")
    def lead_json(
        user: GetUserDep,
        lead_id: Annotated[str, Query(min_length=1, max_length=200)],
        page: PageNumber = 1,
        size: PageSize = HISTORY_PAGE,
    ) -> dict[str, Any]:
        lead_id = lead_id.strip()
        if not lead_id:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "lead_id is empty")
        with reads.connect(STATE_CONN_ID) as conn:
            view = lead_view(conn, user, lead_id, page=page, runs_page=1, size=size)
        return {"lead_id": lead_id, "history": _jsonable(view["history"])}

    return app
