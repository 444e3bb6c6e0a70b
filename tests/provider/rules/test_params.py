"""One table of param specs: the DAG's trigger form, the run's typed params and the operator agree on every
default, every bound and every kind (issue 23: ``4.0`` used to pass one check and fail another)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import ParamValidationError

from leadsquared_provider.exceptions import PlanError
from leadsquared_provider.operators.reset import LeadSquaredResetOperator
from leadsquared_provider.rules.kinds import ParamError
from leadsquared_provider.rules.params import (
    PARAM_SPECS,
    NumberParam,
    RunParams,
    VerifyParams,
    WholeParam,
    dag_params,
)
from leadsquared_provider.rules.request import ResetScope
from leadsquared_provider.store import RunRecord, StateStore

RANGED = [spec for spec in PARAM_SPECS if isinstance(spec, WholeParam | NumberParam)]
WHOLE = [spec for spec in RANGED if isinstance(spec, WholeParam)]
VERIFY_FIELDS = {
    "verify_sample": "sample",
    "verify_delay_seconds": "delay_seconds",
    "max_still_present": "max_still_present",
}


def range_sides(spec: WholeParam | NumberParam) -> list[tuple[float | None, int, str]]:
    return [(spec.minimum, -1, "at least"), (spec.maximum, 1, "at most")]


def read(name: str, value: object) -> object:
    """``value`` as the run reads it for param ``name``: through RunParams, and VerifyParams for its own."""
    run = RunParams.from_params({name: value})
    if name in VERIFY_FIELDS:
        return getattr(VerifyParams.from_params({name: value}), VERIFY_FIELDS[name])
    return run.categories[name] if name in run.categories else getattr(run, name)


def test_every_param_of_the_form_is_read_by_the_run():
    categories = set(RunParams.from_params({}).categories)
    assert set(dag_params()) == {spec.name for spec in PARAM_SPECS}
    assert set(dag_params()) == categories | set(VERIFY_FIELDS) | set(RunParams.__dataclass_fields__) - {"categories"}


def test_a_trigger_with_the_forms_defaults_is_a_run_with_no_params():
    submitted = {name: param.resolve() for name, param in dag_params().items()}
    assert RunParams.from_params(submitted) == RunParams.from_params({})
    assert VerifyParams.from_params(submitted) == VerifyParams.from_params({}) == VerifyParams()
    assert RunParams.from_params({}) == RunParams(categories=RunParams.from_params({}).categories)


@pytest.mark.parametrize("spec", RANGED, ids=lambda spec: spec.name)
def test_a_value_at_each_bound_passes_the_form_and_the_run(spec):
    for bound in (spec.minimum, spec.maximum):
        if bound is None:
            continue
        assert dag_params()[spec.name].resolve(bound) == bound
        assert read(spec.name, bound) == bound


@pytest.mark.parametrize("spec", RANGED, ids=lambda spec: spec.name)
def test_one_past_each_bound_is_refused_by_the_form_and_the_run_naming_the_param(spec):
    step = 1 if isinstance(spec, WholeParam) else 0.01
    past = [(bound + sign * step, side) for bound, sign, side in range_sides(spec) if bound is not None]
    assert past, f"{spec.name} has no bound"
    for value, side in past:
        with pytest.raises(ParamValidationError):
            dag_params()[spec.name].resolve(value)
        with pytest.raises(PlanError, match=rf"^param {spec.name} must be {side} .*, got {value!r}; nothing was sent$"):
            RunParams.from_params({spec.name: value})


@pytest.mark.parametrize("spec", WHOLE, ids=lambda spec: spec.name)
def test_4_0_is_the_whole_number_4_for_the_form_and_the_run_and_4_5_for_none(spec):
    assert dag_params()[spec.name].resolve(4.0) == 4
    assert read(spec.name, 4.0) == 4 and isinstance(read(spec.name, 4.0), int)
    assert read(spec.name, "4.0") == read(spec.name, "4") == 4  # a rendered template, or a CLI's text
    with pytest.raises(ParamValidationError):
        dag_params()[spec.name].resolve(4.5)
    with pytest.raises(PlanError, match=rf"^param {spec.name} must be a whole number, got 4\.5; nothing was sent$"):
        RunParams.from_params({spec.name: 4.5})


def test_the_operator_reads_max_in_flight_as_the_run_does(state_conn):
    """The operator gets ``{{ params.max_in_flight }}`` rendered as text: "4.0" for a JSON 4.0."""
    with StateStore(state_conn) as store:  # a dry run with no lead staged: nothing to send, nothing to reach
        store.save_run(
            RunRecord(
                "dag/r1", "dag", "r1", ResetScope(delete_notes=True, allow_all_time=True), "s1", True, 1, 0, 1, 200
            )
        )
    context = {"dag_run": SimpleNamespace(dag_id="dag", run_id="r1", run_type="manual")}

    def reset(max_in_flight: object) -> dict:
        operator = LeadSquaredResetOperator(
            task_id="reset", batch="1", state_conn_id=state_conn, max_in_flight=max_in_flight
        )
        return operator.execute(context)  # type: ignore[arg-type]

    schema = dag_params()["max_in_flight"].schema
    bounds = (schema["minimum"], schema["maximum"])
    for accepted in ("4.0", 4.0, "4", *bounds, str(bounds[1])):
        assert reset(accepted)["batch"] == 1
    for refused, message in [
        ("4.5", r"max_in_flight must be a whole number, got '4\.5'"),
        (str(bounds[1] + 1), rf"max_in_flight must be at most {bounds[1]}, got '{bounds[1] + 1}'"),
        (bounds[0] - 1, rf"max_in_flight must be at least {bounds[0]}, got {bounds[0] - 1}"),
        (True, "max_in_flight must be a whole number, got True"),
    ]:
        with pytest.raises(ValueError, match=message):
            reset(refused)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        pytest.param({"dry_run": "yes"}, "param dry_run must be true or false, got 'yes'", id="flag"),
        pytest.param({"delete_notes": 1}, "param delete_notes must be true or false, got 1", id="category-flag"),
        pytest.param({"max_growth_factor": "inf"}, "param max_growth_factor must be a finite number", id="number"),
        pytest.param({"batch_size": True}, "param batch_size must be a whole number, got True", id="bool"),
        pytest.param({"task_type_ids": "abc"}, "param task_type_ids must be a list, got 'abc'", id="list"),
        pytest.param({"lead_ids": 5}, "param lead_ids must be a list, got 5", id="lead-ids"),
        pytest.param({"verify_delay_seconds": 2.5}, "param verify_delay_seconds must be a whole number", id="verify"),
    ],
)
def test_a_refused_param_is_named_and_nothing_is_sent(params, message):
    with pytest.raises(PlanError, match=rf"^{message}.*; nothing was sent$"):
        RunParams.from_params(params)


def test_text_flags_lists_and_lead_ids_are_read_as_the_form_means_them():
    run = RunParams.from_params(
        {
            "dry_run": " TRUE ",
            "delete_notes": "false",
            "lead_ids": "a, b\nc",
            "audit_export_table": "  ",
            "from_date": "",
            "activity_event_codes": "",
        }
    )
    assert (run.dry_run, run.categories["delete_notes"]) == (True, False)
    assert run.lead_ids == ("a", " b", "c")  # the plan trims and checks each id (and records the bad ones)
    assert (run.audit_export_table, run.from_date, run.categories["activity_event_codes"]) == (None, None, ())
    assert RunParams.from_params({"lead_ids": []}).lead_ids is None


def test_a_dags_own_category_defaults_fill_its_form_and_are_checked():
    form = dag_params({"activity_event_codes": (5,), "delete_notes": True})
    assert (form["activity_event_codes"].value, form["delete_notes"].value) == ([5], True)
    assert form["task_type_ids"].value == [] and form["batch_size"].value == dag_params()["batch_size"].value
    with pytest.raises(ParamError, match="activity_event_codes must be a list, got '166'"):
        dag_params({"activity_event_codes": "166"})
    with pytest.raises(ParamError, match="batch_size must be at least 1, got 0"):
        dag_params({"batch_size": 0})
    with pytest.raises(ParamError, match=r"names of params, got \['categories'\]"):
        dag_params({"categories": []})


def test_the_approval_params_defaults_ask_over_1000_leads_or_7_days_and_wait_24_hours():
    run = RunParams.from_params({})
    assert (run.approval_threshold, run.approval_max_window_days) == (1000, 7)
    assert (run.approval_timeout_minutes, run.approval_preview_activities) == (24 * 60, False)
    form = dag_params()
    assert form["approval_threshold"].schema["minimum"] == 0  # 0: every run with a lead asks
    assert form["approval_timeout_minutes"].schema["maximum"] == 7 * 24 * 60
