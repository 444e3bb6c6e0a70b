"""The demo data set: the same leads in the emulator's store and in an embedded SQLite warehouse.

Deterministic (seeded), so every ``make run`` resets the same leads. Writes ``leads.json`` (emulator seed)
and ``warehouse.db`` (table ``lsq_reset_requests``: the leads flagged for reset, with when).
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import uuid
from datetime import datetime, timedelta
from pathlib import Path

DEMO_DAY_UTC_START = datetime(2026, 11, 22, 18, 30)  # 2026-11-23 00:00 in India time
EVENT_CODES = (166, 167, 200)
TASK_TYPES = ("3c8c1a5b-8374-11e7-ab78-02de49b06427", "128acb87-542d-11e8-8455-020714094d7e")
FMT = "%Y-%m-%d %H:%M:%S"


def demo_window() -> tuple[str, str]:
    """The demo run's window as ISO-8601 with an offset (an India-time day)."""
    return "2026-11-23T00:00:00+05:30", "2026-11-23T23:59:59+05:30"


def build_leads(count: int, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    leads = []
    for _ in range(count):
        lead_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        created = DEMO_DAY_UTC_START - timedelta(days=30)
        records: dict[str, list] = {"activities": [], "audits": [], "tasks": [], "notes": []}
        # Records from two days before to two days after the demo day, so the window matters.
        for n in range(12):
            at = DEMO_DAY_UTC_START + timedelta(hours=rng.uniform(-48, 72))
            kind = n % 4
            base = {"Id": str(uuid.UUID(int=rng.getrandbits(128), version=4)), "CreatedOn": at.strftime(FMT)}
            if kind == 0:
                records["activities"].append({**base, "ActivityEvent": rng.choice(EVENT_CODES)})
            elif kind == 1:
                records["audits"].append({**base, "Type": rng.choice(("StageChange", "OwnerChange"))})
            elif kind == 2:
                records["tasks"].append({**base, "TaskTypeId": rng.choice(TASK_TYPES)})
            else:
                records["notes"].append(base)
        leads.append({"ProspectId": lead_id, "CreatedOn": created.strftime(FMT), **records})
    return leads


def write_demo(out: Path, count: int = 60, seed: int = 7) -> dict:
    """Write leads.json and warehouse.db under ``out``; return what was written."""
    out.mkdir(parents=True, exist_ok=True)
    leads = build_leads(count, seed)
    (out / "leads.json").write_text(json.dumps({"leads": leads}, indent=1))
    rng = random.Random(seed + 1)
    rows = []
    for i, lead in enumerate(leads):
        # Most leads are flagged on the demo day; a few the day before (outside the window).
        day_offset = -1 if i % 10 == 9 else 0
        at = DEMO_DAY_UTC_START + timedelta(days=day_offset, hours=rng.uniform(0, 23.9))
        lead_id = lead["ProspectId"]
        rows.append((lead_id.upper() if i % 7 == 0 else lead_id, at.strftime(FMT)))
    on_day = (DEMO_DAY_UTC_START + timedelta(hours=3)).strftime(FMT)
    rows += [
        (f"  {leads[0]['ProspectId']}  ", on_day),  # duplicate with blanks: cleaned away
        (None, on_day),  # null: dropped
        ("not-a-lead-id", on_day),  # not a GUID: rejected, never sent
        ("'; DROP TABLE leads; --", on_day),  # SQL-looking junk: rejected, never sent
        ("0f0f0f0f-0000-4000-8000-000000000000", on_day),  # a deleted lead: LeadSquared says "not found"
    ]
    db = out / "warehouse.db"
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TABLE IF EXISTS lsq_reset_requests")
        conn.execute("CREATE TABLE lsq_reset_requests (prospect_id TEXT, requested_at TEXT NOT NULL)")
        conn.executemany("INSERT INTO lsq_reset_requests VALUES (?, ?)", rows)
    conn.close()
    return {"leads": len(leads), "warehouse_rows": len(rows), "dir": str(out)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--leads", type=int, default=60)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    print(json.dumps(write_demo(args.out, args.leads, args.seed)))


if __name__ == "__main__":
    main()
