"""The data of the end-to-end tests: leads in the emulator, candidate rows in the warehouse, expectations."""

from __future__ import annotations

import copy
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from demo.seed import build_leads

FMT = "%Y-%m-%d %H:%M:%S"
IST = timedelta(hours=5, minutes=30)
DAYS = ("2026-11-21", "2026-11-22", "2026-11-23")  # India-time days
DEFAULT_EVENTS, DEFAULT_AUDITS = {166, 167}, {"StageChange", "OwnerChange"}  # the DAG's default categories
INVALID_IDS = ("not-a-lead-id", "'; DROP TABLE leads; --")
MISSING_LEAD = "0f0f0f0f-0000-4000-8000-000000000000"


def utc_window(day: str) -> tuple[str, str]:
    """An India-time day as the API's UTC window (``ToDate`` inclusive)."""
    start = datetime.strptime(day, "%Y-%m-%d") - IST
    return start.strftime(FMT), (start + timedelta(days=1, seconds=-1)).strftime(FMT)


def iso_window(day: str) -> tuple[str, str]:
    return f"{day}T00:00:00+05:30", f"{day}T23:59:59+05:30"


class Scenario:
    """``per_day`` leads flagged on each of DAYS (plus junk rows on the middle day)."""

    def __init__(self, per_day: int = 8, seed: int = 11) -> None:
        self.leads = build_leads(per_day * len(DAYS), seed)
        self.day_of = {lead["ProspectId"]: DAYS[i % len(DAYS)] for i, lead in enumerate(self.leads)}

    def candidates(self, day: str) -> list[str]:
        return [lead_id for lead_id, d in self.day_of.items() if d == day]

    def write_warehouse_rows(self, execute: Any) -> None:
        """Create and fill ``lsq_reset_requests`` through ``execute(sql, rows)``."""
        rows = []
        for lead_id, day in self.day_of.items():
            start, _ = utc_window(day)
            at = (datetime.strptime(start, FMT) + timedelta(hours=6)).strftime(FMT)
            rows.append((lead_id.upper() if len(rows) % 5 == 0 else lead_id, at))
        middle = (datetime.strptime(utc_window(DAYS[1])[0], FMT) + timedelta(hours=1)).strftime(FMT)
        rows += [(bad, middle) for bad in INVALID_IDS]
        rows += [(None, middle), (f"  {self.candidates(DAYS[1])[0]} ", middle), (MISSING_LEAD, middle)]
        execute("CREATE TABLE lsq_reset_requests (prospect_id VARCHAR(200), requested_at VARCHAR(19))", None)
        execute("INSERT INTO lsq_reset_requests VALUES (%s, %s)", rows)

    def sqlite_warehouse(self, path: Path) -> None:
        with sqlite3.connect(path) as conn:

            def execute(sql: str, rows: Any) -> None:
                sql = sql.replace("%s", "?")
                conn.executemany(sql, rows) if rows else conn.execute(sql)

            self.write_warehouse_rows(execute)
        conn.close()

    def expected_after(self, lead: dict[str, Any], window: tuple[str, str]) -> dict[str, Any]:
        """What a lead holds after a reset of the DAG's default categories in ``window``."""
        lo, hi = window
        after = copy.deepcopy(lead)
        in_window = lambda record: lo <= record["CreatedOn"] <= hi  # noqa: E731
        after["activities"] = [
            r for r in lead["activities"] if not (r["ActivityEvent"] in DEFAULT_EVENTS and in_window(r))
        ]
        after["audits"] = [r for r in lead["audits"] if not (r["Type"] in DEFAULT_AUDITS and in_window(r))]
        return after
