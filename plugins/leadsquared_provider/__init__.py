"""Airflow provider for LeadSquared: a hook, a reset operator and the planning/audit helpers of the DAG."""

from __future__ import annotations

__version__ = "0.1.0"


def get_provider_info() -> dict:
    """Entry point read by Airflow's ProvidersManager: registers connection type ``leadsquared``."""
    return {
        "package-name": "airflow-provider-leadsquared",
        "name": "LeadSquared",
        "description": "Scheduled, rate-limited LeadSquared Lead.Reset.",
        "versions": [__version__],
        "connection-types": [
            {
                "hook-class-name": "leadsquared_provider.hooks.leadsquared.LeadSquaredHook",
                "hook-name": "LeadSquared",
                "connection-type": "leadsquared",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port", "extra"],
                    "relabeling": {
                        "host": "API host or base URL",
                        "login": "Access key",
                        "password": "Secret key",
                    },
                    "placeholders": {
                        "host": "api-in21.leadsquared.com",
                        "login": "u$r...",
                        "password": "secret key of an administrator",
                    },
                },
                "conn-fields": {
                    "rate_limit": {
                        "label": "Rate limit (calls per window)",
                        "description": "Your plan's limit, e.g. 25 (Enterprise), 5 (Pro).",
                        "schema": {"type": ["integer", "null"], "default": 25},
                    },
                    "rate_window_seconds": {
                        "label": "Rate window (seconds)",
                        "schema": {"type": ["number", "null"], "default": 5},
                    },
                    "timeout_seconds": {
                        "label": "Request timeout (seconds)",
                        "schema": {"type": ["number", "null"], "default": 30},
                    },
                    "max_retries": {
                        "label": "Retry budget (transient errors per lead)",
                        "schema": {"type": ["integer", "null"], "default": 5},
                    },
                    "rate_budget_url": {
                        "label": "Shared rate budget URL",
                        "description": "sqlite:///path (one machine) or redis://host:6379/0 (all workers).",
                        "schema": {"type": ["string", "null"]},
                    },
                },
            }
        ],
    }
