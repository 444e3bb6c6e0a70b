"""The accounts file: what each entry becomes, the pools the set-up creates, and how each mistake is named."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from leadsquared_provider.accounts import (
    Account,
    AccountsFileError,
    Approver,
    Categories,
    accounts_file,
    load_accounts,
    main,
    pools_config,
)

PROJECT = Path(__file__).resolve().parents[2]
SHIPPED = PROJECT / "include" / "leadsquared_accounts.yaml"
SQL_DIR = PROJECT / "include" / "sql"
TASK_TYPE = "0F6A5C3E-2B1D-4C7E-9A8B-1D2E3F4A5B6C"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "accounts.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_shipped_file_is_todays_single_account():
    assert load_accounts(SHIPPED, sql_dir=SQL_DIR) == [
        Account(
            name="default",
            leadsquared_conn_id="leadsquared_default",
            pool="leadsquared_api",
            dag_id="leadsquared_reset",
            warehouse_conn_id="warehouse_default",
            candidate_query="candidates.sql",
            timezone=None,
            schedule=None,
            categories=None,
            pool_slots=4,
        )
    ]


def test_entry_with_every_field(tmp_path):
    path = write(
        tmp_path,
        f"""
        accounts:
          - name: emea
            dag_id: reset_emea
            leadsquared_conn_id: leadsquared_emea
            pool: leadsquared_api_emea
            pool_slots: 2
            warehouse_conn_id: warehouse_emea
            candidate_query: candidates.sql
            timezone: Europe/London
            schedule: "30 1 * * *"
            categories:
              activity_event_codes: [212, 201, 212]
              task_type_ids: [{TASK_TYPE}]
              audit_types: [OwnerChange]
        """,
    )
    (account,) = load_accounts(path, sql_dir=SQL_DIR)
    assert account == Account(
        name="emea",
        leadsquared_conn_id="leadsquared_emea",
        pool="leadsquared_api_emea",
        dag_id="reset_emea",
        warehouse_conn_id="warehouse_emea",
        candidate_query="candidates.sql",
        timezone="Europe/London",
        schedule="30 1 * * *",
        categories=Categories(
            activity_event_codes=(201, 212), task_type_ids=(TASK_TYPE.lower(),), audit_types=("OwnerChange",)
        ),
        pool_slots=2,
    )
    # A key left out chooses nothing of its kind (never the DAG file's defaults).
    assert account.categories.as_params() == {
        "activity_event_codes": [201, 212],
        "task_type_ids": [TASK_TYPE.lower()],
        "audit_types": ["OwnerChange"],
        "delete_notes": False,
    }


def test_minimal_entry_takes_the_defaults(tmp_path):
    path = write(tmp_path, "accounts:\n  - {name: apac, leadsquared_conn_id: lsq_apac, pool: pool_apac}\n")
    (account,) = load_accounts(path)
    assert (account.dag_id, account.warehouse_conn_id, account.candidate_query) == (
        "leadsquared_reset_apac",
        None,
        "candidates.sql",
    )
    assert (account.timezone, account.schedule, account.categories, account.pool_slots) == (None, None, None, 4)


def test_yaml_anchors_under_x_keys_are_shared_by_entries(tmp_path):
    path = write(
        tmp_path,
        """
        x-defaults: &defaults
          warehouse_conn_id: dwh
          timezone: UTC
        accounts:
          - {<<: *defaults, name: a, leadsquared_conn_id: lsq_a, pool: pool_a}
          - {<<: *defaults, name: b, leadsquared_conn_id: lsq_b, pool: pool_b}
        """,
    )
    assert [(a.warehouse_conn_id, a.timezone) for a in load_accounts(path)] == [("dwh", "UTC")] * 2


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        pytest.param(None, "include/leadsquared_accounts.yaml", id="unset"),
        pytest.param("  ", "include/leadsquared_accounts.yaml", id="blank"),
        pytest.param("config/accounts.yaml", "config/accounts.yaml", id="relative-to-project"),
        pytest.param("/etc/lsq/accounts.yaml", "/etc/lsq/accounts.yaml", id="absolute"),
    ],
)
def test_accounts_file_location(override, expected):
    environ = {} if override is None else {"LEADSQUARED_ACCOUNTS_FILE": override}
    assert accounts_file(Path("/srv/project"), environ) == Path("/srv/project") / expected


TWO = """\
accounts:
  - name: a
    leadsquared_conn_id: lsq_a
    pool: pool_a
  - name: b
    leadsquared_conn_id: lsq_b
    pool: pool_b
"""

BAD_FILES = [
    pytest.param(
        TWO + "    pol: pool_c\n",
        "accounts[1] (name 'b'): unknown field 'pol' (did you mean 'pool'?) (line 8)",
        id="unknown-field",
    ),
    pytest.param(
        TWO.replace("name: b", "name: a"),
        "accounts[1] (name 'a'): duplicate name 'a' (first in accounts[0]) (line 5)",
        id="duplicate-name",
    ),
    pytest.param(
        TWO + "    dag_id: leadsquared_reset_a\n",
        "accounts[1] (name 'b'): duplicate dag_id 'leadsquared_reset_a' (first in accounts[0]) (line 5)",
        id="duplicate-dag-id",
    ),
    pytest.param(
        TWO.replace("    leadsquared_conn_id: lsq_b\n", ""),
        "accounts[1] (name 'b'): missing required field 'leadsquared_conn_id' (line 5)",
        id="missing-connection-id",
    ),
    pytest.param(
        TWO.replace("leadsquared_conn_id: lsq_b", "leadsquared_conn_id:"),
        "accounts[1] (name 'b'): missing required field 'leadsquared_conn_id' (line 6)",
        id="empty-connection-id",
    ),
    pytest.param(
        TWO.replace("leadsquared_conn_id: lsq_b", "leadsquared_conn_id: lsq b"),
        "accounts[1] (name 'b'): leadsquared_conn_id must be letters, digits, '_', '.' or '-' (at most 250), "
        "got 'lsq b' (line 6)",
        id="malformed-connection-id",
    ),
    pytest.param(
        TWO.replace("    pool: pool_b\n", ""),
        "accounts[1] (name 'b'): missing required field 'pool' (line 5)",
        id="missing-pool",
    ),
    pytest.param(
        TWO.replace("  - name: b\n    leadsquared_conn_id", "  - leadsquared_conn_id"),
        "accounts[1]: missing required field 'name' (line 5)",
        id="missing-name",
    ),
    pytest.param(
        TWO + "    pool: pool_c\n",
        "accounts[1] (name 'b'): field 'pool' given twice (first on line 7) (line 8)",
        id="field-given-twice",
    ),
    pytest.param(
        TWO.replace("    pool: pool_b", "   pool: pool_b"),
        "not valid YAML: ",
        id="bad-yaml",
    ),
    pytest.param("- name: a\n", "no 'accounts:' list at the top level", id="missing-accounts"),
    pytest.param("", "no 'accounts:' list at the top level", id="empty-file"),
    pytest.param("accounts:\n", "'accounts:' must be a non-empty list of accounts", id="accounts-empty"),
    pytest.param("accounts: {name: a}\n", "'accounts:' must be a non-empty list of accounts", id="accounts-mapping"),
    pytest.param(TWO + "  - just-a-name\n", "accounts[2]: must be a mapping of fields", id="entry-not-mapping"),
    pytest.param(
        "acounts: []\n" + TWO,
        "unknown top-level key 'acounts': only 'accounts:' (and x-... for anchors) (line 1)",
        id="unknown-top-level-key",
    ),
    pytest.param(
        TWO + "    timezone: Asia/Bombay_Typo\n",
        "accounts[1] (name 'b'): timezone must be an IANA time zone such as 'Asia/Kolkata', "
        "got 'Asia/Bombay_Typo' (line 8)",
        id="bad-timezone",
    ),
    pytest.param(
        TWO + "    schedule: '61 0 * * *'\n",
        "accounts[1] (name 'b'): schedule '61 0 * * *' is not a valid cron expression: ",
        id="bad-schedule",
    ),
    pytest.param(
        TWO + "    candidate_query: ../secrets.sql\n",
        "accounts[1] (name 'b'): candidate_query must be a .sql file name in include/sql/, got '../secrets.sql'",
        id="query-path",
    ),
    pytest.param(
        TWO + "    candidate_query: nowhere.sql\n",
        "accounts[1] (name 'b'): candidate_query 'nowhere.sql' is not a file in ",
        id="query-missing",
    ),
    pytest.param(
        TWO + "    pool_slots: 0\n",
        "accounts[1] (name 'b'): pool_slots must be a whole number of at least 1, got 0 (line 8)",
        id="pool-slots-zero",
    ),
    pytest.param(
        TWO + "    pool_slots: true\n",
        "accounts[1] (name 'b'): pool_slots must be a whole number of at least 1, got True",
        id="pool-slots-bool",
    ),
    pytest.param(
        TWO.replace("pool: pool_a", "pool: shared\n    pool_slots: 2").replace("pool: pool_b", "pool: shared")
        + "    pool_slots: 3\n",
        "accounts[1] (name 'b'): pool 'shared' has pool_slots 3 here but 2 in accounts[0]: "
        "accounts sharing a pool share its slots (line 9)",
        id="shared-pool-slots-disagree",
    ),
    pytest.param(
        TWO + "    categories: {activity_event_codes: [166], notes: true}\n",
        "accounts[1] (name 'b'): categories: unknown key 'notes' (known: activity_event_codes, task_type_ids, "
        "audit_types, delete_notes) (line 8)",
        id="category-unknown-key",
    ),
    pytest.param(
        TWO + "    categories: {audit_types: [StageChanged]}\n",
        "accounts[1] (name 'b'): categories: audit type 'StageChanged' is unknown",
        id="category-bad-audit-type",
    ),
    pytest.param(
        TWO + "    categories: {task_type_ids: [not-a-guid]}\n",
        "accounts[1] (name 'b'): categories: task type id 'not-a-guid' is not a GUID",
        id="category-bad-task-type",
    ),
    pytest.param(
        TWO + "    categories: {activity_event_codes: [], delete_notes: false}\n",
        "accounts[1] (name 'b'): categories: no category chosen",
        id="category-none-chosen",
    ),
    pytest.param(
        TWO + "    categories: {delete_notes: 'yes please'}\n",
        "accounts[1] (name 'b'): categories: delete_notes must be true or false",
        id="category-bad-flag",
    ),
    pytest.param(
        TWO + "    approvers: alice\n",
        "accounts[1] (name 'b'): approvers must be a non-empty list of user names, got 'alice'",
        id="approvers-not-a-list",
    ),
    pytest.param(
        TWO + "    approvers: [alice, {id: 7}]\n",
        "accounts[1] (name 'b'): approvers: each must be a user name or {id: ..., name: ...}, got {'id': 7}",
        id="approver-without-name",
    ),
    pytest.param(
        TWO + "    four_eyes: yes please\n",
        "accounts[1] (name 'b'): four_eyes must be true or false, got 'yes please'",
        id="four-eyes-not-a-flag",
    ),
]


def test_approvers_and_four_eyes_are_read_per_account(tmp_path):
    path = write(tmp_path, TWO + "    approvers: [alice, {id: 7, name: bob}]\n    four_eyes: true\n")
    first, second = load_accounts(path, sql_dir=SQL_DIR)
    assert (first.approvers, first.four_eyes) == ((), False)  # anyone who may edit the DAG; no four eyes
    assert second.approvers == (Approver("alice", "alice"), Approver("7", "bob"))
    assert second.four_eyes is True
    assert second.approvers[1].as_hitl_user() == {"id": "7", "name": "bob"}


@pytest.mark.parametrize(("text", "expected"), BAD_FILES)
def test_each_mistake_names_file_entry_and_field(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(AccountsFileError) as raised:
        load_accounts(path, sql_dir=SQL_DIR)
    message = str(raised.value)
    assert f"{path}: {expected}" in message, message
    assert all(line.startswith(f"{path}: ") for line in message.splitlines()), message


def test_bad_yaml_names_line_and_column(tmp_path):
    path = write(tmp_path, TWO.replace("    pool: pool_b", "   pool: pool_b"))
    with pytest.raises(AccountsFileError, match=r"not valid YAML: .* \(line 7, column 4\)$"):
        load_accounts(path)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(AccountsFileError, match=rf"^{tmp_path}/absent.yaml: cannot read the accounts file "):
        load_accounts(tmp_path / "absent.yaml")


def test_every_mistake_is_reported_at_once(tmp_path):
    path = write(tmp_path, TWO.replace("    pool: pool_b\n", "    pol: pool_b\n") + "  - name: a\n")
    with pytest.raises(AccountsFileError) as raised:
        load_accounts(path)
    assert str(raised.value).splitlines() == [
        f"{path}: accounts[1] (name 'b'): unknown field 'pol' (did you mean 'pool'?) (line 7)",
        f"{path}: accounts[1] (name 'b'): missing required field 'pool' (line 5)",
        f"{path}: accounts[2] (name 'a'): missing required field 'leadsquared_conn_id' (line 8)",
        f"{path}: accounts[2] (name 'a'): missing required field 'pool' (line 8)",
    ]


def test_pools_one_per_account_and_shared_slots_propagate(tmp_path):
    path = write(
        tmp_path,
        """
        accounts:
          - {name: a, leadsquared_conn_id: lsq_a, pool: pool_a, pool_slots: 2}
          - {name: b, leadsquared_conn_id: lsq_b, pool: pool_b}
          - {name: c, leadsquared_conn_id: lsq_c, pool: pool_a}
        """,
    )
    accounts = load_accounts(path)
    assert [a.pool_slots for a in accounts] == [2, 4, 2]
    assert pools_config(accounts) == {
        "pool_a": {
            "slots": 2,
            "description": "Reset batches in flight at once for LeadSquared accounts 'a', 'c' (see README: sizing)",
            "include_deferred": False,
        },
        "pool_b": {
            "slots": 4,
            "description": "Reset batches in flight at once for LeadSquared account 'b' (see README: sizing)",
            "include_deferred": False,
        },
    }


def test_include_pools_json_is_the_shipped_accounts_pools():
    """include/pools.json (read by docs and the distributed tests) never drifts from the accounts file."""
    assert json.loads((PROJECT / "include" / "pools.json").read_text()) == pools_config(load_accounts(SHIPPED)), (
        "regenerate: python -m leadsquared_provider.accounts pools --project . --output include/pools.json"
    )


def test_cli_writes_the_pools_of_the_env_file(tmp_path, monkeypatch, capsys):
    path = write(tmp_path, TWO)
    monkeypatch.setenv("LEADSQUARED_ACCOUNTS_FILE", str(path))
    out = tmp_path / "pools.json"
    assert main(["pools", "--project", str(PROJECT), "--output", str(out)]) == 0
    assert set(json.loads(out.read_text())) == {"pool_a", "pool_b"}
    assert f"2 pool(s) for 2 account(s) from {path}" in capsys.readouterr().out


def test_cli_refuses_a_bad_file_naming_the_mistake(tmp_path, capsys):
    path = write(tmp_path, TWO + "    pol: x\n")
    out = tmp_path / "pools.json"
    assert main(["pools", "--accounts-file", str(path), "--output", str(out)]) == 1
    assert f"{path}: accounts[1] (name 'b'): unknown field 'pol'" in capsys.readouterr().err
    assert not out.exists()
