"""Airflow's plugin loader walks plugins/ file by file: the provider package must not be imported that way."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"
PROBE = """
import sys
from airflow._shared.plugins_manager.plugins_manager import _load_plugins_from_plugin_directory
before = set(sys.modules)
plugins, errors = _load_plugins_from_plugin_directory({folder!r})
print(sorted(set(sys.modules) - before))
print(errors)
"""
BARE_NAMES = {"ledger", "planner", "planning", "outcomes", "reset", "exceptions", "rate_budget", "state_store"}


def test_plugin_loader_imports_no_provider_module_under_a_bare_name():
    probe = subprocess.run(
        [sys.executable, "-c", PROBE.format(folder=str(PLUGINS))], capture_output=True, text=True, timeout=120
    )
    assert probe.returncode == 0, probe.stderr
    imported, errors = probe.stdout.strip().splitlines()[-2:]
    assert errors == "{}"
    assert not BARE_NAMES & set(ast.literal_eval(imported))
    assert "leadsquared_provider/" in (PLUGINS / ".airflowignore").read_text()
