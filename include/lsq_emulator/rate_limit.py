"""Per-account sliding-window-log rate limiting, measured at request arrival."""

from __future__ import annotations

from collections import deque


class SlidingWindowLimiter:
    """At most ``limit`` admitted calls per account within any span of ``window`` seconds.

    A call arriving at ``t`` is admitted when fewer than ``limit`` admitted calls arrived in
    ``(t - window, t]``; a refused call is not logged, so it does not extend the wait. Times are
    monotonic seconds and must not go backwards for one account (callers hold a lock).
    """

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._logs: dict[str, deque[float]] = {}

    def reconfigure(self, limit: int, window: float) -> None:
        """Change the limit and window; the calls already logged keep counting."""
        self.limit, self.window = limit, window

    def admit(self, account: str, now: float) -> bool:
        """Log and admit the call, or refuse it (nothing logged)."""
        log = self._logs.setdefault(account, deque())
        while log and log[0] <= now - self.window:
            log.popleft()
        if len(log) >= self.limit:
            return False
        log.append(now)
        return True

    def in_window(self, account: str, now: float) -> int:
        """How many admitted calls of ``account`` lie in ``(now - window, now]``."""
        return sum(1 for t in self._logs.get(account, ()) if t > now - self.window)

    def clear(self) -> None:
        """Forget every logged call."""
        self._logs.clear()
