"""The bench's figures, computed from plain records so that they can be tested without Airflow.

- :func:`rate_figures`: resets per second against the configured limit, from the emulator's call log;
- :func:`wall_figures`: wall time of a run and Airflow's share of it, from the audit table's lead times;
- :func:`xcom_bytes`: XCom bytes a run wrote, from the metadata DB;
- :class:`RssSampler`: peak RSS of each task process of a stack (psutil), keyed by task instance id.
"""

from __future__ import annotations

import re
import sqlite3
import statistics
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

RESET_PATH_SUFFIX = "Lead.Reset"
REJECTED_OUTCOME = "rate_limited"  # the emulator's outcome for a call refused by the account's rate limit


def reset_calls(calls: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The ``Lead.Reset`` calls of an emulator call log, in arrival order."""
    return sorted((c for c in calls if str(c.get("path", "")).endswith(RESET_PATH_SUFFIX)), key=lambda c: c["time"])


def max_in_window(times: Sequence[float], window: float) -> int:
    """The most calls in any span ``(t - window, t]`` (the emulator's own sliding-window rule)."""
    ordered = sorted(times)
    most, low = 0, 0
    for high, t in enumerate(ordered):
        while ordered[low] <= t - window:
            low += 1
        most = max(most, high - low + 1)
    return most


@dataclass(frozen=True)
class RateFigures:
    """How close a run came to the account's limit, as the emulator saw it.

    ``ratio`` is the issue's figure: (calls - 1) / (last - first) over the limit. A sliding-window limit
    lets the first ``limit`` calls through at once, so over a short run that figure can exceed 1;
    ``net_ratio`` takes the opening window's allowance out, (calls - limit) / (last - first): exactly 1.0
    for a client that keeps the account at its limit, whatever the run's length.
    """

    calls: int
    admitted: int
    rejections: int
    first: float | None
    last: float | None
    span: float
    limit: int
    window: float
    rate: float
    ratio: float
    net_ratio: float | None
    max_in_window: int
    quarter_ratios: list[float]
    opening_seconds: float | None  # from the first call to the ``limit``-th: how long the opening window took

    @property
    def limit_per_second(self) -> float:
        return self.limit / self.window

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "limit_per_second": self.limit_per_second}


def rate_figures(calls: Iterable[Mapping[str, Any]], *, limit: int, window: float) -> RateFigures:
    """Figures of the ``Lead.Reset`` calls in ``calls`` (emulator records with ``time`` and ``outcome``)."""
    resets = reset_calls(calls)
    admitted = [c for c in resets if c.get("outcome") != REJECTED_OUTCOME]
    times = [float(c["time"]) for c in resets]
    first, last = (times[0], times[-1]) if times else (None, None)
    span = (last - first) if times else 0.0
    per_second = limit / window
    rate = (len(times) - 1) / span if span > 0 else 0.0
    net = (len(times) - limit) / span / per_second if span > 0 and len(times) > limit else None
    return RateFigures(
        calls=len(resets),
        admitted=len(admitted),
        rejections=len(resets) - len(admitted),
        first=first,
        last=last,
        span=span,
        limit=limit,
        window=window,
        rate=rate,
        ratio=rate / per_second,
        net_ratio=net,
        max_in_window=max_in_window([float(c["time"]) for c in admitted], window),
        quarter_ratios=quarter_ratios(times, per_second),
        opening_seconds=(times[limit - 1] - times[0]) if len(times) >= limit else None,
    )


def quarter_ratios(times: Sequence[float], per_second: float) -> list[float]:
    """Calls per second in each quarter of the span first..last call, over ``per_second``."""
    if len(times) < 2 or times[-1] <= times[0]:
        return []
    first, quarter = times[0], (times[-1] - times[0]) / 4
    counts = [0, 0, 0, 0]
    for t in times:
        counts[min(int((t - first) / quarter), 3)] += 1
    return [round(c / quarter / per_second, 3) for c in counts]


def union_length(intervals: Iterable[tuple[float, float]]) -> float:
    """Total length covered by the intervals (overlaps counted once)."""
    total, current_start, current_end = 0.0, None, None
    for start, end in sorted((s, e) for s, e in intervals if e >= s):
        if current_end is None or start > current_end:
            if current_end is not None:
                total += current_end - current_start
            current_start, current_end = start, end
        else:
            current_end = max(current_end, end)
    if current_end is not None:
        total += current_end - current_start
    return total


@dataclass(frozen=True)
class WallFigures:
    """A run's wall time and where it went.

    ``sending`` is the time during which at least one lead was in the client's hands (waiting for the
    budget or in flight: the audit row's ``started_at`` .. ``finished_at``); the rest of the wall time is
    Airflow's: scheduling, task start-up, plan, check and report, and gaps between batches.
    """

    wall: float
    sending: float
    before_first: float
    after_last: float
    gaps: float
    airflow_seconds: float
    airflow_share: float
    leads: int
    budget_wait_mean: float
    budget_wait_max: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def wall_figures(
    trigger_at: float,
    done_at: float,
    leads: Iterable[tuple[float | None, float | None, float | None]],
) -> WallFigures:
    """Figures from the trigger time, the report's end and each lead's (started_at, finished_at, budget_wait)."""
    rows = [(s, f, w) for s, f, w in leads if s is not None and f is not None]
    intervals = [(float(s), float(f)) for s, f, _ in rows]
    wall = max(done_at - trigger_at, 0.0)
    sending = union_length(intervals)
    waits = [float(w) for _, _, w in rows if w is not None]
    if intervals:
        first = min(s for s, _ in intervals)
        last = max(f for _, f in intervals)
        before, after = max(first - trigger_at, 0.0), max(done_at - last, 0.0)
        gaps = max((last - first) - sending, 0.0)
    else:
        before, after, gaps = wall, 0.0, 0.0
    airflow = max(wall - sending, 0.0)
    return WallFigures(
        wall=wall,
        sending=sending,
        before_first=before,
        after_last=after,
        gaps=gaps,
        airflow_seconds=airflow,
        airflow_share=airflow / wall if wall else 0.0,
        leads=len(rows),
        budget_wait_mean=statistics.fmean(waits) if waits else 0.0,
        budget_wait_max=max(waits) if waits else 0.0,
    )


def parse_time(value: str | None) -> float | None:
    """An Airflow REST timestamp (ISO-8601 with offset) as epoch seconds."""
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def xcom_bytes(metadata_db: Path, dag_id: str, run_id: str) -> dict[str, Any]:
    """Bytes of XCom values a run wrote (SQLite metadata DB), in total and per task."""
    conn = sqlite3.connect(f"file:{metadata_db}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT task_id, COUNT(*), COALESCE(SUM(LENGTH(CAST(value AS BLOB))), 0) FROM xcom "
            "WHERE dag_id = ? AND run_id = ? GROUP BY task_id",
            (dag_id, run_id),
        ).fetchall()
    finally:
        conn.close()
    by_task = {task: {"rows": count, "bytes": size} for task, count, size in rows}
    return {
        "bytes": sum(v["bytes"] for v in by_task.values()),
        "rows": sum(v["rows"] for v in by_task.values()),
        "by_task": by_task,
    }


def task_instance_figures(tis: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Task instances of a run (REST API records): total, per task, map indexes, states."""
    per_task: dict[str, int] = {}
    max_index: dict[str, int] = {}
    states: dict[str, int] = {}
    for ti in tis:
        per_task[ti["task_id"]] = per_task.get(ti["task_id"], 0) + 1
        max_index[ti["task_id"]] = max(max_index.get(ti["task_id"], -1), int(ti.get("map_index", -1)))
        states[str(ti.get("state"))] = states.get(str(ti.get("state")), 0) + 1
    return {
        "total": len(tis),
        "per_task": per_task,
        "map_indexes": {task: index + 1 for task, index in max_index.items() if index >= 0},
        "states": states,
    }


_TASK_TITLE = re.compile(r"airflow worker -- ([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})")


def task_instance_id(cmdline: Sequence[str]) -> str | None:
    """The task instance id in a task process's title (``airflow worker -- <uuid>``), or None."""
    match = _TASK_TITLE.search(" ".join(cmdline))
    return match.group(1) if match else None


@dataclass
class RssSampler:
    """Samples the RSS of every task process under ``root_pid`` (the scheduler) and keeps each one's peak.

    Task processes are found by the title the task runner gives itself (``airflow worker -- <ti id>``).
    """

    root_pid: int
    every_seconds: float = 0.25
    peaks: dict[str, int] = field(default_factory=dict)
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample_once(self) -> None:
        import psutil

        try:
            children = psutil.Process(self.root_pid).children(recursive=True)
        except psutil.Error:
            return
        for proc in children:
            try:
                ti_id = task_instance_id(proc.cmdline())
                if ti_id is None:
                    continue
                rss = proc.memory_info().rss
            except psutil.Error:
                continue
            self.peaks[ti_id] = max(self.peaks.get(ti_id, 0), rss)
        self.samples += 1

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample_once()
            self._stop.wait(self.every_seconds)

    def __enter__(self) -> RssSampler:
        self._thread = threading.Thread(target=self._loop, name="bench-rss", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def by_task(self, tis: Sequence[Mapping[str, Any]]) -> dict[str, list[tuple[int, int]]]:
        """Peaks per task id as ``[(map_index, peak bytes), ...]`` for the given task instances."""
        out: dict[str, list[tuple[int, int]]] = {}
        for ti in tis:
            peak = self.peaks.get(str(ti.get("id")))
            if peak:
                out.setdefault(ti["task_id"], []).append((int(ti.get("map_index", -1)), peak))
        return {task: sorted(values) for task, values in out.items()}


def wait_until(predicate: Any, timeout: float, every: float = 1.0, what: str = "condition") -> Any:
    """Poll ``predicate()`` until it returns something truthy; return it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"{what} not met within {timeout:.0f} s")


# -- formatting ---------------------------------------------------------------------------------------


def mb(n_bytes: float | None) -> str:
    return "-" if n_bytes is None else f"{n_bytes / 2**20:.0f} MB"


def kb(n_bytes: float | None) -> str:
    return "-" if n_bytes is None else f"{n_bytes / 1024:.1f} KB"


def secs(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f} s"


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("pass" if ok else "**MISS**")


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
