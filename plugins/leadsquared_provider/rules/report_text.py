"""The run's summary as a readable table, for the report task's log."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _lead_line(row: Mapping[str, Any]) -> str:
    return (
        f"  {row['lead_id']:<38} {row['outcome']:<22} {row['status_code'] or '-':<5} "
        f"{row['exception_type'] or '-'}: {row['message']}"
    )


def format_report(summary: Mapping[str, Any]) -> str:
    """A table of outcomes, then the leads not reset, held by other runs or possibly repeated."""
    lines = [
        f"LeadSquared reset report - {summary['run']}{'  (DRY RUN: nothing was sent)' if summary['dry_run'] else ''}",
        f"window (UTC): {summary['window']['from'] or 'lead creation'} .. {summary['window']['to'] or 'now'}",
        f"candidates: {summary['candidates']} in {summary['batches']} batch(es);"
        f" ids that were not GUIDs: {summary['invalid_ids']};"
        f" leads retried from earlier runs: {summary.get('retried_from_earlier_runs', 0)}",
        "",
        *([f"approval: {summary['approval']['text']}", ""] if summary.get("approval") else []),
        f"{'outcome':<24}{'leads':>8}",
        f"{'-' * 24}{'-' * 8}",
    ]
    lines += [f"{outcome:<24}{count:>8}" for outcome, count in summary["counts"].items()]
    if not summary["counts"]:
        lines.append(f"{'(none)':<24}{0:>8}")
    lines.append(
        f"possibly repeated requests (a crash, a takeover or a retry after no clear answer): "
        f"{summary['possibly_repeated']} {summary.get('possibly_repeated_leads') or ''}".rstrip()
    )
    lines.append(f"rate-limit answers: {summary.get('rate_limited_answers', 0)}")
    if summary.get("deferred"):
        lines.append(
            f"deferred to the next run (over today's share of the daily quota): {summary['deferred']}"
            + (f"; calls free up from {summary['day_restarts']}" if summary.get("day_restarts") else "")
        )
    if "audit_exported_rows" in summary:
        lines.append(f"audit rows exported to the warehouse: {summary['audit_exported_rows']}")
    if summary.get("audit_export_error"):
        lines.append(f"audit export FAILED: {summary['audit_export_error']}")
    if summary.get("effective_rate_per_window") is not None:
        lines.append(f"effective rate at the end: {summary['effective_rate_per_window']:.1f} calls per window")
    if summary.get("held_elsewhere"):
        lines += ["", "leads held by another run or try (not sent here):"]
        lines += [_lead_line(row) for row in summary["held_elsewhere"]]
    if summary["first_failed"]:
        lines += ["", "first leads not reset:"]
        lines += [_lead_line(row) for row in summary["first_failed"]]
    if "verification" in summary:
        lines += ["", *_verification_lines(summary)]
    return "\n".join(lines)


def _verification_lines(summary: Mapping[str, Any]) -> list[str]:
    """The verify step: counts per check, what could not be checked, the leads still holding activities."""
    part = summary["verification"]
    for why in ("skipped", "off", "missing"):
        if why in part:
            return [f"verification {why}: {part[why]}"]
    lines = [
        f"verification: {part['sampled']} of {part['of_queued']} queued lead(s) read back "
        f"up to {part['delay_seconds']} s after the last reset was queued",
        f"{'check':<24}{'leads':>8}",
        f"{'-' * 24}{'-' * 8}",
    ]
    lines += [
        f"{check:<24}{part.get(check, 0):>8}"
        for check in ("verified", "still_present", "unverifiable", "nothing_checkable")
    ]
    lines.append(f"not checked: {part['not_checked']}")
    if part.get("daily_quota"):
        lines.append(f"daily quota: {part['daily_quota']}")
    if summary.get("still_present_leads"):
        lines += ["", "leads still holding activities their reset was to delete:"]
        lines += [
            f"  {row['lead_id']:<38} {row['remaining_count']:>4}  {', '.join(row['remaining_ids'])}"
            for row in summary["still_present_leads"]
        ]
    return lines
