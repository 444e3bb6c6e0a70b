"""Fixtures of the provider's tests: an SQLite state store as connection ``leadsquared_state``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture
def state_conn(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """An empty SQLite state store, as the connection ``leadsquared_state``; returns its conn id."""
    path = tmp_path / "state.db"
    monkeypatch.setenv("AIRFLOW_CONN_LEADSQUARED_STATE", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    return "leadsquared_state"
