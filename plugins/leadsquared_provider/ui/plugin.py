"""The provider's Airflow plugin (registered by the ``airflow.plugins`` entry point): the resets page in the UI,
and no lead id in OpenLineage's events.

- ``fastapi_apps``: :mod:`leadsquared_provider.ui.app` mounted by the api-server at ``/leadsquared``;
- ``external_views``: a *Lead resets* tab on every DAG run's page (``destination: dag_run``, the run's
  page of the app) and a *Lead resets* entry in the *Browse* menu (the lead search), both shown by the UI in
  its plugin frame (``url_route``). Their ``href`` has no leading slash: the UI resolves it against its own
  base URL, so the links hold behind an ``[api] base_url`` path.

Airflow loads plugins in every process (scheduler, workers, DAG processor): the app, and FastAPI with it, is
imported only when the api-server asks for ``fastapi_apps``. Loading the plugin also redacts the lead ids of a
run's conf from the OpenLineage events of that process (:mod:`leadsquared_provider.lineage.run_conf`): the
scheduler sends the DAG run's events and the task runner the tasks', each after loading the plugins.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from airflow.plugins_manager import AirflowPlugin

from leadsquared_provider.ui import NAV_ROUTE, RUN_TAB_ROUTE, URL_PREFIX


@cache
def _fastapi_apps() -> list[dict[str, Any]]:
    from leadsquared_provider.ui.app import create_app

    return [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "LeadSquared resets"}]


class LeadSquaredResetsPlugin(AirflowPlugin):
    """The resets page: a run's outcomes (DAG run tab) and a lead's history (navigation)."""

    name = "leadsquared_resets"
    external_views = [
        {
            "name": "Lead resets",
            "href": URL_PREFIX.lstrip("/") + "/runs/{DAG_ID}/{RUN_ID}",
            "destination": "dag_run",
            "url_route": RUN_TAB_ROUTE,
        },
        {
            "name": "Lead resets",
            "href": URL_PREFIX.lstrip("/") + "/leads",
            "destination": "nav",
            "category": "browse",
            "url_route": NAV_ROUTE,
        },
    ]

    @classmethod
    def on_load(cls, *args: Any, **kwargs: Any) -> None:
        from leadsquared_provider.lineage.run_conf import hide_lead_ids_from_openlineage

        hide_lead_ids_from_openlineage()

    @property
    def fastapi_apps(self) -> list[dict[str, Any]]:  # type: ignore[override]
        return _fastapi_apps()
