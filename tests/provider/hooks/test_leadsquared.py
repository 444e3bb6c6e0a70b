"""LeadSquaredHook against the running emulator: every answer class, the budget, auth and secrets."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from leadsquared_provider.exceptions import (
    InvalidConnection,
    InvalidResetRequest,
    LeadSquaredAuthError,
    LeadSquaredError,
    RateBudgetError,
    RefusedCallError,
)
from leadsquared_provider.hooks.leadsquared import LeadSquaredHook
from leadsquared_provider.rate_budget import account_tag
from leadsquared_provider.rules.outcomes import Outcome
from leadsquared_provider.rules.request import ResetRequest, ResetScope
from lsq_emulator import EmulatorConfig, run_emulator
from tests.conftest import ADMIN_ACCESS, ADMIN_SECRET, VIEWER_ACCESS, VIEWER_SECRET, lsq_lead, new_lead_id
from tests.provider.hooks import test_answers
from tests.provider.hooks.test_answers import QUEUED, Reply

scripted = test_answers.scripted  # the fixture serving scripted answers on 127.0.0.1

WINDOW = {
    "from_date": datetime(2026, 5, 1, 18, 30, tzinfo=UTC),
    "to_date": datetime(2026, 5, 2, 18, 29, 59, tzinfo=UTC),
}
SCOPE = ResetScope(activity_event_codes=(166,), audit_types=("StageChange",), **WINDOW)


def reset_calls(emu) -> list[dict]:
    return [c for c in emu.calls() if c["path"].endswith("Lead.Reset")]


@pytest.fixture
def lead_id() -> str:
    return new_lead_id()


@pytest.fixture
def served(lead_id):
    with run_emulator(EmulatorConfig(rate_limit=1000, rate_window_seconds=1.0), leads=[lsq_lead(lead_id)]) as emu:
        yield emu


def test_queued_sends_exact_body_with_keys_in_headers_only(served, lsq_connection, lead_id):
    hook = LeadSquaredHook(leadsquared_conn_id=lsq_connection(served.base_url))

    result = hook.reset_lead(ResetRequest(lead_id.upper(), SCOPE))

    assert result.outcome is Outcome.QUEUED
    assert (result.status_code, result.attempts) == (200, 1)
    [call] = reset_calls(served)
    assert call["method"] == "POST"
    assert call["query"] == ""
    assert call["account"] == "demo"
    assert call["body"] == {
        "ProspectId": lead_id,
        "ActivityEventList": [166],
        "AuditActivityList": ["StageChange"],
        "FromDate": "2026-05-01 18:30:00",
        "ToDate": "2026-05-02 18:29:59",
    }


@pytest.mark.parametrize(
    ("scope_kwargs", "message"),
    [
        pytest.param({}, "no category chosen", id="no-category"),
        pytest.param({"activity_event_codes": ("abc",), **WINDOW}, "not an integer", id="non-integer-code"),
        pytest.param({"audit_types": ("Deleted",), **WINDOW}, "audit type 'Deleted' is unknown", id="audit-type"),
        pytest.param({"task_type_ids": ("x",), **WINDOW}, "task type id 'x' is not a GUID", id="task-type"),
        pytest.param({"delete_notes": True}, "no window given", id="all-time-without-opt-in"),
        pytest.param(
            {"delete_notes": True, "from_date": WINDOW["to_date"], "to_date": WINDOW["from_date"]},
            "is after to_date",
            id="from-after-to",
        ),
        pytest.param(
            {"delete_notes": True, "from_date": "2026-05-01T00:00:00", "to_date": "2026-05-02T00:00:00+00:00"},
            "has no timezone",
            id="naive-date",
        ),
        pytest.param(
            {"delete_notes": True, "from_date": "01/05/2026", "to_date": "2026-05-02T00:00:00+00:00"},
            "not an ISO-8601 date-time",
            id="malformed-date",
        ),
        pytest.param({"delete_notes": True, "from_date": "2026-05-01T00:00:00+00:00"}, "give both", id="half-window"),
    ],
)
def test_invalid_scope_is_refused_before_sending(served, scope_kwargs, message):
    with pytest.raises(InvalidResetRequest, match=message):
        ResetScope(**scope_kwargs)
    assert served.calls() == []


@pytest.mark.parametrize(
    "bad_id",
    [
        pytest.param("", id="empty"),
        pytest.param("not-a-guid", id="not-guid"),
        pytest.param("'; DROP TABLE leads; --", id="sql-looking"),
        pytest.param(None, id="null"),
        pytest.param(12345, id="number"),
    ],
)
def test_invalid_lead_id_is_refused_before_sending(served, bad_id):
    with pytest.raises(InvalidResetRequest, match="lead id"):
        ResetRequest(bad_id, SCOPE)
    assert served.calls() == []


def test_all_time_is_sent_without_dates_only_when_allowed(served, lsq_connection, lead_id):
    hook = LeadSquaredHook(leadsquared_conn_id=lsq_connection(served.base_url))
    scope = ResetScope(delete_notes=True, allow_all_time=True)

    assert hook.reset_lead(ResetRequest(lead_id, scope)).outcome is Outcome.QUEUED
    assert reset_calls(served)[0]["body"] == {"ProspectId": lead_id, "ShouldDeleteProspectNotes": True}


def test_unknown_lead_is_rejected_once_without_retry(served, lsq_connection):
    hook = LeadSquaredHook(leadsquared_conn_id=lsq_connection(served.base_url))

    result = hook.reset_lead(ResetRequest(new_lead_id(), SCOPE))

    assert result.outcome is Outcome.REJECTED
    assert (result.status_code, result.exception_type) == (400, "MXInvalidEntityReferenceException")
    assert len(reset_calls(served)) == 1


@pytest.mark.parametrize(
    ("login", "password", "path_suffix", "status"),
    [
        pytest.param("u$nobody", "wrong", "", 401, id="wrong-keys"),
        pytest.param(VIEWER_ACCESS, VIEWER_SECRET, "", 401, id="non-admin"),
        pytest.param(ADMIN_ACCESS, ADMIN_SECRET, "/wrong-region", 404, id="wrong-host-path"),
    ],
)
def test_auth_failure_is_sent_once_then_nothing_more(
    served, lsq_connection, lead_id, login, password, path_suffix, status
):
    hook = LeadSquaredHook(
        leadsquared_conn_id=lsq_connection(served.base_url + path_suffix, login=login, password=password)
    )

    result = hook.reset_lead(ResetRequest(lead_id, SCOPE))
    assert result.outcome is Outcome.AUTH_FAILED
    assert (result.status_code, result.attempts) == (status, 1)
    with pytest.raises(LeadSquaredAuthError, match="not sent"):
        hook.reset_lead(ResetRequest(lead_id, SCOPE))
    # One refused request, never retried: the keys' first (UserByAccessKey.Get, which learns their account;
    # a non-admin's is answered, so its reset is the refused one).
    calls = served.calls()
    assert [c["status"] for c in calls if c["status"] >= 400] == [status] and calls[-1]["status"] == status
    assert len(calls) == (2 if login == VIEWER_ACCESS else 1)
    assert served.lead(lead_id) is not None


@pytest.mark.parametrize(
    ("fault", "exception_type"),
    [
        pytest.param({"fault_5xx_rate": 1.0}, None, id="5xx"),
        pytest.param({"fault_html_rate": 1.0}, None, id="html-page"),
        pytest.param({"fault_non_json_200_rate": 1.0}, None, id="non-json-200"),
        pytest.param({"fault_drop_rate": 1.0}, "ChunkedEncodingError", id="dropped-connection"),
        pytest.param({"fault_timeout_rate": 1.0, "hang_seconds": 1.5}, "ReadTimeout", id="timeout"),
    ],
)
def test_transient_answers_retry_up_to_the_budget_then_fail(
    served, lsq_connection, lead_id, fault, exception_type, logged
):
    served.configure(**fault)
    hook = LeadSquaredHook(leadsquared_conn_id=lsq_connection(served.base_url, max_retries=2, timeout_seconds=0.5))

    result = hook.reset_lead(ResetRequest(lead_id, SCOPE))

    assert result.outcome is Outcome.FAILED
    assert result.attempts == 3
    assert result.uncertain_attempts == 2  # each unclear answer was followed by another attempt
    assert ADMIN_SECRET not in repr(result) and ADMIN_ACCESS not in repr(result)  # no header value in any message
    assert result.message.startswith("gave up after 3 attempt(s)")
    if exception_type:
        assert result.exception_type in (exception_type, "ConnectionError")
    assert len(reset_calls(served)) == 3
    assert served.stats()["accepted_by_lead"].get(lead_id, 0) == 0
    # Each resend is logged with its lead and the attempt whose answer could not be used.
    resends = re.findall(r"(Lead\.Reset of lead \S+, attempt \d+), answered .*: sending again", logged())
    assert resends == [f"Lead.Reset of lead {lead_id}, attempt {n}" for n in (1, 2)]


def test_a_trickling_answer_is_cut_at_the_calls_timeout_and_counted_unread(served, lsq_connection, lead_id):
    # Every answer is a real Success sent one byte every 0.1 s (about 6 s in all): each byte arrives well
    # within the 1 s timeout, the whole answer never does. The call gives up at 1 s, not when the body ends.
    served.configure(fault_trickle_rate=1.0, trickle_byte_seconds=0.1)
    hook = LeadSquaredHook(leadsquared_conn_id=lsq_connection(served.base_url, max_retries=1, timeout_seconds=1.0))

    started = time.monotonic()
    result = hook.reset_lead(ResetRequest(lead_id, SCOPE))
    took = time.monotonic() - started

    assert (result.outcome, result.attempts, result.exception_type) == (Outcome.FAILED, 2, "CallDeadline")
    assert "no whole answer within 1 s" in result.message
    assert took < 4.0, took  # two attempts of 1 s each and a backoff; the old per-read timeout took 12 s
    # LeadSquared performed both (the emulator's record): the client could read neither, and says so.
    assert len(reset_calls(served)) == 2 and all(c.get("trickled") for c in reset_calls(served))
    assert served.stats()["accepted_by_lead"][lead_id] == 2
    assert (result.uncertain_attempts, result.last_unread) == (1, True)


def test_transient_faults_then_success_is_queued_once(served, lsq_connection, lead_id):
    served.configure(fault_5xx_rate=0.6, seed=3)
    hook = LeadSquaredHook(leadsquared_conn_id=lsq_connection(served.base_url, max_retries=10))

    results = [hook.reset_lead(ResetRequest(lead_id, SCOPE)) for _ in range(3)]

    assert all(r.outcome is Outcome.QUEUED for r in results)
    assert sum(r.attempts for r in results) == len(reset_calls(served)) > 3
    assert served.stats()["accepted_by_lead"][lead_id] == 3


@pytest.mark.parametrize("style", ["429", "200", "403"])
def test_rate_limit_answers_are_waited_out_not_failures(lsq_connection, style):
    leads = [lsq_lead() for _ in range(8)]
    config = EmulatorConfig(rate_limit=3, rate_window_seconds=1.0, rate_limit_style=style)
    with run_emulator(config, leads=leads) as emu:
        # The connection claims a bigger plan than the account has: the API must push back.
        hook = LeadSquaredHook(
            leadsquared_conn_id=lsq_connection(emu.base_url, rate_limit=6, rate_window_seconds=1, rate_margin_seconds=0)
        )
        results = [hook.reset_lead(ResetRequest(lead["ProspectId"], SCOPE)) for lead in leads]
        stats = emu.stats()

    assert [r.outcome for r in results] == [Outcome.QUEUED] * 8
    assert stats["rate_limited"][style] >= 1
    assert sum(r.attempts for r in results) == 8 + stats["rate_limited"][style]
    assert sum(r.rate_limited_answers for r in results) == stats["rate_limited"][style]
    assert sum(r.uncertain_attempts for r in results) == 0
    assert sorted(stats["accepted_by_lead"].values()) == [1] * 8


def test_budget_keeps_calls_under_the_limit(lsq_connection):
    leads = [lsq_lead() for _ in range(12)]
    with run_emulator(EmulatorConfig(rate_limit=4, rate_window_seconds=1.0), leads=leads) as emu:
        hook = LeadSquaredHook(leadsquared_conn_id=lsq_connection(emu.base_url, rate_limit=4, rate_window_seconds=1))
        results = [hook.reset_lead(ResetRequest(lead["ProspectId"], SCOPE)) for lead in leads]
        stats = emu.stats()
        times = [c["time"] for c in reset_calls(emu)]

    assert all(r.outcome is Outcome.QUEUED for r in results)
    assert sum(stats["rate_limited"].values()) == 0
    assert times[-1] - times[0] >= 2.0  # 12 calls at 4 per 1.2 s need at least two more windows
    assert sum(r.budget_wait_seconds for r in results) > 1.5


def test_secret_never_in_urls_logs_results_or_errors(served, lsq_connection, lead_id, logged):
    served.configure(fault_5xx_rate=0.5, seed=1)
    hook = LeadSquaredHook(leadsquared_conn_id=lsq_connection(served.base_url, max_retries=3))
    results = [hook.reset_lead(ResetRequest(lead_id, SCOPE)) for _ in range(4)]
    bad = LeadSquaredHook(leadsquared_conn_id=lsq_connection(served.base_url, conn_id="bad", password="s3cr3t-xyz"))
    bad_result = bad.reset_lead(ResetRequest(lead_id, SCOPE))
    with pytest.raises(LeadSquaredAuthError) as raised:
        bad.reset_lead(ResetRequest(lead_id, SCOPE))

    recorded = repr(served.calls())
    log = logged()
    assert f"Lead.Reset of lead {lead_id}, attempt 1, answered 500" in log  # the sweep reads the hook's log
    texts = [recorded, log, repr(results), repr(bad_result), str(raised.value)]
    for secret in (ADMIN_SECRET, "s3cr3t-xyz"):
        assert all(secret not in text for text in texts)
    assert all("secretKey" not in c["query"] and "accessKey" not in c["query"] for c in served.calls())


def test_connection_missing_its_secret_is_refused(served, lsq_connection, lead_id):
    hook = LeadSquaredHook(leadsquared_conn_id=lsq_connection(served.base_url, password=None))
    with pytest.raises(InvalidConnection, match="secret key as password"):
        hook.reset_lead(ResetRequest(lead_id, SCOPE))
    assert served.calls() == []


def test_connection_bad_extra_names_the_field(served, lsq_connection, lead_id):
    hook = LeadSquaredHook(leadsquared_conn_id=lsq_connection(served.base_url, rate_limit="lots"))
    with pytest.raises(InvalidConnection, match="'rate_limit' = 'lots'"):
        hook.reset_lead(ResetRequest(lead_id, SCOPE))
    assert served.calls() == []


@pytest.mark.parametrize(
    ("login", "password", "ok", "text"),
    [
        pytest.param(ADMIN_ACCESS, ADMIN_SECRET, True, "Administrator", id="admin"),
        pytest.param(VIEWER_ACCESS, VIEWER_SECRET, False, "needs an administrator", id="non-admin"),
        pytest.param("u$nobody", "nope", False, "401", id="wrong-keys"),
    ],
)
def test_test_connection(served, lsq_connection, login, password, ok, text):
    hook = LeadSquaredHook(leadsquared_conn_id=lsq_connection(served.base_url, login=login, password=password))

    result, message = hook.test_connection()

    assert result is ok
    assert text in message
    assert [c["path"] for c in served.calls()] == ["/v2/Authentication.svc/UserByAccessKey.Get"]


# -- keys --------------------------------------------------------------------------------------------------


def test_keys_with_surrounding_whitespace_are_stripped_and_never_shown(served, lsq_connection, lead_id, logged):
    conn_id = lsq_connection(served.base_url, login=f" {ADMIN_ACCESS}\n", password=f"{ADMIN_SECRET}\n")
    hook = LeadSquaredHook(leadsquared_conn_id=conn_id)

    result = hook.reset_lead(ResetRequest(lead_id, SCOPE))
    ok, message = LeadSquaredHook(leadsquared_conn_id=conn_id).test_connection()
    bad = LeadSquaredHook(leadsquared_conn_id=lsq_connection(served.base_url, conn_id="bad", password="s3cr3t-xyz\n"))
    bad_result = bad.reset_lead(ResetRequest(lead_id, SCOPE))
    bad_ok, bad_message = bad.test_connection()

    assert (result.outcome, ok, bad_result.outcome, bad_ok) == (Outcome.QUEUED, True, Outcome.AUTH_FAILED, False)
    assert reset_calls(served)[0]["account"] == "demo"
    texts = [logged(), repr(result), message, repr(bad_result), bad_message]
    for secret in (ADMIN_SECRET, "s3cr3t-xyz"):
        assert all(secret not in text for text in texts)


@pytest.mark.parametrize(
    ("field_name", "login", "password"),
    [
        pytest.param("login", "u$demo access", ADMIN_SECRET, id="space-in-access-key"),
        pytest.param("password", ADMIN_ACCESS, "demo\tsecret", id="tab-in-secret"),
        pytest.param("password", ADMIN_ACCESS, "demo\nsecret", id="newline-in-secret"),
        pytest.param("password", ADMIN_ACCESS, "demo\x00secret", id="nul-in-secret"),
        pytest.param("password", ADMIN_ACCESS, "demo\u00a0secret", id="non-ascii-in-secret"),
        pytest.param("password", ADMIN_ACCESS, " \n", id="blank-secret"),
    ],
)
def test_malformed_key_is_refused_naming_the_field_not_the_value(served, lsq_connection, field_name, login, password):
    hook = LeadSquaredHook(leadsquared_conn_id=lsq_connection(served.base_url, login=login, password=password))

    with pytest.raises(InvalidConnection, match=field_name) as raised:
        hook.reset_lead(ResetRequest(new_lead_id(), SCOPE))
    ok, message = LeadSquaredHook(
        leadsquared_conn_id=lsq_connection(served.base_url, login=login, password=password)
    ).test_connection()

    value = login if field_name == "login" else password
    for text in (str(raised.value), message):
        assert "demo" not in text and "u$" not in text  # no part of the value, however cut
        assert value.strip() == "" or value.strip() not in text
    assert ok is False
    assert served.calls() == []


# -- https only ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "extra", "base_url"),
    [
        pytest.param("api-in21.leadsquared.com", {}, "https://api-in21.leadsquared.com", id="bare-host-is-https"),
        pytest.param("https://api-us11.leadsquared.com/", {}, "https://api-us11.leadsquared.com", id="https-url"),
        pytest.param("http://127.0.0.1:8080", {}, "http://127.0.0.1:8080", id="loopback-ipv4"),
        pytest.param("http://localhost:8080", {}, "http://localhost:8080", id="localhost"),
        pytest.param("http://[::1]:8080", {}, "http://[::1]:8080", id="loopback-ipv6"),
        pytest.param("http://lsq.test:8080", {"allow_insecure_http": True}, "http://lsq.test:8080", id="opt-in-bool"),
        pytest.param("http://lsq.test", {"allow_insecure_http": "true"}, "http://lsq.test", id="opt-in-text"),
        pytest.param("http://lsq.test", {"allow_insecure_http": 1}, "http://lsq.test", id="opt-in-one"),
    ],
)
def test_https_or_loopback_or_explicit_opt_in(lsq_connection, host, extra, base_url):
    hook = LeadSquaredHook(leadsquared_conn_id=lsq_connection(host, **extra))

    assert hook.api_base_url == base_url


@pytest.mark.parametrize(
    ("host", "extra"),
    [
        pytest.param("http://api-in21.leadsquared.com", {}, id="plain-http"),
        pytest.param("http://api-in21.leadsquared.com", {"allow_insecure_http": "false"}, id="opt-in-false"),
        pytest.param("http://api-in21.leadsquared.com", {"allow_insecure_http": 0}, id="opt-in-zero"),
        pytest.param("ftp://api-in21.leadsquared.com", {"allow_insecure_http": True}, id="other-scheme"),
    ],
)
def test_insecure_host_is_refused_naming_host_and_extra(lsq_connection, host, extra):
    hook = LeadSquaredHook(leadsquared_conn_id=lsq_connection(host, **extra))

    with pytest.raises(InvalidConnection, match=r"'api-in21\.leadsquared\.com'.*'allow_insecure_http'"):
        hook.reset_lead(ResetRequest(new_lead_id(), SCOPE))


# -- HttpHook's run(): the same path as the hook's own calls -----------------------------------------------------

LEADS_GET = "/v2/LeadManagement.svc/Leads.GetByEmailaddress"
LEAD_FOUND = {"ProspectID": "5d1f", "EmailAddress": "a@example.com"}


def test_run_returns_the_response_of_a_success_with_keys_in_headers_only(scripted, lsq_connection):
    server = scripted(Reply(200, LEAD_FOUND))
    reader = test_answers.hook_for(lsq_connection, server)
    reader.method = "GET"

    got = reader.run(LEADS_GET, data={"emailaddress": "a@example.com"})
    posted = test_answers.hook_for(lsq_connection, server).run("/v2/x", json={"q": 1}, headers={"X-Trace": "t1"})

    assert (got.status_code, got.json(), posted.json()) == (200, LEAD_FOUND, LEAD_FOUND)
    first, second = server.requests
    assert (first["method"], first["path"], first["query"]) == ("GET", LEADS_GET, "emailaddress=a%40example.com")
    assert (second["method"], second["path"], json.loads(second["body"])) == ("POST", "/v2/x", {"q": 1})
    assert second["headers"]["X-Trace"] == "t1"
    for request in server.requests:
        assert (request["headers"]["x-LSQ-AccessKey"], request["headers"]["x-LSQ-SecretKey"]) == (
            ADMIN_ACCESS,
            ADMIN_SECRET,
        )
        assert ADMIN_SECRET not in request["query"] and "Authorization" not in request["headers"]


def test_run_takes_units_of_the_accounts_one_budget(scripted, lsq_connection):
    server = scripted(Reply(200, QUEUED))
    conn_id = lsq_connection(server.base_url, rate_limit=2, rate_window_seconds=1, rate_margin_seconds=0)
    caller = LeadSquaredHook(leadsquared_conn_id=conn_id, account="scripted")
    resetter = LeadSquaredHook(leadsquared_conn_id=conn_id, account="scripted")  # another task of the account

    started = time.monotonic()
    caller.run("/v2/x", json={})
    caller.run("/v2/x", json={})
    result = resetter.reset_lead(ResetRequest(new_lead_id(), SCOPE))  # the third call in one window: it waits
    elapsed = time.monotonic() - started

    assert result.outcome is Outcome.QUEUED and len(server.requests) == 3
    assert result.budget_wait_seconds > 0 and elapsed >= 0.95  # the two run() calls counted in the window


@pytest.mark.parametrize(
    ("reply", "error", "said", "sent"),
    [
        pytest.param(
            Reply(400, test_answers.error("MXInvalidInputException", "bad field")),
            LeadSquaredError,
            "answered 400 (MXInvalidInputException: bad field) (after 1 attempt(s))",
            1,
            id="400-refused-for-good-not-retried",
        ),
        pytest.param(
            Reply(400, {"Status": "Error", "Message": "no reason"}),
            LeadSquaredError,
            "answered 400 (answer 400 without a reason",
            1,
            id="400-without-reason-not-retried",
        ),
        pytest.param(
            Reply(503, "<html>busy</html>"), LeadSquaredError, "answered 503 (server error 503", 3, id="5xx-retried"
        ),
        pytest.param(Reply(200, {}), LeadSquaredError, "answer 200 is not a success: body '{}'", 3, id="200-empty"),
        pytest.param(Reply(200, [LEAD_FOUND]), LeadSquaredError, "is not a success", 3, id="200-json-list"),
        pytest.param(
            Reply(200, test_answers.error("MXException", "oops")),
            LeadSquaredError,
            "MXException: oops",
            3,
            id="200-error",
        ),
        pytest.param(Reply(401, {"Message": "bad keys"}), LeadSquaredAuthError, "keys refused", 1, id="401"),
        pytest.param(
            Reply(302, "", headers={"Location": "https://elsewhere.example/x?y=1"}),
            LeadSquaredAuthError,
            "a redirect to elsewhere.example",
            1,
            id="redirect-not-followed",
        ),
    ],
)
def test_run_raises_as_the_answer_is_classified(scripted, lsq_connection, reply, error, said, sent):
    server = scripted(reply)
    hook = test_answers.hook_for(lsq_connection, server, max_retries=2)

    with pytest.raises(error) as raised:
        hook.run("/v2/x", json={})

    assert type(raised.value) is error
    assert said in str(raised.value)
    assert len(server.requests) == sent


def test_run_with_advanced_retry_keeps_the_hooks_retry_policy(scripted, lsq_connection, logged):
    import tenacity

    server = scripted(Reply(400, test_answers.error("MXInvalidInputException", "bad field")), Reply(200, LEAD_FOUND))
    hook = test_answers.hook_for(lsq_connection, server)
    retry_args = {
        "stop": tenacity.stop_after_attempt(5),
        "retry": tenacity.retry_if_exception_type(Exception),
        "wait": tenacity.wait_none(),
    }

    with pytest.raises(LeadSquaredError, match="answered 400"):
        hook.run_with_advanced_retry(retry_args, endpoint="/v2/x", json={})

    assert len(server.requests) == 1  # refused for good: not sent again, whatever the caller's tenacity says
    assert "the retry arguments are not used" in logged()


def send_prepared(hook: LeadSquaredHook, method: str, url: str) -> Any:
    """HttpHook's lower way in: a request prepared on the hook's session, sent by ``run_and_check``."""
    from requests import Request

    session = hook.get_conn()
    return hook.run_and_check(session, session.prepare_request(Request(method, url)), {})


@pytest.mark.parametrize(
    "send",
    [
        pytest.param(lambda hook: hook.run("/v2/LeadManagement.svc/Lead.Reset", json={}), id="run"),
        pytest.param(lambda hook: hook.run("v2/leadmanagement.svc/LEAD.RESET?x=1"), id="run-any-case"),
        pytest.param(lambda hook: hook.run("/v2/LeadManagement.svc/Lead%252EReset"), id="run-percent-encoded"),
        pytest.param(
            lambda hook: hook.run_with_advanced_retry({}, "/v2/LeadManagement.svc/Lead.Reset"), id="advanced-retry"
        ),
        pytest.param(
            lambda hook: send_prepared(hook, "POST", hook.url_from_endpoint("/v2/LeadManagement.svc/Lead.Reset")),
            id="run_and_check",
        ),
    ],
)
def test_run_refuses_lead_reset_so_no_reset_goes_unclaimed(scripted, lsq_connection, send):
    server = scripted(Reply(200, QUEUED))
    hook = test_answers.hook_for(lsq_connection, server)

    with pytest.raises(RefusedCallError, match=r"refuses Lead\.Reset.*state store's claim.*reset_lead\(\)"):
        send(hook)

    assert server.requests == []


@pytest.mark.parametrize(
    ("send", "said"),
    [
        pytest.param(
            lambda hook: hook.run("/v2/x", extra_options={"check_response": False}), "'check_response'", id="no-check"
        ),
        pytest.param(
            lambda hook: hook.run("/v2/x", extra_options={"allow_redirects": True, "timeout": 60}),
            "'allow_redirects', 'timeout'",
            id="redirects-and-timeout",
        ),
        pytest.param(lambda hook: hook.run("/v2/x?accessKey=a&secretKey=b"), "carrying the keys", id="keys-by-name"),
        pytest.param(lambda hook: hook.run(f"/v2/x?k={ADMIN_SECRET}"), "carrying the keys", id="key-by-value"),
        pytest.param(
            lambda hook: send_prepared(hook, "GET", "http://127.0.0.2:9/v2/x"),
            "'127.0.0.2' refused: the keys go only to the connection's API host '127.0.0.1'",
            id="another-host",
        ),
    ],
)
def test_run_refuses_what_would_loosen_the_hooks_rules(scripted, lsq_connection, send, said):
    server = scripted(Reply(200, LEAD_FOUND))
    hook = test_answers.hook_for(lsq_connection, server)

    with pytest.raises(RefusedCallError) as raised:
        send(hook)

    assert said in str(raised.value) and ADMIN_SECRET not in str(raised.value)
    assert server.requests == []
    assert hook.run("/v2/x", extra_options={"check_response": True, "allow_redirects": False}).json() == LEAD_FOUND


def test_run_never_shows_the_keys(scripted, lsq_connection, logged):
    echo = f"keys {ADMIN_ACCESS} / {ADMIN_SECRET} are not valid here"
    server = scripted(
        Reply(500, test_answers.error("MXException", echo)), Reply(400, {"Status": "Error", "Message": echo})
    )
    hook = test_answers.hook_for(lsq_connection, server)

    with pytest.raises(LeadSquaredError) as raised:
        hook.run("/v2/x", json={})

    log = logged()
    assert "are not valid here" in str(raised.value) and "attempt 1, answered 500" in log
    for text in (str(raised.value), repr(raised.value), log):
        assert ADMIN_SECRET not in text and ADMIN_ACCESS not in text
    assert [r["headers"]["x-LSQ-SecretKey"] for r in server.requests] == [ADMIN_SECRET] * 2  # sent, in headers only


def test_http_operator_calls_leadsquared_through_the_hook(scripted, lsq_connection):
    """An ``HttpOperator`` on a ``leadsquared`` connection gets this hook, its budget and its checks."""
    from airflow.providers.http.operators.http import HttpOperator

    def answer(request: dict[str, Any]) -> Reply:
        if request["path"].endswith("UserByAccessKey.Get"):
            return Reply(200, {"Id": "u1", "OrgId": "org-1", "Role": "Administrator"})
        return Reply(200, LEAD_FOUND)

    server = scripted(answer)
    operator = HttpOperator(
        task_id="lookup",
        http_conn_id=lsq_connection(server.base_url),
        method="GET",
        endpoint=LEADS_GET,
        data={"emailaddress": "a@example.com"},
    )

    assert json.loads(operator.execute(context={})) == LEAD_FOUND
    assert isinstance(operator.hook, LeadSquaredHook)
    *learnt, lookup = server.requests  # the account learnt first unless this process knows it, then the call
    assert [r["path"] for r in learnt] in ([], ["/v2/Authentication.svc/UserByAccessKey.Get"])
    assert (lookup["path"], lookup["query"]) == (LEADS_GET, "emailaddress=a%40example.com")
    assert lookup["headers"]["x-LSQ-SecretKey"] == ADMIN_SECRET and ADMIN_SECRET not in lookup["query"]


def test_budget_gets_the_connections_share_and_bounded_wait(served, lsq_connection, lead_id, monkeypatch):
    import leadsquared_provider.hooks.leadsquared as hook_module

    made: list[dict[str, Any]] = []
    budget_class = hook_module.RateBudget

    def recording_budget(**kwargs: Any) -> Any:
        made.append(kwargs)
        return budget_class(**kwargs)

    monkeypatch.setattr(hook_module, "RateBudget", recording_budget)
    conn_id = lsq_connection(served.base_url, rate_limit=7, rate_share=0.5, budget_max_wait_seconds=12)

    assert (
        LeadSquaredHook(leadsquared_conn_id=conn_id).reset_lead(ResetRequest(lead_id, SCOPE)).outcome is Outcome.QUEUED
    )
    # The keys' own budget paid for learning the account; the account's budget pays for everything else.
    keys, account = made
    assert keys["tag"] == account_tag(ADMIN_ACCESS) and account["tag"] != keys["tag"]
    for kwargs in made:
        assert (kwargs["limit"], kwargs["share"], kwargs["max_wait_seconds"]) == (7, 0.5, 12.0)


class StubBudget:
    """A budget that gives ``units`` units, then refuses like a broken store or an exhausted wait."""

    units = 0

    def __init__(self, **kwargs: Any) -> None:
        self.given = 0

    def acquire(self) -> float:
        if self.given >= self.units:
            raise RateBudgetError("no unit within budget_max_wait_seconds=600")
        self.given += 1
        return 0.0

    def penalize(self) -> None:
        pass

    def effective_limit(self) -> float:
        return 1.0


def test_budget_failure_before_sending_is_raised_and_nothing_is_sent(scripted, lsq_connection, monkeypatch):
    monkeypatch.setattr("leadsquared_provider.hooks.leadsquared.RateBudget", StubBudget)
    server = scripted(Reply(200, QUEUED))
    hook = LeadSquaredHook(leadsquared_conn_id=lsq_connection(server.base_url), account="scripted")

    with pytest.raises(RateBudgetError, match="no unit"):
        hook.reset_lead(ResetRequest(new_lead_id(), SCOPE))
    assert server.requests == []


def test_budget_failure_after_an_attempt_is_that_leads_failed_result(scripted, lsq_connection, monkeypatch):
    monkeypatch.setattr(StubBudget, "units", 1)
    monkeypatch.setattr("leadsquared_provider.hooks.leadsquared.RateBudget", StubBudget)
    server = scripted(Reply(502, "<html>502 Bad Gateway</html>"))
    hook = LeadSquaredHook(leadsquared_conn_id=lsq_connection(server.base_url), account="scripted")

    result = hook.reset_lead(ResetRequest(new_lead_id(), SCOPE))

    assert (result.outcome, result.exception_type, result.attempts) == (Outcome.FAILED, "RateBudgetError", 1)
    assert result.uncertain_attempts == 0  # the unclear attempt was not followed by another
    assert len(server.requests) == 1


# -- the user behind the keys -------------------------------------------------------------------------------------


USER = {"Id": "b7d3", "Name": "Yogesh", "Role": "Administrator", "EmailAddress": None, "TimeZone": "Asia/Kolkata"}


@pytest.mark.parametrize(
    ("user", "ok", "text"),
    [
        pytest.param(USER, True, "connected as Yogesh (Administrator) on http://127.0.0.1:", id="admin-by-name"),
        pytest.param(
            {**USER, "Role": "Sales User"},
            False,
            "keys belong to Yogesh with role 'Sales User': Lead.Reset needs an administrator",
            id="non-admin-by-name",
        ),
        pytest.param({}, False, "LeadSquaredError: UserByAccessKey.Get answered 200", id="empty-object"),
    ],
)
def test_test_connection_names_the_user_by_name(scripted, lsq_connection, user, ok, text):
    server = scripted(Reply(200, user))
    hook = LeadSquaredHook(leadsquared_conn_id=lsq_connection(server.base_url, max_retries=1))

    result, message = hook.test_connection()

    assert result is ok
    assert text in message
    assert "None" not in message
    assert {r["path"] for r in server.requests} == {"/v2/Authentication.svc/UserByAccessKey.Get"}
    assert json.dumps(server.requests[0]["headers"]).count(ADMIN_SECRET) == 1  # header only, never the query
    assert server.requests[0]["query"] == ""


def test_admin_problem_names_the_user():
    assert LeadSquaredHook.admin_problem(USER) is None
    problem = LeadSquaredHook.admin_problem({**USER, "Role": "Marketing User"})
    assert problem == "keys belong to Yogesh with role 'Marketing User': Lead.Reset needs an administrator"
    assert LeadSquaredHook.user_name({"Name": None, "FirstName": "Asha", "LastName": "K"}) == "Asha K"


# -- the emulator's hostile answers ----------------------------------------------------------------------------------

HOSTILE_OUTCOMES = {
    "redirect_302": (Outcome.AUTH_FAILED, 1),
    "redirect_307": (Outcome.AUTH_FAILED, 1),
    "forbidden": (Outcome.AUTH_FAILED, 1),
    "exception_message_number": (Outcome.REJECTED, 1),
    "empty_object": (Outcome.FAILED, 2),
    "status_failure": (Outcome.FAILED, 2),
    "maintenance_html": (Outcome.FAILED, 2),
    "json_list": (Outcome.FAILED, 2),
    "json_string": (Outcome.FAILED, 2),
    "exception_type_object": (Outcome.FAILED, 2),
    "exception_message_list": (Outcome.FAILED, 2),
    "transient_error_200": (Outcome.FAILED, 2),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE_OUTCOMES))
def test_emulator_hostile_answers(scripted, lsq_connection, kind):
    from lsq_emulator.hostile import HOSTILE_KINDS

    assert set(HOSTILE_OUTCOMES) == set(HOSTILE_KINDS)  # every kind the emulator knows is covered
    elsewhere = scripted(Reply(200, QUEUED))
    lead = lsq_lead()
    config = EmulatorConfig(
        rate_limit=1000,
        rate_window_seconds=1.0,
        hostile_leads={lead["ProspectId"]: kind},
        redirect_url=f"http://localhost:{elsewhere.port}",
    )
    with run_emulator(config, leads=[lead]) as emu:
        hook = LeadSquaredHook(leadsquared_conn_id=lsq_connection(emu.base_url, max_retries=1))
        result = hook.reset_lead(ResetRequest(lead["ProspectId"], SCOPE))

    assert (result.outcome, result.attempts) == HOSTILE_OUTCOMES[kind]
    assert result.uncertain_attempts == (1 if result.outcome is Outcome.FAILED else 0)
    assert isinstance(result.exception_type, str | None) and len(result.message) <= 1000
    assert elsewhere.requests == []


def test_emulator_lead_not_found_as_500_is_rejected_once(lsq_connection):
    with run_emulator(EmulatorConfig(rate_limit=1000, rate_window_seconds=1.0, missing_lead_status=500)) as emu:
        hook = LeadSquaredHook(leadsquared_conn_id=lsq_connection(emu.base_url))
        result = hook.reset_lead(ResetRequest(new_lead_id(), SCOPE))
        calls = reset_calls(emu)

    assert (result.outcome, result.status_code, result.attempts) == (Outcome.REJECTED, 500, 1)
    assert result.exception_type == "MXInvalidEntityReferenceException"
    assert len(calls) == 1
