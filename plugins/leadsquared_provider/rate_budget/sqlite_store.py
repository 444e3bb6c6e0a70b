"""The budget's SQLite store: one file per budget URL, shared by the processes of one machine."""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from leadsquared_provider.exceptions import RateBudgetError
from leadsquared_provider.rate_budget.day import DAY_BUCKETS, DailyQuota
from leadsquared_provider.rate_budget.policy import ITEM_NAME, Rule, State, rates

if TYPE_CHECKING:
    from pyrate_limiter import AbstractBucket

T = TypeVar("T")

_FILE_MODE = 0o600
_LOCK_TIMEOUT_SECONDS = 60.0  # SQLite: the file lock is held for milliseconds; longer means a stuck process


class SQLiteStore:
    """One file per budget URL: table ``budget_log_<tag>`` (pyrate-limiter's SQLiteBucket) and ``budget_state``.

    Every access holds the file lock (``<file>.lock``, mode 0600), which excludes every thread of every process.
    """

    def __init__(self, path: Path, tag: str, where: str) -> None:
        self.path = path
        self.tag = tag
        self.where = where
        self.table = "budget_log_" + re.sub(r"[^0-9A-Za-z_]", "_", tag)
        self._buckets: dict[Rule, AbstractBucket] = {}
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

    def read(self) -> tuple[State, int]:
        with self.locked(_LOCK_TIMEOUT_SECONDS):  # reentrant: free when the caller holds it already
            row = self.conn.execute("SELECT state FROM budget_state WHERE tag = ?", (self.tag,)).fetchone()
            return State.load(row[0] if row else None), self.now()

    def modify(self, change: Callable[[State, int], T], timeout: float) -> tuple[State, int, T]:
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

    def take(self, rule: Rule, now: int) -> int | None:
        """Log one unit if the window has room (call under :meth:`locked`); else the ms until it should."""
        from pyrate_limiter import RateItem

        with self._errors():
            # Units stamped in the future (the monotonic clock restarts at boot) count as taken now; units older
            # than two windows can never count again. Committed at once: no write transaction stays open.
            self.conn.execute(f"UPDATE '{self.table}' SET item_timestamp = ? WHERE item_timestamp > ?", (now, now))
            self.conn.execute(f"DELETE FROM '{self.table}' WHERE item_timestamp < ?", (now - 2 * rule.interval_ms,))
            self.conn.commit()
            bucket = self._bucket(rule)
            item = RateItem(ITEM_NAME, now)
            if bucket.put(item):
                return None
            return int(bucket.waiting(item))  # type: ignore[arg-type]  # a synchronous bucket: an int

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

    def _bucket(self, rule: Rule) -> AbstractBucket:
        bucket = self._buckets.get(rule)
        if bucket is None:
            from pyrate_limiter import SQLiteBucket

            bucket = SQLiteBucket(rates(rule), self.conn, self.table, lock=self.lock)
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
