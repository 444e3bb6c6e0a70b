"""The shared-accounts bench (``bench/cotenant.py``): its figures from known call logs, and one short real run."""

from __future__ import annotations

import json

import pytest

from bench.cotenant import (
    SECTION_TITLE,
    Scenario,
    account_figures,
    is_rate_limited,
    recovery_seconds,
    render_section,
    run_scenario,
    write_section,
)

RESET = "/v2/LeadManagement.svc/Lead.Reset"


def call(t: float, lead: str, outcome: str = "queued") -> dict:
    return {"time": t, "path": RESET, "lead_id": lead, "outcome": outcome}


@pytest.mark.parametrize(
    ("status", "text", "limited"),
    [
        pytest.param(429, "", True, id="429"),
        pytest.param(200, '{"ExceptionType":"MXAPIRateLimitExceededException"}', True, id="200-style"),
        pytest.param(403, '{"ExceptionType":"MXAPIRateLimitExceededException"}', True, id="403-style"),
        pytest.param(403, '{"ExceptionType":"MXUnAuthorizedAccessException"}', False, id="403-permission"),
        pytest.param(200, '{"Status":"Success"}', False, id="queued"),
    ],
)
def test_rate_limit_answers_are_recognised_in_every_style(status, text, limited):
    assert is_rate_limited(status, text) is limited


def test_figures_split_ours_from_the_co_tenants_by_lead_and_count_only_the_run():
    calls = [
        call(99.0, "ours-0"),  # before the start: not counted
        *(call(100.0 + n / 4, f"ours-{n}") for n in range(40)),  # 4 a second for 10 s
        call(103.0, "ours-x", "rate_limited"),
        *(call(100.5 + n, f"theirs-{n}") for n in range(10)),  # 1 a second
        call(104.2, "theirs-x", "rate_limited"),
        call(110.0, "ours-late"),  # at the end: not counted
        {"time": 101.0, "path": "/v2/Authentication.svc/UserByAccessKey.Get", "lead_id": None, "outcome": "ok"},
    ]
    ours = {f"ours-{n}" for n in range(40)} | {"ours-0", "ours-x", "ours-late"}
    fig = account_figures(calls, ours, limit=25, window=5.0, start=100.0, end=110.0)
    assert (fig.our_admitted, fig.our_rejected, fig.cotenant_admitted, fig.cotenant_rejected) == (40, 1, 10, 1)
    assert fig.our_share == pytest.approx(40 / 10 / 5)  # 4 of the 5 calls a second the limit allows
    assert fig.cotenant_share == pytest.approx(0.2)
    assert fig.our_rejected_share == pytest.approx(1 / 41)
    assert fig.max_in_window == 25  # 20 of ours + 5 of theirs in a 5-s span


def test_recovery_is_the_time_until_one_window_holds_ninety_percent_of_the_limit():
    slow = [50.0 + n * 0.25 for n in range(40)]  # 4 a second until 60
    fast = [60.0 + n * 0.2 for n in range(100)]  # 5 a second from 60
    # 23 calls (0.9 * 25, rounded up) in the 5 s ending at t = 62.2: 11 slow ones after 57.2, 12 fast ones.
    assert recovery_seconds(slow + fast, 60.0, limit=25, window=5.0) == pytest.approx(2.2)
    assert recovery_seconds(slow, 60.0, limit=25, window=5.0) is None


def test_the_section_replaces_the_one_an_earlier_run_wrote(tmp_path):
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\n## 1. Part one\n\nfigures\n")
    write_section(f"{SECTION_TITLE}\n\nfirst\n", results)
    write_section(f"{SECTION_TITLE}\n\nsecond\n", results)
    assert results.read_text() == f"# Benchmark results\n\n## 1. Part one\n\nfigures\n\n{SECTION_TITLE}\n\nsecond\n"


@pytest.mark.slow
def test_a_short_run_measures_what_its_processes_and_the_emulator_saw(tmp_path):
    """2 processes x 2 threads at 10 per 1 s, a co-tenant at 3 per 1 s for the first 4 of 14 s."""
    scenario = Scenario(
        "smoke", "smoke", 14.0, cotenant_per_window=3, cotenant_stops_at=4.0, limits=(10,), processes=2, threads=2
    )
    result = run_scenario(scenario, tmp_path, window=1.0, margin=0.05, latency=(0.01, 0.05), warmup=6.0)

    fig = result.accounts[0]
    ours, theirs = result.processes, result.cotenant
    assert theirs is not None
    # The co-tenant paced itself as told (3 a second for 4 s), and the emulator saw every call it sent.
    assert theirs["sent"] == pytest.approx(12, abs=1)
    assert fig.cotenant_admitted + fig.cotenant_rejected == theirs["sent"]
    assert (fig.cotenant_admitted, fig.cotenant_rejected) == (theirs["queued"], theirs["rate_limited"])
    # Our processes' own counts agree with the emulator's log (a call sent at the deadline may land after it).
    assert abs(fig.our_admitted - sum(p["queued"] for p in ours)) <= 4
    assert abs(fig.our_rejected - sum(p["rate_limited"] for p in ours)) <= 4
    assert fig.max_in_window <= 10
    assert 0.3 < fig.our_share <= 1.0
    # The recovery it reports is where the log has 9 of our calls (0.9 * 10) in the second before, and not earlier.
    assert fig.recovery is not None and fig.halves is not None
    log = json.loads((tmp_path / "calls-0.json").read_text())
    our_times = [c["time"] for c in log if c["ours"] and c["outcome"] != "rate_limited"]
    stopped = max(c["time"] for c in log if not c["ours"])
    recovered = stopped + fig.recovery
    assert sum(1 for t in our_times if recovered - 1.0 < t <= recovered) >= 9
    assert recovery_seconds(our_times, stopped, limit=10, window=1.0) == fig.recovery
    section = render_section([result])
    assert section.startswith(SECTION_TITLE) and "### smoke. smoke" in section
