"""The account's call budget, shared by every task of every DAG run of the same account, and by nothing else.

Modules: :mod:`.policy` (the shared state and how calls and answers change it; pure), :mod:`.day` (the
daily quota), :mod:`.sqlite_store` and :mod:`.redis_store` (the log, the state and the day in one store),
:mod:`.budget` (:class:`RateBudget`, what callers use).

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
  :func:`.policy.rates`): in one burst per window, our calls would reuse the slots they freed one window
  earlier and leave another integration the refusals, which we would never see; paced, refusals fall on us,
  who adapt.
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

from leadsquared_provider.rate_budget.budget import (
    RateBudget,
    account_tag,
    budget_is_machine_local,
    default_budget_url,
    redacted_url,
)
from leadsquared_provider.rate_budget.day import DailyQuota, parse_daily_reset, utc_text
from leadsquared_provider.rate_budget.policy import Reaction

__all__ = [
    "DailyQuota",
    "RateBudget",
    "Reaction",
    "account_tag",
    "budget_is_machine_local",
    "default_budget_url",
    "parse_daily_reset",
    "redacted_url",
    "utc_text",
]
