"""The verify step under the real scheduler: 10 % of the resets LeadSquared accepts are never carried out.

Run A resets 30 leads, 3 of which the emulator accepts and never carries out; every lead is read back. Run B
resets 400 other leads at the same time (verification off), so A's reads share the account's budget with
B's resets. Each of A's leads also holds activities outside the window and with another event code, which
are meant to remain.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from demo.seed import build_leads
from lsq_emulator import EmulatorConfig
from tests.conftest import lsq_lead
from tests.e2e.conftest import E2E, start_on_sqlite
from tests.e2e.scenario import Scenario

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

DAY = {"from_date": "2026-12-01T00:00:00+05:30", "to_date": "2026-12-01T23:59:59+05:30"}
FROM, TO = "2026-11-30 18:30:00", "2026-12-01 18:29:59"  # the same day in UTC, as the API reads it
LIMIT, WINDOW_SECONDS = 25, 5.0
DELAY = 20  # verify_delay_seconds: short, yet longer than the emulator's processing delay
A_COUNT, B_COUNT = 30, 400
IN_WINDOW = ("at-from", "inside", "at-to")


def lead_a(n: int) -> dict[str, Any]:
    """A lead with the run's event codes inside the window (on both bounds), and activities meant to stay:
    a second outside each bound and another event code inside; plus an audit record (deleted, not checked)."""
    lead_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"verify-e2e/{n}"))

    def act(code: int, created: str, name: str) -> dict[str, Any]:
        return {"Id": f"{name}-{n}", "ActivityEvent": code, "CreatedOn": created}

    return lsq_lead(
        lead_id,
        {
            "activities": [
                act(166, "2026-11-30 18:29:59", "before-from"),
                act(166, FROM, "at-from"),
                act(167, "2026-12-01 06:00:00", "inside"),
                act(167, TO, "at-to"),
                act(166, "2026-12-01 18:30:00", "after-to"),
                act(200, "2026-12-01 06:00:00", "other-code"),
            ],
            "audits": [{"Id": f"audit-{n}", "Type": "StageChange", "CreatedOn": "2026-12-01 07:00:00"}],
        },
    )


A_LEADS = [lead_a(n) for n in range(A_COUNT)]
A_IDS = sorted(lead["ProspectId"] for lead in A_LEADS)
UNPERFORMED = A_IDS[::10]  # 3 of 30: accepted with "queued", never carried out
B_LEADS = build_leads(B_COUNT, seed=99)
B_IDS = [lead["ProspectId"] for lead in B_LEADS]


@pytest.fixture(scope="module")
def verify_e2e(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2E]:
    tmp = tmp_path_factory.mktemp("e2e-verify")
    scenario = Scenario(per_day=1)
    warehouse = tmp / "warehouse.db"
    scenario.sqlite_warehouse(warehouse)
    config = EmulatorConfig(
        rate_limit=LIMIT,
        rate_window_seconds=WINDOW_SECONDS,
        latency=(0.02, 0.1),
        reset_processing_delay_seconds=2.0,
        unperformed_leads=tuple(UNPERFORMED),
    )
    # The test asserts 0 rate-limit answers: a 0.5 s margin (0.2 s by default) keeps a call that a loaded CI
    # machine delays between the budget and the emulator from landing in the next window's count.
    yield from start_on_sqlite(
        tmp, warehouse, scenario, config=config, extra_leads=A_LEADS + B_LEADS, rate_margin_seconds=0.5
    )


def busiest_window(calls: list[dict[str, Any]], seconds: float) -> int:
    times = sorted(c["time"] for c in calls)
    return max(sum(1 for t in times if start <= t < start + seconds) for start in times)


def test_verify_finds_exactly_the_unperformed_resets_and_fails_the_run(verify_e2e):
    e2e = verify_e2e
    e2e.emulator.clear_calls()
    run_a = e2e.stack.trigger(
        {**DAY, "lead_ids": A_IDS, "batch_size": 15, "verify_sample": 50, "verify_delay_seconds": DELAY},
        run_id=f"verify_a__{time.time_ns()}",
    )
    run_b = e2e.stack.trigger(
        {**DAY, "lead_ids": B_IDS, "batch_size": 200, "verify_sample": 0, "max_growth_factor": 1000},
        run_id=f"verify_b__{time.time_ns()}",
    )

    # While A runs, watch its verify task: between pokes it waits as up_for_reschedule, holding no slot.
    seen: list[str] = []
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        state = e2e.stack.api("GET", f"/dags/leadsquared_reset/dagRuns/{run_a}")["state"]
        tis = {ti["task_id"]: ti for ti in e2e.stack.task_instances(run_a)}
        verify_state = tis.get("verify", {}).get("state")
        if verify_state and (not seen or seen[-1] != verify_state):
            seen.append(verify_state)
        if state in ("success", "failed"):
            break
        time.sleep(1)
    assert e2e.stack.wait_for_run(run_a) == "failed"  # 3 still present > max_still_present (0)
    assert e2e.stack.wait_for_run(run_b) == "success"
    calls = e2e.emulator.calls()

    assert "up_for_reschedule" in seen, seen
    tis = {ti["task_id"]: ti["state"] for ti in e2e.stack.task_instances(run_a)}
    assert tis["verify"] == "success" and tis["report"] == "failed"  # verify reports; the report judges
    assert tis["reset_batch.reset"] == tis["reset_batch.check"] == "success"

    # The emulator's own record: exactly the unperformed leads still hold what their reset was to delete.
    unperformed = sorted(r["lead_id"] for r in e2e.emulator.resets(state="unperformed"))
    assert unperformed == UNPERFORMED
    for lead_id in A_IDS:
        kept = {a["Id"].rsplit("-", 1)[0] for a in e2e.emulator.lead(lead_id)["activities"]}
        expected = {"before-from", "after-to", "other-code"} | (set(IN_WINDOW) if lead_id in UNPERFORMED else set())
        assert kept == expected, lead_id

    # The summary (still readable although the run failed): every lead sampled, 3 still present, 27 verified.
    summary = e2e.stack.xcom(run_a, "report")
    assert summary["counts"] == {"queued": A_COUNT}
    assert summary["verification"] == {
        "sampled": A_COUNT,
        "of_queued": A_COUNT,
        "verified": A_COUNT - len(UNPERFORMED),
        "still_present": len(UNPERFORMED),
        "unverifiable": 0,
        "nothing_checkable": 0,
        "delay_seconds": DELAY,
        "not_checked": "audit records (OwnerChange, StageChange): ProspectActivity.Retrieve reads activities only, "
        "so these were not checked",
    }
    assert [row["lead_id"] for row in summary["still_present_leads"]] == UNPERFORMED
    for row in summary["still_present_leads"]:
        n = row["remaining_ids"][0].rsplit("-", 1)[1]
        assert row["remaining_count"] == 3
        assert sorted(row["remaining_ids"]) == sorted(f"{name}-{n}" for name in IN_WINDOW)
    rows = e2e.state(
        "SELECT lead_id, result, remaining_count FROM leadsquared_reset_verification WHERE run_key = ?",
        (f"leadsquared_reset/{run_a}",),
    )
    assert sorted(lead for lead, result, _ in rows if result == "still_present") == UNPERFORMED
    assert sorted(lead for lead, result, count in rows if result == "verified" and count == 0) == sorted(
        set(A_IDS) - set(UNPERFORMED)
    )
    assert e2e.stack.xcom(run_b, "report")["verification"] == {"off": "verify_sample is 0: no lead was read back"}

    # The alert of the failed run names the reason.
    alerts = (e2e.stack.config.home / "logs" / "leadsquared_alerts.jsonl").read_text().splitlines()
    [alert] = [json.loads(line) for line in alerts if json.loads(line)["run_id"] == run_a]
    assert alert["task_id"] == "report"
    assert "3 of 30 sampled lead(s) still hold activities" in alert["reason"]
    assert "max_still_present=0" in alert["reason"]

    # The reads: every lead of A (one unfiltered page holds all its activities); none of B's; paced by the
    # shared budget.
    reads = [c for c in calls if c["path"].endswith("ProspectActivity.svc/Retrieve")]
    read_leads = {c["lead_id"] for c in reads}
    assert read_leads == set(A_IDS)
    assert {c["body"]["Parameter"].get("ActivityEvent") for c in reads} == {None}
    assert all(c["outcome"] == "ok" for c in reads)
    assert sum(e2e.emulator.stats()["rate_limited"].values()) == 0
    assert busiest_window(calls, WINDOW_SECONDS) <= LIMIT
    b_resets = [c["time"] for c in calls if c["path"].endswith("Lead.Reset") and c["lead_id"] in set(B_IDS)]
    during_b = [c for c in reads if min(b_resets) < c["time"] < max(b_resets)]
    assert during_b, "A's reads never ran while B was resetting: the test proved no sharing"
    print(f"\nverify: states {seen}; {len(reads)} reads, {len(during_b)} of them while run B was resetting")


def test_dry_run_verifies_nothing_and_says_so(verify_e2e):
    e2e = verify_e2e
    e2e.emulator.clear_calls()
    run_id = e2e.stack.trigger(
        {**DAY, "lead_ids": A_IDS[:5], "dry_run": True, "verify_delay_seconds": DELAY},
        run_id=f"verify_dry__{time.time_ns()}",
    )

    assert e2e.stack.wait_for_run(run_id) == "success"
    assert e2e.emulator.calls() == []
    summary = e2e.stack.xcom(run_id, "report")
    assert summary["verification"] == {"skipped": "dry run: nothing was sent, so nothing was verified"}
    assert summary["still_present_leads"] == []
    assert e2e.stack.xcom(run_id, "verify") == {"skipped": "dry run: nothing was sent"}
