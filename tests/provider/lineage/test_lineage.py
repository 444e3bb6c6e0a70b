"""OpenLineage: the candidate query's tables in the warehouse's namespace, the account's leads, our facet."""

from __future__ import annotations

import json

import pytest

from leadsquared_provider.rules.run_signals import RunSignals
from tests.provider.rules.test_run_signals import SUMMARY

QUERY = """SELECT prospect_id FROM analytics.lsq_reset_requests
WHERE requested_at >= '2026-11-21 18:30:00' AND requested_at < '2026-11-22 18:30:00'"""


def test_the_query_reads_its_tables_in_the_connections_namespace(monkeypatch):
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    from leadsquared_provider.lineage.datasets import query_lineage

    # PostgreSQL names its default schema by a query (SELECT CURRENT_SCHEMA): none here, the e2e test sends it.
    monkeypatch.setattr(PostgresHook, "get_openlineage_default_schema", lambda self: "public")
    monkeypatch.setenv(
        "AIRFLOW_CONN_WAREHOUSE_PG",
        json.dumps({"conn_type": "postgres", "host": "wh.example", "port": 5433, "schema": "dwh", "login": "r"}),
    )
    lineage = query_lineage("warehouse_pg", QUERY)
    assert [(d.namespace, d.name) for d in lineage.inputs] == [
        ("postgres://wh.example:5433", "dwh.analytics.lsq_reset_requests")
    ]
    assert lineage.outputs == []
    assert "lsq_reset_requests" in lineage.job_facets["sql"].query


def test_a_hook_without_database_info_gives_no_input(monkeypatch, tmp_path):
    from leadsquared_provider.lineage.datasets import query_lineage

    monkeypatch.setenv(
        "AIRFLOW_CONN_WAREHOUSE_LITE", json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "w.db")})
    )
    assert query_lineage("warehouse_lite", QUERY).inputs == []


def test_the_output_is_the_accounts_leads_with_the_queued_count():
    from leadsquared_provider.lineage.datasets import leads_output

    output = leads_output("api-in21.leadsquared.com", RunSignals.from_summary("d", SUMMARY))
    assert (output.namespace, output.name) == ("leadsquared://api-in21.leadsquared.com", "leads")
    assert output.outputFacets["outputStatistics"].rowCount == 7


def test_our_facet_follows_its_schema_and_holds_no_lead_id():
    import jsonschema
    from openlineage.client.serde import Serde
    from referencing import Registry, Resource

    from leadsquared_provider.lineage.facets import SCHEMA_FILE, SCHEMA_URL, LeadSquaredResetRunFacet

    facet = Serde.to_dict(LeadSquaredResetRunFacet.of(RunSignals.from_summary("d", SUMMARY)))
    schema = json.loads(SCHEMA_FILE.read_text())
    assert schema["$id"] == SCHEMA_URL.split("#")[0]
    stand_in = {"$defs": {"RunFacet": {"type": "object", "required": ["_producer", "_schemaURL"]}}}
    registry = Registry().with_resource(
        "https://openlineage.io/spec/2-0-2/OpenLineage.json",
        Resource.from_contents({"$schema": schema["$schema"], **stand_in}),
    )
    jsonschema.Draft202012Validator(schema, registry=registry).validate({"leadsquaredReset": facet})
    assert facet["_schemaURL"] == SCHEMA_URL
    assert facet["counts"] == {"queued": 7, "rejected": 2, "failed": 1}
    assert "0f0f0f0f" not in json.dumps(facet)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema, registry=registry).validate(
            {"leadsquaredReset": {**facet, "failed": -1}}
        )
