"""One DAG per account of the accounts file, parsed by Airflow's DagBag as the dag-processor does."""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pendulum
import pytest

from leadsquared_provider.accounts import Approver

PROJECT = Path(__file__).resolve().parents[2]
DAGS = PROJECT / "dags"
DAG_FILE = DAGS / "leadsquared_reset.py"
TASK_TYPE = "0f6a5c3e-2b1d-4c7e-9a8b-1d2e3f4a5b6c"

TWO_ACCOUNTS = f"""
accounts:
  - name: india
    leadsquared_conn_id: leadsquared_india
    pool: leadsquared_api_india
    warehouse_conn_id: warehouse_india
  - name: emea
    dag_id: emea_resets
    leadsquared_conn_id: leadsquared_emea
    pool: leadsquared_api_emea
    pool_slots: 2
    candidate_query: candidates.sql
    timezone: Europe/London
    schedule: "30 1 * * *"
    categories:
      task_type_ids: [{TASK_TYPE}]
      delete_notes: true
    approvers: [alice, {{id: "7", name: bob}}]
    four_eyes: true
"""


@pytest.fixture
def parse(monkeypatch, tmp_path):
    """Parse the dags folder with LEADSQUARED_ACCOUNTS_FILE pointing at a file holding ``text``."""
    from airflow.dag_processing.dagbag import DagBag

    def parse(text: str):
        path = tmp_path / "accounts.yaml"
        path.write_text(textwrap.dedent(text))
        monkeypatch.setenv("LEADSQUARED_ACCOUNTS_FILE", str(path))
        return path, DagBag(dag_folder=str(DAGS))

    return parse


def test_two_accounts_give_two_dags_each_with_its_own_ids_and_pool(parse):
    _, bag = parse(TWO_ACCOUNTS)
    assert bag.import_errors == {}
    assert set(bag.dags) == {"leadsquared_reset_india", "emea_resets"}

    india, emea = bag.dags["leadsquared_reset_india"], bag.dags["emea_resets"]
    for dag, conn_id, pool, warehouse, gate in [
        (india, "leadsquared_india", "leadsquared_api_india", "warehouse_india", ("Asia/Kolkata", (), False)),
        (
            emea,
            "leadsquared_emea",
            "leadsquared_api_emea",
            "warehouse_default",
            ("Europe/London", (Approver("alice", "alice"), Approver("7", "bob")), True),
        ),
    ]:
        tasks = {t.task_id: t for t in dag.tasks}
        assert set(tasks) == {"plan", "approve", "reset_batch.reset", "reset_batch.check", "verify", "report"}
        approve = tasks["approve"]
        assert (approve.timezone, approve.approvers, approve.four_eyes) == gate  # the account's gate
        assert approve.upstream_task_ids == {"plan"} and approve.downstream_task_ids == {"reset_batch.reset"}
        verify = tasks["verify"]
        assert type(verify).__name__ == "LeadSquaredVerifySensor"
        assert (verify.leadsquared_conn_id, verify.state_conn_id) == (conn_id, "leadsquared_state")  # own keys
        reset = tasks["reset_batch.reset"]
        assert (reset.leadsquared_conn_id, reset.pool, reset.state_conn_id) == (conn_id, pool, "leadsquared_state")
        assert {t.pool for t in dag.tasks} == {pool, "default_pool"}
        plan = tasks["plan"]
        assert (plan.leadsquared_conn_id, plan.warehouse_conn_id, plan.candidate_query) == (
            conn_id,
            warehouse,
            "candidates.sql",
        )
        assert tasks["report"].leadsquared_conn_id == conn_id
        assert tasks["report"].warehouse_conn_id == warehouse  # the optional audit export
        # Each account's asset event goes out through an alias of its own connection.
        assert [outlet.name for outlet in tasks["report"].outlets] == [f"leadsquared_resets__{conn_id}"]
        # The house rules hold for every account's DAG, as for the shipped one.
        assert set(dag.tags) == {"leadsquared", "reset"} and dag.doc_md
        assert all(t.retries >= 1 and t.owner == "data-engineering" for t in dag.tasks)
        assert type(dag.timetable).__name__ == "CronDataIntervalTimetable"

    # Defaults of the DAG file for india; its own timezone, schedule and categories for emea.
    assert (india.timetable.expression, str(india.timetable.timezone)) == ("0 0 * * *", "Asia/Kolkata")
    assert (emea.timetable.expression, str(emea.timetable.timezone)) == ("30 1 * * *", "Europe/London")
    assert emea.start_date == pendulum.datetime(2026, 1, 1, tz="Europe/London")
    category_params = ("activity_event_codes", "task_type_ids", "audit_types", "delete_notes")
    assert {k: india.params[k] for k in category_params} == {
        "activity_event_codes": [166, 167],
        "task_type_ids": [],
        "audit_types": ["StageChange", "OwnerChange"],
        "delete_notes": False,
    }
    assert {k: emea.params[k] for k in category_params} == {
        "activity_event_codes": [],
        "task_type_ids": [TASK_TYPE],
        "audit_types": [],
        "delete_notes": True,
    }
    # Every other param is the same on both.
    others = set(india.params) - set(category_params)
    assert {k: india.params[k] for k in others} == {k: emea.params[k] for k in others}


def test_shipped_file_gives_exactly_todays_dag(monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.delenv("LEADSQUARED_ACCOUNTS_FILE", raising=False)
    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    assert list(bag.dags) == ["leadsquared_reset"]
    dag = bag.dags["leadsquared_reset"]
    reset = dag.get_task("reset_batch.reset")
    assert (reset.leadsquared_conn_id, reset.pool) == ("leadsquared_default", "leadsquared_api")
    assert dag.get_task("plan").warehouse_conn_id == "warehouse_default"
    assert (dag.timetable.expression, str(dag.timetable.timezone)) == ("0 0 * * *", "Asia/Kolkata")


def test_dag_file_constants_are_the_shipped_accounts(monkeypatch):
    """tests/distributed reads the shipped DAG's connection ids and pool from the DAG file's source and the
    accounts file (:func:`dag_settings`): they must say what the DAG does."""
    from airflow.dag_processing.dagbag import DagBag

    from leadsquared_provider.accounts import load_accounts
    from tests.distributed.topology import dag_settings

    constants = {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in ast.parse(DAG_FILE.read_text()).body
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
        if node.targets[0].id in {"LEADSQUARED_CONN_ID", "WAREHOUSE_CONN_ID", "STATE_CONN_ID", "POOL"}
    }
    (shipped,) = load_accounts(PROJECT / "include" / "leadsquared_accounts.yaml")
    assert constants == {"WAREHOUSE_CONN_ID": shipped.warehouse_conn_id, "STATE_CONN_ID": "leadsquared_state"}
    assert dag_settings() == {
        "LEADSQUARED_CONN_ID": shipped.leadsquared_conn_id,
        "WAREHOUSE_CONN_ID": shipped.warehouse_conn_id,
        "STATE_CONN_ID": "leadsquared_state",
        "POOL": shipped.pool,
    }
    monkeypatch.delenv("LEADSQUARED_ACCOUNTS_FILE", raising=False)
    dag = DagBag(dag_folder=str(DAGS)).dags["leadsquared_reset"]
    reset = dag.get_task("reset_batch.reset")
    assert dag_settings() == {
        "LEADSQUARED_CONN_ID": reset.leadsquared_conn_id,
        "WAREHOUSE_CONN_ID": dag.get_task("plan").warehouse_conn_id,
        "STATE_CONN_ID": reset.state_conn_id,
        "POOL": reset.pool,
    }


def test_every_setting_of_the_dag_file_is_read():
    """Nothing under "Edit here" (or anywhere at the top of the DAG file) is a setting that nothing reads."""
    tree = ast.parse(DAG_FILE.read_text())
    assigned = {
        node.targets[0].id
        for node in tree.body
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
    }
    read = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)}
    assert assigned and assigned <= read, f"never read: {sorted(assigned - read)}"


BASE = """\
accounts:
  - name: india
    leadsquared_conn_id: leadsquared_india
    pool: leadsquared_api_india
  - name: emea
    leadsquared_conn_id: leadsquared_emea
    pool: leadsquared_api_emea
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            BASE + "    pol: other\n",
            "accounts[1] (name 'emea'): unknown field 'pol' (did you mean 'pool'?) (line 8)",
            id="unknown-field",
        ),
        pytest.param(
            BASE.replace("name: emea", "name: india"),
            "accounts[1] (name 'india'): duplicate name 'india' (first in accounts[0]) (line 5)",
            id="duplicate-name",
        ),
        pytest.param(
            BASE + "    dag_id: leadsquared_reset_india\n",
            "accounts[1] (name 'emea'): duplicate dag_id 'leadsquared_reset_india' (first in accounts[0]) (line 5)",
            id="duplicate-dag-id",
        ),
        pytest.param(
            BASE.replace("    leadsquared_conn_id: leadsquared_emea\n", ""),
            "accounts[1] (name 'emea'): missing required field 'leadsquared_conn_id' (line 5)",
            id="missing-connection-id",
        ),
        pytest.param(
            BASE.replace("    pool: leadsquared_api_emea", "   pool: leadsquared_api_emea"),
            "not valid YAML: expected <block end>, but found '<block mapping start>' (line 7, column 4)",
            id="bad-yaml",
        ),
        pytest.param(BASE.replace("accounts:", "acounts:"), "no 'accounts:' list at the top level", id="no-accounts"),
    ],
)
def test_bad_file_is_one_import_error_naming_file_entry_and_field(parse, text, expected):
    path, bag = parse(text)
    assert bag.dags == {}  # no account's DAG is half-built from a bad file
    (error,) = bag.import_errors.values()
    # Airflow prefixes its short traceback (dagbag_import_error_tracebacks); the message is the last line(s).
    assert f"leadsquared_provider.accounts.AccountsFileError: {path}: {expected}" in error, error
