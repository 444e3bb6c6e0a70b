"""The resets page in the Airflow UI: what happened to a lead, and to a run, read from the state store.

- :mod:`~leadsquared_provider.ui.plugin`: the Airflow plugin (``fastapi_apps`` + ``external_views``);
- :mod:`~leadsquared_provider.ui.app`: the FastAPI app, its routes and their access checks;
- the reads it shows are the state store's (:mod:`leadsquared_provider.store.reads`: indexed, paged);
- :mod:`~leadsquared_provider.ui.chart`: calls per second against the account's limit, as SVG;
- :mod:`~leadsquared_provider.ui.pages`: the HTML.

This module stays light (no FastAPI): Airflow imports the plugin in every process.
"""

URL_PREFIX = "/leadsquared"  # where the api-server mounts the app
RUN_TAB_ROUTE = "lead-resets-run"  # the UI route of the DAG run tab: /dags/<dag>/runs/<run>/plugin/<this>
NAV_ROUTE = "lead-resets"  # the UI route of the navigation entry: /plugin/<this>
