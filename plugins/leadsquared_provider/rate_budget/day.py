"""The account's day: a daily quota counted over a rolling day or since a named restart."""

from __future__ import annotations

import dataclasses
import re
import time

from leadsquared_provider.exceptions import InvalidConnection

DAY_BUCKETS = 1440  # a day's counts are kept in this many buckets (a minute each on a real day)


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


def utc_text(epoch_seconds: float) -> str:
    """When the day's calls free up, as every message and report says it: ``2026-12-07 04:12:09 UTC``."""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch_seconds))
