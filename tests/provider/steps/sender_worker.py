"""One BatchSender in a process of its own, for tests that give that process another clock.

``python -m tests.provider.steps.sender_worker '<json>'`` with ``state_conn``, ``lsq_conn``, ``run``, ``scope``,
``leads`` and ``ttl`` (and optionally ``scope_key`` and ``dag_id``); prints one JSON line: the process's wall
clock and the batch's counts per outcome.
"""

from __future__ import annotations

import json
import logging
import os
import select
import sys
import time

if os.environ.get("FAKETIME"):
    # libfaketime 0.9.10 answers EINVAL to clock_nanosleep(TIMER_ABSTIME) when the monotonic clock is not
    # faked, and Python's sleep uses it: sleep through select(), which takes a relative timeout. The wall
    # clock stays libfaketime's.
    def _sleep(seconds: float) -> None:
        if seconds > 0:
            select.select([], [], [], seconds)

    time.sleep = _sleep


def main(spec: dict) -> dict:
    from leadsquared_provider.hooks.leadsquared import LeadSquaredHook
    from leadsquared_provider.rules.request import ResetScope
    from leadsquared_provider.steps.send import BatchSender, owner_for
    from leadsquared_provider.store import BatchScope, StagedLead, StateStore

    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    scope, run, ttl = spec["scope"], spec["run"], float(spec["ttl"])
    key = spec.get("scope_key", "s1")
    with StateStore(spec["state_conn"]) as store:
        report = BatchSender(
            store=store,
            hook=LeadSquaredHook(leadsquared_conn_id=spec["lsq_conn"]),
            batch=BatchScope(
                run_key=run, dag_id=spec.get("dag_id", "dag"), batch=1, scopes={key: ResetScope.from_mapping(scope)}
            ),
            owner=owner_for(run, 1, 1),
            claim_ttl_seconds=ttl,
            heartbeat_seconds=ttl / 6,
            held_poll_seconds=0.1,
        ).send([StagedLead(lead, key) for lead in spec["leads"]])
    return {"clock": time.time(), "counts": {str(k): v for k, v in report.counts.items()}}


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
