"""``bench/RESULTS.md``: the Markdown of the parts' figures, and writing it without losing others' sections.

:func:`render` turns the stored figures (``bench/out/results.json``: ``{part: {"title", "raw", "ok", "date",
...}}``) into the document. :func:`write_results` writes it and keeps what ``python -m bench.run`` does not
own: the sections other tools append (``bench/cotenant.py``, ``bench/lead_search.py``: everything after the
end marker, or, in a file without one, every ``## `` section that is not one of ours) and the sections of
parts with no stored figures (e.g. a fresh checkout, where ``bench/out/`` is empty), which are kept as they
were written, marked as not re-measured when they come from an earlier design.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from bench.measure import markdown_table, mb, secs, verdict
from bench.targets import (
    DESIGN,
    DESIGN_TEXT,
    EARLIER_DESIGN_TEXT,
    MARGIN,
    MAX_MAP_INDEXES,
    PART_TITLES,
    PARTS,
    RESULTS_MD,
    TARGET_PARSE,
    TARGET_PLAN_RSS,
    TARGET_PLAN_SECONDS,
    TARGET_RATIO,
    TARGET_REFUSED,
    TARGET_SHARED_RATIO,
    TARGET_XCOM,
    WINDOW,
    refused_ok,
)

END_MARKER = (
    "<!-- End of the sections `python -m bench.run` writes. What follows (bench/cotenant.py, bench/lead_search.py, "
    "...) is kept as it is when it rewrites this file. -->"
)
EARLIER_MARK = f"**From {EARLIER_DESIGN_TEXT}: not re-measured since.**"
_OWNED = re.compile(r"^## (?:Summary$|(?:" + "|".join(re.escape(p) for p in PARTS) + r")\. )")


def _latency(setup: dict[str, Any]) -> str:
    low, high = setup.get("latency", (0.1, 0.3))
    return f"{low * 1000:.0f}–{high * 1000:.0f} ms"


# -- rows shared by the DAG-run parts ----------------------------------------------------------------------


def explain_rate(fig: dict[str, Any], target: float) -> str | None:
    """Why the run stayed under ``target`` x the limit (net of the opening burst), in measured seconds."""
    rate, wall = fig["rate"], fig["wall"]
    net = rate["net_ratio"]
    if net is None or net >= target:
        return None
    ceiling = WINDOW / (WINDOW + MARGIN)
    budget_only = (rate["calls"] - rate["limit"]) / (rate["limit"] / (WINDOW + MARGIN))
    lost = rate["span"] - budget_only
    opening = rate.get("opening_seconds")
    quarters = list(rate["quarter_ratios"]) or [0.0]
    return (
        f"Net of the opening burst the run used {net:.3f} of the limit, {target - net:.3f} under that stricter "
        f"reading. The budget's least margin ({MARGIN:g} s, widened only by refusals) alone caps it at "
        f"{ceiling:.3f} ({rate['limit']} per "
        f"{WINDOW + MARGIN:g} s): at that ceiling these {rate['calls']} calls need {budget_only:.0f} s; they took "
        f"{rate['span']:.0f} s, {lost:.1f} s more. Calls per quarter of the run ÷ limit: "
        + ", ".join(f"{q:.2f}" for q in rate["quarter_ratios"])
        + (
            ", i.e. the steady state sits at the margin's ceiling"
            if all(q >= ceiling - 0.02 for q in rate["quarter_ratios"])
            else f": quarter {quarters.index(min(quarters)) + 1} fell to {min(quarters):.2f}"
        )
        + f". The rest: {wall['gaps']:.1f} s with no lead in the "
        "client's hands (batches ending together and the next ones' Airflow start-up)"
        + (
            f", and the opening window's {rate['limit']} units took {opening:.1f} s to be used (batch tasks "
            "starting one by one, 4 requests in flight each); a sliding-window budget gives a unit back exactly one "
            "window after it was taken, so that stagger recurs in every window up to the last."
            if opening is not None
            else "."
        )
    )


def rate_rows(fig: dict[str, Any], target: float, label: str = "") -> list[list[str]]:
    r = fig["rate"]
    net_ok = r["net_ratio"] is not None and r["net_ratio"] >= target
    prefix = f"{label}: " if label else ""
    rows = [
        [
            f"{prefix}resets/s ÷ limit, first to last reset call ((calls − 1) ÷ span)",
            f"{r['ratio']:.3f} ({r['rate']:.2f}/s of {r['limit_per_second']:.0f}/s; {r['calls']} calls in "
            f"{r['span']:.1f} s)",
            f"≥ {target}",
            verdict(r["ratio"] >= target),
        ],
        [
            f"{prefix}the same net of the opening window's burst ((calls − limit) ÷ span)",
            "-" if r["net_ratio"] is None else f"{r['net_ratio']:.3f}",
            f"≥ {target}",
            verdict(net_ok),
        ],
        [
            f"{prefix}most reset calls the emulator admitted in any {WINDOW:.0f} s",
            f"{r['max_in_window']}",
            f"≤ {r['limit']}",
            verdict(r["max_in_window"] <= r["limit"]),
        ],
        [
            f"{prefix}rate-limit rejections of reset calls",
            f"{r['rejections']} ({r['rejections'] / max(r['calls'], 1):.1%})",
            f"≤ {TARGET_REFUSED:.1%}",
            verdict(refused_ok(r["rejections"], r["calls"])),
        ],
    ]
    calls = fig.get("all_calls")
    if calls:
        paths = ", ".join(f"{name} {count}" for name, count in calls["by_path"].items())
        rows.append(
            [
                f"{prefix}every call of the account (resets, key checks, verification reads): most admitted in any "
                f"{WINDOW:.0f} s; rate-limit rejections",
                f"{calls['max_in_window']}; {calls['rejections']} ({calls['calls']} calls: {paths})",
                f"≤ {calls['limit']}; ≤ {TARGET_REFUSED:.1%}",
                verdict(calls["max_in_window"] <= calls["limit"] and refused_ok(calls["rejections"], calls["calls"])),
            ]
        )
        if calls.get("span_ratio") is not None:
            others = ", ".join(f"{n} {name}" for name, n in calls["others_in_reset_span"].items()) or "none"
            rows.append(
                [
                    f"{prefix}the account's use of its limit from the first to the last reset call, every call "
                    "counted ((calls − 1) ÷ span)",
                    f"{calls['span_ratio']:.3f} ({calls['in_reset_span']} calls; besides resets: {others})",
                    "reported",
                    "",
                ]
            )
    return rows


def explain_other_calls(fig: dict[str, Any], target: float) -> str | None:
    """When other calls of the account (another run's verification reads) took budget from the resets."""
    rate, calls = fig["rate"], fig.get("all_calls") or {}
    others = sum((calls.get("others_in_reset_span") or {}).values())
    if rate["ratio"] >= target or not others or calls.get("span_ratio") is None:
        return None
    return (
        f"The resets alone used {rate['ratio']:.3f} of the limit, but the account was busy with more than resets: "
        f"between the first and the last reset call it also answered {others} other calls ("
        + ", ".join(f"{n} {name}" for name, n in calls["others_in_reset_span"].items())
        + f"), which take units of the same budget. Every call counted, the account used {calls['span_ratio']:.3f} "
        f"of its limit over that span. The `Retrieve` calls are the `verify` task of the runs that finished "
        f"first (a sample of 20 leads, one call each when a lead's activities fit one page: about "
        f"{20 / rate['limit_per_second']:.0f} s of the account's budget per run), read while the last run was "
        "still resetting."
    )


def run_rows(fig: dict[str, Any], batch_size: int = 200) -> list[list[str]]:
    w, x, t = fig["wall"], fig["xcom"], fig["tis"]
    rss = [peak for _, peak in fig["reset_rss"]]
    maps = t["map_indexes"].get("reset_batch.reset", 0)
    rows = [
        ["leads queued (report)", f"{(fig['report_counts'] or {}).get('queued', 0)} of {fig['candidates']}", "all", ""],
        [
            "wall time, trigger → report done",
            f"{w['wall']:.1f} s (a lead in the client's hands {w['sending']:.1f} s)",
            "reported",
            "",
        ],
        [
            "Airflow's share (no lead waiting for budget or in flight)",
            f"{w['airflow_share']:.1%}: {w['airflow_seconds']:.1f} s = before the first reset "
            f"{w['before_first']:.1f} s + gaps {w['gaps']:.1f} s + after the last {w['after_last']:.1f} s",
            "reported",
            "",
        ],
        [
            "budget wait per lead (mean / max)",
            f"{w['budget_wait_mean']:.2f} s / {w['budget_wait_max']:.2f} s",
            "reported",
            "",
        ],
    ]
    if fig.get("verify_seconds_after_last_reset") is not None:
        verification = fig.get("verification") or {}
        if "sampled" in verification:
            outcome = f"{verification['sampled']} leads read back: " + ", ".join(
                f"{verification[k]} {k.replace('_', ' ')}"
                for k in ("verified", "still_present", "unverifiable")
                if verification.get(k) is not None
            )
        else:
            outcome = "; ".join(str(v) for v in verification.values())
        rows.append(
            [
                "verification (`verify`: a sample read back) ended after the last reset call",
                f"{fig['verify_seconds_after_last_reset']:.1f} s" + (f" ({outcome})" if outcome else ""),
                "reported",
                "",
            ]
        )
    rows += [
        [
            "task instances per run (map indexes of `reset_batch.reset`)",
            f"{t['total']} ({maps} map indexes; {fig['candidates']} leads ÷ {batch_size} per batch)",
            "O(leads ÷ batch)",
            verdict(maps <= MAX_MAP_INDEXES),
        ],
        [
            "XCom bytes written by the run",
            f"{x['bytes']:,} B in {x['rows']} rows",
            "≤ 64 KB",
            verdict(x["bytes"] <= TARGET_XCOM),
        ],
        [
            "peak RSS of one reset task (min / max over its batches)",
            f"{mb(min(rss)) if rss else '-'} / {mb(max(rss)) if rss else '-'} over {len(rss)} tasks",
            "reported; flat",
            "",
        ],
    ]
    return rows


# -- one section per part: (set-up, table headers, rows, notes) ---------------------------------------------

Section = tuple[str, list[str], list[list[str]], list[str]]
FIGURE_HEADERS = ["figure", "measured", "target", "verdict"]


def _ms(figure: dict[str, float]) -> str:
    return f"{figure['median'] * 1000:.0f} ms (min {figure['min'] * 1000:.0f}, max {figure['max'] * 1000:.0f})"


def parse_section(raw: dict[str, Any]) -> Section:
    bare, warm, minimal = raw["bare"], raw["warm"], raw["minimal_bare"]
    rows = [
        [
            "DAG file parse time over a bare `import airflow.sdk` (median)",
            _ms(bare),
            "≤ 50 ms",
            verdict(bare["median"] <= TARGET_PARSE),
        ],
        ["yardstick: a one-task `@dag` file, the same way", _ms(minimal), "reported", ""],
        [
            "the DAG file after the `airflow.sdk` names it uses are loaded (as in the dag-processor)",
            _ms(warm),
            "reported",
            "",
        ],
        ["bare `import airflow.sdk` itself (median)", f"{raw['sdk_import_median'] * 1000:.0f} ms", "reported", ""],
    ]
    notes = []
    if bare["median"] > TARGET_PARSE:
        notes.append(
            f"Over by {(bare['median'] - TARGET_PARSE) * 1000:.0f} ms. `import airflow.sdk` is lazy: a DAG file's "
            "`from airflow.sdk import dag, task, ...` loads Airflow's definitions (DAG, operators, decorators), which "
            f"this measure charges to the file: a one-task DAG already takes {minimal['median'] * 1000:.0f} ms. Once "
            f"those are loaded, as they are in the dag-processor, the file itself takes {warm['median'] * 1000:.0f} "
            "ms (the provider's modules, the accounts file, the timetable, the DAG's params and its task groups)."
        )
    setup = (
        f"Each file executed in a fresh interpreter, {raw['repeats']} times per mode after one warm-up (byte code "
        "cached, as in a deployment); the time from after `import airflow.sdk` to the end of the file."
    )
    return setup, FIGURE_HEADERS, rows, notes


def planning_section(raw: dict[str, Any]) -> Section:
    rows: list[list[str]] = []
    notes: list[str] = []
    for kind in ("SQLite", "PostgreSQL"):
        r = raw.get(kind)
        if not r:
            continue
        time_ok = r["seconds"] <= TARGET_PLAN_SECONDS
        rss_ok = r["rss_peak_bytes"] <= TARGET_PLAN_RSS
        query = r.get("query_and_cleaning_seconds") or 0.0
        staging = r.get("staging_seconds")
        if staging is None:  # the earlier probe: everything after the cleaning was staging
            split = f"query, cleaning, carry-over {query:.1f} s, staging {r['seconds'] - query:.1f} s"
        else:
            carry = r.get("carry_over_seconds") or 0.0
            rest = r["seconds"] - query - carry - staging
            split = (
                f"query + cleaning {query:.1f} s, carry-over {carry:.1f} s, staging in the state store "
                f"{staging:.1f} s, the rest {rest:.1f} s"
            )
        rows += [
            [
                f"{kind}: candidate query + planning, {r['candidates']:,} candidates",
                f"{r['seconds']:.1f} s ({split})",
                "≤ 10 s",
                verdict(time_ok),
            ],
            [
                f"{kind}: peak RSS of the planning process",
                f"{mb(r['rss_peak_bytes'])} (after imports, before planning: {mb(r['rss_before_bytes'])})",
                "≤ 300 MB",
                verdict(rss_ok),
            ],
            [
                f"{kind}: map indexes (batches) of such a run",
                f"{r['batches']} of {r['batch_size']} leads",
                "≤ 1024",
                verdict(r["batches"] <= MAX_MAP_INDEXES),
            ],
        ]
        yardstick = r.get("staging_yardstick_seconds")
        if yardstick is not None:
            driver = "sqlite3's executemany" if kind == "SQLite" else "psycopg's COPY"
            rows.append(
                [
                    f"{kind}: yardstick, the same candidates inserted by the driver alone ({driver}; not in "
                    "the figures above)",
                    f"{yardstick:.1f} s (staging took {staging:.1f} s)",
                    "reported",
                    "",
                ]
            )
        if not time_ok:
            why = ""
            if staging is not None and staging > r["seconds"] / 2:
                why = (
                    f": {staging:.1f} s of it is `StateStore.stage_candidates` (SQLAlchemy Core `executemany` of "
                    "20,000-row lists of dicts)"
                    + (f"; the driver alone inserts the same rows in {yardstick:.1f} s" if yardstick else "")
                )
            notes.append(f"{kind}: {r['seconds'] - TARGET_PLAN_SECONDS:.1f} s over the 10 s target{why}.")
        if not rss_ok:
            notes.append(f"{kind}: {mb(r['rss_peak_bytes'] - TARGET_PLAN_RSS)} over the 300 MB target.")
    build = raw.get("build_seconds", {})
    setup = (
        f"`lsq_reset_requests` with {raw.get('rows', 1_000_000):,} rows, all in the run's window (every 7th id "
        f"upper-case), built outside the measure (SQLite {build.get('sqlite', 0):.0f} s, PostgreSQL COPY "
        f"{build.get('postgres', 0):.0f} s). A fresh process builds the shipped account's DAG and calls what its "
        "plan task calls, `planner.plan_run(RunIdentity(...), RunParams.from_params(params), ...)`, with explicit "
        "arguments: keys checked against the emulator, the candidate query (the warehouse is only read), cleaning, "
        "earlier failures carried over, guards, batches, and staging of the 1,000,000 candidates and the run record "
        "in the state store. The SQLite figures use an SQLite warehouse and an SQLite state store (a fresh file, as "
        "`devstack` sets up for LocalExecutor); the PostgreSQL figures a PostgreSQL warehouse and a PostgreSQL state "
        "store (another database of the same server, fsync and synchronous commits on, as for CeleryExecutor). The "
        "state store's tables exist before the clock starts; the time is around `plan_run`, RSS from `ru_maxrss`."
    )
    return setup, FIGURE_HEADERS, rows, notes


def state_section(raw: dict[str, Any]) -> Section:
    rows: list[list[str]] = []
    notes: list[str] = []
    per_lead_ms: dict[str, float] = {}
    for kind in ("SQLite", "PostgreSQL"):
        by_senders = raw.get(kind) or {}
        alone, together = by_senders.get("1"), by_senders.get("4")
        if not alone:
            continue
        b = alone["batches"][0]
        per, claim, finish = b["per_lead"], b["claim"], b["finish"]
        writes = per.get("INSERT", 0) + per.get("UPDATE", 0) + per.get("DELETE", 0)
        per_lead_ms[kind] = b["lead_ms"]["mean"]
        rows += [
            [
                f"{kind}: transactions (writes) per lead",
                f"{per['transactions']:.0f} ({writes:.0f} write statements: claim {claim.get('INSERT', 0):.0f} INSERT"
                f" (claim, `sending` row); outcome {finish.get('INSERT', 0):.0f} upsert + "
                f"{finish.get('UPDATE', 0) + finish.get('DELETE', 0):.0f} UPDATE (settle)"
                + (f"; and {claim['SELECT']:.0f} SELECT in the claim" if claim.get("SELECT") else "")
                + ")",
                "reported",
                "",
            ],
            [
                f"{kind}: ms per lead, one batch alone (claim + outcome; median / p95 / mean)",
                f"{b['claim_ms']['median']:.1f} + {b['finish_ms']['median']:.1f} = {b['lead_ms']['median']:.1f} ms / "
                f"{b['lead_ms']['p95']:.1f} ms / {b['lead_ms']['mean']:.1f} ms: at most "
                f"{1000 / b['lead_ms']['mean']:.0f} leads/s per batch",
                "reported",
                "",
            ],
        ]
        if together:
            rows.append(
                [
                    f"{kind}: {together['senders']} batches at once, each in its own process (ms per lead, median / "
                    "p95 / max; leads/s of all together)",
                    f"{together['lead_ms_median']:.1f} ms / {together['lead_ms_p95']:.1f} ms / "
                    f"{max(x['lead_ms']['max'] for x in together['batches']):.0f} ms; "
                    f"{together['leads_per_second']:.0f} leads/s ({together['leads']:,} leads in "
                    f"{together['seconds']:.1f} s)",
                    "reported",
                    "",
                ]
            )
        rows.append(
            [
                f"{kind}: heartbeat (1 transaction per batch every 5 s, however many leads; median ms)",
                f"{b['heartbeat_ms']['median']:.1f} ms",
                "reported",
                "",
            ]
        )
    setup = (
        f"What a reset batch writes per lead, without the request: `StateStore.claim` (one transaction: the claim "
        "and the lead's `sending` audit row) then `StateStore.finish` with a `queued` result (one transaction: the "
        "outcome's audit row and the claim settled), for "
        f"{raw.get('leads_per_sender', 1000):,} staged leads per batch, one lead after the other as `BatchSender` does "
        "on its main thread; plus, per batch, one read of the leads settled earlier and the claims' heartbeat, timed "
        "apart. `python -m bench.state_cost` in a fresh process per batch; one batch alone, then 4 at once (the "
        "pool's slots) on a fresh store. Transactions and statements counted with SQLAlchemy's engine events. "
        "SQLite: a file on the bench's disk, WAL, SQLite's default `synchronous` (FULL), as the store opens it. "
        "PostgreSQL: the throwaway server of `tests/pg_server.py` on 127.0.0.1 with fsync, synchronous commits and "
        "full-page writes turned back on."
    )
    sqlite_together = (raw.get("SQLite") or {}).get("4")
    if sqlite_together:
        worst = max(x["lead_ms"]["max"] for x in sqlite_together["batches"])
        if worst > 1000:
            notes.append(
                f"SQLite with 4 batches writing at once: most leads take a few ms, but the slowest took {worst:.0f} "
                "ms, its transaction waiting for the database's single write lock (`BEGIN IMMEDIATE`, up to 60 s) "
                "while others commit or the WAL is checkpointed. Such a wait holds up that batch's next claim, not "
                "its requests in flight, and stays far under the claims' 30 s lifetime (refreshed every 5 s)."
            )
    if per_lead_ms:
        slowest = max(per_lead_ms.values())
        notes.append(
            "Against the account: at 25 calls per 5 s a lead is sent every 200 ms, at 100 per 5 s every 50 ms. The "
            f"store's {slowest:.0f} ms per lead (the slower backend's mean) run on the batch's main thread while its "
            "requests are out, and the pool's 4 batches share the account's rate, so each writes at a quarter of "
            "it: the store caps a batch far above any plan's rate. Per lead the store sees 2 transactions, plus "
            "one heartbeat per batch every 5 s: with 4 batches at 25 per 5 s that is 0.8 heartbeats/s for 5 leads/s, "
            "0.16 more per lead (0.04 at 100 per 5 s)."
        )
    return setup, FIGURE_HEADERS, rows, notes


def single_section(raw: dict[str, Any]) -> Section:
    s = raw["setup"]
    rows = rate_rows(raw, TARGET_RATIO) + run_rows(raw)
    notes = [n for n in (explain_other_calls(raw, TARGET_RATIO), explain_rate(raw, TARGET_RATIO)) if n]
    if raw["state"] != "success":
        notes.append(f"The run ended {raw['state']}.")
    setup = (
        f"{s['count']:,} leads flagged on {s['day']} (India time) in the SQLite warehouse; a manual run with that day "
        f"as its window; emulator {s['limit']} per {s['window']:.0f} s, latency {_latency(s)}; connection rate_limit "
        f"{s['limit']}, rate_window_seconds {s['window']:.0f}; the DAG's defaults (batch_size 200, 4 requests in "
        "flight per batch, verify_sample 20), pool `leadsquared_api` 4 slots; the state store an SQLite file in the "
        "Airflow home."
    )
    return setup, FIGURE_HEADERS, rows, notes


def backfill_section(raw: dict[str, Any]) -> Section:
    total, per_run, s = raw["total"], raw["runs"], raw["setup"]
    rows = rate_rows(total, TARGET_SHARED_RATIO, "all three runs")
    w = total["wall"]
    rows.append(
        [
            "all three runs: wall time, backfill create → last report done; Airflow's share",
            f"{w['wall']:.1f} s; {w['airflow_share']:.1%} (before the first reset {w['before_first']:.1f} s, gaps "
            f"{w['gaps']:.1f} s, after the last {w['after_last']:.1f} s)",
            "reported",
            "",
        ]
    )
    for fig in sorted(per_run.values(), key=lambda f: f["from"]):
        r, w, x, t = fig["rate"], fig["wall"], fig["xcom"], fig["tis"]
        rss = [peak for _, peak in fig["reset_rss"]]
        rows.append(
            [
                f"run from {fig['from']} UTC ({fig['state']})",
                f"{(fig['report_counts'] or {}).get('queued', 0)} queued; {r['calls']} calls at {r['rate']:.2f}/s; "
                f"wall {w['wall']:.1f} s, none of its leads in hand {w['airflow_share']:.0%} (pool waits included); "
                f"{t['total']} task instances; XCom {x['bytes']:,} B; reset RSS {mb(max(rss)) if rss else '-'}",
                "≤ 64 KB XCom",
                verdict(x["bytes"] <= TARGET_XCOM and fig["state"] == "success"),
            ]
        )
    notes = [
        n for n in (explain_other_calls(total, TARGET_SHARED_RATIO), explain_rate(total, TARGET_SHARED_RATIO)) if n
    ]
    days = s["days"]
    setup = (
        f"`airflow backfill create` over {days[0]}..{days[-1]} (India time), --max-active-runs 3: three runs of "
        f"{s['count']} leads each (2 batches each: 200 + 100), emulator {s['limit']} per {s['window']:.0f} s, latency "
        f"{_latency(s)}, one account and one shared budget (SQLite file), one state store (SQLite file) for the "
        "three runs' claims and outcomes."
    )
    return setup, FIGURE_HEADERS, rows, notes


def naive_section(raw: dict[str, Any]) -> Section:
    ours, naive, ratio, s = raw["ours"], raw["naive"], raw["ratio"], raw["setup"]
    o, n = ours["rate"], naive["rate"]
    ours_rss = [peak for _, peak in ours["reset_rss"]]
    rows = [
        [
            "leads reset (accepted by the emulator)",
            f"{(ours['report_counts'] or {}).get('queued', 0)}",
            f"{naive['queued']}",
            "",
        ],
        [
            "resets/s, first to last reset call",
            f"{o['rate']:.2f}",
            f"{n['rate']:.2f}",
            "-" if ratio is None else f"ours **{ratio:.1f}x** faster",
        ],
        [f"÷ limit ({o['limit_per_second']:.0f}/s)", f"{o['ratio']:.3f}", f"{n['ratio']:.3f}", ""],
        [
            "÷ limit, net of the opening window's burst",
            "-" if o["net_ratio"] is None else f"{o['net_ratio']:.3f}",
            "-" if n["net_ratio"] is None else f"{n['net_ratio']:.3f}",
            "",
        ],
        ["rate-limit rejections", f"{o['rejections']}", f"{n['rejections']}", ""],
        [
            "wall time, trigger → run done",
            secs(ours["wall"]["wall"]),
            secs(naive["wall"]),
            f"naive {naive['wall'] / ours['wall']['wall']:.1f}x as long" if ours["wall"]["wall"] else "-",
        ],
        ["task instances", f"{ours['tis']['total']}", f"{naive['tis']['total']}", ""],
        ["XCom bytes", f"{ours['xcom']['bytes']:,}", f"{naive['xcom']['bytes']:,}", ""],
        ["peak RSS of one reset task", mb(max(ours_rss)) if ours_rss else "-", mb(naive["task_rss_max"]), ""],
        ["run state", ours["state"], naive["state"], ""],
    ]
    notes = [
        f"Same emulator ({s['limit']} per {s['window']:.0f} s, latency {_latency(s)}), the same {s['count']} leads "
        "and window, the same pool (4 slots), one after the other with an empty window between."
    ]
    if n["rate"] and n["rate"] < n["limit_per_second"]:
        notes.append(
            f"The naive design is bound by Airflow, not by the account: each lead costs a task instance (schedule, "
            f"start a process, parse the DAG, run, record), and 4 pool slots turn that into {n['rate']:.2f} resets/s, "
            f"{n['ratio']:.0%} of the limit. Its XCom grows with the leads (the bodies and every response)."
        )
    setup = f"{s['count']} leads given as `lead_ids` to both DAGs with the day {s['day']} (India time) as window."
    return setup, ["figure", "ours (batched, shared budget)", "naive (task per lead)", "ratio"], rows, notes


SECTIONS = {
    "parse": parse_section,
    "planning": planning_section,
    "state": state_section,
    "1": single_section,
    "2": single_section,
    "3": backfill_section,
    "4": naive_section,
}


def part_section(part: str, result: dict[str, Any]) -> Section:
    """The part's set-up, table and notes: from its figures, or as stored by an earlier bench (``rows``)."""
    if "rows" in result:
        return (
            result.get("setup", ""),
            result.get("headers", FIGURE_HEADERS),
            result["rows"],
            list(result.get("notes", [])),
        )
    return SECTIONS[part](result["raw"])


# -- the XCom of a 1,000,000-lead run ------------------------------------------------------------------------


def _current(result: dict[str, Any] | None) -> bool:
    return bool(result) and result.get("design") == DESIGN and "error" not in result


def xcom_at_a_million(results: dict[str, Any]) -> tuple[str, float, str] | None:
    """XCom of a 1,000,000-lead run (1000 batches) from the per-batch bytes of a measured run:
    (note, bytes, the parts it comes from)."""
    planning_result = results.get("planning")
    planning = (planning_result or {}).get("raw", {}).get("SQLite")
    runs = [k for k in ("1", "2") if "xcom" in results.get(k, {}).get("raw", {})]
    runs.sort(key=lambda k: not _current(results[k]))  # a run of the current design first
    if not planning or not runs or _current(planning_result) != _current(results[runs[0]]):
        return None
    part = runs[0]
    measured = results[part]["raw"]
    by_task = measured["xcom"]["by_task"]
    batches = planning["batches"]
    measured_batches = measured["tis"]["map_indexes"].get("reset_batch.reset") or 1
    per_batch = sum(v["bytes"] for task, v in by_task.items() if task.startswith("reset_batch.")) / measured_batches
    fixed = sum(v["bytes"] for task, v in by_task.items() if task != "plan" and not task.startswith("reset_"))
    total = planning["plan_xcom_bytes"] + batches * per_batch + fixed
    note = (
        f"Extrapolated to 1,000,000 leads ({batches} batches): the plan's return value "
        f"{planning['plan_xcom_bytes']:,} B (measured by the planning probe) + {batches} x {per_batch:.0f} B (what "
        f"each batch's tasks pushed, as measured in part {part}) + {fixed:,} B (the other tasks: verify, report) "
        f"≈ **{total / 1024:.0f} KB**, {'within' if total <= TARGET_XCOM else 'over'} the 64 KB target. XCom grows "
        "with the batch count, which stops growing at 1000 batches; it never holds a lead id."
    )
    return note, total, f"planning + {part}"


# -- the document ------------------------------------------------------------------------------------------


def _split_sections(text: str) -> tuple[str, list[tuple[str, str]]]:
    """The text before the first ``## `` heading, and each ``## `` section as (heading line, its text)."""
    preamble: list[str] = []
    sections: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("## "):
            sections.append((line, [line]))
        elif sections:
            sections[-1][1].append(line)
        else:
            preamble.append(line)
    return "\n".join(preamble), [(heading, "\n".join(lines).rstrip()) for heading, lines in sections]


def foreign_text(previous: str) -> str:
    """What others wrote into RESULTS.md: after the end marker, or (no marker) the sections not ours."""
    if END_MARKER in previous:
        return previous.split(END_MARKER, 1)[1].strip()
    _, sections = _split_sections(previous)
    return "\n\n".join(text for heading, text in sections if not _OWNED.match(heading)).strip()


def previous_parts(previous: str) -> dict[str, dict[str, str | None]]:
    """Our parts' sections (and their summary rows) as a previous RESULTS.md holds them."""
    ours = previous.split(END_MARKER, 1)[0]
    _, sections = _split_sections(ours)
    found: dict[str, dict[str, str | None]] = {}
    summary = next((text for heading, text in sections if heading == "## Summary"), "")
    for heading, text in sections:
        match = re.match(r"^## (\S+)\. ", heading)
        if match and match.group(1) in PARTS:
            part = match.group(1)
            row = next((line for line in summary.splitlines() if line.startswith(f"| {part} |")), None)
            found[part] = {"section": text, "summary_row": row}
    return found


def _mark_earlier_section(part: str, section: str) -> str:
    """A kept section of an earlier design, with the mark (and how to measure it again) after its "Measured ..."
    line, once."""
    if EARLIER_MARK in section:
        return section
    lines = section.splitlines()
    at = next((n for n, line in enumerate(lines) if line.startswith("Measured ")), 0) + 1
    mark = f"{EARLIER_MARK} Measure it again: `.venv/bin/python -m bench.run --only {part}`."
    return "\n".join([*lines[:at], "", mark, *lines[at:]])


def _mark_earlier_row(row: str) -> str:
    cells = row.split("|")
    if len(cells) > 4 and "earlier version" not in cells[3]:
        cells[3] = f" {cells[3].strip()} (earlier version) "
    return "|".join(cells)


def _header(info: dict[str, Any]) -> list[str]:
    m = info["machine"]
    return [
        "# Benchmark results",
        "",
        "Command: `make bench` (`.venv/bin/python -m bench.run`: every part, about 25 minutes); some parts again: "
        "`.venv/bin/python -m bench.run --only 1,3,state` (parts: " + ", ".join(PARTS) + "; the others keep their "
        f"figures). Last invocation: `python -m bench.run{info['args']}`; each part says when and by which command "
        "it was measured, and how to measure it again. The code: `bench/scenarios.py` (the DAG runs, parts 1–4), "
        "`bench/probes.py` (parse, planning, state), `bench/planning.py` and `bench/state_cost.py` (their probes), "
        "`bench/measure.py` (the figures), `bench/report.py` (this file), `bench/run.py` (the command line).",
        "",
        f"Design measured: {DESIGN_TEXT}. Parts marked *earlier version* were measured on "
        f"{EARLIER_DESIGN_TEXT} and not again since; their figures are kept as they were written.",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory_bytes'] / 2**30:.1f} GiB memory, Python {m['python']}, "
        f"Apache Airflow {m['airflow']}, {m['os']}. Load average at the start {m['load_average']}; other Airflow "
        f"schedulers running on the machine at the start: {m['other_schedulers']} (other agents' stacks share the "
        "2 CPUs, so timings are noisy and pessimistic).",
        "",
        f"Date of the last invocation: {info['date']}.",
        "",
        "Set-up of the DAG runs (parts 1–4): a fresh Airflow home under `bench/out/<date-time>/`; api-server + "
        "scheduler + dag-processor started by `include/devstack` (LocalExecutor, parallelism 8, SQLite metadata DB), "
        "the pool `leadsquared_api` (4 slots, from the accounts file), the LeadSquared emulator (`lsq_emulator`, real "
        "HTTP on 127.0.0.1) in the bench process, an SQLite warehouse (only read: the candidate query), the DAG's "
        "state store `leadsquared_state` as an SQLite file in the Airflow home (`devstack.state_db(home)`), the "
        "shared rate budget in an SQLite file. Defaults everywhere: batch_size 200, 4 requests in flight per batch, "
        f"rate_margin_seconds {MARGIN:g} (the least, adaptive margin), verify_sample 20.",
        "",
        "How the figures are taken: rates from the emulator's call log (arrival times of `Lead.Reset` calls); "
        "rejections = calls the emulator refused for the rate limit; wall time from the trigger (REST) to the "
        "`report` task's end; Airflow's share = the part of the wall time in which no lead was in the client's "
        "hands (the state store's `leadsquared_reset_audit`: each lead's `started_at`..`finished_at` covers its "
        "budget wait and its request); task instances from the REST API; XCom bytes = `SUM(LENGTH(value))` of the "
        "run's rows in the metadata DB's `xcom` table; peak RSS of each task process (`airflow worker -- <ti id>`) "
        "sampled every 0.25 s with psutil.",
        "",
    ]


def render(results: dict[str, Any], info: dict[str, Any], previous: str = "") -> str:
    """The whole document: our parts (measured ones from ``results``, the others kept from ``previous``), then
    the end marker and what others wrote into ``previous``."""
    kept = {p: v for p, v in previous_parts(previous).items() if p not in results}
    lines = [*_header(info), "## Summary", ""]
    summary: list[list[str]] = []
    for part in PARTS:
        if part in results:
            r = results[part]
            when = r.get("date", "?") + ("" if r.get("design") == DESIGN else " (earlier version)")
            summary.append([part, r.get("title", "?"), when, verdict(r.get("ok")) if "error" not in r else "**ERROR**"])
        elif part in kept and kept[part]["summary_row"]:
            cells = [cell.strip() for cell in _mark_earlier_row(kept[part]["summary_row"] or "").strip("|").split("|")]
            summary.append(cells)
    xcom_million = xcom_at_a_million(results)
    if xcom_million:
        summary.append(
            [
                xcom_million[2],
                "XCom of a 1,000,000-lead run (extrapolated)",
                "-",
                verdict(xcom_million[1] <= TARGET_XCOM),
            ]
        )
    lines += [markdown_table(["part", "what", "measured", "the issue's targets"], summary), ""]
    strict = [
        f"part {part} ({results[part]['raw']['rate']['net_ratio']:.3f})"
        for part in ("1", "2")
        if (results.get(part, {}).get("raw", {}).get("rate", {}).get("net_ratio") or 1) < TARGET_RATIO
    ]
    lines += [
        "Rates are judged on the issue's figure, (calls − 1) ÷ (last − first call) ÷ limit. Beside it each part "
        "shows a stricter reading that takes the opening window's burst out, (calls − limit) ÷ span"
        + (f"; it falls short of {TARGET_RATIO} in {' and '.join(strict)}, explained there." if strict else "."),
        "",
    ]
    for part in PARTS:
        if part in kept:
            lines += [_mark_earlier_section(part, kept[part]["section"] or ""), ""]
            continue
        if part not in results:
            continue
        r = results[part]
        load = r.get("load")
        during = f" (1-minute load average {load[0]} at the start, {load[1]} at the end)" if load else ""
        by = f" by `{r['command']}`" if r.get("command") else ""
        again = f" Again: `.venv/bin/python -m bench.run --only {part}`."
        title = r.get("title", PART_TITLES.get(part, ""))
        lines += [f"## {part}. {title}", "", f"Measured {r.get('date', '?')}{by}{during}.{again}", ""]
        if r.get("design") != DESIGN:
            lines += [EARLIER_MARK, ""]
        if "error" in r:
            lines += ["The part failed:", "", "```", r["error"][-3000:], "```", ""]
            continue
        setup, headers, rows, notes = part_section(part, r)
        if setup:
            lines += [setup, ""]
        lines += [markdown_table(headers, rows), ""]
        if part == "planning" and xcom_million:
            notes.append(xcom_million[0])
        for note in notes:
            lines += [f"- {note}"]
        if notes:
            lines.append("")
    text = "\n".join(lines).rstrip() + "\n\n" + END_MARKER + "\n"
    foreign = foreign_text(previous)
    return text + ("\n" + foreign + "\n" if foreign else "")


def write_results(results: dict[str, Any], info: dict[str, Any], path: Path = RESULTS_MD) -> None:
    """Rewrite ``path`` from ``results``, keeping what others wrote there and our parts not in ``results``."""
    previous = path.read_text() if path.exists() else ""
    path.write_text(render(results, info, previous))
