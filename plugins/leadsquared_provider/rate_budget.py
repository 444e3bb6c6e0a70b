"""The account's call budget, shared by every task of every DAG run that uses the same keys.

LeadSquared limits calls per account (e.g. 25 per 5 s on Enterprise), over all API users together, and
refuses calls over the limit "until a certain amount of time has passed". The budget keeps that limit on
our side so the API never has to refuse us:

- **One log of calls per account**, a sliding-window log (pyrate-limiter's ``SlidingWindowLog``): every
  call takes one unit before it is sent; when ``limit`` units lie in the last ``window`` seconds,
  :meth:`RateBudget.acquire` blocks until the oldest one leaves. A sliding log is the strictest reading
  of "N calls per window", so whichever algorithm LeadSquared uses, we stay under it.
- **Kept where every caller sees it.** The backend is a URL in the connection's extras:
  ``sqlite:///path`` (the default, a file in the system temp folder named after the account: every
  process on one machine, i.e. LocalExecutor with many runs at once), or ``redis://host:port/db`` (every
  machine, for CeleryExecutor). pyrate-limiter was chosen because it is maintained, has exactly this
  algorithm over SQLite (file-locked), Redis and PostgreSQL, and supports weighted acquisitions, which the
  penalty below needs. The ``limits`` package has no SQLite storage and no blocking acquire.
- **A safety margin.** The window we enforce is ``window + margin`` seconds (default 0.2 s): a call is
  timed when its unit is taken, LeadSquared times it on arrival, and the two differ by the network and
  scheduling jitter. With the default margin a 25-per-5-s account is used at 25/5.2 = 96 % at worst, and
  more in practice because calls come in bursts.
- **A rate-limit answer slows everybody.** It means someone else used the account (another tool, a
  clock skew): :meth:`RateBudget.penalize` takes the whole window's units at once, so every caller in
  every process waits one full window before its next call.

Assumptions: callers that share a backend share a clock (one machine for SQLite; with Redis every unit is
timed on the Redis server's clock, and the callers' clocks, kept in sync by NTP, only decide when old units
are trimmed); the budget knows only our own calls.
"""

from __future__ import annotations

import hashlib
import logging
import random
import tempfile
import threading
import time
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from leadsquared_provider.exceptions import InvalidConnection

if TYPE_CHECKING:
    from pyrate_limiter import Limiter

log = logging.getLogger(__name__)

_BUDGET_NAME = "leadsquared"
_POLL_SECONDS = 0.02  # how often a waiting caller tries again (on average)

# pyrate-limiter's RedisBucket script (LuaScript.PUT_ITEM), timed by the Redis server's clock instead of the
# caller's. The stock script counts the sliding window up to the caller's timestamp, taken before the call
# reached Redis: a caller delayed in between (a busy machine) misses the units others took meanwhile and goes
# over the limit, and callers on several machines depend on their clocks agreeing. Here every unit is timed
# inside the script, on one clock, and the window counts everything from its start. (The caller's window
# length is kept: ARGV[1] - window_start, the sliding log's interval.)
_PUT_ITEM_ON_SERVER_CLOCK = """
local bucket = KEYS[1]
local client_now = tonumber(ARGV[1])
local space_required = tonumber(ARGV[2])
local item_name = ARGV[3]
local rates_count = tonumber(ARGV[4])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

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
return {-1, -1}
"""


def account_tag(access_key: str) -> str:
    """A stable, non-secret name for an account's budget (a hash of its access key)."""
    return hashlib.sha256(access_key.encode()).hexdigest()[:16]


def default_budget_url(tag: str) -> str:
    """Per-account SQLite file in the machine's temp folder: shared by all processes on this machine."""
    return f"sqlite:///{Path(tempfile.gettempdir()) / f'leadsquared_budget_{tag}.sqlite'}"


class RateBudget:
    """Blocking, process-shared budget of ``limit`` calls per ``window_seconds`` for one account."""

    def __init__(
        self,
        *,
        limit: int,
        window_seconds: float,
        tag: str,
        backend_url: str | None = None,
        margin_seconds: float = 0.2,
    ) -> None:
        if limit < 1:
            raise InvalidConnection(f"rate_limit must be a positive number of calls, got {limit!r}")
        if window_seconds <= 0:
            raise InvalidConnection(f"rate_window_seconds must be positive, got {window_seconds!r}")
        if margin_seconds < 0:
            raise InvalidConnection(f"rate_margin_seconds must not be negative, got {margin_seconds!r}")
        self.limit = limit
        self.window_seconds = window_seconds
        self.margin_seconds = margin_seconds
        self.tag = tag
        self.backend_url = backend_url or default_budget_url(tag)
        self._lock = threading.Lock()

    @property
    def interval_ms(self) -> int:
        return round((self.window_seconds + self.margin_seconds) * 1000)

    @cached_property
    def _limiter(self) -> Limiter:
        from pyrate_limiter import Limiter, Rate

        rates = [Rate(self.limit, self.interval_ms)]
        parsed = urlparse(self.backend_url)
        if parsed.scheme == "sqlite":
            from pyrate_limiter import SQLiteBucket

            path = parsed.path if not parsed.netloc else f"/{parsed.netloc}{parsed.path}"
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            # One table per account and window: a bucket counts every row of its table.
            bucket = SQLiteBucket.init_from_file(
                rates,
                table=f"budget_{self.tag}_{self.limit}_{self.interval_ms}",
                db_path=path,
                use_file_lock=True,
            )
        elif parsed.scheme in ("redis", "rediss"):
            from pyrate_limiter import RedisBucket
            from redis import Redis

            redis = Redis.from_url(self.backend_url)
            bucket = RedisBucket(
                rates,
                redis,
                f"leadsquared_budget:{self.tag}:{self.interval_ms}",
                redis.script_load(_PUT_ITEM_ON_SERVER_CLOCK),
            )
        else:
            raise InvalidConnection(
                f"rate_budget_url {parsed.scheme or self.backend_url!r} is not supported: "
                "use sqlite:///path or redis://host:port/db"
            )
        return Limiter(bucket)

    def _take(self, weight: int) -> None:
        """Take ``weight`` units, waiting until the window has room for them.

        Every attempt is a new, non-blocking one, stamped with the clock at that moment. pyrate-limiter's own
        blocking mode re-submits the first attempt's timestamp advanced by the planned sleep: when a sleep
        overruns (a busy machine), the unit is logged earlier than the call is made, and the Redis bucket counts
        the window only up to that stale time, missing the units other processes took since. Two Celery
        workers sharing a Redis budget went over the limit that way (tests/distributed).
        """
        with self._lock:  # one thread of this process at a time contends for the shared backend
            while not self._limiter.try_acquire(_BUDGET_NAME, weight=weight, blocking=False):
                time.sleep(_POLL_SECONDS * (0.5 + random.random()))  # jitter: waiters do not poll in lockstep

    def acquire(self) -> float:
        """Take one call's unit, blocking until the window has room; return the seconds waited."""
        started = time.monotonic()
        self._take(1)
        return time.monotonic() - started

    def penalize(self) -> None:
        """After a rate-limit answer: fill the whole window so every caller everywhere backs off."""
        log.warning(
            "LeadSquared answered 'rate limited': every caller of this account pauses for one window (%.1f s)",
            self.window_seconds + self.margin_seconds,
        )
        self._take(self.limit)
