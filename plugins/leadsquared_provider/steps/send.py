"""BatchSender: sends one batch's leads, each under an atomic claim, with a few requests in flight.

Per lead: take the claim on (lead, scope) in the state store (which writes its ``sending`` row), send through
the hook (which paces every call by the account's budget), then write the outcome and settle or release the
claim in one transaction. A lead settled under its scope by any run is ``already_done``; one held by a live
owner (another run, a zombie try of this batch) is revisited until that owner settles, releases or loses
it (its claim expires), then ``in_progress_elsewhere`` if still held. An expired claim is taken over once
it has been seen expired and unchanged for two heartbeats (by the store's clock), and its lead is reported
as possibly repeated. Claims are kept fresh by a heartbeat thread while the batch works.

An answer that has been read is never lost to a store error (SQLite's lock held past its busy timeout, a
dropped PostgreSQL connection): its write is retried with backoff, the result kept in memory and its claim
held (the heartbeat goes on), until the store takes it or the task is killed; nothing new is claimed
meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from leadsquared_provider.exceptions import DailyQuotaSpent, InvalidConnection, LeadSquaredAuthError, RateBudgetError
from leadsquared_provider.rules.outcomes import Outcome, ResetResult
from leadsquared_provider.rules.params import MAX_IN_FLIGHT
from leadsquared_provider.store import (
    BatchScope,
    Claim,
    ClaimOwner,
    ClaimStatus,
    LeadResult,
    Sighting,
    StagedLead,
    StateStore,
)

if TYPE_CHECKING:
    from leadsquared_provider.hooks.leadsquared import LeadSquaredHook

T = TypeVar("T")

# A store error worth waiting out: a lock held past the busy timeout, a dropped or refused connection.
_STORE_RETRY_FIRST_SECONDS = 0.5
_STORE_RETRY_MAX_SECONDS = 15.0
_DRAIN_SECONDS = 60.0  # after a kill, how long the answers in flight may wait for the store


def _store_unavailable(exc: BaseException) -> bool:
    from sqlalchemy.exc import DBAPIError, OperationalError

    return isinstance(exc, OperationalError) or (isinstance(exc, DBAPIError) and exc.connection_invalidated)


class _Progress:
    """Logs done/total, rate and ETA at a steady pace so a long batch is never silent."""

    def __init__(self, log: logging.Logger, total: int, every_seconds: float) -> None:
        self.log, self.total, self.every = log, total, every_seconds
        self.started = self.last = time.monotonic()

    def tick(self, done: int, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < self.every:
            return
        self.last = now
        rate = done / (now - self.started) if now > self.started else 0.0
        eta = (self.total - done) / rate if rate else float("nan")
        self.log.info("progress: %d/%d leads, %.2f resets/s, ETA %.0f s", done, self.total, rate, eta)


@dataclass
class SendReport:
    """What one batch did: counts per outcome, and the failure that stopped it, if any."""

    counts: Counter[str]
    auth_failure: ResetResult | None = None
    stopped_by: BaseException | None = None
    quota_spent: DailyQuotaSpent | None = None  # the account's daily share ran out: the rest is deferred


class _Heartbeat(threading.Thread):
    """Keeps the owner's claims alive while the batch works."""

    def __init__(self, store: StateStore, owner: ClaimOwner, ttl: float, every: float, log: logging.Logger) -> None:
        super().__init__(name="lsq-claim-heartbeat", daemon=True)
        self.store, self.owner, self.ttl, self.every, self.log = store, owner, ttl, every, log
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.every):
            try:
                self.store.heartbeat(self.owner, self.ttl)
            except Exception as exc:  # a missed beat is retried; the claim's expiry is the safety net
                self.log.warning("claim heartbeat failed (%s); retrying in %.0f s", type(exc).__name__, self.every)


class BatchSender:
    """
    Send one batch's leads under claims; the operator only builds it and reports what it returns.

    :param store: the state store.
    :param hook: the account's hook (its budget paces every call).
    :param batch: run, DAG, batch number and the scopes its leads are reset under.
    :param owner: who holds this batch's claims.
    :param max_in_flight: requests out at once; a killed task may repeat at most this many.
    :param claim_ttl_seconds: a claim not refreshed for this long is taken over by others.
    :param heartbeat_seconds: how often claims are refreshed (well under the ttl).
    :param run_stopped: returns True when another batch of the run met refused keys.
    """

    def __init__(
        self,
        *,
        store: StateStore,
        hook: LeadSquaredHook,
        batch: BatchScope,
        owner: ClaimOwner,
        max_in_flight: int = MAX_IN_FLIGHT.default,
        claim_ttl_seconds: float = 30.0,
        heartbeat_seconds: float = 5.0,
        progress_every_seconds: float = 10.0,
        held_poll_seconds: float = 1.0,
        run_stopped: Callable[[], bool] | None = None,
        log: Any = None,  # a logging.Logger or the Task SDK's task logger
    ) -> None:
        self.store, self.hook, self.batch, self.owner = store, hook, batch, owner
        self.max_in_flight = max_in_flight
        self.claim_ttl = claim_ttl_seconds
        self.heartbeat_seconds = heartbeat_seconds
        # An expired claim is taken over only if still expired and unchanged this much later: its owner's
        # heartbeat, delayed by a locked or unreachable store, lands within two beats once the store answers.
        self.takeover_grace = 2 * heartbeat_seconds
        self.progress_every = progress_every_seconds
        self.held_poll = held_poll_seconds
        self.run_stopped = run_stopped or (lambda: False)
        self.log = log or logging.getLogger(__name__)

    # -- the parts ----------------------------------------------------------------------------------

    def durably(self, what: str, give_up_after: float | None, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``call(*args, **kwargs)``, retried with backoff while the store is unavailable (locked, unreachable),
        for ever or ``give_up_after`` seconds."""
        wait = _STORE_RETRY_FIRST_SECONDS
        started = time.monotonic()
        while True:
            try:
                return call(*args, **kwargs)
            except Exception as exc:
                if not _store_unavailable(exc) or (
                    give_up_after is not None and time.monotonic() - started + wait > give_up_after
                ):
                    raise
                self.log.warning(
                    "state store unavailable while %s (%s: %s); trying again in %.1f s",
                    what,
                    type(exc).__name__,
                    str(exc).splitlines()[0][:200],
                    wait,
                )
            time.sleep(wait)
            wait = min(wait * 2, _STORE_RETRY_MAX_SECONDS)

    def skip_settled(self, leads: list[StagedLead], counts: Counter[str]) -> list[StagedLead]:
        """Record leads already settled under their scope as ``already_done``; return the others."""
        by_scope: dict[str, list[str]] = {}
        for lead in leads:
            by_scope.setdefault(lead.scope_key, []).append(lead.lead_id)
        settled = {
            StagedLead(lead_id, sk): how
            for sk, ids in by_scope.items()
            for lead_id, how in self.durably(
                "reading settled leads", None, self.store.settled, ids, sk, self.batch.run_key
            ).items()
        }
        if settled:
            items = [
                LeadResult.not_sent(lead, Outcome.ALREADY_DONE, f"not sent: {how} (same window, categories)")
                for lead, how in sorted(settled.items())
            ]
            self.durably("recording settled leads", None, self.store.record_many, self.batch, items)
            counts[Outcome.ALREADY_DONE] += len(settled)
        return [lead for lead in leads if lead not in settled]

    def record_each(self, leads: Iterable[StagedLead], outcome: Outcome, message: str, counts: Counter[str]) -> None:
        items = [LeadResult.not_sent(lead, outcome, message) for lead in leads]
        if items:
            self.durably(f"recording {outcome}", None, self.store.record_many, self.batch, items)
            counts[outcome] += len(items)

    def _finish(
        self,
        item: StagedLead,
        result: ResetResult,
        claim: Claim,
        counts: Counter[str],
        give_up_after: float | None = None,
    ) -> None:
        """Record the lead's outcome and settle or release its claim; a store outage is waited out."""
        taken_over = int(claim.status is ClaimStatus.TAKEN_OVER)  # the dead owner's request counts as a send

        def write(outcome: ResetResult) -> None:
            self.durably(
                f"recording lead {item.lead_id} as {outcome.outcome}",
                give_up_after,
                self.store.finish,
                self.owner,
                self.batch,
                item.scope_key,
                outcome,
                extra_sends=taken_over,
                repeated=claim.possibly_repeats,
            )

        try:
            try:
                write(result)
            except Exception as exc:  # e.g. a value the store refused: the lead is failed, the batch goes on
                self.log.exception("lead %s: its outcome %s could not be recorded", item.lead_id, result.outcome)
                result = ResetResult.crashed(item.lead_id, exc, attempts=result.attempts, started_at=result.started_at)
                write(result)
        except BaseException:  # killed (execution_timeout) while the store was away: say what was not recorded
            self.log.error(
                "lead %s: LeadSquared answered %s but the state store never took it; its claim expires and "
                "a later run sends it again (possibly repeated)",
                item.lead_id,
                result.outcome,
            )
            raise
        counts[result.outcome] += 1

    def _take(
        self,
        future: Future[ResetResult],
        item: StagedLead,
        claim: Claim,
        report: SendReport,
        give_up_after: float | None = None,
    ) -> None:
        """Record the answer of a finished request (waiting for it if needed) and note what stops the batch."""
        try:
            result = future.result()
        except LeadSquaredAuthError as exc:
            result = ResetResult.not_sent(
                item.lead_id, Outcome.SKIPPED, f"not sent: {exc}", exception_type=exc.exception_type
            )
        except (RateBudgetError, InvalidConnection) as exc:
            # Every lead would meet it: stop; unsent leads are carried over by the next run.
            result = ResetResult.crashed(item.lead_id, exc)
            report.stopped_by = report.stopped_by or exc
        except DailyQuotaSpent as exc:  # not sent: this lead and every one after it wait for the next day
            result = ResetResult.not_sent(item.lead_id, Outcome.DEFERRED, f"not sent: {exc}")
            report.quota_spent = report.quota_spent or exc
        self._finish(item, result, claim, report.counts, give_up_after)
        if result.outcome is Outcome.AUTH_FAILED and report.auth_failure is None:
            report.auth_failure = result

    def _run_stopped(self) -> bool:
        try:
            return self.run_stopped()
        except Exception as exc:
            if not _store_unavailable(exc):
                raise
            return False  # looked at again in 5 s; the hook itself stops on a refusal it meets

    def _send_one(self, item: StagedLead) -> ResetResult:
        from leadsquared_provider.rules.request import ResetRequest

        started = time.time()
        try:
            return self.hook.reset_lead(ResetRequest(item.lead_id, self.batch.scopes[item.scope_key]))
        except (LeadSquaredAuthError, RateBudgetError, InvalidConnection, DailyQuotaSpent):
            raise  # the run's trouble, not the lead's: the sender stops
        except Exception as exc:  # one lead's trouble stays one lead's
            return ResetResult.crashed(item.lead_id, exc, started_at=started)

    # -- the loop -----------------------------------------------------------------------------------

    def send(self, leads: list[StagedLead]) -> SendReport:
        """Send ``leads`` (in order); return the counts per outcome and what stopped the batch, if anything."""
        counts: Counter[str] = Counter()
        todo = self.skip_settled(leads, counts)
        report = SendReport(counts)
        progress = _Progress(self.log, len(todo), self.progress_every)
        heartbeat = _Heartbeat(self.store, self.owner, self.claim_ttl, self.heartbeat_seconds, self.log)
        heartbeat.start()
        queue: list[StagedLead] = list(reversed(todo))
        held: dict[StagedLead, str] = {}
        sightings: dict[StagedLead, Sighting] = {}
        pending: dict[Future[ResetResult], tuple[StagedLead, Claim]] = {}
        done = 0
        last_stop_check = time.monotonic()
        held_deadline: float | None = None
        try:
            with ThreadPoolExecutor(max_workers=self.max_in_flight, thread_name_prefix="lsq-reset") as pool:
                try:
                    while True:
                        stopped = (
                            report.auth_failure is not None
                            or report.stopped_by is not None
                            or report.quota_spent is not None
                        )
                        if not stopped and time.monotonic() - last_stop_check > 5.0:
                            last_stop_check = time.monotonic()
                            if self._run_stopped():
                                report.auth_failure = ResetResult.not_sent(
                                    "", Outcome.AUTH_FAILED, "another batch of this run was refused"
                                )
                                stopped = True
                        while not stopped and queue and len(pending) < self.max_in_flight:
                            item = queue.pop()
                            claim = self.durably(
                                f"claiming lead {item.lead_id}",
                                None,
                                self.store.claim,
                                self.owner,
                                self.batch,
                                item,
                                self.claim_ttl,
                                sighting=sightings.get(item),
                                grace=self.takeover_grace,
                            )
                            if claim.status is ClaimStatus.SETTLED:
                                self.record_each([item], Outcome.ALREADY_DONE, f"not sent: {claim.detail}", counts)
                                done += 1
                            elif claim.status in (ClaimStatus.HELD, ClaimStatus.EXPIRED):
                                held[item] = claim.detail
                                if claim.sighting is not None:
                                    sightings[item] = claim.sighting
                                else:
                                    sightings.pop(item, None)
                            else:
                                if claim.status is ClaimStatus.TAKEN_OVER:
                                    self.log.warning("lead %s: %s; sending again", item.lead_id, claim.detail)
                                elif claim.after_unread:
                                    self.log.warning(
                                        "lead %s: an earlier attempt got no answer that was read; sending again "
                                        "(possibly repeated)",
                                        item.lead_id,
                                    )
                                pending[pool.submit(self._send_one, item)] = (item, claim)
                        if not pending:
                            if stopped or not (queue or held):
                                break
                            if not queue:
                                # Only leads held by others are left: look again until they settle or expire.
                                if held_deadline is None:
                                    held_deadline = (
                                        time.monotonic()
                                        + self.claim_ttl
                                        + 2 * self.heartbeat_seconds
                                        + self.takeover_grace
                                        + 2 * self.held_poll
                                    )
                                if time.monotonic() >= held_deadline:
                                    break
                                time.sleep(self.held_poll)
                                queue, held = list(reversed(held)), {}
                            continue
                        finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                        for future in finished:
                            self._take(future, *pending.pop(future), report)
                            done += 1
                        progress.tick(done)
                except BaseException:
                    # Killed (execution_timeout) or stopped by a store error that cannot be waited out: the
                    # answers of the requests in flight are still recorded, within a minute.
                    for future, (item, claim) in pending.items():
                        self._take(future, item, claim, report, give_up_after=_DRAIN_SECONDS)
                    raise
        finally:
            heartbeat.stopped.set()
        if report.auth_failure is not None:
            left = [*reversed(queue), *held]
            self.record_each(left, Outcome.SKIPPED, "not sent: the run stopped after LeadSquared refused", counts)
        elif report.quota_spent is not None:
            left = [*reversed(queue), *held]
            self.record_each(left, Outcome.DEFERRED, f"not sent: {report.quota_spent}", counts)
        elif report.stopped_by is None:
            for item, detail in held.items():
                self.record_each(
                    [item],
                    Outcome.IN_PROGRESS_ELSEWHERE,
                    f"not sent: {detail}; the next run takes it if unsettled",
                    counts,
                )
        # Stopped by the budget: unsent leads keep no row; the next run carries them over (never reached).
        progress.tick(done, force=True)
        return report


def refused_meanwhile(store: StateStore, key: str) -> Callable[[], bool]:
    """Whether another batch of run ``key`` was refused since now: ``auth_failed`` rows left by an earlier
    try (before the connection was fixed and the run cleared) do not stop this one."""
    before = store.outcome_counts(key).get(Outcome.AUTH_FAILED, 0)
    return lambda: store.outcome_counts(key).get(Outcome.AUTH_FAILED, 0) > before


def owner_for(run_key: str, batch: int, try_number: int) -> ClaimOwner:
    """A new claim owner for this process: run, batch, try, host and pid, plus a unique id."""
    import os
    import socket
    import uuid

    return ClaimOwner(
        owner_id=uuid.uuid4().hex,
        run_key=run_key,
        batch=batch,
        try_number=try_number,
        hostname=socket.getfqdn(),
        pid=os.getpid(),
    )
