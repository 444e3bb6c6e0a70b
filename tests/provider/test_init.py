"""The provider entry point registers connection type ``leadsquared`` with its labelled form fields."""

from __future__ import annotations

import json
from dataclasses import fields

from leadsquared_provider.settings import LeadSquaredSettings


def test_connection_type_and_form_are_registered():
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert "airflow-provider-leadsquared" in manager.providers
    assert manager.hooks["leadsquared"].hook_class_name == "leadsquared_provider.hooks.leadsquared.LeadSquaredHook"
    widgets = manager.connection_form_widgets
    assert widgets["extra__leadsquared__rate_limit"].field["schema"]["title"] == "Rate limit (calls per window)"
    assert widgets["extra__leadsquared__rate_budget_url"].field["schema"]["title"] == "Shared rate budget URL"
    # Every setting of the dataclass is a form field, with its label and default written once, beside the field.
    for spec in fields(LeadSquaredSettings):
        widget = widgets[f"extra__leadsquared__{spec.name}"].field
        assert widget["schema"]["title"] == spec.metadata["label"]
        assert widget["description"] == spec.metadata["description"]
        assert widget["value"] == spec.default
    assert widgets["extra__leadsquared__allow_insecure_http"].field["schema"]["type"] == ["boolean", "null"]
    assert widgets["extra__leadsquared__rate_share"].field["value"] == 1.0
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
    assert hook.url_from_endpoint("/v2/x") == "https://api-in21.leadsquared.com/v2/x"


def test_provider_info_does_not_import_the_hook():
    """The form comes from the settings beside get_provider_info: reading it imports no hook (nor aiohttp)."""
    import subprocess
    import sys

    code = (
        "import sys; from leadsquared_provider import get_provider_info; info = get_provider_info(); "
        "assert 'leadsquared_provider.hooks.leadsquared' not in sys.modules; "
        "assert 'airflow.providers.http.hooks.http' not in sys.modules; "
        "print(len(info['connection-types'][0]['conn-fields']))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert int(out.stdout) == len(fields(LeadSquaredSettings))
