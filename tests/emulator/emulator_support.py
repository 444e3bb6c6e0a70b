"""Shared test data and helpers for the emulator tests (fixtures are in conftest.py)."""

from __future__ import annotations

from typing import Any

import requests

from lsq_emulator import Emulator, EmulatorConfig

LEAD_ID = "fea01c86-5617-44d6-8469-4dbc409ab8f8"
OTHER_LEAD_ID = "0b1d2c3e-0000-4000-8000-000000000002"
TASK_TYPE_A = "3c8c1a5b-8374-11e7-ab78-02de49b06427"
TASK_TYPE_B = "128acb87-542d-11e8-8455-020714094d7e"
RESET_PATH = "/v2/LeadManagement.svc/Lead.Reset"
ADMIN_HEADERS = {"x-LSQ-AccessKey": "u$demo-access", "x-LSQ-SecretKey": "demo-secret"}
VIEWER_HEADERS = {"x-LSQ-AccessKey": "u$viewer-access", "x-LSQ-SecretKey": "viewer-secret"}
TIMEOUT = 5.0


def make_lead(lead_id: str = LEAD_ID) -> dict[str, Any]:
    """A lead created 2020-10-01 with records before, at both edges of, inside and after the seed's window."""
    return {
        "ProspectId": lead_id,
        "CreatedOn": "2020-10-01 00:00:00",
        "FirstName": "Asha",
        "activities": [
            {"Id": "a-before", "ActivityEvent": 166, "CreatedOn": "2020-10-14 18:29:59"},
            {"Id": "a-from", "ActivityEvent": 166, "CreatedOn": "2020-10-14 18:30:00"},
            {"Id": "a-inside-167", "ActivityEvent": 167, "CreatedOn": "2020-10-15 12:00:00"},
            {"Id": "a-inside-200", "ActivityEvent": 200, "CreatedOn": "2020-10-15 12:00:00"},
            {"Id": "a-to", "ActivityEvent": 166, "CreatedOn": "2020-10-16 18:29:59"},
            {"Id": "a-after", "ActivityEvent": 166, "CreatedOn": "2020-10-16 18:30:00"},
        ],
        "audits": [
            {"Id": "s-inside", "Type": "StageChange", "CreatedOn": "2020-10-15 10:00:00"},
            {"Id": "o-inside", "Type": "OwnerChange", "CreatedOn": "2020-10-15 11:00:00"},
            {"Id": "s-after", "Type": "StageChange", "CreatedOn": "2020-11-01 00:00:00"},
        ],
        "tasks": [
            {"Id": "t-a-inside", "TaskTypeId": TASK_TYPE_A, "CreatedOn": "2020-10-15 09:00:00"},
            {"Id": "t-b-inside", "TaskTypeId": TASK_TYPE_B, "CreatedOn": "2020-10-15 09:00:00"},
            {"Id": "t-a-before", "TaskTypeId": TASK_TYPE_A, "CreatedOn": "2020-10-02 09:00:00"},
        ],
        "notes": [
            {"Id": "n-inside", "CreatedOn": "2020-10-15 08:00:00"},
            {"Id": "n-after", "CreatedOn": "2021-01-01 00:00:00"},
        ],
    }


def ids(lead: dict[str, Any], kind: str) -> set[str]:
    """The record ids of one kind on a lead."""
    return {record["Id"] for record in lead[kind]}


def config(**changes: Any) -> EmulatorConfig:
    """Default settings with a limit high enough not to matter, unless the test sets one."""
    changes.setdefault("rate_limit", 10_000)
    return EmulatorConfig(**changes)


def post_reset(emu: Emulator, body: Any, *, headers: dict[str, str] | None = None, **kwargs: Any):
    """POST a Lead.Reset body as JSON with the admin's header keys."""
    return requests.post(
        f"{emu.base_url}{RESET_PATH}",
        json=body,
        headers=ADMIN_HEADERS if headers is None else headers,
        timeout=kwargs.pop("timeout", TIMEOUT),
        **kwargs,
    )
