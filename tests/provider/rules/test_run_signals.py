"""A run's signals come from its summary: counts only, never a lead id."""

from __future__ import annotations

import json

from leadsquared_provider.rules.run_signals import RunSignals

SUMMARY = {
    "dry_run": False,
    "window": {"from": "2026-11-21T18:30:00+00:00", "to": "2026-11-22T18:29:59+00:00"},
    "categories": {
        "ActivityEventList": [166],
        "TaskTypeList": [],
        "AuditActivityList": [],
        "ShouldDeleteProspectNotes": False,
    },
    "counts": {"queued": 7, "rejected": 2, "failed": 1},
    "failures": 1,
    "rate_limited_answers": 3,
    "effective_rate_per_window": 24.0,
    "verification": {
        "sampled": 5,
        "of_queued": 7,
        "verified": 4,
        "still_present": 1,
        "unverifiable": 0,
        "nothing_checkable": 0,
        "delay_seconds": 300,
        "not_checked": "tasks",
    },
    "first_failed": [{"lead_id": "0f0f0f0f-0000-4000-8000-00000000abcd", "outcome": "failed"}],
    "possibly_repeated_leads": ["0f0f0f0f-0000-4000-8000-00000000abce"],
}


def test_the_asset_extra_is_the_runs_counts():
    signals = RunSignals.from_summary("leadsquared_reset", SUMMARY)
    assert signals.asset_extra() == {
        "window": SUMMARY["window"],
        "queued": 7,
        "rejected": 2,
        "failed": 1,
        "verified": 4,
        "still_present": 1,
    }
    assert signals.verification == {
        "sampled": 5,
        "verified": 4,
        "still_present": 1,
        "unverifiable": 0,
        "nothing_checkable": 0,
    }
    assert (signals.rate_limited_answers, signals.effective_rate, signals.verification_note) == (3, 24.0, None)


def test_no_lead_id_is_kept():
    text = json.dumps(RunSignals.from_summary("d", SUMMARY).__dict__, default=str)
    assert "0f0f0f0f" not in text


def test_a_dry_run_says_why_nothing_was_verified():
    summary = {
        **SUMMARY,
        "dry_run": True,
        "counts": {"dry_run": 3},
        "failures": 0,
        "verification": {"skipped": "dry run: nothing was sent, so nothing was verified"},
        "effective_rate_per_window": None,
    }
    signals = RunSignals.from_summary("d", summary)
    assert signals.dry_run and signals.verification == {} and signals.effective_rate is None
    assert signals.verification_note == "dry run: nothing was sent, so nothing was verified"
    assert signals.asset_extra()["queued"] == 0
