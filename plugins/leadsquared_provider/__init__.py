"""Airflow provider for LeadSquared: a hook, a reset operator and the planning/audit helpers of the DAG.

This module holds the version and :func:`get_provider_info` only; the provider's settings (the state store's
default connection, the LeadSquared connection's settings) are in :mod:`leadsquared_provider.settings`.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def get_provider_info() -> dict[str, Any]:
    """Entry point read by Airflow's ProvidersManager: registers connection type ``leadsquared``."""
    from leadsquared_provider.settings import LeadSquaredSettings

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
                "conn-fields": LeadSquaredSettings.form_fields(),
            }
        ],
    }
