"""A small client of the stack's REST API (``/api/v2``), logged in as the stack's admin."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import requests

from devstack.config import ADMIN_USER, DAG_ID, StackConfig, admin_password


class RestClient:
    """Airflow's public REST API with a JWT of the stack's admin."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self._token: str | None = None

    def token(self) -> str:
        if self._token is None:
            response = requests.post(
                f"{self.config.api_url}/auth/token",
                json={"username": ADMIN_USER, "password": admin_password(self.config.home)},
                timeout=30,
            )
            response.raise_for_status()
            self._token = response.json()["access_token"]
        return self._token

    def api(self, method: str, path: str, headers: Mapping[str, str] | None = None, **kwargs: Any) -> Any:
        response = requests.request(
            method,
            f"{self.config.api_url}/api/v2{path}",
            headers={"Authorization": f"Bearer {self.token()}", **(headers or {})},
            timeout=60,
            **kwargs,
        )
        if not response.ok:
            raise RuntimeError(f"{method} {path} -> {response.status_code}: {response.text[:500]}")
        return response.json() if response.content else None

    def trigger(self, conf: Mapping[str, Any], dag_id: str = DAG_ID, run_id: str | None = None) -> str:
        body: dict[str, Any] = {"conf": dict(conf), "logical_date": None}
        if run_id:
            body["dag_run_id"] = run_id
        return self.api("POST", f"/dags/{dag_id}/dagRuns", json=body)["dag_run_id"]

    def task_instances(self, run_id: str, dag_id: str = DAG_ID) -> list[dict[str, Any]]:
        return self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 1000})[
            "task_instances"
        ]

    def xcom(self, run_id: str, task_id: str, dag_id: str = DAG_ID) -> Any:
        entry = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value")
        return entry["value"]
