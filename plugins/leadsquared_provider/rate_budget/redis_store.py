"""The budget's Redis store: every machine's workers share it, on the Redis server's clock."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from leadsquared_provider.exceptions import RateBudgetError
from leadsquared_provider.rate_budget.day import DailyQuota
from leadsquared_provider.rate_budget.policy import ITEM_NAME, Rule, State, rates

if TYPE_CHECKING:
    from pyrate_limiter import AbstractBucket

T = TypeVar("T")

STATE_TTL_SECONDS = 86_400  # Redis: the adaptive state outlives runs by a day

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


class RedisStore:
    """Keys ``leadsquared_budget:<tag>`` (the log, a sorted set) and ``leadsquared_budget:<tag>:state`` (JSON)."""

    def __init__(self, url: str, tag: str, where: str) -> None:
        self.tag = tag
        self.where = where
        self.log_key = f"leadsquared_budget:{tag}"
        self.state_key = f"leadsquared_budget:{tag}:state"
        self.day_key = f"leadsquared_budget:{tag}:day"
        self._buckets: dict[Rule, AbstractBucket] = {}
        with self._errors():
            from redis import Redis

            # Timeouts unless the URL sets its own: a lost server gives an error, never a hang.
            self.redis = Redis.from_url(url, socket_timeout=10, socket_connect_timeout=10)
            self.script = self.redis.script_load(_PUT_ITEM_ON_SERVER_CLOCK)
            self.day_script = self.redis.register_script(_DAY_TAKE)

    def day(self, quota: DailyQuota, take: bool) -> tuple[int, int | None]:
        """As :meth:`SQLiteStore.day`, atomically in one script, on the Redis server's clock."""
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

    def read(self) -> tuple[State, int]:
        with self._errors():
            pipe = self.redis.pipeline(transaction=False)
            pipe.get(self.state_key)
            pipe.time()
            raw, (seconds, micros) = pipe.execute()
            return State.load(raw), seconds * 1000 + micros // 1000

    def modify(self, change: Callable[[State, int], T], timeout: float) -> tuple[State, int, T]:
        def transaction(pipe: Any) -> tuple[State, int, T]:
            seconds, micros = pipe.time()
            state, now = State.load(pipe.get(self.state_key)), seconds * 1000 + micros // 1000
            result = change(state, now)
            pipe.multi()
            pipe.set(self.state_key, state.dump(), ex=STATE_TTL_SECONDS)
            return state, now, result

        with self._errors():
            # value_from_callable: redis-py returns what the callable returned (its stubs say None)
            return self.redis.transaction(transaction, self.state_key, value_from_callable=True)  # type: ignore[arg-type,return-value]

    def take(self, rule: Rule, now: int) -> int | None:
        """Log one unit if the window has room; else the ms until it should. ``now`` is the server's time."""
        from pyrate_limiter import RateItem
        from redis.exceptions import NoScriptError

        item = RateItem(ITEM_NAME, now)
        bucket = self._bucket(rule)
        with self._errors():
            try:
                taken = bucket.put(item)
            except NoScriptError:  # the server restarted and lost its script cache
                self.script = self.redis.script_load(_PUT_ITEM_ON_SERVER_CLOCK)
                self._buckets.clear()
                bucket = self._bucket(rule)
                taken = bucket.put(item)
            return None if taken else int(bucket.waiting(item))  # type: ignore[arg-type]  # synchronous: an int

    def _bucket(self, rule: Rule) -> AbstractBucket:
        bucket = self._buckets.get(rule)
        if bucket is None:
            from pyrate_limiter import RedisBucket

            bucket = RedisBucket(rates(rule), self.redis, self.log_key, self.script)
            self._buckets[rule] = bucket
        return bucket
