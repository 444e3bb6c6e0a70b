"""A process that resets leads through the shared connection until a deadline (for the budget test)."""

from __future__ import annotations

import time


def reset_until(conn_id: str, lead_ids: list[str], start: float, deadline: float) -> dict[str, int]:
    """Warm up (imports, connection, budget), wait for the common start, then reset until the deadline."""
    from leadsquared_provider.hooks.leadsquared import LeadSquaredHook
    from leadsquared_provider.reset_request import ResetRequest, ResetScope

    hook = LeadSquaredHook(leadsquared_conn_id=conn_id)
    hook.get_conn()
    assert hook.budget.limit > 0
    scope = ResetScope(delete_notes=True, allow_all_time=True)
    time.sleep(max(0.0, start - time.time()))
    counts: dict[str, int] = {}
    for lead_id in lead_ids:
        if time.time() >= deadline:
            break
        result = hook.reset_lead(ResetRequest(lead_id, scope))
        counts[str(result.outcome)] = counts.get(str(result.outcome), 0) + 1
    return counts
