"""RateBudget: the account's budget as callers use it (acquire, penalize, the day), over one of the stores."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import random
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlparse, urlunparse

from leadsquared_provider.exceptions import DailyQuotaSpent, InvalidConnection, RateBudgetError
from leadsquared_provider.rate_budget import policy
from leadsquared_provider.rate_budget.day import DailyQuota, utc_text
from leadsquared_provider.rate_budget.policy import Caller, Reaction, Rule, State
from leadsquared_provider.rate_budget.redis_store import RedisStore
from leadsquared_provider.rate_budget.sqlite_store import SQLiteStore

log = logging.getLogger(__name__)

_POLL_MIN_SECONDS = 0.005  # a waiter sleeps until room is expected, within these bounds, plus jitter
_POLL_MAX_SECONDS = 0.25  # (bounded, so that a rate raised by another process is noticed soon)


def account_tag(access_key: str) -> str:
    """A stable, non-secret name for an account's budget (a hash of its access key)."""
    return hashlib.sha256(access_key.encode()).hexdigest()[:16]


def default_budget_url(tag: str) -> str:
    """Per-account SQLite file in the machine's temp folder: shared by all processes on this machine."""
    return f"sqlite:///{Path(tempfile.gettempdir()) / f'leadsquared_budget_{tag}.sqlite'}"


def _scheme(backend_url: str) -> str:
    scheme = urlparse(backend_url).scheme
    if scheme in ("sqlite", "redis", "rediss"):
        return scheme
    raise InvalidConnection(
        f"rate_budget_url {scheme or backend_url!r} is not supported: use sqlite:///path or redis://host:port/db"
    )


def sqlite_path(backend_url: str) -> Path:
    """The file of ``sqlite:///path`` or ``sqlite:////path`` (both absolute, as SQLAlchemy writes the latter)."""
    parsed = urlparse(backend_url)
    path = f"/{parsed.netloc}{parsed.path}" if parsed.netloc else parsed.path
    return Path("/" + path.lstrip("/"))


def budget_is_machine_local(backend_url: str | None) -> bool:
    """Whether the budget is shared only by the processes of one machine (SQLite, the default), not by workers
    on several machines (Redis). A plan under a non-local executor should refuse a machine-local budget."""
    return backend_url is None or _scheme(backend_url) == "sqlite"


def redacted_url(backend_url: str) -> str:
    """The backend URL without its password, for messages and logs."""
    parsed = urlparse(backend_url)
    if parsed.password is None:
        return backend_url
    host = parsed.hostname or ""
    netloc = f"{parsed.username}@{host}" if parsed.username else host
    if parsed.port is not None:
        netloc = f"{netloc}:{parsed.port}"
    return urlunparse(parsed._replace(netloc=netloc))


Store = SQLiteStore | RedisStore


class RateBudget:
    """Blocking, process-shared, adaptive budget of at most ``limit * share`` calls per ``window_seconds``.

    :param limit: the account's calls per window (the plan's limit).
    :param window_seconds: the limit's window.
    :param tag: names the account's log and state (see :func:`account_tag`); one budget per tag.
    :param backend_url: ``sqlite:///path`` or ``redis://[:password@]host:port/db``; default: an SQLite file in
        the temp folder (see :func:`budget_is_machine_local`).
    :param margin_seconds: added to the window we enforce (network and scheduling jitter).
    :param share: the part of the limit this account's callers may use at most (0 < share <= 1).
    :param max_wait_seconds: :meth:`acquire` raises :class:`RateBudgetError` rather than wait longer.
    :param daily: the account's daily cap for these callers, if the plan has one: :meth:`acquire` raises
        :class:`~leadsquared_provider.exceptions.DailyQuotaSpent` past it.
    """

    def __init__(
        self,
        *,
        limit: int,
        window_seconds: float,
        tag: str,
        backend_url: str | None = None,
        margin_seconds: float = 0.05,
        share: float = 1.0,
        max_wait_seconds: float = 600.0,
        daily: DailyQuota | None = None,
    ) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidConnection(f"rate_limit must be a positive number of calls, got {limit!r}")
        if window_seconds <= 0:
            raise InvalidConnection(f"rate_window_seconds must be positive, got {window_seconds!r}")
        if margin_seconds < 0:
            raise InvalidConnection(f"rate_margin_seconds must not be negative, got {margin_seconds!r}")
        if not 0 < share <= 1:
            raise InvalidConnection(f"rate_share must be within (0, 1], got {share!r}")
        if max_wait_seconds <= 0:
            raise InvalidConnection(f"rate_max_wait_seconds must be positive, got {max_wait_seconds!r}")
        if not tag:
            raise InvalidConnection("the rate budget needs the account's tag")
        self.limit = limit
        self.window_seconds = window_seconds
        self.margin_seconds = margin_seconds
        self.share = share
        self.max_wait_seconds = max_wait_seconds
        self.tag = tag
        self.daily = daily
        self.backend_url = backend_url or default_budget_url(tag)
        self._caller = Caller(
            ceiling=max(1, math.floor(limit * share + 1e-9)),
            window_ms=round(window_seconds * 1000),
            margin_ms=round(margin_seconds * 1000),
        )
        self._lock = threading.Lock()  # one waiter per process contends for the store; the others queue here
        self._open_lock = threading.Lock()
        self._opened: Store | None = None
        self._local = threading.local()  # when this thread's last unit was taken (store clock)

    @property
    def where(self) -> str:
        """The store and the account, for messages: no password."""
        return f"{redacted_url(self.backend_url)} (account {self.tag})"

    @property
    def _store(self) -> Store:
        """The store, opened on first use (by one thread: the others wait for it)."""
        if self._opened is None:
            with self._open_lock:
                if self._opened is None:
                    if _scheme(self.backend_url) == "sqlite":
                        self._opened = SQLiteStore(sqlite_path(self.backend_url), self.tag, self.where)
                    else:
                        self._opened = RedisStore(self.backend_url, self.tag, self.where)
        return self._opened

    def acquire(self) -> float:
        """Take one call's unit, blocking until the window has room; return the seconds waited.

        :raises RateBudgetError: no unit within ``max_wait_seconds``, or the store is unusable.
        """
        started = time.monotonic()
        deadline = started + self.max_wait_seconds
        if not self._lock.acquire(timeout=self.max_wait_seconds):
            raise self._out_of_time()
        try:
            while True:
                wait_ms = self._attempt(deadline)
                if wait_ms is None:
                    return time.monotonic() - started
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise self._out_of_time()
                pause = min(max(wait_ms / 1000, _POLL_MIN_SECONDS), _POLL_MAX_SECONDS)
                time.sleep(min(remaining, pause + random.uniform(0, _POLL_MIN_SECONDS)))  # jitter: no lockstep
        finally:
            self._lock.release()

    def _attempt(self, deadline: float) -> int | None:
        """One non-blocking try: read (and settle) the rate, take a unit. None when taken, else ms to wait.

        Every try is stamped with the store's clock at that moment, so a waiter that overslept still counts the
        units others took meanwhile.
        """
        store = self._store
        with store.locked(deadline - time.monotonic()):
            state, now = store.read()
            if state.day_spent_until and state.day_spent_until > time.time_ns() // 1_000_000:
                raise self._day_spent(None, None, until=state.day_spent_until)
            changed, rule = policy.settle(
                dataclasses.replace(state, callers=dict(state.callers)), self._caller, now, None
            )
            if changed:
                state, now, (_, rule) = store.modify(
                    lambda s, n: policy.settle(s, self._caller, n, self.where), deadline - time.monotonic()
                )
            assert state.effective is not None
            wait_ms = store.take(Rule(state.effective, rule.interval_ms), now)
            if wait_ms is None and self.daily is not None:
                used, oldest = store.day(self.daily, take=True)
                if used < 0:
                    raise self._day_spent(-1 - used, oldest)
        if wait_ms is None:
            self._local.sent = now
        return wait_ms

    def _day_spent(self, used: int | None, oldest: int | None, until: int | None = None) -> DailyQuotaSpent:
        if until is not None:  # learnt from LeadSquared's own answer
            restarts = until / 1000
            said = f"LeadSquared refused a call of {self.where} for its daily quota"
        else:
            assert self.daily is not None
            restarts = self.daily.restarts_ms(time.time_ns() // 1_000_000, oldest) / 1000
            said = f"the account's daily share is spent: {used} of {self.daily.cap} calls in {self.where}'s day"
        when = utc_text(restarts)
        return DailyQuotaSpent(f"{said}; calls free up from {when}", resets_at=restarts)

    def day_is_spent(self, seconds: float) -> DailyQuotaSpent:
        """LeadSquared refused a call for a window of ``seconds`` (an hour or more: its daily quota, stated or
        not): no caller of the account sends until that window has passed. Returns the error to raise."""
        until = time.time_ns() // 1_000_000 + round(seconds * 1000)

        def mark(state: State, _now: int) -> None:
            state.day_spent_until = max(state.day_spent_until, until)

        self._store.modify(mark, self.max_wait_seconds)
        log.warning(
            "Rate budget of %s: the account's daily quota is spent; nothing is sent for %.0f s", self.where, seconds
        )
        return self._day_spent(None, None, until=until)

    def noted_account(self) -> str | None:
        """The account noted in this (key's) budget's state, by any process: see :meth:`note_account`."""
        state, _ = self._store.read()
        return state.account

    def note_account(self, account: str) -> None:
        """Note, in this key's budget store, the account the key belongs to: every later process then spends
        the account's budget from its first call, instead of learning it again."""

        def note(state: State, _now: int) -> None:
            state.account = account

        self._store.modify(note, self.max_wait_seconds)

    def day_left(self) -> int | None:
        """Calls left in the account's day for these callers (None: no daily quota stated)."""
        if self.daily is None:
            return None
        used, _ = self._store.day(self.daily, take=False)
        return max(0, self.daily.cap - used)

    def day_restarts_at(self) -> float | None:
        """When the day's calls free up (epoch seconds); None without a daily quota."""
        if self.daily is None:
            return None
        _, oldest = self._store.day(self.daily, take=False)
        return self.daily.restarts_ms(time.time_ns() // 1_000_000, oldest) / 1000

    def penalize(self) -> Reaction:
        """A rate-limit answer came back for this thread's last call: widen the margin or lower the account's
        rate (debounced). :attr:`Reaction.AT_FLOOR` says the 5-s limit cannot explain it: the day is spent."""
        sent = getattr(self._local, "sent", None)
        _, _, reaction = self._store.modify(
            lambda state, now: policy.penalize(state, self._caller, now, now if sent is None else sent, self.where),
            self.max_wait_seconds,
        )
        return reaction

    def effective_limit(self) -> float:
        """The calls per window (``window + margin``) this account's callers may use now."""
        state, now = self._store.read()
        policy.prepare(state, self._caller, now)
        assert state.effective is not None
        return float(state.effective)

    def margin_seconds_now(self) -> float:
        """The margin the account's callers add to the window now (the stated one, widened by refusals)."""
        state, now = self._store.read()
        policy.prepare(state, self._caller, now)
        assert state.margin is not None
        return state.margin / 1000

    def _out_of_time(self) -> RateBudgetError:
        return RateBudgetError(
            f"no unit of the rate budget within {self.max_wait_seconds:g} s in {self.where}: the account's calls "
            f"are used up (effective rate now {self._effective_or_unknown()} per window); other callers of the "
            "same keys, or a rate cut after rate-limit answers, hold it"
        )

    def _effective_or_unknown(self) -> str:
        try:
            return f"{self.effective_limit():g}"
        except RateBudgetError:
            return "unknown"
