"""The provider entry point registers connection type ``leadsquared`` with its labelled form fields."""

from __future__ import annotations

import json


def test_connection_type_and_form_are_registered():
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert "airflow-provider-leadsquared" in manager.providers
    assert manager.hooks["leadsquared"].hook_class_name == "leadsquared_provider.hooks.leadsquared.LeadSquaredHook"
    widgets = manager.connection_form_widgets
    assert widgets["extra__leadsquared__rate_limit"].field["schema"]["title"] == "Rate limit (calls per window)"
    assert widgets["extra__leadsquared__rate_budget_url"].field["schema"]["title"] == "Shared rate budget URL"
    behaviour = manager.field_behaviours["leadsquared"]
    assert behaviour["relabeling"] == {"host": "API host or base URL", "login": "Access key", "password": "Secret key"}
    assert "extra" in behaviour["hidden_fields"]


def test_env_var_connection_builds_the_hook(monkeypatch):
    from airflow.sdk import BaseHook

    monkeypatch.setenv(
        "AIRFLOW_CONN_LSQ_ENV",
        json.dumps(
            {
                "conn_type": "leadsquared",
                "host": "api-in21.leadsquared.com",
                "login": "a",
                "password": "b",
                "extra": {"rate_limit": 5},
            }
        ),
    )
    hook = BaseHook.get_hook("lsq_env")
    assert type(hook).__name__ == "LeadSquaredHook"
    assert hook.settings.rate_limit == 5
    hook.get_conn()
    assert hook.base_url == "https://api-in21.leadsquared.com"
