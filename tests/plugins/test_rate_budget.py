"""The account's budget shared by several processes: never over the limit, at least 95 % of it used."""

from __future__ import annotations

import bisect
import multiprocessing
import threading
import time
import types

import pytest

from leadsquared_provider.exceptions import InvalidConnection
from leadsquared_provider.rate_budget import RateBudget, account_tag
from lsq_emulator import EmulatorConfig, run_emulator
from tests.conftest import lsq_lead
from tests.plugins.budget_worker import reset_until

LIMIT, WINDOW, PROCESSES, SECONDS = 25, 5.0, 4, 20.0


@pytest.mark.slow
def test_four_processes_share_one_budget(lsq_connection):
    leads = [lsq_lead() for _ in range(PROCESSES * 60)]
    config = EmulatorConfig(rate_limit=LIMIT, rate_window_seconds=WINDOW, latency=(0.05, 0.15))
    with run_emulator(config, leads=leads) as emu:
        conn_id = lsq_connection(emu.base_url, rate_limit=LIMIT, rate_window_seconds=WINDOW)
        start = time.time() + 20.0  # time for every process to import Airflow and warm up
        deadline = start + SECONDS
        ids = [lead["ProspectId"] for lead in leads]
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(PROCESSES) as pool:
            args = [(conn_id, ids[i::PROCESSES], start, deadline) for i in range(PROCESSES)]
            results = pool.starmap(reset_until, args, chunksize=1)
        calls = [c for c in emu.calls() if c["path"].endswith("Lead.Reset")]
        stats = emu.stats()

    times = sorted(c["time"] for c in calls)
    assert times[0] >= start - 0.01, "a process started before the common start"
    in_run = [t for t in times if start <= t < deadline]
    used = len(in_run) / (SECONDS * LIMIT / WINDOW)
    print(
        f"\n{len(calls)} calls from {PROCESSES} processes; {used:.1%} of the limit used over {SECONDS:.0f} s; "
        f"rejections {stats['rate_limited']}; per process {results}"
    )
    assert sum(stats["rate_limited"].values()) == 0
    assert all(c["outcome"] == "queued" for c in calls)
    # The sliding-window check the API makes: no 5-second span holds more than LIMIT calls.
    assert max(sum(1 for u in times if t <= u < t + WINDOW) for t in times) <= LIMIT
    assert used >= 0.95
    assert all(sum(r.values()) > 0 for r in results)


def test_penalty_blocks_other_holders_of_the_budget(tmp_path):
    url = f"sqlite:///{tmp_path / 'b.sqlite'}"
    first = RateBudget(limit=5, window_seconds=1.0, margin_seconds=0, tag="acct", backend_url=url)
    second = RateBudget(limit=5, window_seconds=1.0, margin_seconds=0, tag="acct", backend_url=url)

    assert first.acquire() < 0.1
    first.penalize()
    assert second.acquire() >= 0.8  # the other holder waits out the penalty window


@pytest.mark.parametrize("backend", ["redis", "sqlite"])
def test_a_late_waiter_counts_the_units_others_took_while_it_slept(backend, redis_server, tmp_path, monkeypatch):
    """Two holders (as two Celery workers) of a 2-per-second budget; every sleep runs 0.5 s late (a busy machine).

    A waits for room, oversleeps, and meanwhile B takes the two units that fell free: A must then count them.
    (pyrate-limiter's blocking mode resumed with its first timestamp plus the planned sleep, and the Redis
    bucket counted the window only up to that stale time: A went through, 3 calls within 0.5 s.)
    """
    import pyrate_limiter.limiter

    import leadsquared_provider.rate_budget as rate_budget

    real_sleep = time.sleep
    late = lambda seconds: real_sleep(seconds + 0.5)  # noqa: E731
    monkeypatch.setattr(pyrate_limiter.limiter, "sleep", late)
    monkeypatch.setattr(rate_budget, "time", types.SimpleNamespace(sleep=late, monotonic=time.monotonic))
    url = redis_server.url(2) if backend == "redis" else f"sqlite:///{tmp_path / 'b.sqlite'}"
    tag = f"late-{time.time_ns()}"
    a, b = (RateBudget(limit=2, window_seconds=1.0, margin_seconds=0, tag=tag, backend_url=url) for _ in "ab")
    assert a.acquire() < 1 and b.acquire() < 1  # both connected; then the budget starts empty again
    real_sleep(1.1)
    taken: list[float] = []

    def take(budget: RateBudget) -> None:
        budget.acquire()
        taken.append(time.time())

    t0 = time.time()
    take(a)
    take(a)
    waiter = threading.Thread(target=take, args=(a,))
    waiter.start()  # finds the window full; wakes ~0.5 s after the room it waited for
    real_sleep(max(0.0, t0 + 1.1 - time.time()))
    take(b)  # the window (0.1, 1.1] is empty: B takes both units
    take(b)
    waiter.join()

    times = sorted(taken)
    busiest = max(bisect.bisect_left(times, t + 0.9) - i for i, t in enumerate(times))  # 0.1 s for timing noise
    assert busiest <= 2, f"units at {[round(t - t0, 2) for t in times]} s: {busiest} within 0.9 s"


def test_budget_rejects_unknown_backend():
    budget = RateBudget(limit=5, window_seconds=1, tag=account_tag("k"), backend_url="memcached://x")
    with pytest.raises(InvalidConnection, match="rate_budget_url 'memcached' is not supported"):
        budget.acquire()
