"""A manual run's lead ids never reach OpenLineage's Airflow run facets (DagRunInfo holds the run's conf)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

LEADS = ["lead-aaaa-1111", "lead-bbbb-2222"]


def facet_json(conf: dict[str, object]) -> str:
    """The ``airflowDagRun`` facet of a run of ``conf`` as the adapter sends it: redacted, then serialized."""
    from airflow.providers.openlineage.plugins.facets import AirflowDagRunFacet
    from airflow.providers.openlineage.utils.utils import DagRunInfo, OpenLineageRedactor
    from airflow.sdk._shared.secrets_masker import _secrets_masker
    from openlineage.client.serde import Serde

    dag_run = SimpleNamespace(conf=conf, dag_id="leadsquared_reset", run_id="manual__1")
    facet = AirflowDagRunFacet(dag={"dag_id": "leadsquared_reset"}, dagRun=DagRunInfo(dag_run))
    redacted = OpenLineageRedactor.from_masker(_secrets_masker()).redact(facet, max_depth=20)
    return json.dumps(Serde.to_dict(redacted))


@pytest.fixture
def upstream_dag_run_info(monkeypatch):
    """DagRunInfo as the OpenLineage provider ships it, restored after the test."""
    from airflow.providers.openlineage.utils.utils import DagRunInfo

    monkeypatch.setattr(DagRunInfo, "casts", {k: v for k, v in DagRunInfo.casts.items() if k != "conf"})
    return DagRunInfo


def test_the_openlineage_redactor_alone_lets_a_sensitive_conf_key_through(upstream_dag_run_info, monkeypatch):
    """Why the provider redacts the conf itself: a key the secrets masker calls sensitive is not hidden."""
    from airflow.sdk._shared.secrets_masker import _secrets_masker

    monkeypatch.setattr(_secrets_masker(), "sensitive_variables_fields", ["lead_ids"])
    assert _secrets_masker().should_hide_value_for_key("lead_ids")
    assert LEADS[0] in facet_json({"lead_ids": LEADS})


def test_the_plugin_hides_the_lead_ids_and_keeps_the_other_params(upstream_dag_run_info):
    from leadsquared_provider.ui.plugin import LeadSquaredResetsPlugin

    LeadSquaredResetsPlugin.on_load()
    LeadSquaredResetsPlugin.on_load()  # once per process, twice is harmless
    text = facet_json({"lead_ids": LEADS, "dry_run": True, "from_date": "2026-11-22T00:00:00+05:30"})
    assert not any(lead in text for lead in LEADS)
    conf = json.loads(text)["dagRun"]["conf"]
    assert conf == {"lead_ids": "***", "dry_run": True, "from_date": "2026-11-22T00:00:00+05:30"}


@pytest.mark.parametrize(
    ("conf", "expected"),
    [
        ({"lead_ids": LEADS}, {"lead_ids": "***"}),
        ({"batch_size": 4, "api_key": "k-12345678"}, {"batch_size": 4, "api_key": "***"}),
        ({"nested": {"password": "p-12345678", "n": 1}}, {"nested": {"password": "***", "n": 1}}),
        ({}, {}),
    ],
    ids=["lead-ids", "a-sensitive-key", "a-nested-sensitive-key", "empty"],
)
def test_the_conf_hides_lead_ids_and_the_keys_the_secrets_masker_calls_sensitive(conf, expected, monkeypatch):
    from airflow.sdk._shared.secrets_masker import DEFAULT_SENSITIVE_FIELDS, _secrets_masker

    from leadsquared_provider.lineage.run_conf import redacted_conf

    monkeypatch.setattr(_secrets_masker(), "sensitive_variables_fields", list(DEFAULT_SENSITIVE_FIELDS))
    assert redacted_conf(conf) == expected
