"""What a finished run tells the data platform (lineage facets, the asset event, metrics): counts, never a key
or a lead id.

Read once from the report's summary; every signal is derived from this one value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from leadsquared_provider.rules.outcomes import Outcome

VERIFICATION_RESULTS = ("verified", "still_present", "unverifiable", "nothing_checkable")


def _int(value: object) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


@dataclass(frozen=True)
class RunSignals:
    """A run's totals as the platform sees them.

    :param failed: leads not reset for a failure (the report's ``failures``: failed, auth_failed, skipped,
        unfinished).
    :param verification: sampled leads by result (empty when nothing was read back).
    :param verification_note: why nothing was read back (dry run, sample 0, nothing queued, task missing).
    """

    dag_id: str
    dry_run: bool
    window_from: str | None
    window_to: str | None
    categories: Mapping[str, Any] = field(default_factory=dict)
    counts: Mapping[str, int] = field(default_factory=dict)
    failed: int = 0
    verification: Mapping[str, int] = field(default_factory=dict)
    verification_note: str | None = None
    rate_limited_answers: int = 0
    effective_rate: float | None = None

    @classmethod
    def from_summary(cls, dag_id: str, summary: Mapping[str, Any]) -> RunSignals:
        """From the report's summary (its lead lists are left out)."""
        window = summary.get("window") or {}
        part = summary.get("verification") or {}
        note = next((str(part[k]) for k in ("skipped", "off", "missing") if k in part), None)
        rate = summary.get("effective_rate_per_window")
        return cls(
            dag_id=dag_id,
            dry_run=bool(summary.get("dry_run")),
            window_from=window.get("from"),
            window_to=window.get("to"),
            categories=dict(summary.get("categories") or {}),
            counts={str(k): _int(v) for k, v in (summary.get("counts") or {}).items()},
            failed=_int(summary.get("failures")),
            verification={k: _int(part[k]) for k in ("sampled", *VERIFICATION_RESULTS) if k in part},
            verification_note=note,
            rate_limited_answers=_int(summary.get("rate_limited_answers")),
            effective_rate=float(rate) if isinstance(rate, int | float) else None,
        )

    def count(self, outcome: Outcome) -> int:
        return self.counts.get(outcome.value, 0)

    @property
    def window(self) -> dict[str, str | None]:
        return {"from": self.window_from, "to": self.window_to}

    def asset_extra(self) -> dict[str, Any]:
        """The extra of the run's asset event: what a downstream DAG reads."""
        return {
            "window": self.window,
            "queued": self.count(Outcome.QUEUED),
            "rejected": self.count(Outcome.REJECTED),
            "failed": self.failed,
            "verified": self.verification.get("verified", 0),
            "still_present": self.verification.get("still_present", 0),
        }
