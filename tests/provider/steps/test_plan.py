"""Bad input at plan time: a clear message naming the input, and nothing sent or staged.

The plan runs here in-process with explicit arguments (the DAG's params and its candidate query), the
emulator over HTTP, a SQLite warehouse (only read) and an SQLite state store; the end-to-end tests run the
same code under the scheduler.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import UTC, datetime, timedelta

import pytest

from leadsquared_provider.exceptions import CandidateQueryError, LeadSquaredError, PlanError
from leadsquared_provider.rules.approval import PREVIEW_SAMPLE, ApprovalDecision, Decision, Reason
from leadsquared_provider.rules.params import RunParams
from leadsquared_provider.steps.plan import RunIdentity, measure_backfill, plan_run
from leadsquared_provider.store import StateStore
from lsq_emulator import EmulatorConfig, run_emulator
from tests.conftest import VIEWER_ACCESS, VIEWER_SECRET, lsq_lead

LEADS = [lsq_lead(f"{n:08x}-0000-4000-8000-000000000000") for n in range(1, 4)]
IDS = [lead["ProspectId"] for lead in LEADS]
WINDOW = {"from_date": "2026-11-01T00:00:00+05:30", "to_date": "2026-11-01T23:59:59+05:30"}


@pytest.fixture(scope="module")
def dag():
    from airflow.dag_processing.dagbag import DagBag

    from tests.dags.test_dag_integrity import DAGS

    return DagBag(dag_folder=str(DAGS)).dags["leadsquared_reset"]


@pytest.fixture
def served():
    with run_emulator(EmulatorConfig(rate_limit=1000, rate_window_seconds=1.0), leads=LEADS) as emu:
        yield emu


def call_plan(
    dag,
    params: dict,
    run_id: str,
    *,
    warehouse: str,
    lsq: str,
    state: str,
    run_type: str = "manual",
    query_name: str | None = None,
    interval: tuple[datetime, datetime] | None = None,
    count_runs=None,
) -> list[int]:
    """The plan task's body with the DAG's params (overridden by ``params``) and its candidate query."""
    merged = {name: param.value for name, param in dag.params.items()}
    merged.update(params)
    template = dag.get_template_env().get_template("candidates.sql")
    return plan_run(
        RunIdentity(dag.dag_id, run_id, run_type, *(interval or (None, None))),
        RunParams.from_params(merged),
        render_query=lambda start, end: template.render(window_start=start, window_end=end),
        warehouse_conn_id=warehouse,
        leadsquared_conn_id=lsq,
        state_conn_id=state,
        query_name=query_name,
        count_runs=count_runs,
    )


@pytest.fixture
def plan(dag, served, lsq_connection, sqlite_warehouse, state_conn):
    """plan(params overrides, conn overrides) -> batches; the warehouse holds rows on 2026-11-01 (IST)."""
    conn_id, path = sqlite_warehouse
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("CREATE TABLE lsq_reset_requests (prospect_id TEXT, requested_at TEXT)")
        db.executemany("INSERT INTO lsq_reset_requests VALUES (?, '2026-11-01 06:00:00')", [(i,) for i in IDS])

    def run(
        params: dict,
        run_id: str = "manual__1",
        run_type: str = "manual",
        interval: tuple[datetime, datetime] | None = None,
        count_runs=None,
        **conn: object,
    ) -> list[int]:
        lsq = lsq_connection(served.base_url, **conn)
        return call_plan(
            dag,
            params,
            run_id,
            warehouse=conn_id,
            lsq=lsq,
            state=state_conn,
            run_type=run_type,
            interval=interval,
            count_runs=count_runs,
        )

    run.warehouse = conn_id  # type: ignore[attr-defined]
    run.path = path  # type: ignore[attr-defined]
    run.state = state_conn  # type: ignore[attr-defined]
    return run


def staged(plan, run_id: str = "manual__1") -> int:
    with StateStore(plan.state) as store:
        return len(store.candidate_slice(f"leadsquared_reset/{run_id}", 1, 10**9))


def warehouse_tables(path) -> set[str]:
    with closing(sqlite3.connect(path)) as db:
        return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


REFUSED = [
    ({"activity_event_codes": ["abc"]}, "activity event code 'abc' is not an integer"),
    ({"activity_event_codes": [1.5]}, "activity event code 1.5 is not an integer"),
    ({"activity_event_codes": [-3]}, "activity event code -3 must be a positive integer"),
    ({"activity_event_codes": [True]}, "activity event code True is not an integer"),
    ({"audit_types": ["Deleted"]}, "audit type 'Deleted' is unknown"),
    ({"task_type_ids": ["xyz"]}, "task type id 'xyz' is not a GUID"),
    ({"activity_event_codes": [], "audit_types": [], "task_type_ids": []}, "no category chosen"),
    ({"activity_event_codes": "166"}, "activity_event_codes must be a list"),
    ({"delete_notes": "yes"}, "delete_notes must be true or false"),
    ({"from_date": "2026-11-02T00:00:00+05:30", "to_date": "2026-11-01T00:00:00+05:30"}, "is after to_date"),
    ({"from_date": "2026-13-45T00:00:00+05:30", "to_date": "2026-11-01T00:00:00+05:30"}, "from_date '2026-13-45"),
    ({"from_date": "yesterday", "to_date": "2026-11-01T00:00:00+05:30"}, "from_date 'yesterday' is not an ISO-8601"),
    ({"from_date": "2026-11-01T00:00:00", "to_date": "2026-11-01T23:00:00+05:30"}, "has no timezone"),
    ({"from_date": 20261101, "to_date": "2026-11-01T23:00:00+05:30"}, "from_date 20261101 is a int"),
    ({"from_date": "2026-11-01T00:00:00+05:30"}, "give both from_date and to_date"),
    ({}, "set allow_all_time=true"),
    ({**WINDOW, "max_leads_per_run": 2}, "3 candidate leads exceed max_leads_per_run=2"),
    ({**WINDOW, "batch_size": 0}, "batch_size must be at least 1"),
    ({**WINDOW, "max_in_flight": 4.5}, "param max_in_flight must be a whole number, got 4.5; nothing was sent"),
    ({**WINDOW, "max_in_flight": 33}, "param max_in_flight must be at most 32, got 33; nothing was sent"),
    ({**WINDOW, "max_in_flight": "four"}, "param max_in_flight must be a whole number, got 'four'"),
]


@pytest.mark.parametrize(("params", "message"), REFUSED, ids=[m.split(":")[0][:40] for _, m in REFUSED])
def test_refused_params_name_the_input_and_send_nothing(plan, served, params, message):
    with pytest.raises(PlanError, match=message.replace("(", r"\(").replace(")", r"\)")) as refused:
        plan(params)
    assert (
        "nothing was sent" in str(refused.value) or "exceed" in str(refused.value) or "batch_size" in str(refused.value)
    )
    assert [c for c in served.calls() if c["path"].endswith("Lead.Reset")] == []
    assert staged(plan) == 0


@pytest.mark.parametrize(
    ("conn", "message"),
    [
        pytest.param({"login": "u$nobody", "password": "nope"}, "refused, no lead was sent", id="wrong-keys"),
        pytest.param({"login": VIEWER_ACCESS, "password": VIEWER_SECRET}, "needs an administrator", id="non-admin"),
        pytest.param({"password": None}, "secret key as password", id="missing-secret"),
    ],
)
def test_refused_credentials_stop_the_run_after_one_call(plan, served, conn, message):
    with pytest.raises(PlanError, match=message):
        plan(WINDOW, **conn)
    assert len(served.calls()) <= 1
    assert [c for c in served.calls() if c["path"].endswith("Lead.Reset")] == []
    assert staged(plan) == 0


def test_wrong_host_or_region_is_refused(plan, served, lsq_connection, dag, sqlite_warehouse):
    conn_id = lsq_connection(served.base_url + "/v3", conn_id="wrong_host")
    with pytest.raises(PlanError, match="404"):
        call_plan(dag, WINDOW, "manual__2", warehouse=sqlite_warehouse[0], lsq=conn_id, state=plan.state)
    assert [c["status"] for c in served.calls()] == [404]


def test_non_json_answer_is_transient_not_a_verdict(plan, served):
    served.configure(fault_non_json_200_rate=1.0)
    with pytest.raises(LeadSquaredError, match="is not a success") as failed:
        plan(WINDOW, max_retries=1)
    assert not isinstance(failed.value, PlanError)  # retried by Airflow, not refused for good
    assert staged(plan) == 0


def test_failing_candidate_query_names_the_query_and_is_not_retried(plan, served):
    with closing(sqlite3.connect(plan.path)) as db, db:
        db.execute("DROP TABLE lsq_reset_requests")
    with pytest.raises(PlanError, match=r"include/sql/candidates.sql.*no such table") as refused:
        plan(WINDOW)
    assert isinstance(refused.value.__context__, CandidateQueryError) or "candidates.sql" in str(refused.value)
    assert [c for c in served.calls() if c["path"].endswith("Lead.Reset")] == []


def test_a_failing_query_of_an_accounts_own_file_names_that_file(
    dag, served, lsq_connection, sqlite_warehouse, state_conn
):
    # The accounts file gave this account its own query (candidate_query: emea.sql): messages name it.
    conn_id, _ = sqlite_warehouse  # empty: the query's table does not exist
    lsq = lsq_connection(served.base_url)
    with pytest.raises(PlanError, match=r"candidate query include/sql/emea\.sql failed") as refused:
        call_plan(
            dag, WINDOW, "manual__emea", warehouse=conn_id, lsq=lsq, state=state_conn, query_name="include/sql/emea.sql"
        )
    assert "candidates.sql" not in str(refused.value)


def test_empty_candidate_set_is_a_success_with_no_batches(plan, served):
    assert plan({"from_date": "2025-01-01T00:00:00+00:00", "to_date": "2025-01-01T23:59:59+00:00"}) == []
    with StateStore(plan.state) as store:
        assert store.load_run("leadsquared_reset/manual__1").candidates == 0
    assert warehouse_tables(plan.path) == {"lsq_reset_requests"}  # the warehouse is only read


def test_messy_lead_ids_are_cleaned_and_bad_ones_recorded_never_sent(plan, served):
    messy = [f"  {IDS[0].upper()} ", IDS[0], None, "", "x" * 300, "'; DROP TABLE leads; --", IDS[1], "1234"]
    batches = plan({**WINDOW, "lead_ids": messy})
    assert batches == [1]
    with StateStore(plan.state) as store:
        rows = {r["lead_id"]: r for r in store.iter_audit("leadsquared_reset/manual__1")}
        assert [lead for lead, _ in store.candidate_slice("leadsquared_reset/manual__1", 1, 2)] == [IDS[0], IDS[1]]
    assert {k for k, r in rows.items() if r["outcome"] == "rejected"} == {"x" * 200, "'; DROP TABLE leads; --", "1234"}
    assert all(r["exception_type"] == "InvalidLeadId" and r["sends"] == 0 for r in rows.values())
    assert "is not a LeadSquared GUID" in rows["1234"]["message"]


def test_a_whole_number_written_as_4_0_passes_the_plan_and_the_operator(plan, served, lsq_connection):
    """A REST trigger's JSON may say 4.0: the plan accepts it, and so does the operator, which reads the
    rendered text "4.0" (every batch used to fail on it)."""
    from types import SimpleNamespace

    from leadsquared_provider.operators.reset import LeadSquaredResetOperator
    from leadsquared_provider.rules.params import RunParams

    assert plan({**WINDOW, "max_in_flight": 4.0}) == [1]
    assert RunParams.from_params({"max_in_flight": 4.0}).max_in_flight == 4
    context = {"dag_run": SimpleNamespace(dag_id="leadsquared_reset", run_id="manual__1", run_type="manual")}
    lsq = lsq_connection(served.base_url)
    reset = LeadSquaredResetOperator(
        task_id="reset", batch="1", leadsquared_conn_id=lsq, state_conn_id=plan.state, max_in_flight="4.0"
    )
    assert reset.execute(context) == {"batch": 1, "leads": 3, "queued": 3}
    with pytest.raises(ValueError, match=r"max_in_flight must be a whole number, got '4\.5'"):
        LeadSquaredResetOperator(task_id="reset", batch="1", max_in_flight="4.5").execute(context)


def gate(plan, run_id: str):
    """The approval request the plan recorded for the run, and its decision."""
    with StateStore(plan.state) as store:
        return store.load_approval(f"leadsquared_reset/{run_id}")


def test_a_sudden_jump_in_candidates_waits_for_a_person_instead_of_failing(plan, served):
    plan({**WINDOW, "lead_ids": [IDS[0]]}, run_id="manual__small")
    assert gate(plan, "manual__small")[0].reasons == ()
    many = [f"{n:08x}-1111-4000-8000-000000000000" for n in range(150)]
    assert plan({**WINDOW, "lead_ids": many}, run_id="manual__big") == [1]  # staged, not refused
    request, decision = gate(plan, "manual__big")
    assert (request.reasons, request.leads, request.baseline, request.max_growth) == ((Reason.GROWTH,), 150, 1, 10)
    assert decision.decision is Decision.WAITING
    assert request.sample == tuple(many[:PREVIEW_SAMPLE])
    assert request.calls == 150 + 20  # the resets and the verification's reads
    assert request.calls_per_second == pytest.approx(25 / 5.05, rel=0.01)  # the connection's 25 per 5 s + margin
    assert request.day_left is None  # no daily quota on the connection
    plan({**WINDOW, "lead_ids": many, "max_growth_factor": 200}, run_id="manual__big")
    assert gate(plan, "manual__big")[0].reasons == ()  # re-planned: asks no more


@pytest.mark.parametrize(
    ("params", "reasons"),
    [
        pytest.param({"approval_threshold": 2}, (Reason.OVER_THRESHOLD,), id="over-threshold"),
        pytest.param({"approval_threshold": 3}, (), id="at-threshold"),
        pytest.param(
            {"from_date": "2026-10-01T00:00:00+05:30", "approval_max_window_days": 31},
            (Reason.LONG_WINDOW,),
            id="window-longer-than-max-days",
        ),
        pytest.param({"from_date": None, "to_date": None, "allow_all_time": True}, (Reason.ALL_TIME,), id="all-time"),
        pytest.param({"approval_threshold": 0, "dry_run": True}, (), id="dry-run-never-asks"),
    ],
)
def test_the_plan_records_why_a_run_needs_a_person(plan, served, params, reasons):
    plan({**WINDOW, **params})
    request, decision = gate(plan, "manual__1")
    assert request.reasons == reasons
    assert decision.decision is (Decision.WAITING if reasons else Decision.NOT_NEEDED)


def test_the_preview_can_read_the_activities_a_few_leads_would_lose(plan, served):
    plan({**WINDOW, "approval_threshold": 0, "approval_preview_activities": True})
    request, _ = gate(plan, "manual__1")
    assert [a.lead_id for a in request.activities] == IDS  # 3 leads (at most 5 are read)
    assert all(a.count == 0 and a.note == "" for a in request.activities)  # lsq_lead holds none in the window
    assert not [c for c in served.calls() if c["path"].endswith("Lead.Reset")]  # read only


def test_a_run_turned_down_at_the_gate_is_no_growth_baseline(plan, served):
    plan({**WINDOW, "lead_ids": [IDS[0]]}, run_id="manual__small")
    many = [f"{n:08x}-1111-4000-8000-000000000000" for n in range(150)]
    plan({**WINDOW, "lead_ids": many, "approval_threshold": 100}, run_id="manual__rejected")
    with StateStore(plan.state) as store:
        assert store.growth_baseline("leadsquared_reset", "x") == 1  # median_low of 1 and 150
        store.record_decision("leadsquared_reset/manual__rejected", ApprovalDecision(Decision.REJECTED, "bob"))
        assert store.growth_baseline("leadsquared_reset", "x") == 1
        store.record_decision("leadsquared_reset/manual__small", ApprovalDecision(Decision.REJECTED, "bob"))
        assert store.growth_baseline("leadsquared_reset", "x") is None


def test_the_growth_baseline_is_the_usual_scheduled_run_not_a_small_fix_or_an_empty_day(plan, served):
    """Scheduled runs are measured against the median of the last scheduled runs: a one-lead manual fix and
    an empty day do not make the next ordinary night look like a jump; a real jump is still refused."""
    nightly = [f"{n:08x}-2222-4000-8000-000000000000" for n in range(150)]
    empty_day = {"from_date": "2026-11-05T00:00:00+05:30", "to_date": "2026-11-05T23:59:59+05:30"}

    def scheduled(params: dict, run_id: str) -> list[int]:
        return plan(params, run_id=run_id, run_type="scheduled")

    assert scheduled({**WINDOW, "lead_ids": nightly}, "scheduled__1") == [1]
    assert plan({**WINDOW, "lead_ids": [IDS[0]]}, run_id="manual__fix") == [1]  # the baseline stays 150
    assert scheduled({**WINDOW, "lead_ids": nightly}, "scheduled__2") == [1]
    assert scheduled(empty_day, "scheduled__3") == []  # no row in the warehouse that day
    assert scheduled({**WINDOW, "lead_ids": nightly}, "scheduled__4") == [1]  # median of 150, 150, 0: 150
    assert plan({**WINDOW, "lead_ids": [IDS[1]]}, run_id="manual__fix2") == [1]
    assert scheduled({**WINDOW, "lead_ids": nightly}, "scheduled__5") == [1]

    jump = [f"{n:08x}-3333-4000-8000-000000000000" for n in range(1600)]
    scheduled({**WINDOW, "lead_ids": jump}, "scheduled__6")
    request, _ = gate(plan, "scheduled__6")
    assert (request.reasons, request.baseline) == ((Reason.OVER_THRESHOLD, Reason.GROWTH), 150)
    with StateStore(plan.state) as store:
        assert store.load_run("leadsquared_reset/scheduled__5").run_type == "scheduled"
        assert store.load_run("leadsquared_reset/manual__fix2").run_type == "manual"


def test_a_baseline_of_zero_is_no_baseline(plan, served):
    """Only empty days before: the first real day is not a jump from 0."""
    empty_day = {"from_date": "2026-11-05T00:00:00+05:30", "to_date": "2026-11-05T23:59:59+05:30"}
    assert plan(empty_day, run_id="scheduled__1", run_type="scheduled") == []
    nightly = [f"{n:08x}-2222-4000-8000-000000000000" for n in range(150)]
    assert plan({**WINDOW, "lead_ids": nightly}, run_id="scheduled__2", run_type="scheduled") == [1]


def plan_under(dag, executor: str, *, lsq: str, warehouse: str, state: str, dry_run: bool = False) -> list[int]:
    """The plan task's body for the WINDOW under ``executor`` (``[core] executor``)."""
    merged = {name: param.value for name, param in dag.params.items()} | WINDOW | {"dry_run": dry_run}
    template = dag.get_template_env().get_template("candidates.sql")
    return plan_run(
        RunIdentity(dag_id=dag.dag_id, run_id="manual__exec", run_type="manual"),
        RunParams.from_params(merged),
        render_query=lambda start, end: template.render(window_start=start, window_end=end),
        warehouse_conn_id=warehouse,
        leadsquared_conn_id=lsq,
        state_conn_id=state,
        executor=executor,
    )


def postgres_state(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """A state store every worker would reach: a fresh database on the throwaway PostgreSQL server."""
    server = request.getfixturevalue("postgres_server")
    monkeypatch.setenv("AIRFLOW_CONN_PG_STATE", server.airflow_conn_json(request.getfixturevalue("postgres_db")))
    return "pg_state"


@pytest.mark.parametrize(
    ("executor", "budget_url", "refused"),
    [
        pytest.param("CeleryExecutor", None, True, id="celery-default-budget", marks=pytest.mark.postgres),
        pytest.param(
            "CeleryExecutor", "sqlite:////tmp/b.sqlite", True, id="celery-sqlite-budget", marks=pytest.mark.postgres
        ),
        pytest.param("LocalExecutor,CeleryExecutor", None, True, id="hybrid", marks=pytest.mark.postgres),
        pytest.param(
            "CeleryExecutor", "redis", False, id="celery-redis-budget", marks=[pytest.mark.redis, pytest.mark.postgres]
        ),
        pytest.param("LocalExecutor", None, False, id="local-default-budget"),
    ],
)
def test_machine_local_budget_is_refused_under_a_distributed_executor(
    plan, served, dag, lsq_connection, sqlite_warehouse, executor, budget_url, refused, request, monkeypatch
):
    if budget_url == "redis":
        budget_url = request.getfixturevalue("redis_server").url(3)
    conn_id = lsq_connection(served.base_url, conn_id="budget_reach", rate_budget_url=budget_url)
    # Under CeleryExecutor the state store must be one every worker reaches too (the next test).
    state = plan.state if executor == "LocalExecutor" else postgres_state(request, monkeypatch)

    def go() -> list[int]:
        return plan_under(dag, executor, lsq=conn_id, warehouse=sqlite_warehouse[0], state=state)

    if refused:
        with pytest.raises(PlanError, match=r"rate_budget_url to a store every worker reaches \(redis://"):
            go()
        assert served.calls() == []  # refused before the keys check: nothing sent at all
        with StateStore(state) as store:
            assert store.candidate_slice("leadsquared_reset/manual__exec", 1, 10**9) == []
    else:
        assert go() == [1]
        assert [c["path"].rsplit("/", 1)[-1] for c in served.calls()] == ["UserByAccessKey.Get"]


@pytest.mark.redis  # a budget every worker reaches: the state store is the only thing wrong
@pytest.mark.parametrize(
    ("executor", "dry_run"),
    [
        pytest.param("CeleryExecutor", False, id="celery"),
        pytest.param("CeleryExecutor", True, id="celery-dry-run"),
        pytest.param("LocalExecutor,CeleryExecutor", False, id="hybrid"),
        pytest.param("airflow.providers.celery.executors.celery_executor.CeleryExecutor", False, id="class-path"),
    ],
)
def test_sqlite_state_store_is_refused_under_a_distributed_executor(
    plan, served, dag, lsq_connection, sqlite_warehouse, redis_server, executor, dry_run
):
    """Two workers, each with an SQLite file of its own, would each claim the same lead: refused at plan
    time, naming the state store connection, before the keys check and the warehouse query."""
    conn_id = lsq_connection(served.base_url, conn_id="state_reach", rate_budget_url=redis_server.url(3))

    with pytest.raises(PlanError) as refused:
        plan_under(dag, executor, lsq=conn_id, warehouse=sqlite_warehouse[0], state=plan.state, dry_run=dry_run)

    assert str(refused.value) == (
        f"executor {executor!r} may run tasks on several machines, but the state store connection "
        f"{plan.state!r} is an SQLite file on one machine: point it at a PostgreSQL database every worker "
        "reaches; no lead was sent"
    )
    assert served.calls() == []
    assert staged(plan, "manual__exec") == 0


# The backfill run of the India-time day 2026-11-01: Airflow names it after its run_after (the interval's end).
DAY_START = datetime(2026, 10, 31, 18, 30, tzinfo=UTC)
DAY_END = DAY_START + timedelta(days=1)
BACKFILL_RUN = RunIdentity("leadsquared_reset", "backfill__2026-11-01T18:30:00+00:00", "backfill", DAY_START, DAY_END)


def existing(*days: int):
    """A count of the DAG's runs among run ids, as ``get_dr_count``, when the backfill's runs are the run of
    2026-11-01 and those ``days`` away from it; the run ids asked for are kept in ``asked``."""
    runs = {f"backfill__{(DAY_END + timedelta(days=d)).isoformat()}" for d in days}

    def count(run_ids: list[str]) -> int:
        count.asked.append(run_ids)  # type: ignore[attr-defined]
        return len(runs.intersection(run_ids))

    count.asked = []  # type: ignore[attr-defined]
    return count


def test_a_backfills_neighbours_are_named_as_airflow_names_them_and_counted_in_two_calls():
    count = existing(-1, 1, 2, 4)  # 4 days on is beyond the reach of 3 (2 days and one more): not looked for
    span = measure_backfill(BACKFILL_RUN, 2, count)
    assert (span.step_days, span.before, span.after, span.reach) == (1.0, 1, 2, 3)
    assert (span.days, span.more) == (4.0, False)
    assert count.asked == [
        [
            "backfill__2026-10-31T18:30:00+00:00",
            "backfill__2026-10-30T18:30:00+00:00",
            "backfill__2026-10-29T18:30:00+00:00",
        ],
        [
            "backfill__2026-11-02T18:30:00+00:00",
            "backfill__2026-11-03T18:30:00+00:00",
            "backfill__2026-11-04T18:30:00+00:00",
        ],
    ]


@pytest.mark.parametrize(
    "run",
    [
        pytest.param(
            RunIdentity("d", "scheduled__2026-11-01T18:30:00+00:00", "scheduled", DAY_START, DAY_END), id="scheduled"
        ),
        pytest.param(RunIdentity("d", "manual__1", "manual"), id="manual"),
        pytest.param(RunIdentity("d", "backfill__2026-11-01T18:30:00+00:00", "backfill"), id="no-interval"),
        pytest.param(RunIdentity("d", "my-backfill", "backfill", DAY_START, DAY_END), id="a-run-id-of-its-own"),
    ],
)
def test_a_run_that_is_not_a_backfills_or_does_not_say_where_it_sits_is_not_measured(run):
    count = existing(1)
    assert measure_backfill(run, 2, count) is None
    assert count.asked == []


@pytest.mark.parametrize(
    ("days", "reasons", "backfill_days"),
    [
        pytest.param((-1, 1, 2), (Reason.LONG_BACKFILL,), 4.0, id="four-days-over-two"),
        pytest.param((1,), (), 2.0, id="two-days-within-two"),
        pytest.param((), (), 1.0, id="a-backfill-of-one-day"),
    ],
)
def test_a_backfill_longer_than_max_days_asks_in_each_of_its_runs(plan, served, days, reasons, backfill_days):
    plan(
        {"approval_max_window_days": 2},
        run_id=BACKFILL_RUN.run_id,
        run_type="backfill",
        interval=(DAY_START, DAY_END),
        count_runs=existing(*days),
    )
    request, decision = gate(plan, BACKFILL_RUN.run_id)
    assert (request.reasons, request.backfill_days, request.days) == (reasons, backfill_days, 1.0)
    assert decision.decision is (Decision.WAITING if reasons else Decision.NOT_NEEDED)


def test_a_dry_backfill_does_not_count_its_neighbours_and_never_asks(plan, served):
    count = existing(-1, 1, 2)
    plan(
        {"approval_max_window_days": 2, "dry_run": True},
        run_id=BACKFILL_RUN.run_id,
        run_type="backfill",
        interval=(DAY_START, DAY_END),
        count_runs=count,
    )
    assert gate(plan, BACKFILL_RUN.run_id)[0].reasons == ()
    assert count.asked == []
