"""RunReportNotifier: an alert with the run's summary and a link to it, needing no external service."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from airflow.sdk import BaseNotifier


class RunReportNotifier(BaseNotifier):
    """
    Append one JSON line per failed run (reason, summary, link to the run) to a file and log it.

    Use it as ``on_failure_callback`` of the report task, which fails on credentials, failures over the
    threshold and tripped guards alike. Slack or e-mail go beside it in the same list, e.g.
    ``SlackNotifier`` (apache-airflow-providers-slack) or ``SmtpNotifier`` (apache-airflow-providers-smtp).

    :param path: file of alerts (templated); by default ``leadsquared_alerts.jsonl`` in the log folder.
    :param warehouse_conn_id: where the run's summary is read from.
    """

    template_fields: Sequence[str] = ("path",)

    def __init__(
        self,
        *,
        path: str | None = None,
        warehouse_conn_id: str = "warehouse_default",
    ) -> None:
        super().__init__()
        self.path = path
        self.warehouse_conn_id = warehouse_conn_id

    def _summary(self, dag_id: str, run_id: str) -> dict[str, Any] | None:
        from leadsquared_provider.ledger import ResetLedger, run_key
        from leadsquared_provider.run_tasks import build_summary

        ledger = ResetLedger(self.warehouse_conn_id)
        try:
            return build_summary(ledger, run_key(dag_id, run_id))
        except LookupError:
            return None  # the plan never ran to the end: nothing was staged or sent
        finally:
            ledger.close()

    def notify(self, context: Any) -> None:
        from airflow.sdk import conf

        dag_run = context["dag_run"]
        base_url = conf.get("api", "base_url", fallback="http://localhost:8080").rstrip("/")
        alert = {
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "dag_id": dag_run.dag_id,
            "run_id": dag_run.run_id,
            "task_id": context["ti"].task_id,
            "reason": str(context.get("exception") or "failed"),
            "link": f"{base_url}/dags/{dag_run.dag_id}/runs/{dag_run.run_id}",
            "summary": self._summary(dag_run.dag_id, dag_run.run_id),
        }
        path = Path(self.path or Path(conf.get("logging", "base_log_folder")) / "leadsquared_alerts.jsonl")
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as out:
            out.write(json.dumps(alert, default=str) + "\n")
        self.log.error(
            "LeadSquared reset run failed: %s - %s (alert written to %s)", alert["reason"], alert["link"], path
        )
