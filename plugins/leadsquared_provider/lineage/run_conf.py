"""The DAG run's conf as OpenLineage's events carry it: never a lead id.

The OpenLineage provider puts the run's conf in its Airflow run facets (``airflowDagRun`` on the DAG run's
events, sent by the scheduler; ``airflow`` on the tasks' events, sent by the task runner), and a manual run's
``lead_ids`` param is in the conf. Its ``OpenLineageRedactor`` should hide the value of every key Airflow's
secrets masker calls sensitive (``[core] sensitive_var_conn_names``), but it never reaches the conf: the facet
holds a ``DagRunInfo``, a dict whose fields are also copied onto its attributes; the redactor rewrites the
attributes, and the event is serialized from the dict's items (apache-airflow-providers-openlineage 2.20.3).

So the conf is redacted when ``DagRunInfo`` is built: ``lead_ids`` always, and every key the secrets masker
calls sensitive. :func:`hide_lead_ids_from_openlineage` installs that in its process; the provider's plugin
calls it on load, and every process that sends events loads the plugins before its first event.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from leadsquared_provider.rules.params import LEAD_IDS

REDACTED = "***"
HIDDEN_KEYS = frozenset({LEAD_IDS.name})


def redacted_conf(conf: object) -> Any:
    """``conf`` with the value of each of :data:`HIDDEN_KEYS`, and of each key the secrets masker calls
    sensitive, replaced by ``***``."""
    from airflow.sdk._shared.secrets_masker import redact

    if not isinstance(conf, Mapping):
        return redact(conf)
    return {key: REDACTED if key in HIDDEN_KEYS else redact(value, key) for key, value in conf.items()}


def _dag_run_conf(dag_run: object) -> Any:
    return redacted_conf(getattr(dag_run, "conf", None) or {})


def hide_lead_ids_from_openlineage() -> bool:
    """Make OpenLineage's ``DagRunInfo`` record the run's conf as :func:`redacted_conf` gives it, in this
    process (once). False when the OpenLineage provider is not installed: no event, nothing to hide.

    ``DagRunInfo`` computes its ``casts`` before its ``includes``, and an included field already cast is not
    read again: a ``conf`` cast replaces the raw conf.
    """
    try:
        from airflow.providers.openlineage.utils.utils import DagRunInfo
    except ImportError:
        return False
    if DagRunInfo.casts.get("conf") is not _dag_run_conf:
        DagRunInfo.casts = {**DagRunInfo.casts, "conf": _dag_run_conf}
    return True
