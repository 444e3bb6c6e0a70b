"""The LeadSquared accounts the reset DAG runs for, read from one YAML file (one DAG per account).

The file (``include/leadsquared_accounts.yaml``, or ``$LEADSQUARED_ACCOUNTS_FILE``) lists the accounts under
``accounts:``; its own comments describe every field. :func:`load_accounts` validates the whole file and raises
one :class:`AccountsFileError` naming the file, the entry and the field of every mistake, so the DAG file's
import error reads ``<file>: accounts[1] (name 'emea'): unknown field 'pol' (line 14)`` rather than a stack
trace. The set-up creates every account's pool from the same file (:func:`pools_config`, and
``python -m leadsquared_provider.accounts pools``).

Budgets need nothing here: each connection's calls are paced by the budget of its access key
(:mod:`leadsquared_provider.rate_budget`), so two accounts never share one and two DAGs of one account do.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

if TYPE_CHECKING:
    from airflow.sdk.execution_time.hitl import HITLUser

ACCOUNTS_FILE_ENV = "LEADSQUARED_ACCOUNTS_FILE"
DEFAULT_ACCOUNTS_FILE = Path("include") / "leadsquared_accounts.yaml"  # relative to the project folder
DAG_ID_PREFIX = "leadsquared_reset_"
DEFAULT_QUERY = "candidates.sql"
DEFAULT_POOL_SLOTS = 4

REQUIRED_FIELDS = ("name", "leadsquared_conn_id", "pool")
OPTIONAL_FIELDS = (
    "dag_id",
    "warehouse_conn_id",
    "candidate_query",
    "timezone",
    "schedule",
    "categories",
    "pool_slots",
    "approvers",
    "four_eyes",
)
CATEGORY_KEYS = ("activity_event_codes", "task_type_ids", "audit_types", "delete_notes")

_KEY = re.compile(r"^[A-Za-z0-9_.-]+$")  # names, ids and pools: what Airflow accepts as a dag id, ASCII only
_KEY_MAX = 250
_QUERY_FILE = re.compile(r"^[A-Za-z0-9_.-]+\.sql$")


class AccountsFileError(ValueError):
    """The accounts file cannot be read or breaks a rule. One line per mistake: file, entry, field, line."""


@dataclass(frozen=True)
class Categories:
    """What a run resets unless its trigger form says otherwise (validated as a reset scope is)."""

    activity_event_codes: tuple[int, ...] = ()
    task_type_ids: tuple[str, ...] = ()
    audit_types: tuple[str, ...] = ()
    delete_notes: bool = False

    def as_params(self) -> dict[str, Any]:
        """The four params' defaults, as ``DEFAULT_CATEGORIES`` in the DAG file spells them."""
        return {
            "activity_event_codes": list(self.activity_event_codes),
            "task_type_ids": list(self.task_type_ids),
            "audit_types": list(self.audit_types),
            "delete_notes": self.delete_notes,
        }


@dataclass(frozen=True)
class Approver:
    """A user who may answer the account's approval gate: the auth manager's user id and name (the simple
    auth manager's are both the user name; FAB's id is a number)."""

    id: str
    name: str

    def as_hitl_user(self) -> HITLUser:
        """As Airflow's HITL ``assigned_users`` takes it."""
        return {"id": self.id, "name": self.name}


@dataclass(frozen=True)
class Account:
    """One entry of the accounts file. ``None`` means "the DAG file's default" (``WAREHOUSE_CONN_ID``,
    ``LOCAL_TIMEZONE``, ``SCHEDULE``, ``DEFAULT_CATEGORIES``)."""

    name: str
    leadsquared_conn_id: str
    pool: str
    dag_id: str
    warehouse_conn_id: str | None = None
    candidate_query: str = DEFAULT_QUERY
    timezone: str | None = None
    schedule: str | None = None
    categories: Categories | None = None
    pool_slots: int = DEFAULT_POOL_SLOTS
    approvers: tuple[Approver, ...] = ()  # empty: anyone who may edit the DAG answers its approval gate
    four_eyes: bool = False  # the user who triggered a run may not approve it


def accounts_file(project_dir: Path, environ: Mapping[str, str] | None = None) -> Path:
    """``$LEADSQUARED_ACCOUNTS_FILE`` (absolute, or relative to ``project_dir``), else the shipped file."""
    override = (os.environ if environ is None else environ).get(ACCOUNTS_FILE_ENV, "").strip()
    return Path(project_dir) / (override or DEFAULT_ACCOUNTS_FILE)


def load_accounts(path: str | os.PathLike[str], *, sql_dir: str | os.PathLike[str] | None = None) -> list[Account]:
    """Read and validate the accounts file; raise :class:`AccountsFileError` listing every mistake.

    :param sql_dir: when given, each ``candidate_query`` must be a file there.
    """
    problems = _Problems(str(path))
    accounts = _load(Path(path), Path(sql_dir) if sql_dir is not None else None, problems)
    if problems:
        raise AccountsFileError(str(problems)) from None
    return accounts


def pools_config(accounts: Iterable[Account]) -> dict[str, dict[str, Any]]:
    """The pools of ``accounts`` in ``airflow pools import`` format (accounts sharing a pool share it)."""
    names: dict[str, list[str]] = {}
    slots: dict[str, int] = {}
    for account in accounts:
        names.setdefault(account.pool, []).append(account.name)
        slots[account.pool] = account.pool_slots
    return {
        pool: {
            "slots": slots[pool],
            "description": f"Reset batches in flight at once for LeadSquared account{'s' if len(owners) > 1 else ''} "
            f"{', '.join(map(repr, owners))} (see README: sizing)",
            "include_deferred": False,
        }
        for pool, owners in names.items()
    }


def write_pools_file(accounts: Iterable[Account], path: str | os.PathLike[str]) -> Path:
    """Write :func:`pools_config` to ``path`` for ``airflow pools import``; return the path."""
    target = Path(path)
    target.write_text(json.dumps(pools_config(accounts), indent=2) + "\n", encoding="utf-8")
    return target


# --- Validation ------------------------------------------------------------------------------------------


class _Problems:
    """The mistakes found so far, each prefixed with the file (and the entry, when there is one)."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.lines: list[str] = []

    def add(self, message: str, *, entry: str | None = None, line: int | None = None) -> None:
        where = f"{self.file}: {entry}: " if entry else f"{self.file}: "
        self.lines.append(where + message + (f" (line {line})" if line else ""))

    def __bool__(self) -> bool:
        return bool(self.lines)

    def __str__(self) -> str:
        return "\n".join(self.lines)


def _read_yaml(path: Path, problems: _Problems) -> tuple[Any, yaml.Node | None]:
    """The file's data and its node tree (for line numbers), or ``(None, None)`` after reporting why not."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        problems.add(f"cannot read the accounts file ({error.strerror or type(error).__name__})")
        return None, None
    except UnicodeDecodeError:
        problems.add("cannot read the accounts file: not UTF-8 text")
        return None, None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        return (loader.construct_document(node) if node is not None else None), node
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problems.add(f"not valid YAML: {error.problem or error.context or type(error).__name__}{at}")
    except yaml.YAMLError as error:
        problems.add(f"not valid YAML: {error}")
    finally:
        loader.dispose()
    return None, None


def _mapping_keys(node: yaml.Node | None) -> list[tuple[str, int]]:
    """The keys of a mapping node with their line numbers, in order (merge keys ``<<`` left out)."""
    if not isinstance(node, yaml.MappingNode):
        return []
    return [
        (key.value, key.start_mark.line + 1)
        for key, _ in node.value
        if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge"
    ]


def _child(node: yaml.Node | None, key: str) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
                return value_node  # type: ignore[no-any-return]
    return None


def _line(node: yaml.Node | None) -> int | None:
    return node.start_mark.line + 1 if node is not None else None


def _load(path: Path, sql_dir: Path | None, problems: _Problems) -> list[Account]:
    data, root = _read_yaml(path, problems)
    if problems:
        return []
    if not isinstance(data, dict) or "accounts" not in data:
        problems.add("no 'accounts:' list at the top level (see include/leadsquared_accounts.yaml)")
        return []
    for key, line in _mapping_keys(root):
        if key != "accounts" and not str(key).startswith("x-"):
            problems.add(f"unknown top-level key {key!r}: only 'accounts:' (and x-... for anchors)", line=line)
    entries = data["accounts"]
    entries_node = _child(root, "accounts")
    if not isinstance(entries, list) or not entries:
        problems.add(
            "'accounts:' must be a non-empty list of accounts (each starting with '- name: ...')",
            line=_line(entries_node),
        )
        return []
    nodes = entries_node.value if isinstance(entries_node, yaml.SequenceNode) else []

    found: list[tuple[int, Account]] = []
    for index, entry in enumerate(entries):
        account = _entry(index, entry, nodes[index] if index < len(nodes) else None, sql_dir, problems)
        if account is not None:
            found.append((index, account))
    return _check_unique(found, entries, nodes, problems)


def _known(unknown: Any, known: Sequence[str]) -> str:
    """``did you mean 'pool'?`` for a likely typo, else the known names."""
    import difflib  # only for a mistake: the DAG file imports this module at every parse

    close = difflib.get_close_matches(str(unknown), known, n=1)
    return f"did you mean {close[0]!r}?" if close else f"known: {', '.join(known)}"


def _label(index: int, entry: Any) -> str:
    name = entry.get("name") if isinstance(entry, dict) else None
    return f"accounts[{index}] (name {name!r})" if isinstance(name, str) and name else f"accounts[{index}]"


def _entry(index: int, entry: Any, node: yaml.Node | None, sql_dir: Path | None, problems: _Problems) -> Account | None:
    label = _label(index, entry)
    if not isinstance(entry, dict):
        problems.add(f"must be a mapping of fields (name: ..., leadsquared_conn_id: ...), got {entry!r}", entry=label)
        return None
    lines: dict[str, int] = {}
    before = len(problems.lines)

    def fail(field: str | None, message: str) -> None:
        problems.add(message, entry=label, line=lines.get(field or "", _line(node)))

    for given, line in _mapping_keys(node):
        if given in lines:
            problems.add(f"field {given!r} given twice (first on line {lines[given]})", entry=label, line=line)
        else:
            lines[given] = line
    known = set(REQUIRED_FIELDS) | set(OPTIONAL_FIELDS)
    for field in entry:
        if field not in known:
            fail(field, f"unknown field {field!r} ({_known(field, REQUIRED_FIELDS + OPTIONAL_FIELDS)})")
    for field in REQUIRED_FIELDS:
        if entry.get(field) is None:
            fail(field, f"missing required field {field!r}")

    def key(field: str) -> str | None:
        value = entry.get(field)
        if value is None:
            return None
        if not isinstance(value, str) or not _KEY.match(value) or len(value) > _KEY_MAX:
            fail(field, f"{field} must be letters, digits, '_', '.' or '-' (at most {_KEY_MAX}), got {value!r}")
            return None
        return value

    name = key("name")
    leadsquared_conn_id = key("leadsquared_conn_id")
    pool = key("pool")
    dag_id = key("dag_id")
    if dag_id is None and name is not None and entry.get("dag_id") is None:
        dag_id = DAG_ID_PREFIX + name
        if len(dag_id) > _KEY_MAX:
            fail("name", f"name is too long for the dag id {dag_id!r}: give a shorter name or a dag_id")
    warehouse_conn_id = key("warehouse_conn_id")

    candidate_query = entry.get("candidate_query", DEFAULT_QUERY)
    if not isinstance(candidate_query, str) or not _QUERY_FILE.match(candidate_query):
        fail("candidate_query", f"candidate_query must be a .sql file name in include/sql/, got {candidate_query!r}")
    elif sql_dir is not None and not (sql_dir / candidate_query).is_file():
        fail("candidate_query", f"candidate_query {candidate_query!r} is not a file in {sql_dir}")

    timezone = entry.get("timezone")
    if timezone is not None:
        try:
            if not isinstance(timezone, str):
                raise ValueError
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            fail("timezone", f"timezone must be an IANA time zone such as 'Asia/Kolkata', got {timezone!r}")
            timezone = None

    schedule = entry.get("schedule")
    if schedule is not None:
        problem = _schedule_problem(schedule, timezone or "UTC")
        if problem:
            fail("schedule", problem)

    categories = None
    if "categories" in entry:
        categories, problem = _categories(entry["categories"])
        if problem:
            fail("categories", problem)

    pool_slots = entry.get("pool_slots", DEFAULT_POOL_SLOTS)
    if isinstance(pool_slots, bool) or not isinstance(pool_slots, int) or pool_slots < 1:
        fail("pool_slots", f"pool_slots must be a whole number of at least 1, got {pool_slots!r}")

    approvers, problem = _approvers(entry.get("approvers"))
    if problem:
        fail("approvers", problem)
    four_eyes = entry.get("four_eyes", False)
    if not isinstance(four_eyes, bool):
        fail("four_eyes", f"four_eyes must be true or false, got {four_eyes!r}")

    if len(problems.lines) > before:
        return None
    assert name and leadsquared_conn_id and pool and dag_id  # checked above
    return Account(
        name=name,
        leadsquared_conn_id=leadsquared_conn_id,
        pool=pool,
        dag_id=dag_id,
        warehouse_conn_id=warehouse_conn_id,
        candidate_query=candidate_query,
        timezone=timezone,
        schedule=schedule,
        categories=categories,
        pool_slots=pool_slots,
        approvers=approvers,
        four_eyes=four_eyes,
    )


def _approvers(value: Any) -> tuple[tuple[Approver, ...], str | None]:
    """The users who may approve: user names, or ``{id: ..., name: ...}`` where the id differs (FAB)."""
    if value is None:
        return (), None
    if not isinstance(value, list) or not value:
        return (), f"approvers must be a non-empty list of user names, got {value!r}"
    found = []
    for item in value:
        if isinstance(item, str) and item.strip():
            found.append(Approver(item.strip(), item.strip()))
        elif isinstance(item, dict) and set(item) == {"id", "name"} and all(str(v).strip() for v in item.values()):
            found.append(Approver(str(item["id"]).strip(), str(item["name"]).strip()))
        else:
            return (), f"approvers: each must be a user name or {{id: ..., name: ...}}, got {item!r}"
    return tuple(found), None


def _schedule_problem(schedule: Any, timezone: str) -> str | None:
    """Why ``schedule`` is no cron expression Airflow's ``CronDataIntervalTimetable`` takes, or ``None``."""
    from airflow.sdk import CronDataIntervalTimetable
    from airflow.sdk.exceptions import AirflowTimetableInvalid

    if not isinstance(schedule, str) or not schedule.strip():
        return f"schedule must be a cron expression such as '0 0 * * *', got {schedule!r}"
    try:
        CronDataIntervalTimetable(schedule, timezone=timezone).validate()
    except (AirflowTimetableInvalid, ValueError) as error:
        return f"schedule {schedule!r} is not a valid cron expression: {error}"
    return None


def _categories(value: Any) -> tuple[Categories | None, str | None]:
    """The categories, validated by the rules of a reset scope; keys left out choose nothing of their kind."""
    from leadsquared_provider.exceptions import InvalidResetRequest
    from leadsquared_provider.rules.request import ResetScope

    if not isinstance(value, dict):
        return None, f"categories must be a mapping of {', '.join(CATEGORY_KEYS)}, got {value!r}"
    unknown = [key for key in value if key not in CATEGORY_KEYS]
    if unknown:
        return None, f"categories: unknown key {unknown[0]!r} ({_known(unknown[0], CATEGORY_KEYS)})"
    lists: dict[str, Any] = {}
    for key in CATEGORY_KEYS[:3]:
        items = value.get(key) or []
        if not isinstance(items, list):
            return None, f"categories: {key} must be a list, got {items!r}"
        lists[key] = tuple(items)
    delete_notes = value.get("delete_notes", False)
    try:
        scope = ResetScope(**lists, delete_notes=delete_notes, allow_all_time=True)
    except InvalidResetRequest as error:
        return None, f"categories: {error}"
    return Categories(
        activity_event_codes=scope.activity_event_codes,
        task_type_ids=scope.task_type_ids,
        audit_types=scope.audit_types,
        delete_notes=scope.delete_notes,
    ), None


def _check_unique(
    found: list[tuple[int, Account]], entries: Sequence[Any], nodes: Sequence[yaml.Node], problems: _Problems
) -> list[Account]:
    """Names and dag ids are unique; accounts sharing a pool agree on its slots (stated once is enough)."""
    seen: dict[tuple[str, str], int] = {}
    slots: dict[str, tuple[int, int]] = {}  # pool -> (slots, where stated first)
    for position, account in found:
        label = _label(position, entries[position])
        line = _line(nodes[position]) if position < len(nodes) else None
        for field in ("name", "dag_id"):
            value = getattr(account, field)
            if (field, value) in seen:
                first = seen[(field, value)]
                problems.add(f"duplicate {field} {value!r} (first in accounts[{first}])", entry=label, line=line)
            else:
                seen[(field, value)] = position
        if "pool_slots" not in entries[position]:
            continue
        stated, where = slots.setdefault(account.pool, (account.pool_slots, position))
        if stated != account.pool_slots:
            problems.add(
                f"pool {account.pool!r} has pool_slots {account.pool_slots} here but {stated} in "
                f"accounts[{where}]: accounts sharing a pool share its slots",
                entry=label,
                line=_line(_child(nodes[position], "pool_slots")) if position < len(nodes) else line,
            )
    return [
        dataclasses.replace(account, pool_slots=slots[account.pool][0]) if account.pool in slots else account
        for _, account in found
    ]


# --- Command line: the set-up's pools ----------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m leadsquared_provider.accounts",
        description="Validate the LeadSquared accounts file and write its pools for `airflow pools import`.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    pools = sub.add_parser("pools", help="write the pools of every account (JSON)")
    pools.add_argument(
        "--project",
        default=".",
        help="the project folder (holds include/); the accounts file is "
        f"${ACCOUNTS_FILE_ENV} relative to it, or {DEFAULT_ACCOUNTS_FILE}",
    )
    pools.add_argument("--accounts-file", help="the accounts file, instead of the one --project implies")
    pools.add_argument("--output", "-o", required=True, help="the pools file to write")
    args = parser.parse_args(argv)
    path = Path(args.accounts_file) if args.accounts_file else accounts_file(Path(args.project))
    try:
        accounts = load_accounts(path)
    except AccountsFileError as error:
        print(error, file=sys.stderr)
        return 1
    written = write_pools_file(accounts, args.output)
    print(f"{written}: {len(pools_config(accounts))} pool(s) for {len(accounts)} account(s) from {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
