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
    Append one JSON line per alert (level, reason, summary, link to the run) to a file and log it.

    Use it as ``on_failure_callback`` of the report task, which fails on credentials, failures over the
    threshold and tripped guards alike. With ``notice_on_deferred`` it is an ``on_success_callback`` instead:
    a run that ended well but deferred leads to the next run (the account's daily quota was spent) gives a
    ``notice``, logged as a warning, and nothing at all otherwise. Slack or e-mail go beside it in the same
    list, e.g. ``SlackNotifier`` (apache-airflow-providers-slack) or ``SmtpNotifier`` (apache-airflow-providers-smtp).

    The alert is written even when the summary cannot be built (state store down): it then says why.

    :param path: file of alerts (templated); by default ``leadsquared_alerts.jsonl`` in the log folder.
    :param state_conn_id: the state store the run's summary is read from.
    :param notice_on_deferred: alert (as a notice) only when the run deferred leads.
    """

    template_fields: Sequence[str] = ("path",)

    def __init__(
        self,
        *,
        path: str | None = None,
        state_conn_id: str = "leadsquared_state",
        notice_on_deferred: bool = False,
    ) -> None:
        super().__init__()
        self.path = path
        self.state_conn_id = state_conn_id
        self.notice_on_deferred = notice_on_deferred

    def _summary(self, dag_id: str, run_id: str) -> tuple[dict[str, Any] | None, str | None]:
        """The run's summary, or None and why not."""
        from leadsquared_provider.rules.outcomes import redacted
        from leadsquared_provider.steps.report import build_summary
        from leadsquared_provider.store import StateStore, run_key

        try:
            with StateStore(self.state_conn_id) as store:
                return build_summary(store, run_key(dag_id, run_id)), None
        except LookupError:
            return None, "the plan never ran to the end: nothing was staged or sent"
        except Exception as exc:  # the alert must go out whatever broke
            return None, redacted(f"summary unavailable: {type(exc).__name__}: {exc}", 500)

    def notify(self, context: Any) -> None:
        from airflow.sdk import conf

        from leadsquared_provider.rules.outcomes import redacted

        dag_run = context["dag_run"]
        summary, why_not = self._summary(dag_run.dag_id, dag_run.run_id)
        if self.notice_on_deferred:
            deferred = (summary or {}).get("deferred")
            if not deferred:
                return
            reason = (
                f"{deferred} lead(s) deferred to the next run: the account's daily quota (this connection's share "
                "of it) is spent; nothing failed"
            )
        else:
            reason = redacted(context.get("exception") or "failed", 2000)
        base_url = conf.get("api", "base_url", fallback="http://localhost:8080").rstrip("/")
        alert = {
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "level": "notice" if self.notice_on_deferred else "failure",
            "dag_id": dag_run.dag_id,
            "run_id": dag_run.run_id,
            "task_id": context["ti"].task_id,
            "reason": reason,
            "link": f"{base_url}/dags/{dag_run.dag_id}/runs/{dag_run.run_id}",
            "summary": summary,
        }
        if why_not:
            alert["summary_missing"] = why_not
        path = Path(self.path or Path(conf.get("logging", "base_log_folder")) / "leadsquared_alerts.jsonl")
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as out:
            out.write(json.dumps(alert, default=str) + "\n")
        if self.notice_on_deferred:
            self.log.warning("LeadSquared reset run: %s - %s (notice written to %s)", reason, alert["link"], path)
        else:
            self.log.error("LeadSquared reset run failed: %s - %s (alert written to %s)", reason, alert["link"], path)
