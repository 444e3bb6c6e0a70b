"""RunParams: a run's params, typed and checked once, each error naming the param at fault."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from leadsquared_provider.exceptions import PlanError

# Default share of rejected leads (LeadSquared refused them for good, or the id is not a GUID) above which a
# run fails. Deleted or merged leads are normal, and on a small night's run two of them can be a third of
# the candidates, so a low share would cry wolf; when half the ids are refused, the query reads the wrong
# column, account or region, or stale ids: someone must look before the next run.
DEFAULT_MAX_REJECTED_SHARE = 0.5
# Verification's params (the DAG's trigger form says why). Here, not in `verification`, so that the DAG file
# reads them without importing what the verify task needs: the dag-processor parses the file every 30 s.
DEFAULT_VERIFY_SAMPLE = 20
DEFAULT_VERIFY_DELAY_SECONDS = 300
DEFAULT_MAX_STILL_PRESENT = 0
MAX_VERIFY_SAMPLE = 1000  # 1000 reads (a lead with <= 25 activities): ~3.5 min at 25 calls / 5 s
MAX_VERIFY_DELAY_SECONDS = 6 * 3600
# Requests of one batch in flight at once: the default and the range the plan and the operator accept.
DEFAULT_MAX_IN_FLIGHT, MAX_IN_FLIGHT = 4, 32
# Between two pokes of the verify task (Airflow advises at least a minute for sensors in reschedule mode).
POKE_INTERVAL_SECONDS = 60


def _flag(params: Mapping[str, Any], name: str, default: bool) -> bool:
    raw = params.get(name, default)
    if raw is None:
        return default
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in ("true", "false"):
        return raw.strip().lower() == "true"
    raise PlanError(f"param {name} must be true or false, got {raw!r}; nothing was sent")


def _number(
    params: Mapping[str, Any], name: str, default: float, *, whole: bool, low: float, high: float | None = None
) -> Any:
    raw = params.get(name, default)
    if raw is None:
        raw = default
    try:
        if isinstance(raw, bool):
            raise ValueError
        value = float(raw)
        if not math.isfinite(value):
            raise ValueError
        if whole:
            if value != int(value):
                raise ValueError
            value = int(value)
    except (TypeError, ValueError, OverflowError):
        kind = "a whole number" if whole else "a finite number"
        raise PlanError(f"param {name} must be {kind}, got {raw!r}; nothing was sent") from None
    if value < low:
        raise PlanError(f"param {name} must be at least {low:g}, got {raw!r}; nothing was sent")
    if high is not None and value > high:
        raise PlanError(f"param {name} must be at most {high:g}, got {raw!r}; nothing was sent")
    return value


@dataclass(frozen=True)
class RunParams:
    """The params a run's plan and report read (the DAG's trigger form)."""

    categories: dict[str, Any] = field(default_factory=dict)
    from_date: Any = None
    to_date: Any = None
    allow_all_time: bool = False
    dry_run: bool = False
    lead_ids: list[Any] | None = None
    max_leads_per_run: int = 10_000
    max_growth_factor: float = 10.0
    growth_guard_floor: int = 100
    batch_size: int = 200
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    retry_earlier_failures: bool = True
    failure_threshold: int = 0
    max_rejected_share: float = DEFAULT_MAX_REJECTED_SHARE
    audit_export_table: str | None = None
    # True: a run whose candidates do not fit in what is left of today's quota is refused; False: it sends
    # what fits and defers the rest to the next run.
    refuse_over_daily_quota: bool = False
    verify_sample: int = DEFAULT_VERIFY_SAMPLE  # reads the verification will spend of today's quota

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> RunParams:
        lead_ids = params.get("lead_ids")
        if isinstance(lead_ids, str):
            lead_ids = lead_ids.replace(",", "\n").splitlines()
        rejected_share = _number(params, "max_rejected_share", DEFAULT_MAX_REJECTED_SHARE, whole=False, low=0, high=1)
        export = params.get("audit_export_table") or None
        return cls(
            categories={
                "activity_event_codes": params.get("activity_event_codes") or [],
                "task_type_ids": params.get("task_type_ids") or [],
                "audit_types": params.get("audit_types") or [],
                "delete_notes": params.get("delete_notes", False),
            },
            from_date=params.get("from_date") or None,
            to_date=params.get("to_date") or None,
            allow_all_time=_flag(params, "allow_all_time", False),
            dry_run=_flag(params, "dry_run", False),
            lead_ids=list(lead_ids) if lead_ids else None,
            max_leads_per_run=_number(params, "max_leads_per_run", 10_000, whole=True, low=1),
            max_growth_factor=_number(params, "max_growth_factor", 10, whole=False, low=1),
            growth_guard_floor=_number(params, "growth_guard_floor", 100, whole=True, low=0),
            batch_size=_number(params, "batch_size", 200, whole=True, low=1),
            max_in_flight=_number(
                params, "max_in_flight", DEFAULT_MAX_IN_FLIGHT, whole=True, low=1, high=MAX_IN_FLIGHT
            ),
            retry_earlier_failures=_flag(params, "retry_earlier_failures", True),
            failure_threshold=_number(params, "failure_threshold", 0, whole=True, low=0),
            max_rejected_share=rejected_share,
            audit_export_table=str(export).strip() if export else None,
            refuse_over_daily_quota=_flag(params, "refuse_over_daily_quota", False),
            verify_sample=_number(params, "verify_sample", DEFAULT_VERIFY_SAMPLE, whole=True, low=0),
        )
