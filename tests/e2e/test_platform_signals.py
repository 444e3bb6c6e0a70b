"""What a run tells the data platform, under the real scheduler with real transports (issue 21).

- OpenLineage's file transport captures the run's events: the plan's input is the candidate table in the
  warehouse's namespace, the report's output the account's leads with the run's counts in our facet; every
  event is rebuilt with the openlineage-python client's classes, our facet checked against our JSON schema.
- Airflow's StatsD metrics go to a UDP listener of the test: names, tags and values match the run (the calls
  counted are the emulator's record).
- A DAG scheduled on the account's resets asset runs after the reset run and reads the counts from the extra.
- A dry run emits no output dataset and no asset event.
- No key and no lead id in any event or metric: a manual run of the ``lead_ids`` param has them in its conf,
  which the DAG run's events (sent by the scheduler) and the tasks' (sent by the task runner) carry.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from devstack import DAG_ID, PROJECT
from tests.conftest import ADMIN_ACCESS, ADMIN_SECRET
from tests.e2e.conftest import E2E, start_on_postgres
from tests.e2e.scenario import DAYS, INVALID_IDS, MISSING_LEAD, Scenario, iso_window

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

DOWNSTREAM = "leadsquared_resets_downstream"
OL_NAMESPACE = "e2e-signals"


class StatsdListener:
    """A UDP socket that keeps every StatsD line it receives."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.lines: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                continue
            self.lines.extend(data.decode().splitlines())

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()

    def ours(self) -> list[tuple[str, dict[str, str], float, str]]:
        """Our metrics as (name, tags, value, type), from InfluxDB-style lines ``name,k=v:value|type``."""
        found = []
        for line in list(self.lines):
            head, _, rest = line.partition(":")
            name, *tags = head.split(",")
            if not name.startswith("airflow.leadsquared."):
                continue
            value, _, kind = rest.partition("|")
            found.append((name.removeprefix("airflow."), dict(t.split("=", 1) for t in tags), float(value), kind))
        return found


@pytest.fixture(scope="module")
def signals_e2e(tmp_path_factory: pytest.TempPathFactory, postgres_server: Any) -> Iterator[tuple[E2E, Path, Any]]:
    tmp = tmp_path_factory.mktemp("e2e-signals")
    dags = tmp / "dags"
    dags.mkdir()
    (dags / "leadsquared_reset.py").symlink_to(PROJECT / "dags" / "leadsquared_reset.py")
    (dags / "resets_downstream.py").symlink_to(Path(__file__).parent / "dags" / "resets_downstream.py")
    events = tmp / "openlineage"
    events.mkdir()
    # The scheduler must create the downstream DAG's asset-triggered runs (the stacks of the other tests create
    # none), so the reset DAG gets a schedule that has no complete interval yet: no run of its own.
    accounts = tmp / "accounts.yaml"
    accounts.write_text(
        "accounts:\n  - name: default\n    dag_id: leadsquared_reset\n    leadsquared_conn_id: leadsquared_default\n"
        "    pool: leadsquared_api\n    pool_slots: 4\n    warehouse_conn_id: warehouse_default\n"
        '    schedule: "0 0 1 1 *"\n'
    )
    statsd = StatsdListener()
    env = {
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "True",
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": OL_NAMESPACE,
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(events / "event"), "append": False}
        ),
        "AIRFLOW__METRICS__STATSD_ON": "True",
        "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
        "AIRFLOW__METRICS__STATSD_PORT": str(statsd.port),
        "AIRFLOW__METRICS__STATSD_PREFIX": "airflow",
        "AIRFLOW__METRICS__STATSD_INFLUXDB_ENABLED": "True",
    }
    try:
        yield from (
            (e2e, events, statsd)
            for e2e in start_on_postgres(
                tmp, postgres_server, Scenario(), stack_env=env, wait_for=[DOWNSTREAM], accounts_file=accounts
            )
        )
    finally:
        statsd.close()


def read_events(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(path.read_text()) for path in sorted(folder.iterdir())]


def run_events(folder: Path, run_id: str) -> list[tuple[dict[str, Any], str]]:
    """Every OpenLineage event of one DAG run with its file's raw text: the DAG run's own (facet
    ``airflowDagRun``, sent by the scheduler) and its tasks' (facet ``airflow``, sent by the task runner)."""
    found = []
    for path in sorted(folder.iterdir()):
        text = path.read_text()
        event = json.loads(text)
        facets = event["run"]["facets"]
        dag_run = (facets.get("airflowDagRun") or facets.get("airflow") or {}).get("dagRun", {})
        if dag_run.get("run_id") == run_id:
            found.append((event, text))
    return found


def task_events(events: list[dict[str, Any]], run_id: str, task_id: str) -> list[dict[str, Any]]:
    """The OpenLineage events of one task of one DAG run (job name ``<dag_id>.<task_id>``)."""
    return [
        event
        for event in events
        if event["job"]["name"] == f"{DAG_ID}.{task_id}"
        and event["run"]["facets"].get("airflow", {}).get("dagRun", {}).get("run_id") == run_id
    ]


def rebuilt(event: dict[str, Any]) -> Any:
    """The event rebuilt with the client's own classes: their validators check the run id (a UUID), the
    time, the event type and the URLs; serialized again, it must say what was written."""
    from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
    from openlineage.client.serde import Serde

    built = RunEvent(
        eventType=RunState(event["eventType"]),
        eventTime=event["eventTime"],
        run=Run(runId=event["run"]["runId"]),
        job=Job(namespace=event["job"]["namespace"], name=event["job"]["name"]),
        producer=event["producer"],
        inputs=[InputDataset(namespace=d["namespace"], name=d["name"]) for d in event.get("inputs", [])],
        outputs=[OutputDataset(namespace=d["namespace"], name=d["name"]) for d in event.get("outputs", [])],
    )
    again = Serde.to_dict(built)
    assert again["schemaURL"] == event["schemaURL"]
    for key in ("eventType", "eventTime", "producer"):
        assert again[key] == event[key]
    assert again["run"]["runId"] == event["run"]["runId"]
    assert {k: again["job"][k] for k in ("namespace", "name")} == {k: event["job"][k] for k in ("namespace", "name")}
    return built


def check_our_facet(facet: dict[str, Any]) -> None:
    """Our facet against our schema file; the OpenLineage spec's RunFacet (not bundled with the client) is
    stood in for by its required fields."""
    import jsonschema
    from referencing import Registry, Resource

    from leadsquared_provider.lineage.facets import SCHEMA_FILE, SCHEMA_URL

    schema = json.loads(SCHEMA_FILE.read_text())
    run_facet = {
        "type": "object",
        "properties": {"_producer": {"type": "string"}, "_schemaURL": {"type": "string"}},
        "required": ["_producer", "_schemaURL"],
    }
    registry = Registry().with_resource(
        "https://openlineage.io/spec/2-0-2/OpenLineage.json",
        Resource.from_contents({"$schema": schema["$schema"], "$defs": {"RunFacet": run_facet}}),
    )
    jsonschema.Draft202012Validator(schema, registry=registry).validate({"leadsquaredReset": facet})
    assert facet["_schemaURL"] == SCHEMA_URL
    assert SCHEMA_URL.split("#")[0].endswith("/" + str(SCHEMA_FILE.relative_to(PROJECT)))


def wait_for_downstream(e2e: E2E, after: float, timeout: float = 180) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = e2e.stack.api("GET", f"/dags/{DOWNSTREAM}/dagRuns", params={"order_by": "-run_after"})["dag_runs"]
        done = [r for r in runs if r["state"] in ("success", "failed")]
        if done:
            return done
        time.sleep(2)
    return []


def test_a_run_emits_its_lineage_metrics_and_asset_event(signals_e2e):
    e2e, folder, statsd = signals_e2e
    e2e.emulator.clear_calls()
    frm, to = iso_window(DAYS[1])
    started = time.time()
    run_id = e2e.stack.trigger(
        {"from_date": frm, "to_date": to, "batch_size": 4, "verify_sample": 3}, run_id=f"signals__{time.time_ns()}"
    )
    assert e2e.stack.wait_for_run(run_id) == "success"
    time.sleep(2)  # UDP and the listeners' last events
    summary = e2e.stack.xcom(run_id, "report")
    counts = summary["counts"]
    queued = len(e2e.scenario.candidates(DAYS[1]))
    assert counts["queued"] == queued and counts["rejected"] == len(INVALID_IDS) + 1
    host = urlsplit(e2e.emulator.base_url).netloc

    # OpenLineage: every event is a valid RunEvent; the plan read the candidate table, the report wrote leads.
    events = read_events(folder)
    assert events, "no OpenLineage event was written"
    for event in events:
        rebuilt(event)
    [plan_done] = [e for e in task_events(events, run_id, "plan") if e["eventType"] == "COMPLETE"]
    warehouse = json.loads(e2e.stack.env["AIRFLOW_CONN_WAREHOUSE_DEFAULT"])
    assert [(d["namespace"], d["name"]) for d in plan_done["inputs"]] == [
        (f"postgres://{warehouse['host']}:{warehouse['port']}", f"{warehouse['schema']}.public.lsq_reset_requests")
    ]
    assert "lsq_reset_requests" in plan_done["job"]["facets"]["sql"]["query"]
    [report_done] = [e for e in task_events(events, run_id, "report") if e["eventType"] == "COMPLETE"]
    [output] = report_done["outputs"]
    assert (output["namespace"], output["name"]) == (f"leadsquared://{host}", "leads")
    assert output["outputFacets"]["outputStatistics"]["rowCount"] == queued
    facet = report_done["run"]["facets"]["leadsquaredReset"]
    check_our_facet(facet)
    assert facet["counts"] == counts and facet["dryRun"] is False
    assert facet["window"] == summary["window"] and facet["categories"]["ActivityEventList"] == [166, 167]
    assert facet["verification"]["sampled"] == 3 and facet["verification"]["verified"] == 3
    assert facet["rateLimitedAnswers"] == summary["rate_limited_answers"] == 0
    assert facet["failed"] == 0
    text = json.dumps(events)
    for secret in (ADMIN_ACCESS, ADMIN_SECRET, *e2e.scenario.candidates(DAYS[1]), MISSING_LEAD):
        assert secret not in text

    # StatsD: the calls counted are the emulator's record, by endpoint and answer; tagged by the DAG only.
    from leadsquared_provider.metrics import METRICS, endpoint_name

    ours = statsd.ours()
    names = {metric.name for metric in METRICS}
    assert {name for name, *_ in ours} <= names
    assert all(tags["dag_id"] == DAG_ID for _, tags, *_ in ours)
    assert not any(s in line for line in statsd.lines for s in (ADMIN_ACCESS, ADMIN_SECRET))
    calls: Counter[tuple[str, str]] = Counter()
    for name, tags, value, kind in ours:
        if name == "leadsquared.api.calls":
            assert kind == "c" and set(tags) == {"dag_id", "endpoint", "answer"}
            calls[tags["endpoint"], tags["answer"]] += int(value)
    record = Counter(endpoint_name(c["path"]) for c in e2e.emulator.calls())
    assert sum(calls.values()) == len(e2e.emulator.calls())
    by_endpoint: Counter[str] = Counter()
    for (endpoint, _), n in calls.items():
        by_endpoint[endpoint] += n
    assert by_endpoint == record
    assert calls["Lead.Reset", "queued"] == queued and calls["Lead.Reset", "rejected"] == 1
    assert calls["UserByAccessKey.Get", "queued"] == 1
    leads = {tags["outcome"]: value for name, tags, value, _ in ours if name == "leadsquared.leads"}
    assert leads == {k: float(v) for k, v in counts.items()}
    verification = {tags["result"]: value for name, tags, value, _ in ours if name == "leadsquared.verification"}
    assert verification["verified"] == 3
    waits = [value for name, _, value, kind in ours if name == "leadsquared.budget.wait"]
    assert len(waits) == len(e2e.emulator.calls()) and all(kind == "ms" for n, _, _, kind in ours if n.endswith("wait"))
    rates = [value for name, _, value, _ in ours if name == "leadsquared.budget.effective_rate"]
    assert rates and rates[-1] == summary["effective_rate_per_window"]

    # The asset event: a DAG scheduled on the account's resets asset ran and read the counts.
    [downstream] = wait_for_downstream(e2e, started)
    assert downstream["state"] == "success"
    extra = e2e.stack.xcom(downstream["dag_run_id"], "read_counts", dag_id=DOWNSTREAM)
    assert extra == {
        "window": summary["window"],
        "queued": queued,
        "rejected": len(INVALID_IDS) + 1,
        "failed": 0,
        "verified": 3,
        "still_present": 0,
    }
    asset_events = e2e.stack.api("GET", "/assets/events", params={"source_run_id": run_id})["asset_events"]
    assert [event["uri"] for event in asset_events] == [f"leadsquared://{host}/resets"]


def test_a_dry_run_emits_no_output_dataset_and_no_asset_event(signals_e2e):
    e2e, folder, _ = signals_e2e
    before = len(list(folder.iterdir()))
    downstream_before = e2e.stack.api("GET", f"/dags/{DOWNSTREAM}/dagRuns")["total_entries"]
    frm, to = iso_window(DAYS[0])
    run_id = e2e.stack.trigger(
        {"dry_run": True, "from_date": frm, "to_date": to}, run_id=f"signals_dry__{time.time_ns()}"
    )
    assert e2e.stack.wait_for_run(run_id) == "success"
    time.sleep(2)
    events = read_events(folder)
    assert len(events) > before
    report = [e for e in task_events(events, run_id, "report") if e["eventType"] == "COMPLETE"]
    assert report and all(not e.get("outputs") for e in report)
    assert "leadsquaredReset" not in report[0]["run"]["facets"]
    ran = [e for e in events if e["run"]["facets"].get("airflow", {}).get("dagRun", {}).get("run_id") == run_id]
    assert ran and not any(e.get("outputs") for e in ran)
    assert e2e.audit(run_id) and not any(lead in json.dumps(events) for lead in e2e.audit(run_id))
    assert e2e.stack.api("GET", "/assets/events", params={"source_run_id": run_id})["asset_events"] == []
    time.sleep(5)
    assert e2e.stack.api("GET", f"/dags/{DOWNSTREAM}/dagRuns")["total_entries"] == downstream_before


def test_a_manual_runs_lead_ids_reach_no_event(signals_e2e):
    e2e, folder, _ = signals_e2e
    leads = e2e.scenario.candidates(DAYS[2])[:3]
    frm, to = iso_window(DAYS[2])
    run_id = e2e.stack.trigger(
        {"lead_ids": leads, "dry_run": True, "from_date": frm, "to_date": to}, run_id=f"signals_ids__{time.time_ns()}"
    )
    assert e2e.stack.wait_for_run(run_id) == "success"
    time.sleep(2)  # the listeners' last events
    assert sorted(e2e.audit(run_id)) == sorted(leads)  # the run planned those very leads
    events = run_events(folder, run_id)
    by_job = Counter((event["job"]["name"], event["eventType"]) for event, _ in events)
    # The scheduler's events of the DAG run and the task runners' of its tasks, each with the run's conf.
    assert by_job[DAG_ID, "START"] == 1 and by_job[DAG_ID, "COMPLETE"] == 1
    assert by_job[f"{DAG_ID}.plan", "START"] == 1 and by_job[f"{DAG_ID}.report", "COMPLETE"] == 1
    for event, text in events:
        facet = event["run"]["facets"].get("airflowDagRun") or event["run"]["facets"]["airflow"]
        assert facet["dagRun"]["conf"]["lead_ids"] == "***" and facet["dagRun"]["conf"]["dry_run"] is True
        assert not [lead for lead in leads if lead in text], (event["job"]["name"], event["eventType"])
