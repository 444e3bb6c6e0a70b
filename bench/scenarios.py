"""The DAG-run scenarios (parts 1-4): real runs of the product's DAG under a real scheduler; figures only.

Each ``part_*`` returns ``{"title", "raw", "ok"}``: ``raw`` holds what was measured and the scenario's set-up,
``ok`` whether the issue's targets were met. :mod:`bench.report` turns them into Markdown.

1. 1,000 leads, emulator 25 per 5 s, latency 100-300 ms;
2. 2,000 leads, emulator 100 per 5 s (a fast account: Airflow's own overhead shows);
3. a 3-day ``airflow backfill create``: three runs at once sharing one account at 25 per 5 s;
4. the naive design (``bench/dags/naive_http_reset.py``: one HttpOperator task per lead) beside ours.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from bench.measure import (
    REJECTED_OUTCOME,
    max_in_window,
    rate_figures,
    reset_calls,
    task_instance_figures,
    wall_figures,
    xcom_bytes,
)
from bench.planning import candidate_rows, day_bounds_utc, iso_window, lead_ids
from bench.targets import (
    LATENCY,
    PART_TITLES,
    TARGET_RATIO,
    TARGET_SHARED_RATIO,
    TARGET_XCOM,
    WINDOW,
    refused_ok,
)


@dataclass(frozen=True)
class Day:
    """Candidates of one India-time day: ``count`` leads flagged in the warehouse and known to the emulator."""

    day: str
    count: int
    seed: int

    @property
    def ids(self) -> list[str]:
        return list(lead_ids(self.count, self.seed))

    @property
    def utc_from(self) -> str:
        return day_bounds_utc(self.day)[0].strftime("%Y-%m-%d %H:%M:%S")


BASE_DAY = max(date.today() - timedelta(days=60), date(2026, 1, 2))  # past (backfills refuse future dates)


def _day(offset: int) -> str:
    """An India-time day of the bench's data, after the DAG's start_date (2026-01-01) and before today."""
    return (BASE_DAY + timedelta(days=offset)).isoformat()


S1, S2 = Day(_day(0), 1000, 101), Day(_day(1), 2000, 102)
S3 = (Day(_day(2), 300, 103), Day(_day(3), 300, 104), Day(_day(4), 300, 105))
S4 = Day(_day(5), 200, 106)
PLANNING_DAY = _day(10)


def all_call_figures(calls: Sequence[Mapping[str, Any]], *, limit: int) -> dict[str, Any]:
    """Every call the account saw (resets, the plans' key checks, the verification's reads): what its limit
    counts. ``max_in_window`` over them is what the limit is about; ``span_ratio`` is how much of the limit the
    account used between the first and the last reset call, whatever the calls were."""
    by_path: dict[str, int] = {}
    for call in calls:
        name = str(call.get("path", "?")).rsplit("/", 1)[-1]
        by_path[name] = by_path.get(name, 0) + 1
    admitted = sorted(float(c["time"]) for c in calls if c.get("outcome") != REJECTED_OUTCOME)
    resets = [float(c["time"]) for c in reset_calls(calls)]
    figures: dict[str, Any] = {
        "calls": len(calls),
        "rejections": sum(1 for c in calls if c.get("outcome") == REJECTED_OUTCOME),
        "max_in_window": max_in_window(admitted, WINDOW),
        "limit": limit,
        "by_path": dict(sorted(by_path.items())),
        "in_reset_span": None,
        "span_ratio": None,
        "others_in_reset_span": {},
    }
    if len(resets) > 1 and resets[-1] > resets[0]:
        first, last = resets[0], resets[-1]
        inside = [c for c in calls if first <= float(c["time"]) <= last and c.get("outcome") != REJECTED_OUTCOME]
        others: dict[str, int] = {}
        for call in inside:
            name = str(call.get("path", "?")).rsplit("/", 1)[-1]
            if not name.endswith("Lead.Reset"):
                others[name] = others.get(name, 0) + 1
        figures["in_reset_span"] = len(inside)
        figures["span_ratio"] = (len(inside) - 1) / (last - first) / (limit / WINDOW)
        figures["others_in_reset_span"] = dict(sorted(others.items()))
    return figures


def run_figures(
    session: Any, done: Any, calls: Sequence[Mapping[str, Any]], limit: int, sampler: Any
) -> dict[str, Any]:
    """Everything measured about one finished run of the product's DAG (``calls``: the emulator's log)."""
    from bench.session import DAG_ID

    done_at = done.ti_end("report") or done.end
    rate = rate_figures(calls, limit=limit, window=WINDOW)
    wall = wall_figures(done.trigger_at, done_at, session.audit_times(DAG_ID, done.run_id))
    try:
        summary = session.stack.xcom(done.run_id, "report")
    except RuntimeError:
        summary = None
    rss = sampler.by_task(done.tis).get("reset_batch.reset", [])
    verify_end = done.ti_end("verify")
    return {
        "run_id": done.run_id,
        "state": done.state,
        "rate": rate.as_dict(),
        "all_calls": all_call_figures(calls, limit=limit),
        "wall": wall.as_dict(),
        "xcom": xcom_bytes(session.metadata_db, DAG_ID, done.run_id),
        "tis": task_instance_figures(done.tis),
        "reset_rss": rss,
        "report_counts": (summary or {}).get("counts"),
        "candidates": (summary or {}).get("candidates"),
        "verification": (summary or {}).get("verification"),
        "verify_seconds_after_last_reset": (verify_end - rate.last) if verify_end and rate.last else None,
    }


def _emulator(limit: int, leads: list[str], session: Any) -> Any:
    from bench.session import emulator_leads
    from lsq_emulator import EmulatorConfig, run_emulator

    config = EmulatorConfig(rate_limit=limit, rate_window_seconds=WINDOW, latency=LATENCY)
    return run_emulator(config, leads=emulator_leads(leads), port=session.emulator_port)


def single_run(session: Any, day: Day, limit: int, name: str) -> dict[str, Any]:
    """One manual run of the product's DAG for ``day`` against an emulator at ``limit`` per 5 s."""
    ids = day.ids
    session.add_candidates(list(candidate_rows(ids, day.day, seed=day.seed)))
    with _emulator(limit, ids, session) as emu:
        session.set_connections(rate_limit=limit, window=WINDOW)
        frm, to = iso_window(day.day)
        with session.rss_sampler() as sampler:
            run_id, trigger_at = session.trigger({"from_date": frm, "to_date": to}, name=name)
            done = session.finished(run_id, trigger_at)
        return run_figures(session, done, emu.calls(), limit, sampler)


def part_single(session: Any, day: Day, limit: int, number: str) -> dict[str, Any]:
    fig = single_run(session, day, limit, f"bench_s{number}")
    fig["setup"] = {"day": day.day, "count": day.count, "limit": limit, "latency": list(LATENCY), "window": WINDOW}
    ok = fig["rate"]["ratio"] >= TARGET_RATIO and refused_ok(fig["rate"]["rejections"], fig["rate"]["calls"])
    ok = ok and refused_ok(fig["all_calls"]["rejections"], fig["all_calls"]["calls"])
    ok = ok and fig["xcom"]["bytes"] <= TARGET_XCOM and fig["state"] == "success"
    return {"title": PART_TITLES[number], "raw": fig, "ok": ok}


def part_backfill(session: Any) -> dict[str, Any]:
    from bench.session import DAG_ID

    limit = 25
    ids = {d.day: d.ids for d in S3}
    for d in S3:
        session.add_candidates(list(candidate_rows(ids[d.day], d.day, seed=d.seed)))
    all_ids = [lead for d in S3 for lead in ids[d.day]]
    with _emulator(limit, all_ids, session) as emu:
        session.set_connections(rate_limit=limit, window=WINDOW)
        with session.rss_sampler() as sampler:
            run_ids, trigger_at = session.backfill(f"{S3[0].day}T00:00:00+05:30", f"{S3[-1].day}T00:00:00+05:30", 3)
        calls = emu.calls()
        runs = [session.finished(run_id, trigger_at) for run_id in run_ids]
    resets = reset_calls(calls)
    per_run, audit = {}, []
    for done in runs:
        run = session.stack.api("GET", f"/dags/{DAG_ID}/dagRuns/{done.run_id}")
        start = run["data_interval_start"][:19].replace("T", " ")
        mine = [c for c in resets if (c.get("body") or {}).get("FromDate") == start]
        per_run[done.run_id] = {**run_figures(session, done, mine, limit, sampler), "from": start}
        audit += session.audit_times(DAG_ID, done.run_id)
    done_at = max(d.ti_end("report") or d.end or 0 for d in runs)
    total = {
        "rate": rate_figures(calls, limit=limit, window=WINDOW).as_dict(),
        "all_calls": all_call_figures(calls, limit=limit),
        "wall": wall_figures(trigger_at, done_at, audit).as_dict(),
    }
    r = total["rate"]
    ok = r["ratio"] >= TARGET_SHARED_RATIO and refused_ok(r["rejections"], r["calls"]) and r["max_in_window"] <= limit
    ok = ok and refused_ok(total["all_calls"]["rejections"], total["all_calls"]["calls"])
    ok = ok and all(f["state"] == "success" and f["xcom"]["bytes"] <= TARGET_XCOM for f in per_run.values())
    setup = {
        "days": [d.day for d in S3],
        "count": S3[0].count,
        "limit": limit,
        "latency": list(LATENCY),
        "window": WINDOW,
    }
    return {"title": PART_TITLES["3"], "raw": {"total": total, "runs": per_run, "setup": setup}, "ok": ok}


def part_naive(session: Any) -> dict[str, Any]:
    from bench.session import NAIVE_DAG_ID

    limit = 25
    ids = S4.ids
    frm, to = iso_window(S4.day)
    conf = {"lead_ids": ids, "from_date": frm, "to_date": to}
    with _emulator(limit, ids, session) as emu:
        session.set_connections(rate_limit=limit, window=WINDOW)
        with session.rss_sampler() as sampler:
            run_id, trigger_at = session.trigger(conf, name="bench_s4_ours")
            done = session.finished(run_id, trigger_at)
        ours = run_figures(session, done, emu.calls(), limit, sampler)
        time.sleep(WINDOW + 1)  # an empty window between the two designs
        emu.clear_calls()
        emu.clear_rate_limits()
        with session.rss_sampler() as sampler:
            run_id, trigger_at = session.trigger(conf, dag_id=NAIVE_DAG_ID, name="bench_s4_naive")
            done = session.finished(run_id, trigger_at, dag_id=NAIVE_DAG_ID)
        calls = reset_calls(emu.calls())
    naive_rss = [peak for _, peak in sampler.by_task(done.tis).get("reset", [])]
    naive = {
        "run_id": run_id,
        "state": done.state,
        "rate": rate_figures(calls, limit=limit, window=WINDOW).as_dict(),
        "wall": (done.end or time.time()) - trigger_at,
        "xcom": xcom_bytes(session.metadata_db, NAIVE_DAG_ID, run_id),
        "tis": task_instance_figures(done.tis),
        "task_rss_max": max(naive_rss) if naive_rss else None,
        "task_states": task_instance_figures(done.tis)["states"],
        "queued": sum(1 for c in calls if c.get("outcome") == "queued"),
    }
    o, n = ours["rate"], naive["rate"]
    ratio = o["rate"] / n["rate"] if n["rate"] else None
    setup = {"day": S4.day, "count": S4.count, "limit": limit, "latency": list(LATENCY), "window": WINDOW}
    return {
        "title": PART_TITLES["4"],
        "raw": {"ours": ours, "naive": naive, "ratio": ratio, "setup": setup},
        "ok": ours["state"] == "success" and refused_ok(o["rejections"], o["calls"]),
    }
