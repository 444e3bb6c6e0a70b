"""Window bounds: years 1970..2100 only, parse errors named, dates always written zero-padded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from leadsquared_provider.exceptions import InvalidResetRequest
from leadsquared_provider.rules.request import ResetRequest, ResetScope, lsq_date_text, parse_window_bound

LEAD = "fea01c86-5617-44d6-8469-4dbc409ab8f8"
IST = timezone(timedelta(hours=5, minutes=30))


def scope(from_date: object, to_date: object) -> ResetScope:
    return ResetScope(delete_notes=True, from_date=from_date, to_date=to_date)


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        pytest.param(datetime(5, 1, 1, tzinfo=UTC), "0005-01-01 00:00:00", id="year-5"),
        pytest.param(datetime(999, 12, 31, 23, 59, 59, tzinfo=UTC), "0999-12-31 23:59:59", id="year-999"),
        pytest.param(datetime(2020, 10, 14, 18, 30, tzinfo=UTC), "2020-10-14 18:30:00", id="seed-example"),
        pytest.param(datetime(2026, 1, 2, 3, 4, 5, 999_999, tzinfo=UTC), "2026-01-02 03:04:05", id="microseconds"),
    ],
)
def test_dates_are_written_zero_padded(moment, text):
    assert lsq_date_text(moment) == text


def test_body_dates_are_utc_and_zero_padded():
    window = scope("1970-01-01T05:30:00+05:30", datetime(2100, 1, 1, 5, 29, 59, tzinfo=IST))

    body = ResetRequest(LEAD, window).to_body()

    assert (body["FromDate"], body["ToDate"]) == ("1970-01-01 00:00:00", "2099-12-31 23:59:59")


@pytest.mark.parametrize(
    ("param", "value", "message"),
    [
        pytest.param("from_date", "1969-12-31T23:59:59+00:00", "year 1969", id="before-1970"),
        pytest.param("from_date", "1970-01-01T05:29:59+05:30", "year 1969", id="before-1970-in-utc"),
        pytest.param("to_date", "2101-01-01T00:00:00+00:00", "year 2101", id="after-2100"),
        pytest.param("from_date", "0005-01-01T00:00:00+00:00", "year 5", id="year-5"),
        pytest.param("from_date", "0001-01-01T00:00:00+05:00", "out of range", id="overflow-below-year-1"),
        pytest.param("to_date", "9999-12-31T23:59:59-05:00", "out of range", id="overflow-above-9999"),
        pytest.param("from_date", datetime(1, 1, 1, tzinfo=IST), "out of range", id="datetime-overflow"),
        pytest.param("to_date", "2026-02-30T00:00:00+00:00", "not an ISO-8601", id="no-such-day"),
        pytest.param("to_date", "2026-05-01T00:00:00+99:00", "not an ISO-8601", id="bad-offset"),
    ],
)
def test_out_of_range_or_unparsable_bound_is_refused_naming_the_param(param, value, message):
    with pytest.raises(InvalidResetRequest, match=rf"^{param} .*{message}"):
        parse_window_bound(param, value)
    other = "2026-05-01T00:00:00+00:00"
    bounds = {"from_date": other, "to_date": other, param: value}
    with pytest.raises(InvalidResetRequest, match=param):
        scope(bounds["from_date"], bounds["to_date"])


def test_the_edges_of_the_allowed_years_are_accepted():
    window = scope("1970-01-01T00:00:00Z", "2100-12-31T23:59:59Z")

    assert (window.from_text, window.to_text) == ("1970-01-01 00:00:00", "2100-12-31 23:59:59")


@pytest.mark.parametrize(
    ("raw", "refused"),
    [
        pytest.param(False, True, id="false"),
        pytest.param("false", True, id="false-text"),
        pytest.param("true", False, id="true-text"),
    ],
)
def test_allow_all_time_text_means_what_it_says(raw, refused):
    data = {"delete_notes": True, "allow_all_time": raw}
    if refused:
        with pytest.raises(InvalidResetRequest, match="no window given"):
            ResetScope.from_mapping(data)
    else:
        assert ResetScope.from_mapping(data).allow_all_time is True


def test_allow_all_time_of_another_type_is_refused():
    with pytest.raises(InvalidResetRequest, match="allow_all_time must be true or false"):
        ResetScope.from_mapping({"delete_notes": True, "allow_all_time": "yes"})
