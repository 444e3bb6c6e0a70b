"""LeadSquaredHook: Lead.Reset through the account's shared rate budget, with classified answers.

Built on the HTTP provider's ``HttpHook`` (base URL, keep-alive adapter, ``run_and_check``); what it
changes is the session: keys travel only in the ``x-LSQ-AccessKey``/``x-LSQ-SecretKey`` headers (never in
a URL, never as basic auth), and the connection's extras are settings, not headers.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.http.hooks.http import HttpHook

from leadsquared_provider.exceptions import InvalidConnection, LeadSquaredAuthError, LeadSquaredError
from leadsquared_provider.outcomes import Answer, AnswerClass, Outcome, ResetResult, classify_answer
from leadsquared_provider.rate_budget import RateBudget, account_tag

if TYPE_CHECKING:
    from airflow.sdk import Connection
    from requests import Session

    from leadsquared_provider.reset_request import ResetRequest

RESET_ENDPOINT = "/v2/LeadManagement.svc/Lead.Reset"
USER_ENDPOINT = "/v2/Authentication.svc/UserByAccessKey.Get"


@dataclass(frozen=True)
class LeadSquaredSettings:
    """The connection's extras, with their defaults."""

    rate_limit: int = 25
    rate_window_seconds: float = 5.0
    rate_margin_seconds: float = 0.2
    rate_budget_url: str | None = None
    timeout_seconds: float = 30.0
    max_retries: int = 5
    max_rate_limit_waits: int = 20
    backoff_initial_seconds: float = 0.5
    backoff_max_seconds: float = 30.0

    @classmethod
    def from_extra(cls, extra: dict[str, Any]) -> LeadSquaredSettings:
        values: dict[str, Any] = {}
        for name, kind in cls.__annotations__.items():
            raw = extra.get(name, extra.get(f"extra__leadsquared__{name}"))
            if raw is None or raw == "":
                continue
            try:
                values[name] = str(raw) if "str" in kind else (int(raw) if kind == "int" else float(raw))
            except (TypeError, ValueError):
                raise InvalidConnection(f"connection extra {name!r} = {raw!r} is not a {kind}") from None
        return cls(**values)


class _RetryableAnswer(Exception):
    def __init__(self, answer: Answer) -> None:
        super().__init__(answer.message)
        self.answer = answer


class LeadSquaredHook(HttpHook):
    """
    Talk to LeadSquared's API for one account.

    :param leadsquared_conn_id: connection of type ``leadsquared``: host (a region's API host such as
        ``api-in21.leadsquared.com``, or a full base URL), login = access key, password = secret key,
        extras ``rate_limit``/``rate_window_seconds`` (the plan's limit), ``timeout_seconds``,
        ``max_retries``, ``rate_budget_url``.
    """

    conn_name_attr = "leadsquared_conn_id"
    default_conn_name = "leadsquared_default"
    conn_type = "leadsquared"
    hook_name = "LeadSquared"

    def __init__(self, leadsquared_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(method="POST", http_conn_id=leadsquared_conn_id, **kwargs)
        self.leadsquared_conn_id = leadsquared_conn_id
        self._local = threading.local()
        self._auth_failure: Answer | None = None

    @cached_property
    def connection(self) -> Connection:
        from airflow.sdk.log import mask_secret

        conn = self.get_connection(self.leadsquared_conn_id)
        if not conn.host:
            raise InvalidConnection(f"connection {self.leadsquared_conn_id!r} has no host")
        if not conn.login or not conn.password:
            raise InvalidConnection(
                f"connection {self.leadsquared_conn_id!r} needs the access key as login and the secret key as password"
            )
        mask_secret(conn.login)
        mask_secret(conn.password)
        return conn

    @cached_property
    def settings(self) -> LeadSquaredSettings:
        return LeadSquaredSettings.from_extra(self.connection.extra_dejson)

    @cached_property
    def budget(self) -> RateBudget:
        settings = self.settings
        return RateBudget(
            limit=settings.rate_limit,
            window_seconds=settings.rate_window_seconds,
            margin_seconds=settings.rate_margin_seconds,
            backend_url=settings.rate_budget_url,
            tag=account_tag(self.connection.login or ""),
        )

    def get_conn(self, headers: dict[str, Any] | None = None, extra_options: Any = None) -> Session:
        """A session per thread, authenticated by headers only."""
        from requests import Session

        session = getattr(self._local, "session", None)
        if session is None:
            conn = self.connection
            host = conn.host.rstrip("/")
            self.base_url = host if "://" in host else f"{conn.schema or 'https'}://{host}"
            if conn.port:
                self.base_url = f"{self.base_url}:{conn.port}"
            self._base_url_initialized = True
            session = Session()
            session.headers.update(
                {
                    "x-LSQ-AccessKey": conn.login,
                    "x-LSQ-SecretKey": conn.password,
                    "Accept": "application/json",
                    "User-Agent": "airflow-provider-leadsquared",
                }
            )
            session = self._configure_session_from_mount_adapters(session)
            self._local.session = session
        if headers:
            session.headers.update(headers)
        return session

    def _send(self, method: str, endpoint: str, body: dict[str, Any] | None = None) -> Answer:
        """One HTTP call, classified; network errors become transient answers."""
        from requests import Request, RequestException

        session = self.get_conn()
        request = Request(method, self.url_from_endpoint(endpoint), json=body)
        try:
            response = self.run_and_check(
                session,
                session.prepare_request(request),
                {"timeout": self.settings.timeout_seconds, "check_response": False},
            )
        except RequestException as exc:
            return Answer(AnswerClass.TRANSIENT, None, type(exc).__name__, str(exc)[:300])
        return classify_answer(response.status_code, response.text)

    def _call_with_retries(self, method: str, endpoint: str, body: dict[str, Any] | None) -> tuple[Answer, int, float]:
        """Send through the budget; retry rate limits and transient answers. Return answer, attempts, waited."""
        import tenacity

        if self._auth_failure is not None:
            raise LeadSquaredAuthError(
                f"not sent: an earlier call was refused ({self._auth_failure.status_code} "
                f"{self._auth_failure.exception_type}: {self._auth_failure.message})",
                status_code=self._auth_failure.status_code,
                exception_type=self._auth_failure.exception_type,
            )
        settings = self.settings
        counts = {"attempts": 0, "transient": 0, "rate_limited": 0, "waited": 0.0}

        def attempt() -> Answer:
            counts["waited"] += self.budget.acquire()
            counts["attempts"] += 1
            answer = self._send(method, endpoint, body)
            if answer.kind is AnswerClass.RATE_LIMITED:
                counts["rate_limited"] += 1
                self.budget.penalize()
                raise _RetryableAnswer(answer)
            if answer.kind is AnswerClass.TRANSIENT:
                counts["transient"] += 1
                raise _RetryableAnswer(answer)
            return answer

        def out_of_budget(_: tenacity.RetryCallState) -> bool:
            return counts["transient"] > settings.max_retries or counts["rate_limited"] > settings.max_rate_limit_waits

        backoff = tenacity.wait_random_exponential(
            multiplier=settings.backoff_initial_seconds, max=settings.backoff_max_seconds
        )

        def wait(state: tenacity.RetryCallState) -> float:
            # A rate-limited call already waited a whole window in penalize(); transient ones back off.
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, _RetryableAnswer) and exc.answer.kind is AnswerClass.RATE_LIMITED:
                return 0.0
            return backoff(state)

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(_RetryableAnswer),
            stop=out_of_budget,
            wait=wait,
            reraise=True,
            before_sleep=lambda state: self.log.info(
                "Retrying %s after %s", endpoint, state.outcome.exception() if state.outcome else "?"
            ),
        )
        try:
            answer = retrying(attempt)
        except _RetryableAnswer as exc:
            answer = exc.answer
        if answer.kind is AnswerClass.AUTH_FAILED:
            self._auth_failure = answer
        return answer, counts["attempts"], counts["waited"]

    def reset_lead(self, request: ResetRequest) -> ResetResult:
        """Reset one lead. Never raises for the lead's own trouble: the result says what happened.

        :raises LeadSquaredAuthError: when an earlier call of this hook was refused for its keys or host;
            nothing is sent then.
        """
        started = time.time()
        answer, attempts, waited = self._call_with_retries("POST", RESET_ENDPOINT, request.to_body())
        outcome = {
            AnswerClass.QUEUED: Outcome.QUEUED,
            AnswerClass.REJECTED: Outcome.REJECTED,
            AnswerClass.AUTH_FAILED: Outcome.AUTH_FAILED,
        }.get(answer.kind, Outcome.FAILED)
        message = answer.message
        if outcome is Outcome.FAILED:
            message = f"gave up after {attempts} attempt(s): {answer.message}"
        return ResetResult(
            lead_id=request.lead_id,
            outcome=outcome,
            status_code=answer.status_code,
            exception_type=answer.exception_type,
            message=message,
            attempts=attempts,
            started_at=started,
            finished_at=time.time(),
            budget_wait_seconds=round(waited, 3),
        )

    def get_user(self) -> dict[str, Any]:
        """The user the keys belong to (``UserByAccessKey.Get``).

        :raises LeadSquaredAuthError: keys or host refused (401/404).
        :raises LeadSquaredError: any other failure, after the retry budget.
        """
        answer, _, _ = self._call_with_retries("GET", USER_ENDPOINT, None)
        described = f"UserByAccessKey.Get answered {answer.status_code} {answer.exception_type}: {answer.message}"
        if answer.kind is AnswerClass.AUTH_FAILED:
            raise LeadSquaredAuthError(described, status_code=answer.status_code, exception_type=answer.exception_type)
        if answer.kind is not AnswerClass.QUEUED or not isinstance(answer.payload, dict):
            raise LeadSquaredError(described)
        return answer.payload

    @staticmethod
    def admin_problem(user: dict[str, Any]) -> str | None:
        """Why these keys cannot reset leads (Lead.Reset needs an administrator), or None."""
        role = user.get("Role", "?")
        if "admin" in str(role).lower():
            return None
        name = user.get("EmailAddress") or user.get("FirstName") or "?"
        return f"keys belong to {name} with role {role!r}: Lead.Reset needs an administrator"

    def test_connection(self) -> tuple[bool, str]:
        """Check host and keys with ``UserByAccessKey.Get``; the keys must be an admin's."""
        try:
            user = self.get_user()
        except Exception as exc:  # the UI shows the message; nothing else may escape
            return False, f"{type(exc).__name__}: {exc}"
        problem = self.admin_problem(user)
        if problem:
            return False, problem
        name = user.get("EmailAddress") or user.get("FirstName") or "?"
        return True, f"connected as {name} ({user.get('Role')}) on {self.base_url}"
