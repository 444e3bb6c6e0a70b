"""LeadSquaredHook: Lead.Reset (and the activity read that verifies it) through the account's shared rate
budget, with classified answers (:mod:`leadsquared_provider.hooks.answers`).

Built on the HTTP provider's ``HttpHook`` (its connection attributes, base URL, adapters and
``test_connection``); what it changes is the session: keys travel only in the
``x-LSQ-AccessKey``/``x-LSQ-SecretKey`` headers (never in a URL, never as basic auth), the connection's extras
are settings (:class:`LeadSquaredSettings`), not headers, and every call takes a unit of the account's budget,
has a timeout and follows no redirect.

HttpHook's interface is honoured, not refused: ``run``, ``run_and_check`` and ``run_with_advanced_retry`` send
by the same path as the hook's own endpoints (budget and daily quota, deadline, retries by answer class, the
same meaning of success). So a user of the HTTP provider (``HttpOperator``, ``HttpSensor``) can call any other
LeadSquared endpoint through a ``leadsquared`` connection and still share one budget per account with our
resets, with the same safety. Composing a session instead would have lost that, and HttpHook's connection
handling with it. The one call ``run`` refuses is Lead.Reset: resets go through :meth:`reset_lead`, sent by
the reset operator after the state store's claim, so that no reset is ever sent unclaimed.
"""

from __future__ import annotations

import ipaddress
import math
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cached_property, partial
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit

from airflow.providers.http.hooks.http import HttpHook

from leadsquared_provider import metrics
from leadsquared_provider.exceptions import (
    ActivityReadError,
    DailyQuotaSpent,
    InvalidConnection,
    InvalidResetRequest,
    LeadSquaredAuthError,
    LeadSquaredError,
    RateBudgetError,
    RefusedCallError,
)
from leadsquared_provider.hooks.answers import (
    EXCEPTION_TYPE_LIMIT,
    Answer,
    AnswerClass,
    activity_event_code,
    answer_text,
    classify_answer,
    is_queued_body,
    is_user_body,
)
from leadsquared_provider.rate_budget import DailyQuota, RateBudget, Reaction, account_tag
from leadsquared_provider.rules.outcomes import MESSAGE_LIMIT, Outcome, ResetResult, redacted
from leadsquared_provider.rules.request import normalize_lead_id
from leadsquared_provider.settings import LeadSquaredSettings

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow.sdk import Connection
    from requests import PreparedRequest, Response, Session

    from leadsquared_provider.rules.request import ResetRequest

__all__ = ["ActivityReadError", "LeadSquaredHook", "LeadSquaredSettings"]

RESET_ENDPOINT = "/v2/LeadManagement.svc/Lead.Reset"
USER_ENDPOINT = "/v2/Authentication.svc/UserByAccessKey.Get"
ACTIVITIES_ENDPOINT = "/v2/ProspectActivity.svc/Retrieve"
ACTIVITY_PAGE_SIZE = 25  # the most ProspectActivity.Retrieve returns per call
MAX_ACTIVITY_PAGES = 400  # 10,000 activities of one lead (and event code): more is refused, not read for hours
MAX_ACTIVITY_READS = 3  # a lead whose activities change while they are paged through is read again from the start
LOOPBACK_NAMES = frozenset({"localhost"})
# run()'s extra_options: only these, with these values (the hook's own rules), are accepted.
_SAFE_OPTIONS: dict[str, Any] = {"check_response": True, "allow_redirects": False}
_KEY_PARAMS = ("accesskey=", "secretkey=")  # the keys as query parameters: refused in any case
_KEY_FIELDS = {"login": "access key", "password": "secret key"}


class _Retry(Exception):
    """An answer worth sending again (rate limit or no clear answer)."""

    def __init__(self, answer: Answer) -> None:
        super().__init__(answer.message)
        self.answer = answer


class _Stopped(Exception):
    """Another call of this hook was refused for its keys or host while this one was retrying."""


def _is_activities_body(body: dict[str, Any]) -> bool:
    """ProspectActivity.Retrieve's success: an integer ``RecordCount`` and a list of activity objects."""
    count = body.get("RecordCount")
    activities = body.get("ProspectActivities")
    return (
        isinstance(count, int)
        and not isinstance(count, bool)
        and count >= 0
        and isinstance(activities, list)
        and all(isinstance(activity, dict) for activity in activities)
    )


def _is_filled_object(body: dict[str, Any]) -> bool:
    """run()'s success: a JSON object that says something (``{}`` says nothing); error objects never are."""
    return bool(body)


def _decoded(url: str) -> str:
    """``url`` percent-decoded until it stops changing (``Lead%252EReset`` is still Lead.Reset), case-folded."""
    for _ in range(5):
        decoded = unquote(url)
        if decoded == url:
            break
        url = decoded
    return url.casefold()


def _refuse_reset(url: str) -> None:
    """Refuse a Lead.Reset outside :meth:`LeadSquaredHook.reset_lead`: it would be sent unclaimed."""
    if "lead.reset" in _decoded(url):
        raise RefusedCallError(
            "run() refuses Lead.Reset: a reset sent here would skip the state store's claim (and could be sent "
            "twice); resets go through reset_lead(), by LeadSquaredResetOperator"
        )


@dataclass
class _Tally:
    """What one logical call cost: attempts sent, rate-limit answers met, uncertain attempts, budget wait."""

    attempts: int = 0
    transient: int = 0
    rate_limited: int = 0
    uncertain: int = 0
    waited: float = 0.0
    last_was_uncertain: bool = False


def _check_event_code(code: Any) -> None:
    if isinstance(code, bool) or not isinstance(code, int) or code <= 0:
        raise InvalidResetRequest(f"activity event code {code!r} must be a positive integer")


def _activity_body(event_code: int | None, offset: int) -> dict[str, Any]:
    """A ProspectActivity.Retrieve body: one page from ``offset``, of one event code or of all."""
    return {
        "Parameter": {"ActivityEvent": event_code} if event_code is not None else {},
        "Paging": {"Offset": str(offset), "RowCount": str(ACTIVITY_PAGE_SIZE)},
    }


_QUOTA_WINDOW = re.compile(r"limit of\s+\d+\s+in\s+([\d.]+)\s*second", re.I)
DAY_WINDOW_SECONDS = 3600  # a rate-limit answer naming a window this long or longer is the daily quota


def quota_window_seconds(message: str) -> float | None:
    """The window a rate-limit answer names, when it is an hour or more (``...limit of 10000 in 86400
    second(s)``): the account's daily quota is spent. ``None`` for the 5-s limit or no window named."""
    match = _QUOTA_WINDOW.search(message or "")
    if match is None:
        return None
    try:
        seconds = float(match[1])
    except ValueError:
        return None
    return seconds if DAY_WINDOW_SECONDS <= seconds <= 7 * 86_400 else None


# The account tag of each access key's hash, learnt by this process (UserByAccessKey.Get's OrgId).
_ACCOUNTS: dict[str, str] = {}


class _CallDeadline(Exception):
    """The answer did not arrive whole within the call's timeout (a server trickling its body)."""


def _body_within(response: Response, deadline: float, timeout: float) -> bytes:
    """The response's body, read whole before ``deadline`` (monotonic): the timeout bounds the call, not each
    read of the socket."""
    from requests.exceptions import ChunkedEncodingError, ConnectionError, ContentDecodingError
    from urllib3.exceptions import DecodeError, ProtocolError, ReadTimeoutError

    raw, size = response.raw, 0
    chunks: list[bytes] = []
    while True:
        # An answer that came whole is read, however late (the last read returns at once: its Content-Length
        # is in); one still coming when time is up is not.
        if chunks and raw.length_remaining != 0 and time.monotonic() > deadline:
            raise _CallDeadline(f"no whole answer within {timeout:g} s ({size} bytes of the body read)")
        try:  # what has arrived; each socket read has the timeout. Errors as requests names them.
            chunk = raw.read1(65536, decode_content=True)
        except ProtocolError as exc:
            raise ChunkedEncodingError(exc) from exc
        except DecodeError as exc:
            raise ContentDecodingError(exc) from exc
        except ReadTimeoutError as exc:
            raise ConnectionError(exc) from exc
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _never_reached_the_server(exc: Exception) -> bool:
    """True when a request error proves nothing was sent: the connection itself could not be made."""
    from requests import ConnectTimeout
    from urllib3.exceptions import NewConnectionError

    if isinstance(exc, ConnectTimeout):
        return True
    seen: set[int] = set()
    cause: Any = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, NewConnectionError):
            return True
        reason = getattr(cause, "reason", None)
        args = getattr(cause, "args", ())
        cause = reason if reason is not None else (args[0] if args and isinstance(args[0], BaseException) else None)
    return False


class LeadSquaredHook(HttpHook):
    """
    Talk to LeadSquared's API for one account.

    :param leadsquared_conn_id: connection of type ``leadsquared``: host (a region's API host such as
        ``api-in21.leadsquared.com``, or a full ``https://`` base URL), login = access key, password =
        secret key; extras as in :class:`LeadSquaredSettings` (``rate_limit``/``rate_window_seconds``: the
        plan's limit, ``rate_share``, ``timeout_seconds``, ``max_retries``, ``rate_budget_url``, ...).
    :param account: the account's tag when the caller knows it (a run records the one its plan learnt);
        otherwise :attr:`account` asks LeadSquared once per process.
    :param method: the HTTP method of :meth:`run` (as HttpHook's); the hook's own calls choose their own.
    """

    conn_name_attr = "leadsquared_conn_id"
    default_conn_name = "leadsquared_default"
    conn_type = "leadsquared"
    hook_name = "LeadSquared"

    def __init__(
        self,
        leadsquared_conn_id: str = default_conn_name,
        account: str | None = None,
        method: str = "POST",
        **kwargs: Any,
    ) -> None:
        super().__init__(method=method, http_conn_id=leadsquared_conn_id, **kwargs)
        self.leadsquared_conn_id = leadsquared_conn_id
        self._account = account
        self._account_lock = threading.RLock()  # get_user, called under it, charges the account's budget
        self._budget: RateBudget | None = None
        self._local = threading.local()
        self._setup_lock = threading.Lock()
        self._auth_failure: Answer | None = None
        self._keys: tuple[str, str] = ("", "")
        self._prepared = False

    # -- connection, settings, budget ----------------------------------------------------------------

    @cached_property
    def connection(self) -> Connection:
        """The connection; its keys are stripped, checked and registered with Airflow's secrets masker.

        The checked keys are :attr:`access_key` and :attr:`secret_key`; the connection object is left as read.
        """
        from airflow.sdk.log import mask_secret

        conn = self.get_connection(self.leadsquared_conn_id)
        for raw in (conn.login, conn.password):
            if isinstance(raw, str) and raw.strip():
                mask_secret(raw.strip())
                mask_secret(raw)  # as stored too, e.g. with its trailing newline
        if not conn.host or not conn.host.strip():
            raise InvalidConnection(f"connection {self.leadsquared_conn_id!r} has no host")
        self._keys = (self._checked_key(conn, "login"), self._checked_key(conn, "password"))
        return conn

    @property
    def access_key(self) -> str:
        _ = self.connection
        return self._keys[0]

    @property
    def secret_key(self) -> str:
        _ = self.connection
        return self._keys[1]

    def _checked_key(self, conn: Connection, field_name: str) -> str:
        """The key in ``field_name``, stripped; refused (naming the field, never the value) if malformed."""
        raw = getattr(conn, field_name)
        key = raw.strip() if isinstance(raw, str) else ""
        if not key:
            raise InvalidConnection(
                f"connection {self.leadsquared_conn_id!r} needs the access key as login and the secret key as "
                f"password; its {field_name} is empty"
            )
        if any(not 33 <= ord(char) <= 126 for char in key):
            raise InvalidConnection(
                f"connection {self.leadsquared_conn_id!r}: the {_KEY_FIELDS[field_name]} ({field_name}) holds "
                "whitespace, control or non-ASCII characters inside it; paste the key again"
            )
        return key

    @cached_property
    def settings(self) -> LeadSquaredSettings:
        settings = LeadSquaredSettings.from_extra(self.connection.extra_dejson)
        if settings.rate_budget_url:
            from airflow.sdk.log import mask_secret

            try:
                password = urlsplit(settings.rate_budget_url).password
            except ValueError:
                password = None
            if password:
                mask_secret(password)
        return settings

    @cached_property
    def api_base_url(self) -> str:
        """The API's base URL: https, or http to a loopback host or with ``allow_insecure_http``."""
        conn = self.connection
        host = (conn.host or "").strip().rstrip("/")
        base = host if "://" in host else f"{conn.schema or 'https'}://{host}"
        try:
            parsed = urlsplit(base)
            hostname, port = parsed.hostname, parsed.port
        except ValueError as exc:
            raise InvalidConnection(
                f"connection {self.leadsquared_conn_id!r}: host {host!r} is not a URL: {exc}"
            ) from None
        if not hostname:
            raise InvalidConnection(f"connection {self.leadsquared_conn_id!r}: host {host!r} names no host")
        if conn.port and port is None:
            base = f"{base}:{conn.port}"
        scheme = parsed.scheme.lower()
        if scheme == "https":
            return base
        if scheme == "http" and (_is_loopback(hostname) or self.settings.allow_insecure_http):
            return base
        raise InvalidConnection(
            f"connection {self.leadsquared_conn_id!r}: host {hostname!r} is reached over {scheme}://, which "
            "would send the keys unencrypted; use https, or (for a test server only) set the connection "
            "extra 'allow_insecure_http' to true (127.0.0.1, localhost and ::1 are always allowed)"
        )

    @property
    def api_host(self) -> str:
        """The API's host (and port, when not the scheme's), as lineage and assets name the account."""
        return urlsplit(self.api_base_url).netloc.rpartition("@")[2].lower()

    def _day(self, cap: int) -> DailyQuota:
        """The account's day as the connection states it: rolling ``daily_window_seconds``, or from ``daily_reset``."""
        return DailyQuota(cap=cap, window_seconds=self.settings.daily_window_seconds, reset=self.settings.daily_reset)

    def _day_left_seconds(self) -> float:
        """Until the account's day restarts, not knowing when its calls began: a whole rolling day, or until the
        stated restart."""
        now = time.time_ns() // 1_000_000
        return (self._day(0).restarts_ms(now, None) - now) / 1000

    def _budget_for(self, tag: str, *, daily: bool = True) -> RateBudget:
        settings = self.settings
        quota = None
        if daily and settings.daily_limit is not None:
            quota = self._day(math.floor(settings.daily_limit * settings.daily_share + 1e-9))
        return RateBudget(
            daily=quota,
            limit=settings.rate_limit,
            window_seconds=settings.rate_window_seconds,
            margin_seconds=settings.rate_margin_seconds,
            backend_url=settings.rate_budget_url,
            tag=tag,
            share=settings.rate_share,
            max_wait_seconds=settings.budget_max_wait_seconds,
        )

    @cached_property
    def key_budget(self) -> RateBudget:
        """The budget of these keys alone: only for the one call that learns their account (``get_user``)."""
        return self._budget_for(account_tag(self.access_key), daily=False)

    @property
    def account(self) -> str:
        """The account's tag: a hash of the ``OrgId`` that ``UserByAccessKey.Get`` names for these keys.

        Given by the run (the plan recorded it), else remembered by this process for the keys, else asked
        once (through :attr:`key_budget`). Every key of one account, in every connection, has the same tag.
        """
        if self._known_account() is None:
            with self._account_lock:
                if self._known_account() is None:
                    self.get_user()  # learns it
        assert self._account is not None
        return self._account

    def _known_account(self) -> str | None:
        """The account if known without a call: given, learnt by this process, or noted in the keys' budget."""
        if self._account is None:
            keys = account_tag(self.access_key)
            self._account = _ACCOUNTS.get(keys) or self.key_budget.noted_account()
            if self._account is not None:
                _ACCOUNTS[keys] = self._account
        return self._account

    def _learn_account(self, user: dict[str, Any]) -> str:
        org = user.get("OrgId")
        tag = account_tag(str(org).strip().lower()) if isinstance(org, str) and org.strip() else None
        if tag is None:  # an answer without the account: the keys' own budget (what earlier versions did)
            self.log.warning("UserByAccessKey.Get named no OrgId: the rate budget is these keys' own")
            tag = account_tag(self.access_key)
        _ACCOUNTS[account_tag(self.access_key)] = tag
        return tag

    @property
    def budget(self) -> RateBudget:
        """The account's budget: shared by every connection, key, run and worker of the account."""
        if self._budget is None:
            tag = self.account
            with self._account_lock:
                if self._budget is None:
                    same = tag == account_tag(self.access_key)  # no OrgId came: the keys' own budget, with its day
                    self._budget = self._budget_for(tag)
                    if same:
                        self.__dict__["key_budget"] = self._budget
        return self._budget

    def _prepare(self) -> None:
        """Read connection, settings, base URL and budget once, whichever thread comes first."""
        if self._prepared:
            return
        with self._setup_lock:
            if not self._prepared:
                self.base_url = self.api_base_url  # HttpHook's public attribute: url_from_endpoint() reads it
                _ = self.key_budget
                self._prepared = True

    def get_conn(self, headers: dict[str, Any] | None = None, extra_options: Any = None) -> Session:
        """This thread's session, authenticated by headers only; ``extra_options`` is not used."""
        from requests import Session

        self._prepare()
        session = getattr(self._local, "session", None)
        if session is None:
            session = Session()
            session.headers.update(
                {
                    "x-LSQ-AccessKey": self.access_key,
                    "x-LSQ-SecretKey": self.secret_key,
                    "Accept": "application/json",
                    "User-Agent": "airflow-provider-leadsquared",
                }
            )
            adapter = self.adapter or self.keep_alive_adapter
            if adapter is not None:
                session.mount("https://", adapter)
                session.mount("http://", adapter)
            self._local.session = session
        if headers:
            session.headers.update(headers)
        return session

    # -- HttpHook's ways to send, through the budget --------------------------------------------------------

    def run(
        self,
        endpoint: str | None = None,
        data: dict[str, Any] | str | None = None,
        headers: dict[str, Any] | None = None,
        extra_options: dict[str, Any] | None = None,
        **request_kwargs: Any,
    ) -> Response:
        """Send :attr:`method` to ``endpoint`` as HttpHook does, through the account's budget and answer checks.

        ``data`` goes as query parameters for GET, as the body otherwise; ``request_kwargs`` (``json=...``) go
        to ``requests.Request``. The call is paced and retried as the hook's own endpoints are: rate limits
        slow the account's budget, unclear answers (5xx, timeout, a body that is not a JSON object) are sent
        again up to the connection's ``max_retries``, so an endpoint that must not run twice wants
        ``max_retries`` 0.

        :return: the response, only on a success: a 2xx whose body is a non-empty JSON object that is not an
            error object. Its body is read: ``.json()`` and ``.text`` work.
        :raises RefusedCallError: a Lead.Reset (use :meth:`reset_lead`, through the reset operator), a URL off
            the API host or carrying the keys, or an ``extra_options`` entry other than
            ``check_response=True``/``allow_redirects=False``; nothing is sent.
        :raises LeadSquaredAuthError: keys, host, path (404) or permission refused, or a redirect (the hook
            then stops, as for resets).
        :raises RateBudgetError: the budget gave no unit.
        :raises DailyQuotaSpent: the account's share of today's quota is spent.
        :raises LeadSquaredError: any other answer, after the retry budget (its status and exception type named).
        """
        from requests import Request

        _refuse_reset(endpoint or "")
        session = self.get_conn()
        url = self.url_from_endpoint(endpoint)
        if self.method == "GET":
            request = Request(self.method, url, params=data, headers=headers, **request_kwargs)
        elif self.method == "HEAD":
            request = Request(self.method, url, headers=headers, **request_kwargs)
        else:
            request = Request(self.method, url, data=data, headers=headers, **request_kwargs)
        return self.run_and_check(session, session.prepare_request(request), extra_options or {})

    def run_and_check(
        self, session: Session, prepped_request: PreparedRequest, extra_options: dict[str, Any]
    ) -> Response:
        """Send ``prepped_request`` with ``session`` through the budget and the answer checks, as :meth:`run`.

        Refused as :meth:`run` refuses; the timeout is the connection's and no redirect is followed.
        """
        self._refuse_unsafe(prepped_request, extra_options)
        what = self._clean(f"{prepped_request.method} {urlsplit(prepped_request.url or '').path}", 300)
        answer, tally, described = self._read(partial(self._send, session, prepped_request, _is_filled_object), what)
        if answer.kind is not AnswerClass.QUEUED or answer.response is None:
            raise LeadSquaredError(f"{described} (after {tally.attempts} attempt(s))")
        return answer.response

    def run_with_advanced_retry(self, _retry_args: dict[Any, Any], *args: Any, **kwargs: Any) -> Response:
        """:meth:`run`, retried by the connection's policy: ``_retry_args`` are not used.

        Retries here are the hook's own (by answer class, within the account's budget and the connection's
        ``max_retries``): a caller's tenacity arguments could resend what must not be resent (a refused
        request, a call after the keys were refused) or wait outside the shared budget.
        """
        if _retry_args:
            self.log.info(
                "run_with_advanced_retry: the retry arguments are not used; the connection's retry policy applies"
            )
        return self.run(*args, **kwargs)

    def url_from_endpoint(self, endpoint: str | None) -> str:
        """The endpoint's URL on :attr:`api_base_url` (https, or http to a loopback host or when allowed)."""
        self._prepare()
        return super().url_from_endpoint(endpoint)

    def _refuse_unsafe(self, prepped_request: PreparedRequest, extra_options: dict[str, Any]) -> None:
        """Refuse what :meth:`run` must not send: see its ``:raises RefusedCallError:``."""
        url = prepped_request.url or ""
        _refuse_reset(url)
        loosened = sorted(
            name for name, value in extra_options.items() if name not in _SAFE_OPTIONS or value != _SAFE_OPTIONS[name]
        )
        if loosened:
            raise RefusedCallError(
                f"run(): extra_options {', '.join(map(repr, loosened))} refused: the timeout is the connection's "
                "'timeout_seconds', redirects are never followed and every answer is checked"
            )
        target, base = urlsplit(url), urlsplit(self.api_base_url)
        if (target.scheme.lower(), target.hostname, target.port) != (base.scheme.lower(), base.hostname, base.port):
            raise RefusedCallError(
                f"run(): a request to {answer_text(target.hostname, 255)!r} refused: the keys go only to the "
                f"connection's API host {base.hostname!r}"
            )
        decoded = _decoded(url)
        if any(name in decoded for name in _KEY_PARAMS) or any(key and key.casefold() in decoded for key in self._keys):
            raise RefusedCallError("run(): a URL carrying the keys refused: the hook sends them in headers only")

    # -- one call, classified --------------------------------------------------------------------------

    def _clean(self, text: object, limit: int = MESSAGE_LIMIT) -> str:
        """``text`` safe for logs and results: secrets masked (Airflow's redactor, then the keys verbatim)."""
        shown = str(text)
        for key in self._keys:
            if key:
                shown = shown.replace(key, "***")
        return redacted(shown, limit)

    def _own_call(
        self, method: str, endpoint: str, body: dict[str, Any] | None, accepts: Callable[..., bool]
    ) -> Callable[[], Answer]:
        """One of the hook's own calls, ready to send (once per attempt): keys in its headers, ``body`` as JSON."""
        from requests import Request

        session = self.get_conn()
        prepared = session.prepare_request(Request(method, self.url_from_endpoint(endpoint), json=body))
        return partial(self._send, session, prepared, accepts)

    def _send(self, session: Session, prepared: PreparedRequest, accepts: Callable[..., bool]) -> Answer:
        """One HTTP call (no redirect followed, always a timeout), classified and counted by endpoint and answer."""
        answer = self._exchange(session, prepared, accepts)
        metrics.count(
            metrics.API_CALLS, endpoint=metrics.endpoint_name(urlsplit(prepared.url or "").path), answer=answer.kind
        )
        return answer

    def _exchange(self, session: Session, prepared: PreparedRequest, accepts: Callable[..., bool]) -> Answer:
        """One HTTP call (no redirect followed, always a timeout), classified; request errors are transient."""
        from requests import RequestException

        timeout = self.settings.timeout_seconds
        deadline = time.monotonic() + timeout
        try:
            environment = session.merge_environment_settings(
                prepared.url, proxies=session.proxies, stream=True, verify=session.verify, cert=session.cert
            )
            response = session.send(prepared, timeout=timeout, allow_redirects=False, **environment)
            with response:
                content = _body_within(response, deadline, timeout)
            response._content = content  # read whole (within the deadline): .text and .json() read it from here
            response._content_consumed = True  # type: ignore[attr-defined]  # requests' own flag
        except RequestException as exc:
            return Answer(
                AnswerClass.TRANSIENT,
                None,
                type(exc).__name__,
                self._clean(f"{type(exc).__name__}: {exc}"),
                uncertain=not _never_reached_the_server(exc),
            )
        except _CallDeadline as exc:
            return Answer(AnswerClass.TRANSIENT, response.status_code, "CallDeadline", str(exc), uncertain=True)
        text = content.decode(response.encoding or "utf-8", errors="replace")
        answer = classify_answer(response.status_code, text, location=response.headers.get("Location"), accepts=accepts)
        return replace(
            answer,
            message=self._clean(answer.message),
            exception_type=self._clean(answer.exception_type, EXCEPTION_TYPE_LIMIT) if answer.exception_type else None,
            response=response,
        )

    def _stop_error(self, prefix: str) -> LeadSquaredAuthError:
        failure = self._auth_failure
        assert failure is not None
        said = f"{failure.exception_type}: {failure.message}" if failure.exception_type else failure.message
        return LeadSquaredAuthError(
            f"{prefix}: an earlier call was refused ({failure.status_code} {said})",
            status_code=failure.status_code,
            exception_type=failure.exception_type,
        )

    def _call(self, send: Callable[[], Answer], tally: _Tally, what: str, budget: RateBudget | None = None) -> Answer:
        """Send (``send``: one attempt, classified) through the budget; retry rate limits and unclear answers
        within the settings' budgets.

        ``what`` names the call in the retry log (its lead, when it has one): a user can then tell which
        lead's reset was sent again after an answer nobody could read.

        :raises LeadSquaredAuthError: this hook was stopped by an auth failure before anything was sent.
        :raises RateBudgetError: the budget gave no unit (raised as is; ``tally`` says what was sent).
        :raises _Stopped: another call stopped the hook while this one was retrying.
        """
        import tenacity

        if self._auth_failure is not None:
            raise self._stop_error("not sent")
        self._prepare()
        settings = self.settings
        try:
            spend = budget or self.budget  # may ask LeadSquared which account the keys belong to, once
        except LeadSquaredAuthError:
            assert self._auth_failure is not None  # that request was refused: nothing more is sent
            tally.attempts += 1  # made on this call's behalf
            return self._auth_failure

        def attempt() -> Answer:
            if self._auth_failure is not None and tally.attempts:
                raise _Stopped
            waited = spend.acquire()
            tally.waited += waited
            metrics.timing(metrics.BUDGET_WAIT, waited)
            if tally.last_was_uncertain:
                tally.uncertain += 1  # the previous attempt may have reached LeadSquared: this one may repeat it
                tally.last_was_uncertain = False
            tally.attempts += 1
            answer = send()
            if answer.kind is AnswerClass.RATE_LIMITED:
                tally.rate_limited += 1
                day = quota_window_seconds(answer.message)
                if day is not None:  # the day's quota, not the 5-s limit: waiting a window changes nothing
                    metrics.count(metrics.RATE_LIMITED, reaction="day_spent")
                    raise spend.day_is_spent(day)
                reaction = spend.penalize()
                metrics.count(metrics.RATE_LIMITED, reaction=reaction.name.lower())
                if reaction is Reaction.AT_FLOOR:  # refused at one call per window: the day is spent
                    raise spend.day_is_spent(self._day_left_seconds())
                raise _Retry(answer)
            if answer.kind is AnswerClass.TRANSIENT:
                tally.transient += 1
                tally.last_was_uncertain = answer.uncertain
                raise _Retry(answer)
            return answer

        def give_up(_: tenacity.RetryCallState) -> bool:
            return tally.transient > settings.max_retries or tally.rate_limited > settings.max_rate_limit_waits

        backoff = tenacity.wait_random_exponential(
            multiplier=settings.backoff_initial_seconds, max=settings.backoff_max_seconds
        )

        def wait(state: tenacity.RetryCallState) -> float:
            # A rate-limit answer already slowed the shared budget (penalize): the next acquire paces it.
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, _Retry) and exc.answer.kind is AnswerClass.RATE_LIMITED:
                return 0.0
            return backoff(state)

        def log_retry(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, _Retry):
                self.log.info(
                    "%s, attempt %d, answered %s (%s): sending again",
                    what,
                    tally.attempts,
                    exc.answer.status_code,
                    exc.answer.message,
                )

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(_Retry),
            stop=give_up,
            wait=wait,
            reraise=True,
            before_sleep=log_retry,
        )
        try:
            answer = retrying(attempt)
        except _Retry as exc:
            answer = exc.answer
        if answer.kind is AnswerClass.AUTH_FAILED and self._auth_failure is None:
            self._auth_failure = answer
        return answer

    def send_budget_gauges(self, budget: RateBudget | None = None) -> None:
        """Send the account's budget as gauges: its effective rate and, with a daily quota, today's use of it."""
        budget = budget or self.budget
        metrics.gauge(metrics.EFFECTIVE_RATE, budget.effective_limit())
        left = budget.day_left()
        if budget.daily is not None and left is not None:
            metrics.gauge(metrics.DAILY_USED, budget.daily.cap - left)
            metrics.gauge(metrics.DAILY_SHARE, budget.daily.cap)

    # -- the API ---------------------------------------------------------------------------------------

    def reset_lead(self, request: ResetRequest) -> ResetResult:
        """Reset one lead. Nothing about the lead itself raises: the result says what happened.

        :raises LeadSquaredAuthError: an earlier call of this hook was refused for its keys, host,
            permission or a redirect; nothing is sent then.
        :raises RateBudgetError: the account's budget gave no unit for the first attempt (its bounded wait
            ran out or its store is broken); nothing was sent. (Once an attempt was sent, a budget failure
            ends the lead as ``failed`` with exception type ``RateBudgetError`` instead.)
        """
        started = time.time()
        tally = _Tally()
        deferred = False
        try:
            send = self._own_call("POST", RESET_ENDPOINT, request.to_body(), is_queued_body)
            answer = self._call(send, tally, f"Lead.Reset of lead {request.lead_id}")
        except (LeadSquaredAuthError, InvalidConnection):
            raise  # the run's trouble, not the lead's
        except RateBudgetError as exc:
            if not tally.attempts:
                raise
            answer = Answer(AnswerClass.TRANSIENT, None, "RateBudgetError", self._clean(f"rate budget: {exc}"))
        except DailyQuotaSpent as exc:
            if not tally.attempts:
                raise  # nothing sent: the sender defers the lead
            deferred = True  # sent, but no retry fits in today's quota: the next run sends it again
            answer = Answer(AnswerClass.TRANSIENT, None, "DailyQuotaSpent", self._clean(f"not sent again: {exc}"))
        except _Stopped:
            failure = self._stop_error("stopped")
            answer = Answer(AnswerClass.TRANSIENT, None, failure.exception_type, self._clean(failure))
        except Exception as exc:  # one lead's trouble stays one lead's: recorded, never raised
            self.log.exception("lead %s: unexpected error while sending", request.lead_id)
            answer = Answer(
                AnswerClass.TRANSIENT,
                None,
                answer_text(type(exc).__name__, EXCEPTION_TYPE_LIMIT),
                self._clean(f"unexpected error: {type(exc).__name__}: {exc}"),
            )
        outcome = {
            AnswerClass.QUEUED: Outcome.QUEUED,
            AnswerClass.REJECTED: Outcome.REJECTED,
            AnswerClass.AUTH_FAILED: Outcome.AUTH_FAILED,
        }.get(answer.kind, Outcome.DEFERRED if deferred else Outcome.FAILED)
        message = answer.message
        if outcome is Outcome.FAILED:
            message = f"gave up after {tally.attempts} attempt(s): {answer.message}"
        return ResetResult(
            lead_id=request.lead_id,
            outcome=outcome,
            status_code=answer.status_code,
            exception_type=answer.exception_type,
            message=self._clean(message),
            attempts=tally.attempts,
            started_at=started,
            finished_at=time.time(),
            budget_wait_seconds=round(tally.waited, 3),
            uncertain_attempts=tally.uncertain,
            rate_limited_answers=tally.rate_limited,
            last_unread=outcome in (Outcome.FAILED, Outcome.DEFERRED) and tally.last_was_uncertain,
        )

    def _read(
        self, send: Callable[[], Answer], what: str, budget: RateBudget | None = None
    ) -> tuple[Answer, _Tally, str]:
        """A call other than a reset through the budget and retry rules: its answer, tally and description.

        :raises LeadSquaredAuthError: keys, host or permission refused, or a redirect (or the hook stopped).
        """
        tally = _Tally()
        try:
            answer = self._call(send, tally, what, budget)
        except _Stopped:
            raise self._stop_error("stopped") from None
        said = f"{answer.exception_type}: {answer.message}" if answer.exception_type else answer.message
        described = f"{what} answered {answer.status_code or 'nothing'} ({said})"
        if answer.kind is AnswerClass.AUTH_FAILED:
            raise LeadSquaredAuthError(described, status_code=answer.status_code, exception_type=answer.exception_type)
        return answer, tally, described

    def get_user(self) -> dict[str, Any]:
        """The user the keys belong to (``UserByAccessKey.Get``), through the budget like every call.

        :raises LeadSquaredAuthError: keys, host or permission refused, or a redirect.
        :raises RateBudgetError: the budget gave no unit.
        :raises LeadSquaredError: any other failure, after the retry budget.
        """
        known = self._known_account() is not None
        budget = self.budget if known else self.key_budget  # the account's, once known
        send = self._own_call("GET", USER_ENDPOINT, None, is_user_body)
        answer, tally, described = self._read(send, "UserByAccessKey.Get", budget)
        if answer.kind is not AnswerClass.QUEUED or not isinstance(answer.payload, dict):
            raise LeadSquaredError(f"{described} (after {tally.attempts} attempt(s))")
        if not known:
            self._account = self._learn_account(answer.payload)
            self.key_budget.note_account(self._account)
            if self.budget is not budget:  # the account pays for the calls that learnt it (they counted there)
                for _ in range(tally.attempts):
                    self.budget.acquire()
        return answer.payload

    def get_activities(self, lead_id: str, event_code: int | None = None) -> list[dict[str, Any]]:
        """The lead's activities (only those of ``event_code`` when given), as ``ProspectActivity.Retrieve``
        answers them (``Id``, ``EventCode``, ``CreatedOn`` in UTC, ...), read 25 a call until ``RecordCount``.

        Every call takes a unit of the account's budget and is retried like a reset (rate limits, timeouts,
        5xx, and any answer that is not an object with an integer ``RecordCount`` and a list
        ``ProspectActivities``). A lead whose count changes while it is paged through is read again.

        :raises InvalidResetRequest: the lead id is not a GUID or the event code not a positive integer;
            nothing is sent.
        :raises LeadSquaredAuthError: keys, host or permission refused, or a redirect (this hook then stops,
            as for resets).
        :raises ActivityReadError: the lead is not found or the read refused (``final``), or no trusted
            answer within the retry budget.
        :raises RateBudgetError: the budget gave no unit.
        """
        lead = normalize_lead_id(lead_id)
        if event_code is not None:
            _check_event_code(event_code)
        return self._read_activities(lead, event_code)

    def get_activities_of(self, lead_id: str, event_codes: Sequence[int]) -> list[tuple[int, dict[str, Any]]]:
        """The lead's activities of any of ``event_codes``, each with its code, in the fewest calls.

        The API filters by one event code at most, so several codes cost a read each. This reads the lead's
        first page unfiltered instead: a lead with at most 25 activities (most leads) takes that one call.
        A lead with more is read on unfiltered or code by code, whichever takes fewer calls. Code by code
        too when an unfiltered activity's ``EventCode`` is unreadable (it could be one of ``event_codes``).
        Raises as :meth:`get_activities`.
        """
        lead = normalize_lead_id(lead_id)
        codes = list(dict.fromkeys(event_codes))
        for code in codes:
            _check_event_code(code)
        if len(codes) > 1:
            found = self._unfiltered_if_cheaper(lead, len(codes))
            if found is not None:
                return [(found_code, a) for a in found if (found_code := activity_event_code(a)) in codes]
        return [(code, activity) for code in codes for activity in self._read_activities(lead, code)]

    def _unfiltered_if_cheaper(self, lead: str, reads_by_code: int) -> list[dict[str, Any]] | None:
        """All the lead's activities when reading them unfiltered takes no more calls than ``reads_by_code``
        filtered reads; None (after one call) when it would, or when an ``EventCode`` is unreadable."""
        endpoint = f"{ACTIVITIES_ENDPOINT}?leadId={quote(lead)}"
        first = self._activity_page(lead, endpoint, _activity_body(None, 0))
        calls_left = math.ceil(first["RecordCount"] / ACTIVITY_PAGE_SIZE) - 1
        if calls_left > reads_by_code:
            return None
        found = self._read_activities(lead, None, first=first)  # no further call when the first page holds all
        return found if all(activity_event_code(a) is not None for a in found) else None

    def _read_activities(
        self, lead: str, event_code: int | None, first: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Page through the lead's activities (of ``event_code``), from ``first`` when that page was read."""
        endpoint = f"{ACTIVITIES_ENDPOINT}?leadId={quote(lead)}"
        for _ in range(MAX_ACTIVITY_READS):
            activities: list[dict[str, Any]] = []
            total: int | None = None
            for _page in range(MAX_ACTIVITY_PAGES):
                if first is not None:
                    page, first = first, None
                else:
                    page = self._activity_page(lead, endpoint, _activity_body(event_code, len(activities)))
                if total is None:
                    total = page["RecordCount"]
                elif page["RecordCount"] != total:
                    break  # activities came or went meanwhile: the offsets no longer hold
                activities.extend(page["ProspectActivities"])
                if len(activities) >= total or not page["ProspectActivities"]:
                    break
            else:
                raise ActivityReadError(
                    f"lead {lead}: more than {MAX_ACTIVITY_PAGES * ACTIVITY_PAGE_SIZE} activities"
                    f"{f' of event code {event_code}' if event_code is not None else ''}: not read",
                    lead_id=lead,
                    status_code=200,
                    exception_type=None,
                    final=True,
                )
            if total is not None and len(activities) >= total:
                return activities
            self.log.info("lead %s: its activities changed while they were read; reading them again", lead)
        raise ActivityReadError(
            f"lead {lead}: its activities kept changing while they were read ({MAX_ACTIVITY_READS} reads)",
            lead_id=lead,
            status_code=200,
            exception_type=None,
            final=False,
        )

    def _activity_page(self, lead: str, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        """One page of ProspectActivity.Retrieve, through the budget and the retry rules."""
        what = f"ProspectActivity.Retrieve of lead {lead}"
        answer, tally, described = self._read(self._own_call("POST", endpoint, body, _is_activities_body), what)
        if answer.kind is not AnswerClass.QUEUED:
            final = answer.kind is AnswerClass.REJECTED
            raise ActivityReadError(
                self._clean(described if final else f"{described}: gave up after {tally.attempts} attempt(s)"),
                lead_id=lead,
                status_code=answer.status_code,
                exception_type=answer.exception_type,
                final=final,
            )
        page: dict[str, Any] = answer.payload
        return page

    @staticmethod
    def user_name(user: dict[str, Any]) -> str:
        """The user's documented ``Name`` (``EmailAddress`` may be null), else first/last name, else its id."""
        name = answer_text(user.get("Name"), 100)
        if not name:
            name = answer_text(" ".join(answer_text(user.get(k), 50) for k in ("FirstName", "LastName")).strip(), 100)
        return name or answer_text(user.get("EmailAddress"), 100) or answer_text(user.get("Id"), 100) or "?"

    @classmethod
    def admin_problem(cls, user: dict[str, Any]) -> str | None:
        """Why these keys cannot reset leads (Lead.Reset needs an administrator), or None."""
        role = answer_text(user.get("Role"), 100) or "?"
        if "admin" in role.lower():
            return None
        return f"keys belong to {cls.user_name(user)} with role {role!r}: Lead.Reset needs an administrator"

    def test_connection(self) -> tuple[bool, str]:
        """Check host and keys with ``UserByAccessKey.Get``; the keys must be an admin's."""
        try:
            user = self.get_user()
        except Exception as exc:  # the UI shows the message; nothing else may escape
            return False, self._clean(f"{type(exc).__name__}: {exc}")
        problem = self.admin_problem(user)
        if problem:
            return False, self._clean(problem)
        role = answer_text(user.get("Role"), 100)
        return True, self._clean(f"connected as {self.user_name(user)} ({role}) on {self.base_url}")
