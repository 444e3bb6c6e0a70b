"""What every end-to-end run must show: exactly the expected requests, deletions, audit rows and report."""

from __future__ import annotations

from tests.e2e.scenario import DAYS, INVALID_IDS, MISSING_LEAD, utc_window


def check_day_run(e2e, run_id: str, day: str, calls: list[dict]) -> None:
    """One run for ``day`` sent exactly one request per valid candidate, with the day's window."""
    scenario = e2e.scenario
    window = utc_window(day)
    expected = set(scenario.candidates(day)) | ({MISSING_LEAD} if day == DAYS[1] else set())
    assert sorted(c["lead_id"] for c in calls) == sorted(expected)  # one call each: no repeats
    for call in calls:
        assert call["body"] == {
            "ProspectId": call["lead_id"],
            "ActivityEventList": [166, 167],
            "AuditActivityList": ["OwnerChange", "StageChange"],
            "FromDate": window[0],
            "ToDate": window[1],
        }
        assert call["query"] == ""
    for lead in scenario.leads:
        if lead["ProspectId"] in expected:
            assert e2e.emulator.lead(lead["ProspectId"]) == scenario.expected_after(lead, window)

    audit = e2e.audit(run_id)
    queued = {lead for lead, row in audit.items() if row[0] == "queued"}
    assert queued == set(scenario.candidates(day))
    assert all(audit[lead][4:8] == (window[0], window[1], 1, 1) for lead in queued)
    if day == DAYS[1]:
        assert audit[MISSING_LEAD][:3] == ("rejected", 400, "MXInvalidEntityReferenceException")
        for bad in INVALID_IDS:
            assert audit[bad][:3] == ("rejected", None, "InvalidLeadId")
            assert audit[bad][6:8] == (0, 0)

    summary = e2e.stack.xcom(run_id, "report")
    assert summary["counts"].get("queued") == len(queued)
    assert summary["failures"] == 0
    assert summary["counts"].get("rejected", 0) == (len(INVALID_IDS) + 1 if day == DAYS[1] else 0)
