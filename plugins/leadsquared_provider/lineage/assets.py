"""The account's Airflow asset: ``leadsquared://<API host>/resets``, one event per finished reset run.

The host is the LeadSquared connection's, known only when the report runs (a DAG file reads no connection),
so the report declares an :class:`AssetAlias` per connection and attaches the event to the asset through it;
a downstream DAG schedules on the asset itself.
"""

from __future__ import annotations

from airflow.sdk import Asset, AssetAlias


def resets_asset(host: str) -> Asset:
    """The account's resets, for ``schedule=[resets_asset("api-in21.leadsquared.com")]`` downstream."""
    return Asset(f"leadsquared://{host}/resets")


def resets_alias(leadsquared_conn_id: str) -> AssetAlias:
    """The report's outlet: resolved at run time to the connection's :func:`resets_asset`."""
    return AssetAlias(f"leadsquared_resets__{leadsquared_conn_id}")
