"""A process that resets leads through the shared connection until a deadline (for the budget test)."""

from __future__ import annotations

import time
from typing import Any


def reset_until(
    conn_id: str, lead_ids: list[str], ready: Any, go: Any, start: Any, seconds: float, results: Any
) -> None:
    """Warm up (imports, connection, budget), say so, wait for the common start, then reset for ``seconds``.

    ``ready`` and ``go`` are barriers shared with the test, ``start`` the shared start time it sets between
    them; the counts per outcome go to the ``results`` queue."""
    from leadsquared_provider.hooks.leadsquared import LeadSquaredHook
    from leadsquared_provider.rules.request import ResetRequest, ResetScope

    hook = LeadSquaredHook(leadsquared_conn_id=conn_id)
    hook.get_conn()
    assert hook.budget.limit > 0
    scope = ResetScope(delete_notes=True, allow_all_time=True)
    ready.wait(timeout=120)
    go.wait(timeout=120)
    time.sleep(max(0.0, start.value - time.time()))
    deadline = start.value + seconds
    counts: dict[str, int] = {}
    for lead_id in lead_ids:
        if time.time() >= deadline:
            break
        result = hook.reset_lead(ResetRequest(lead_id, scope))
        counts[str(result.outcome)] = counts.get(str(result.outcome), 0) + 1
    results.put(counts)
