"""What every part shares: the set-up (the account's window, the emulator's latency), the targets, the design.

Kept apart so that the parts (:mod:`bench.scenarios`, :mod:`bench.probes`) and the Markdown
(:mod:`bench.report`) read the same numbers without importing each other.
"""

from __future__ import annotations

from pathlib import Path

from leadsquared_provider.settings import LeadSquaredSettings

PROJECT = Path(__file__).resolve().parents[1]
RESULTS_MD = PROJECT / "bench" / "RESULTS.md"
OUT = PROJECT / "bench" / "out"
RESULTS_JSON = OUT / "results.json"

# Parts, in the order they run and are written; ``python -m bench.run --only`` takes any of them.
PARTS = ("parse", "planning", "state", "1", "2", "3", "4")
PART_TITLES = {
    "parse": "DAG file parse time",
    "planning": "Candidate query + planning on a 1,000,000-row warehouse table",
    "state": "The state store's cost per lead (claim + outcome)",
    "1": "1,000 leads at 25 per 5 s, latency 100–300 ms",
    "2": "2,000 leads at 100 per 5 s (a fast account)",
    "3": "Three runs at once sharing one account (3-day backfill)",
    "4": "The naive design beside ours (one HttpOperator task per lead)",
}

# The design the figures are taken on. A part measured under another one is marked "earlier version".
DESIGN = "state-store"
DESIGN_TEXT = "runs, candidates, claims and the audit in the DAG's own state store (connection `leadsquared_state`)"
EARLIER_DESIGN_TEXT = "the earlier version (per-run ledger in the warehouse, before the state store)"

WINDOW = 5.0  # the account's rate window (seconds)
LATENCY = (0.1, 0.3)  # the emulator's answer time (seconds)
MARGIN = LeadSquaredSettings().rate_margin_seconds  # the hook's default: the least, adaptive margin
PLANNING_ROWS = 1_000_000

TARGET_RATIO, TARGET_SHARED_RATIO, TARGET_XCOM, TARGET_PARSE = 0.98, 0.90, 64 * 1024, 0.050  # 0.98: issue 20
TARGET_REFUSED = 0.005  # of the calls, rate-limited at most (issue 20: the adaptive margin's cost)


def refused_ok(rejections: int, calls: int) -> bool:
    """At most ``TARGET_REFUSED`` of the calls answered rate-limited."""
    return rejections <= TARGET_REFUSED * max(calls, 1)


TARGET_PLAN_SECONDS, TARGET_PLAN_RSS, MAX_MAP_INDEXES = 10.0, 300 * 2**20, 1024
