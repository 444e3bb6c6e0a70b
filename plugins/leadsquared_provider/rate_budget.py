"""The account's call budget, shared by every task of every DAG run that uses the same keys, and by nothing else.

LeadSquared limits calls per account (e.g. 25 per 5 s on Enterprise), over all API users and integrations
together (web forms, telephony, other tools), and refuses calls over the limit. The budget keeps that limit on
our side and adapts to what the other integrations leave us:

- **One log of calls per account**, a sliding-window log (pyrate-limiter's ``SlidingWindowLog``): every call
  logs one unit before it is sent, and is sent only while fewer than ``effective`` units lie in the last
  ``window + margin`` seconds. The log and the store are named by the account's tag only, so every
  connection with the same keys shares them whatever limit it states.
- **The effective rate lives in the store, next to the log**, as an integer number of calls per window, so
  every process and every machine follows it. pyrate-limiter fixes a bucket's rates when the bucket is
  built, so the budget keeps one bucket object per rate it has used, all of them views of the same log (a
  SQLite table or a Redis sorted set; building one costs no I/O); each attempt reads the effective rate and
  takes its unit through that rate's view. As every unit in the log is one call, a log written under one
  rate counts correctly under another: a change applies from the next call, with no weights to convert.
  (Weighted units, ``limit * SCALE`` per window at ``SCALE * limit / rate`` a call, express every integer
  rate only with ``SCALE > limit``: 26 rows a call at 25 per 5 s, against one.)
- **Paced.** A second rate spreads the calls over the window (at most ``PACING_BURST`` at once, see
  :func:`_rates`): in one burst per window, our calls would reuse the slots they freed one window earlier and
  leave another integration the refusals, which we would never see; paced, refusals fall on us, who adapt.
- **Adaptive: AIMD with BIC-TCP's memory of the last cut.** A rate-limit answer means another integration
  uses part of the account. :meth:`RateBudget.penalize` lowers the shared effective rate; clean windows
  raise it again, never above ``limit * share``:

  - *cut*: ``floor(rate * 0.8)``, at least 1. TCP halves because a loss may mean collapse; here a refused
    call costs one retry and co-tenants take a small part of the limit: one cut makes room for a co-tenant
    using a fifth of it, two for 36 %. Rounding down makes every cut at least one call.
  - *step back*: a call refused right after an increase from a rate that held for a clean window returns
    the rate to that rate (no 20 % cut under a rate just seen clean), for ``HOLD_WINDOWS`` windows.
  - *debounce*: an answer to a call sent before the latest cut changes nothing (that cut answered it): the
    refusals of one burst, in every process, make one cut. A refusal of a call sent after it is news.
  - *increase*, once per clean window (no rate-limit answer, no change, for one window): below the rate of
    the latest cut, halfway to one under it (BIC's binary search: nothing failed there), where it stays
    ``HOLD_WINDOWS`` windows; from there +1, +4, +16...: slow where the cut happened, fast once that rate
    holds (the co-tenant has gone). Measured in ``bench/cotenant.py`` (bench/RESULTS.md, "Shared accounts").

  - *the margin*: the window we enforce is ``window + margin``. The margin starts at the stated one (the
    connection's ``rate_margin_seconds``, 0.05 s: 0.99 of the limit at 5 s) and widens only after rate-limit
    answers. A refusal at the ceiling has a cheap explanation first, our calls reaching LeadSquared closer
    together than we sent them (jitter): the margin doubles (at least ``MARGIN_STEP_MS``, at most
    ``MARGIN_WIDEST_MS``) and the rate goes back to the last clean rate (or one call down), for
    ``HOLD_WINDOWS`` windows. A second refusal then
    finds the rate below the ceiling and cuts it as above: someone else uses the account, and the margin goes
    back to what it was. A clean window keeps the wider margin; five quiet minutes bring the stated margin
    back, as they bring back the ceiling.
  - *the floor*: a refusal of a call sent at one call per window, after the cuts that led there, cannot be the
    5-s limit: :meth:`RateBudget.penalize` says :attr:`Reaction.AT_FLOOR`, and the hook stops the account for
    the day (:meth:`RateBudget.day_is_spent`), as when an answer names a window of an hour or more.

  Every change is logged (WARNING for a cut, INFO otherwise) with the old and the new rate.
- **The strictest caller wins.** Each caller registers ``floor(limit * share)``, its window and margin in the
  store (and refreshes it every minute while in use; a registration unused for 5 minutes lapses). The
  ceiling is the smallest registered limit, over the shortest window (a longer window's limit is divided by
  the number of short windows it spans, rounded up, which can only be stricter); the stated margin is the
  largest.
- **Backends.** ``sqlite:///path`` (the default: a file per account in the system temp folder, mode 0600,
  shared by every process of one machine: LocalExecutor) or ``redis://host:port/db`` (every machine:
  CeleryExecutor). pyrate-limiter was chosen because it is maintained, has this algorithm over SQLite
  (file-locked), Redis and PostgreSQL, and reports how long to wait; ``limits`` has no SQLite storage.
- **Clocks.** SQLite stamps units with the machine's monotonic clock (shared by all its processes, immune
  to wall-clock steps); Redis stamps them with the Redis server's clock, inside a Lua script, so callers on
  several machines agree. A unit stamped in the future (a reboot under SQLite, a server clock stepped back)
  is re-stamped to now: it counts for one window, never until the clock catches up.
- **Bounded.** :meth:`RateBudget.acquire` gives up after ``max_wait_seconds`` with
  :class:`~leadsquared_provider.exceptions.RateBudgetError`, as it does when the store is unusable (a
  corrupt file, Redis unreachable); the message names the store and the account tag, never a password.

- **The day.** With a daily quota (``DailyQuota``: the connection's ``daily_limit`` x ``daily_share``), every
  unit is also counted in the account's day, in the same store: buckets of 1/1440 of the day (a minute of a
  real day), summed over a rolling day or since the day's restart (``daily_reset``). A call past the day's cap
  is not sent: :meth:`RateBudget.acquire` raises :class:`~leadsquared_provider.exceptions.DailyQuotaSpent`
  naming when calls free up. The day runs on the wall clock (SQLite: the machine's; Redis: the server's).

With SQLite every attempt (read the rate, take a unit) and every change happens under the file lock, so
they are atomic. With Redis the rate is read just before the script that takes the unit: a change lands
from the next call, so at the instant of a cut each process may send at most one call under the old rate.
Changes of the rate are Redis transactions (WATCH/MULTI), so concurrent rate-limit answers cut once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import hashlib
import json
import logging
import math
import os
import random
import re
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlparse, urlunparse

from leadsquared_provider.exceptions import DailyQuotaSpent, InvalidConnection, RateBudgetError

if TYPE_CHECKING:
    from pyrate_limiter import AbstractBucket, Rate

log = logging.getLogger(__name__)

T = TypeVar("T")

DECREASE_FACTOR = 0.8  # multiplicative decrease on a rate-limit answer (see the module docstring)
PACING_BURST = 2  # calls spread over the window: at most this many at once (see _rates)
PACING_SLACK = 0.1
STEP_GROWTH = 4  # above the rate of the latest cut, increases go +1, +4, +16...
HOLD_WINDOWS = 3  # clean windows spent just below the rate of the latest cut before probing it again
MARGIN_STEP_MS = 20  # a refusal at the ceiling doubles the margin, to at least this
MARGIN_WIDEST_MS = 500  # ...and at most this (or the stated margin, if larger)
FORGET_SECONDS = 300.0  # with no change and no rate-limit answer for this long, start again at the ceiling
CALLER_TTL_SECONDS = 300.0  # a caller's stated limit counts while it was used this recently
CALLER_REFRESH_SECONDS = 60.0  # how often a caller in use refreshes its registration
STATE_TTL_SECONDS = 86_400  # Redis: the adaptive state outlives runs by a day
_BUDGET_NAME = "leadsquared"
_POLL_MIN_SECONDS = 0.005  # a waiter sleeps until room is expected, within these bounds, plus jitter
_POLL_MAX_SECONDS = 0.25  # (bounded, so that a rate raised by another process is noticed soon)
_FILE_MODE = 0o600
_LOCK_TIMEOUT_SECONDS = 60.0  # SQLite: the file lock is held for milliseconds; longer means a stuck process

# pyrate-limiter's RedisBucket script (LuaScript.PUT_ITEM), timed by the Redis server's clock instead of the
# caller's: every unit is stamped inside the script, on one clock, and the window counts everything from its
# start (a caller delayed between taking its timestamp and reaching Redis cannot miss units others took
# meanwhile). The caller's window length is kept: ARGV[1] - window_start. Added: units stamped in the future
# are re-stamped to now, units older than the longest window are trimmed, and the key expires when unused.
_PUT_ITEM_ON_SERVER_CLOCK = """
local bucket = KEYS[1]
local client_now = tonumber(ARGV[1])
local space_required = tonumber(ARGV[2])
local item_name = ARGV[3]
local rates_count = tonumber(ARGV[4])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

local future = redis.call('ZRANGEBYSCORE', bucket, string.format('(%d', now), '+inf')
for _, member in ipairs(future) do
    redis.call('ZADD', bucket, now, member)
end

local longest = 0
for i=1,rates_count do
    local interval = client_now - tonumber(ARGV[5 + (i - 1) * 3])
    if interval > longest then
        longest = interval
    end
end
redis.call('ZREMRANGEBYSCORE', bucket, '-inf', string.format('(%d', now - 2 * longest))

for i=1,rates_count do
    local offset = (i - 1) * 3
    local window_start = now - (client_now - tonumber(ARGV[5 + offset]))
    local limit = tonumber(ARGV[5 + offset + 1])
    local blocking_rank = tonumber(ARGV[5 + offset + 2])
    local count = redis.call('ZCOUNT', bucket, window_start, '+inf')
    if limit - tonumber(count) < space_required then
        local blocking_timestamp = -1
        if blocking_rank >= 0 then
            local blocking = redis.call('ZRANGE', bucket, -1 - blocking_rank, -1 - blocking_rank, 'WITHSCORES')
            if blocking[2] then
                blocking_timestamp = tonumber(blocking[2])
            end
        end
        return {i - 1, blocking_timestamp}
    end
end

for i=1,space_required do
    redis.call('ZADD', bucket, now, item_name..i)
end
redis.call('PEXPIRE', bucket, math.max(1000, 2 * longest))
return {-1, -1}
"""


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


DAY_BUCKETS = 1440  # a day's counts are kept in this many buckets (a minute each on a real day)

_DAY_TAKE = """
-- KEYS[1]: the day's hash (bucket -> calls). ARGV: first bucket of the day, this bucket, cap, ttl ms.
local used = 0
local values = redis.call('HGETALL', KEYS[1])
local first = tonumber(ARGV[1])
for i = 1, #values, 2 do
    local bucket = tonumber(values[i])
    if bucket >= first then
        used = used + tonumber(values[i + 1])
    elseif bucket < first - 2 * 1440 then
        redis.call('HDEL', KEYS[1], values[i])
    end
end
if ARGV[3] ~= '' and used >= tonumber(ARGV[3]) then
    return -1 - used
end
if ARGV[3] ~= '' then
    redis.call('HINCRBY', KEYS[1], ARGV[2], 1)
    redis.call('PEXPIRE', KEYS[1], ARGV[4])
    used = used + 1
end
return used
"""


def parse_daily_reset(text: str) -> tuple[int, int, str]:
    """``"HH:MM Area/City"`` as (hour, minute, zone); :class:`InvalidConnection` naming the extra otherwise."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    match = re.fullmatch(r"\s*([01]?\d|2[0-3]):([0-5]\d)\s+(\S+)\s*", text)
    try:
        if match is None:
            raise ValueError
        ZoneInfo(match[3])
    except (ValueError, ZoneInfoNotFoundError):
        raise InvalidConnection(
            f"connection extra 'daily_reset' = {text!r} is not 'HH:MM Area/City' (e.g. '00:00 Asia/Kolkata')"
        ) from None
    return int(match[1]), int(match[2]), match[3]


@dataclasses.dataclass(frozen=True)
class DailyQuota:
    """The account's calls per day that these callers may use: ``cap`` over a rolling ``window_seconds``, or
    since the day's restart at ``reset`` (``"HH:MM Area/City"``)."""

    cap: int
    window_seconds: float = 86_400.0
    reset: str | None = None

    @property
    def bucket_ms(self) -> int:
        return max(1, round(self.window_seconds * 1000 / DAY_BUCKETS))

    def start_ms(self, now_ms: int) -> int:
        """When the day being counted began (wall clock, ms)."""
        if self.reset is None:
            return now_ms - round(self.window_seconds * 1000) + self.bucket_ms
        return self._last_reset_ms(now_ms)

    def restarts_ms(self, now_ms: int, oldest_ms: int | None) -> int:
        """When calls free up: the oldest counted call leaves a rolling day; a calendar day restarts."""
        if self.reset is None:
            return (oldest_ms if oldest_ms is not None else now_ms) + round(self.window_seconds * 1000)
        return self._last_reset_ms(now_ms) + 86_400_000

    def _last_reset_ms(self, now_ms: int) -> int:
        from datetime import datetime, timedelta
        from zoneinfo import ZoneInfo

        hour, minute, zone = parse_daily_reset(self.reset or "")
        local = datetime.fromtimestamp(now_ms / 1000, ZoneInfo(zone))
        start = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
        if start > local:
            start -= timedelta(days=1)
        return int(start.timestamp() * 1000)


# --- The adaptive state, kept in the store; pure functions of (state, caller, store clock) ----------------


@dataclasses.dataclass(frozen=True)
class _Caller:
    """What one connection states: its ceiling (``floor(limit * share)``), window and margin, in ms."""

    ceiling: int
    window_ms: int
    margin_ms: int

    @property
    def key(self) -> str:
        return f"{self.ceiling}/{self.window_ms}/{self.margin_ms}"

    @classmethod
    def from_key(cls, key: str) -> _Caller:
        ceiling, window_ms, margin_ms = (int(part) for part in key.split("/"))
        return cls(ceiling, window_ms, margin_ms)


@dataclasses.dataclass
class _State:
    """The account's shared state. Times are store-clock milliseconds (see the module docstring)."""

    callers: dict[str, int] = dataclasses.field(default_factory=dict)  # _Caller.key -> last seen
    effective: int | None = None  # calls per interval, None until the first caller sets it to the ceiling
    failed_at: int | None = None  # the rate of the latest cut (BIC's w_max): climb fast below it, pause before it
    good: int | None = None  # the rate before the latest increase, which held for a clean window
    step: int = 1  # the next increase at or above ``failed_at``
    last_change: int = 0
    last_decrease: int = 0
    last_limited: int = 0  # the latest rate-limit answer (debounced or not)
    hold_until: int = 0  # no increase before this time (the plateau just below ``failed_at``)
    day_spent_until: int = 0  # wall-clock ms: LeadSquared said the account's day is spent (an unstated quota)
    account: str | None = None  # in a key's own state: the tag of the account the key belongs to, once learnt
    margin: int | None = None  # ms added to the window: the stated margin, doubled by refusals at the ceiling
    margin_before: int | None = None  # the margin before the latest widening, until a clean window confirms it

    @classmethod
    def load(cls, raw: str | bytes | None) -> _State:
        if not raw:
            return cls()
        try:
            values = json.loads(raw)
            names = {f.name for f in dataclasses.fields(cls)}
            return cls(**{k: v for k, v in values.items() if k in names})
        except (ValueError, TypeError, AttributeError):
            # Derived knowledge only (the log of calls is elsewhere): start afresh rather than stop every caller.
            log.warning("Rate budget state %r is unreadable: starting again at the ceiling", raw[:200])
            return cls()

    def dump(self) -> str:
        return json.dumps(dataclasses.asdict(self), separators=(",", ":"))


@dataclasses.dataclass(frozen=True)
class _Rule:
    ceiling: int  # calls per interval
    interval_ms: int  # window + margin


@dataclasses.dataclass(frozen=True)
class _Limits:
    """What every live caller states, read strictly: the smallest limit over the shortest window; the largest
    margin, which is the least the adaptive margin may be (where it starts, and to which it returns)."""

    ceiling: int
    window_ms: int
    margin_ms: int

    @property
    def widest_ms(self) -> int:
        return max(self.margin_ms, MARGIN_WIDEST_MS)

    def rule(self, margin_ms: int | None) -> _Rule:
        return _Rule(self.ceiling, self.window_ms + (self.margin_ms if margin_ms is None else margin_ms))


def _limits_of(callers: list[_Caller]) -> _Limits:
    """The strictest reading of every live caller's limit, over the shortest window and the largest margin."""
    window = min(c.window_ms for c in callers)
    margin = max(c.margin_ms for c in callers)
    ceiling = min(max(1, c.ceiling // math.ceil(c.window_ms / window)) for c in callers)
    return _Limits(ceiling, window, margin)


def _prepare(state: _State, me: _Caller, now: int) -> tuple[bool, _Limits]:
    """Clamp future times, (re)register ``me``, bound the rate by the ceiling and the margin by the stated ones.
    Return (changed, limits); the rule in force is ``limits.rule(state.margin)``."""
    changed = False
    for name in ("last_change", "last_decrease", "last_limited"):
        if getattr(state, name) > now:
            setattr(state, name, now)
            changed = True
    seen = state.callers.get(me.key)
    if seen is None or seen > now or now - seen >= CALLER_REFRESH_SECONDS * 1000:
        state.callers[me.key] = now
        state.callers = {k: t for k, t in state.callers.items() if now - min(t, now) < CALLER_TTL_SECONDS * 1000}
        changed = True
    limits = _limits_of([_Caller.from_key(k) for k in state.callers])
    stale = now - max(state.last_change, state.last_limited) > FORGET_SECONDS * 1000
    margin = state.margin
    if margin is None or not limits.margin_ms <= margin <= limits.widest_ms or (stale and margin > limits.margin_ms):
        state.margin, state.margin_before = limits.margin_ms, None
        changed = True
    interval = limits.rule(state.margin).interval_ms
    if state.hold_until > now + HOLD_WINDOWS * interval:
        state.hold_until = now + HOLD_WINDOWS * interval
        changed = True
    if state.effective is None or state.effective > limits.ceiling or (stale and state.effective < limits.ceiling):
        state.effective, state.step, state.failed_at, state.good, state.hold_until = limits.ceiling, 1, None, None, 0
        state.last_change = now
        changed = True
    return changed, limits


def _settle(state: _State, me: _Caller, now: int, where: str | None) -> tuple[bool, _Rule]:
    """Before taking a unit: apply the increases the clean windows since the last change have earned.

    Logs each change under ``where`` (the store and account); ``None`` for a dry run on a snapshot.
    """
    old = state.effective
    changed, limits = _prepare(state, me, now)
    rule = limits.rule(state.margin)
    if old != state.effective and where is not None:
        how = "starts at" if old is None else f"{old} →"
        log.info(
            "Rate budget of %s: %s %d calls per %.1f s (the ceiling: the strictest stated limit)",
            where,
            how,
            state.effective,
            rule.interval_ms / 1000,
        )
    # Windows earn increases once clean; those of a plateau earn none (its last window is the first earning).
    quiet_since = max(state.last_change, state.last_limited, state.hold_until - rule.interval_ms)
    if now - quiet_since < rule.interval_ms:
        return changed, rule
    assert state.effective is not None
    if state.effective >= rule.ceiling:
        if state.step != 1:
            state.step = 1
            changed = True
        return changed, rule
    old = state.effective
    for _ in range((now - quiet_since) // rule.interval_ms):
        _climb(state, rule, now)
        if state.effective == rule.ceiling or state.hold_until > now:
            break
    state.last_change = now
    if where is not None:
        log.info(
            "Rate budget of %s: %d → %d calls per %.1f s (clean window)",
            where,
            old,
            state.effective,
            rule.interval_ms / 1000,
        )
    return True, rule


def _climb(state: _State, rule: _Rule, now: int) -> None:
    """One clean window's increase: BIC-TCP's binary increase below the latest cut, then +1, +2, +4..."""
    assert state.effective is not None
    state.good = state.effective  # it has just held for a clean window
    state.margin_before = None  # ...and so has the margin: it stays
    plateau = None if state.failed_at is None else state.failed_at - 1
    if plateau is not None and state.effective < plateau:
        # Halfway to the rate just below the latest cut, at least one call: fast, as nothing failed there.
        state.effective = min(plateau, state.effective + max(1, (plateau - state.effective + 1) // 2))
        if state.effective == plateau:
            state.hold_until = now + HOLD_WINDOWS * rule.interval_ms
    else:
        # At or above it: slow where the last cut happened, fast once past it (a co-tenant has gone).
        state.effective += state.step
        state.step *= STEP_GROWTH
    state.effective = min(state.effective, rule.ceiling)


class Reaction(enum.IntEnum):
    """What a rate-limit answer did to the account's budget (falsy: nothing)."""

    DEBOUNCED = 0  # the call was sent before the latest change, which answered it already
    WIDENED = 1  # at the ceiling: the margin widened and the rate went one call down
    CUT = 2  # below the ceiling: the rate was cut (or stepped back to the rate that held)
    AT_FLOOR = 3  # refused again at one call per window: the 5-s limit cannot explain it (the day's quota)


def _penalize(state: _State, me: _Caller, now: int, sent: int, where: str) -> Reaction:
    """After a rate-limit answer to a call sent at ``sent``: widen the margin or cut the rate, unless debounced.

    At the ceiling the cheapest explanation comes first: our calls reached LeadSquared closer together than we
    sent them (jitter), so the margin doubles (up to ``MARGIN_WIDEST_MS``) and the rate goes back to the last
    clean rate, or one call down. A second refusal finds the rate below the ceiling: someone else uses the
    account; the rate is cut and the margin goes back.
    """
    _, limits = _prepare(state, me, now)
    state.last_limited = now
    if sent <= state.last_decrease:  # sent under the rate before the latest cut: that cut answered it already
        return Reaction.DEBOUNCED
    old, old_margin = state.effective, state.margin
    assert old is not None and old_margin is not None
    interval = limits.rule(old_margin).interval_ms
    state.failed_at = old
    reaction, widened = Reaction.CUT, ""
    if old >= limits.ceiling and old_margin < limits.widest_ms:
        state.margin_before = old_margin
        state.margin = min(limits.widest_ms, max(2 * old_margin, MARGIN_STEP_MS))
        reaction, widened = Reaction.WIDENED, f"at the ceiling: margin {old_margin} → {state.margin} ms, "
    if old == 1 and limits.ceiling > 1:
        reaction, why = Reaction.AT_FLOOR, "refused at the floor: the account's quota, not its rate"
    elif state.good is not None and old > state.good and sent >= state.last_change:
        # The call was sent after an increase from a rate that held for a clean window: back to that rate.
        state.effective = state.good
        state.hold_until = now + HOLD_WINDOWS * interval
        why = f"{widened}back to the last clean rate, next probe in {HOLD_WINDOWS} windows"
    elif reaction is Reaction.WIDENED:
        state.effective = max(1, old - 1)
        state.hold_until = now + HOLD_WINDOWS * interval
        why = f"{widened}one call less"
    else:
        state.effective = max(1, math.floor(old * DECREASE_FACTOR))
        state.hold_until = 0
        why = f"x{DECREASE_FACTOR}"
    if reaction is not Reaction.WIDENED and state.margin_before is not None:
        # Refused again before a clean window: not our timing but someone else's calls; the margin goes back.
        state.margin, state.margin_before = state.margin_before, None
        why += f", margin back to {state.margin} ms"
    state.good, state.step = None, 1
    state.last_decrease = state.last_change = now
    log.warning(
        "Rate budget of %s: %d → %d calls per %.2f s (rate-limit answer: %s)",
        where,
        old,
        state.effective,
        limits.rule(state.margin).interval_ms / 1000,
        why,
    )
    return reaction


def _rates(rule: _Rule) -> list[Rate]:
    """The rule as pyrate-limiter rates: ``ceiling`` per interval, and calls paced over it.

    The pacing rate lets ``PACING_BURST`` calls through per ``PACING_BURST / ceiling`` of the interval (less
    ``PACING_SLACK``, so that a late call can catch up and the window's rate stays the ceiling). Without it the
    callers would send the window's calls in one burst and, once the account is full, each of our calls would
    reuse the slot our own call freed one window earlier: another integration's calls would be the ones
    refused, and we would never hear of it. Paced, our calls arrive at any time, as the others' do, so the
    refusals fall on whoever sends more: on us, who can adapt.
    """
    from pyrate_limiter import Rate

    rates = [Rate(rule.ceiling, rule.interval_ms)]
    if rule.ceiling > PACING_BURST:
        pace_ms = math.floor(rule.interval_ms * PACING_BURST / rule.ceiling * (1 - PACING_SLACK))
        rates.insert(0, Rate(PACING_BURST, max(1, pace_ms)))
    return rates


# --- Stores: the log (a pyrate-limiter bucket) and the state, under one clock ----------------------------


class _SQLiteStore:
    """One file per budget URL: table ``budget_log_<tag>`` (pyrate-limiter's SQLiteBucket) and ``budget_state``.

    Every access holds the file lock (``<file>.lock``, mode 0600), which excludes every thread of every process.
    """

    def __init__(self, path: Path, tag: str, where: str) -> None:
        self.path = path
        self.tag = tag
        self.where = where
        self.table = "budget_log_" + re.sub(r"[^0-9A-Za-z_]", "_", tag)
        self._buckets: dict[_Rule, AbstractBucket] = {}
        with self._errors():
            from filelock import FileLock

            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            _create_private(path)
            # mode: the lock file is re-chmodded by filelock on every acquire, so it must be given here.
            self.lock = FileLock(f"{path}.lock", mode=_FILE_MODE)
            with self.lock:
                from pyrate_limiter import SQLiteQueries

                self.conn = sqlite3.connect(path, isolation_level="DEFERRED", check_same_thread=False, timeout=30)
                self.conn.execute("PRAGMA journal_mode=WAL")  # -wal and -shm get the database file's mode
                self.conn.execute("PRAGMA synchronous=NORMAL")
                self.conn.execute(SQLiteQueries.CREATE_BUCKET_TABLE.format(table=self.table))
                index = SQLiteQueries.CREATE_INDEX_ON_TIMESTAMP
                self.conn.execute(index.format(index_name=f"idx_{self.table}", table_name=self.table))
                self.conn.execute("CREATE TABLE IF NOT EXISTS budget_state (tag TEXT PRIMARY KEY, state TEXT NOT NULL)")
                self.conn.execute(
                    "CREATE TABLE IF NOT EXISTS budget_day "
                    "(tag TEXT NOT NULL, bucket INTEGER NOT NULL, calls INTEGER NOT NULL, PRIMARY KEY (tag, bucket))"
                )
                self.conn.commit()
            for suffix in ("-wal", "-shm"):  # left by an older version with a looser mode
                with contextlib.suppress(OSError):
                    os.chmod(f"{path}{suffix}", _FILE_MODE)

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        from filelock import Timeout

        try:
            yield
        except sqlite3.Error as exc:
            raise RateBudgetError(
                f"rate budget file {self.path} (account {self.tag}) is not a usable SQLite database: {exc}. "
                "It holds only the last window's calls and the adaptive rate: delete it to start afresh"
            ) from exc
        except Timeout as exc:
            raise RateBudgetError(
                f"rate budget file {self.path} (account {self.tag}): its lock {exc.lock_file} stayed held by "
                "another process"
            ) from exc
        except OSError as exc:
            raise RateBudgetError(f"rate budget file {self.path} (account {self.tag}): {exc}") from exc

    @staticmethod
    def now() -> int:
        """The machine's monotonic clock in ms: one clock for every process of the machine, never stepped."""
        return time.monotonic_ns() // 1_000_000

    @contextlib.contextmanager
    def locked(self, timeout: float) -> Iterator[None]:
        with self._errors(), self.lock.acquire(timeout=max(0.0, timeout)):
            yield

    def read(self) -> tuple[_State, int]:
        with self.locked(_LOCK_TIMEOUT_SECONDS):  # reentrant: free when the caller holds it already
            row = self.conn.execute("SELECT state FROM budget_state WHERE tag = ?", (self.tag,)).fetchone()
            return _State.load(row[0] if row else None), self.now()

    def modify(self, change: Callable[[_State, int], T], timeout: float) -> tuple[_State, int, T]:
        with self.locked(timeout):
            state, now = self.read()
            result = change(state, now)
            with self._errors():
                self.conn.execute(
                    "INSERT INTO budget_state (tag, state) VALUES (?, ?) "
                    "ON CONFLICT(tag) DO UPDATE SET state = excluded.state",
                    (self.tag, state.dump()),
                )
                self.conn.commit()
            return state, now, result

    def take(self, rule: _Rule, now: int) -> int | None:
        """Log one unit if the window has room (call under :meth:`locked`); else the ms until it should."""
        from pyrate_limiter import RateItem

        with self._errors():
            # Units stamped in the future (the monotonic clock restarts at boot) count as taken now; units older
            # than two windows can never count again. Committed at once: no write transaction stays open.
            self.conn.execute(f"UPDATE '{self.table}' SET item_timestamp = ? WHERE item_timestamp > ?", (now, now))
            self.conn.execute(f"DELETE FROM '{self.table}' WHERE item_timestamp < ?", (now - 2 * rule.interval_ms,))
            self.conn.commit()
            bucket = self._bucket(rule)
            item = RateItem(_BUDGET_NAME, now)
            if bucket.put(item):
                return None
            return int(bucket.waiting(item))

    def day(self, quota: DailyQuota, take: bool) -> tuple[int, int | None]:
        """The day's calls so far (and its oldest bucket's time, ms); with ``take``, count one more first if
        the cap allows it, else answer ``(-1 - used, oldest)``. Call under :meth:`locked` to take."""
        now = time.time_ns() // 1_000_000
        first = quota.start_ms(now) // quota.bucket_ms
        with self._errors():
            used, oldest = self.conn.execute(
                "SELECT coalesce(sum(calls), 0), min(bucket) FROM budget_day WHERE tag = ? AND bucket >= ?",
                (self.tag, first),
            ).fetchone()
            oldest_ms = None if oldest is None else oldest * quota.bucket_ms
            if not take:
                return used, oldest_ms
            if used >= quota.cap:
                return -1 - used, oldest_ms
            self.conn.execute(
                "INSERT INTO budget_day (tag, bucket, calls) VALUES (?, ?, 1) "
                "ON CONFLICT(tag, bucket) DO UPDATE SET calls = calls + 1",
                (self.tag, now // quota.bucket_ms),
            )
            self.conn.execute(
                "DELETE FROM budget_day WHERE tag = ? AND bucket < ?", (self.tag, first - 2 * DAY_BUCKETS)
            )
            self.conn.commit()
            return used + 1, oldest_ms if oldest_ms is not None else now

    def _bucket(self, rule: _Rule) -> AbstractBucket:
        bucket = self._buckets.get(rule)
        if bucket is None:
            from pyrate_limiter import SQLiteBucket

            bucket = SQLiteBucket(_rates(rule), self.conn, self.table, lock=self.lock)
            self._buckets[rule] = bucket
        return bucket


def _create_private(path: Path) -> None:
    """Create ``path`` with mode 0600 if missing; tighten it if an older version left it readable by others."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, _FILE_MODE)
    try:
        if os.fstat(fd).st_mode & 0o077:
            with contextlib.suppress(PermissionError):
                os.fchmod(fd, _FILE_MODE)
    finally:
        os.close(fd)


class _RedisStore:
    """Keys ``leadsquared_budget:<tag>`` (the log, a sorted set) and ``leadsquared_budget:<tag>:state`` (JSON)."""

    def __init__(self, url: str, tag: str, where: str) -> None:
        self.tag = tag
        self.where = where
        self.log_key = f"leadsquared_budget:{tag}"
        self.state_key = f"leadsquared_budget:{tag}:state"
        self.day_key = f"leadsquared_budget:{tag}:day"
        self._buckets: dict[_Rule, AbstractBucket] = {}
        with self._errors():
            from redis import Redis

            # Timeouts unless the URL sets its own: a lost server gives an error, never a hang.
            self.redis = Redis.from_url(url, socket_timeout=10, socket_connect_timeout=10)
            self.script = self.redis.script_load(_PUT_ITEM_ON_SERVER_CLOCK)
            self.day_script = self.redis.register_script(_DAY_TAKE)

    def day(self, quota: DailyQuota, take: bool) -> tuple[int, int | None]:
        """As :meth:`_SQLiteStore.day`, atomically in one script, on the Redis server's clock."""
        with self._errors():
            seconds, micros = self.redis.time()
            now = seconds * 1000 + micros // 1000
            first = quota.start_ms(now) // quota.bucket_ms
            ttl = round(2 * quota.window_seconds * 1000) + 86_400_000
            cap = str(quota.cap) if take else ""
            used = int(self.day_script(keys=[self.day_key], args=[first, now // quota.bucket_ms, cap, ttl]))
            buckets = [int(b) for b in self.redis.hkeys(self.day_key) if int(b) >= first]
            oldest = min(buckets) * quota.bucket_ms if buckets else (now if take and used > 0 else None)
            return used, oldest

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        from redis.exceptions import RedisError

        try:
            yield
        except RedisError as exc:
            raise RateBudgetError(f"rate budget store {self.where} failed: {type(exc).__name__}: {exc}") from exc

    @contextlib.contextmanager
    def locked(self, timeout: float) -> Iterator[None]:
        yield  # atomicity comes from the Lua script and from transactions

    def read(self) -> tuple[_State, int]:
        with self._errors():
            pipe = self.redis.pipeline(transaction=False)
            pipe.get(self.state_key)
            pipe.time()
            raw, (seconds, micros) = pipe.execute()
            return _State.load(raw), seconds * 1000 + micros // 1000

    def modify(self, change: Callable[[_State, int], T], timeout: float) -> tuple[_State, int, T]:
        def transaction(pipe: Any) -> tuple[_State, int, T]:
            seconds, micros = pipe.time()
            state, now = _State.load(pipe.get(self.state_key)), seconds * 1000 + micros // 1000
            result = change(state, now)
            pipe.multi()
            pipe.set(self.state_key, state.dump(), ex=STATE_TTL_SECONDS)
            return state, now, result

        with self._errors():
            return self.redis.transaction(transaction, self.state_key, value_from_callable=True)

    def take(self, rule: _Rule, now: int) -> int | None:
        """Log one unit if the window has room; else the ms until it should. ``now`` is the server's time."""
        from pyrate_limiter import RateItem
        from redis.exceptions import NoScriptError

        item = RateItem(_BUDGET_NAME, now)
        bucket = self._bucket(rule)
        with self._errors():
            try:
                taken = bucket.put(item)
            except NoScriptError:  # the server restarted and lost its script cache
                self.script = self.redis.script_load(_PUT_ITEM_ON_SERVER_CLOCK)
                self._buckets.clear()
                bucket = self._bucket(rule)
                taken = bucket.put(item)
            return None if taken else int(bucket.waiting(item))

    def _bucket(self, rule: _Rule) -> AbstractBucket:
        bucket = self._buckets.get(rule)
        if bucket is None:
            from pyrate_limiter import RedisBucket

            bucket = RedisBucket(_rates(rule), self.redis, self.log_key, self.script)
            self._buckets[rule] = bucket
        return bucket


_Store = _SQLiteStore | _RedisStore


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
        self._caller = _Caller(
            ceiling=max(1, math.floor(limit * share + 1e-9)),
            window_ms=round(window_seconds * 1000),
            margin_ms=round(margin_seconds * 1000),
        )
        self._lock = threading.Lock()  # one waiter per process contends for the store; the others queue here
        self._open_lock = threading.Lock()
        self._opened: _Store | None = None
        self._local = threading.local()  # when this thread's last unit was taken (store clock)

    @property
    def where(self) -> str:
        """The store and the account, for messages: no password."""
        return f"{redacted_url(self.backend_url)} (account {self.tag})"

    @property
    def _store(self) -> _Store:
        """The store, opened on first use (by one thread: the others wait for it)."""
        if self._opened is None:
            with self._open_lock:
                if self._opened is None:
                    if _scheme(self.backend_url) == "sqlite":
                        self._opened = _SQLiteStore(sqlite_path(self.backend_url), self.tag, self.where)
                    else:
                        self._opened = _RedisStore(self.backend_url, self.tag, self.where)
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
            changed, rule = _settle(dataclasses.replace(state, callers=dict(state.callers)), self._caller, now, None)
            if changed:
                state, now, (_, rule) = store.modify(
                    lambda s, n: _settle(s, self._caller, n, self.where), deadline - time.monotonic()
                )
            assert state.effective is not None
            wait_ms = store.take(_Rule(state.effective, rule.interval_ms), now)
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
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(restarts))
        return DailyQuotaSpent(f"{said}; calls free up from {when}", resets_at=restarts)

    def day_is_spent(self, seconds: float) -> DailyQuotaSpent:
        """LeadSquared refused a call for a window of ``seconds`` (an hour or more: its daily quota, stated or
        not): no caller of the account sends until that window has passed. Returns the error to raise."""
        until = time.time_ns() // 1_000_000 + round(seconds * 1000)

        def mark(state: _State, _now: int) -> None:
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

        def note(state: _State, _now: int) -> None:
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
            lambda state, now: _penalize(state, self._caller, now, now if sent is None else sent, self.where),
            self.max_wait_seconds,
        )
        return reaction

    def effective_limit(self) -> float:
        """The calls per window (``window + margin``) this account's callers may use now."""
        state, now = self._store.read()
        _prepare(state, self._caller, now)
        assert state.effective is not None
        return float(state.effective)

    def margin_seconds_now(self) -> float:
        """The margin the account's callers add to the window now (the stated one, widened by refusals)."""
        state, now = self._store.read()
        _prepare(state, self._caller, now)
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
