"""The connection's extras: parsed, validated (finite, in range), named when wrong, and one form per field."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import pytest

from leadsquared_provider import get_provider_info
from leadsquared_provider.exceptions import InvalidConnection
from leadsquared_provider.hooks.leadsquared import LeadSquaredHook
from leadsquared_provider.rules.request import ResetRequest, ResetScope
from leadsquared_provider.settings import LeadSquaredSettings
from tests.conftest import new_lead_id

NUMERIC = [f.name for f in fields(LeadSquaredSettings) if f.metadata["kind"] in (int, float)]
MAY_BE_ZERO = {"max_retries", "rate_margin_seconds"}


def test_defaults_when_no_extra():
    settings = LeadSquaredSettings.from_extra({})

    assert settings == LeadSquaredSettings()
    assert (settings.rate_share, settings.allow_insecure_http, settings.budget_max_wait_seconds) == (1.0, False, 600.0)


def test_values_are_parsed_from_json_or_text():
    settings = LeadSquaredSettings.from_extra(
        {
            "rate_limit": "10",
            "rate_window_seconds": 5,
            "rate_share": "0.5",
            "timeout_seconds": "2.5",
            "max_retries": 0,
            "rate_margin_seconds": "0",
            "extra__leadsquared__budget_max_wait_seconds": "30",
            "rate_budget_url": " redis://localhost:6379/0 ",
            "allow_insecure_http": "TRUE",
            "max_rate_limit_waits": 3.0,
        }
    )

    assert (settings.rate_limit, settings.rate_window_seconds, settings.rate_share) == (10, 5.0, 0.5)
    assert (settings.timeout_seconds, settings.max_retries, settings.rate_margin_seconds) == (2.5, 0, 0.0)
    assert (settings.budget_max_wait_seconds, settings.max_rate_limit_waits) == (30.0, 3)
    assert settings.rate_budget_url == "redis://localhost:6379/0"
    assert settings.allow_insecure_http is True
    assert isinstance(settings.rate_limit, int) and isinstance(settings.max_rate_limit_waits, int)


@pytest.mark.parametrize("name", NUMERIC)
@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(0, id="zero"),
        pytest.param("0", id="zero-text"),
        pytest.param(-1, id="negative"),
        pytest.param("nan", id="nan"),
        pytest.param("inf", id="inf"),
        pytest.param("-inf", id="minus-inf"),
        pytest.param("1e999", id="overflowing-text"),
        pytest.param(10**400, id="huge-int"),
        pytest.param("lots", id="text"),
        pytest.param(True, id="bool"),
        pytest.param([5], id="list"),
    ],
)
def test_every_numeric_setting_must_be_finite_and_positive(name, raw):
    if name in MAY_BE_ZERO and raw in (0, "0"):
        assert getattr(LeadSquaredSettings.from_extra({name: raw}), name) == 0
        return
    with pytest.raises(InvalidConnection, match=rf"connection extra '{name}' = "):
        LeadSquaredSettings.from_extra({name: raw})


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        pytest.param({"rate_limit": 2.5}, "'rate_limit' = 2.5 is not a whole number", id="fractional-count"),
        # the budget counts whole milliseconds: a shorter window would be 0 ms (every call divided by zero)
        pytest.param(
            {"rate_window_seconds": 0.0004}, "'rate_window_seconds' = 0.0004 must be 0.001 or more", id="window-0-ms"
        ),
        pytest.param({"max_retries": "1.5"}, "'max_retries' = '1.5' is not a whole number", id="fractional-retries"),
        pytest.param({"rate_share": 1.5}, "'rate_share' = 1.5 must be at most 1", id="share-above-one"),
        pytest.param({"rate_share": 0}, "'rate_share' = 0 must be positive", id="share-zero"),
        pytest.param({"allow_insecure_http": "yes please"}, "'allow_insecure_http'", id="bool-text"),
        pytest.param({"allow_insecure_http": 2}, "'allow_insecure_http' = 2 is not a boolean", id="bool-two"),
        pytest.param({"rate_budget_url": 5}, "'rate_budget_url' must be a string", id="url-not-text"),
        pytest.param(
            {"backoff_initial_seconds": 10, "backoff_max_seconds": 1}, "'backoff_max_seconds'", id="backoff-order"
        ),
    ],
)
def test_bad_extra_is_named(extra, message):
    with pytest.raises(InvalidConnection, match=message):
        LeadSquaredSettings.from_extra(extra)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(True, True), (False, False), ("true", True), ("False", False), (1, True), (0, False), ("1", True), ("0", False)],
)
def test_booleans(raw: Any, expected: bool):
    assert LeadSquaredSettings.from_extra({"allow_insecure_http": raw}).allow_insecure_http is expected


def test_bad_extra_is_refused_before_anything_is_sent(lsq_connection):
    hook = LeadSquaredHook(leadsquared_conn_id=lsq_connection("http://127.0.0.1:9", timeout_seconds="nan"))
    scope = ResetScope(delete_notes=True, allow_all_time=True)

    with pytest.raises(InvalidConnection, match="'timeout_seconds' = 'nan' is not a finite number"):
        hook.reset_lead(ResetRequest(new_lead_id(), scope))


def test_the_form_has_every_setting_with_its_label_type_and_default():
    [conn_type] = get_provider_info()["connection-types"]
    form = conn_type["conn-fields"]

    assert list(form) == [f.name for f in fields(LeadSquaredSettings)]
    for spec in fields(LeadSquaredSettings):
        entry = form[spec.name]
        assert entry["label"] == spec.metadata["label"] and entry["description"]
        json_type = {int: "integer", float: "number", bool: "boolean", str: "string"}[spec.metadata["kind"]]
        assert entry["schema"]["type"] == [json_type, "null"]
        assert entry["schema"].get("default") == spec.default
    assert form["rate_share"]["schema"]["default"] == 1.0
    assert form["allow_insecure_http"]["schema"] == {"type": ["boolean", "null"], "default": False}


def test_form_defaults_read_back_as_the_same_settings():
    form = get_provider_info()["connection-types"][0]["conn-fields"]
    extra = {name: entry["schema"].get("default") for name, entry in form.items()}

    assert LeadSquaredSettings.from_extra(extra) == LeadSquaredSettings()
