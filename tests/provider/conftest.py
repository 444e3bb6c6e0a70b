"""Fixtures of the provider's tests: an SQLite state store as connection ``leadsquared_state``, the log."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture
def state_conn(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """An empty SQLite state store, as the connection ``leadsquared_state``; returns its conn id."""
    path = tmp_path / "state.db"
    monkeypatch.setenv("AIRFLOW_CONN_LEADSQUARED_STATE", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    return "leadsquared_state"


@pytest.fixture
def logged(capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> Callable[[], str]:
    """``logged()``: all the test's log output so far.

    Airflow 3's hooks and operators log through structlog, which prints its lines rather than handing
    records to :mod:`logging`, so ``caplog`` never sees them: they are read from the captured output, and
    the stdlib records (the rate budget's, for one) from ``caplog``.
    """
    caplog.set_level(logging.DEBUG)
    printed: list[str] = []

    def text() -> str:
        out, err = capsys.readouterr()
        printed.append(out + err)
        return "".join(printed) + caplog.text

    return text
