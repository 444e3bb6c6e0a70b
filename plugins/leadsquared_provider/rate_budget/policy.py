"""The budget's policy: the account's shared state and how calls and rate-limit answers change it (AIMD with
BIC-TCP's memory of the last cut, the adaptive margin, the floor). Pure functions of (state, caller, store
clock in ms): no I/O. The package's docstring (:mod:`leadsquared_provider.rate_budget`) explains the design."""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyrate_limiter import Rate

log = logging.getLogger(__name__)

DECREASE_FACTOR = 0.8  # multiplicative decrease on a rate-limit answer (see the package docstring)
PACING_BURST = 2  # calls spread over the window: at most this many at once (see rates)
PACING_SLACK = 0.1
STEP_GROWTH = 4  # above the rate of the latest cut, increases go +1, +4, +16...
HOLD_WINDOWS = 3  # clean windows spent just below the rate of the latest cut before probing it again
MARGIN_STEP_MS = 20  # a refusal at the ceiling doubles the margin, to at least this
MARGIN_WIDEST_MS = 500  # ...and at most this (or the stated margin, if larger)
FORGET_SECONDS = 300.0  # with no change and no rate-limit answer for this long, start again at the ceiling
CALLER_TTL_SECONDS = 300.0  # a caller's stated limit counts while it was used this recently
CALLER_REFRESH_SECONDS = 60.0  # how often a caller in use refreshes its registration
ITEM_NAME = "leadsquared"  # the name of every unit in the log


@dataclasses.dataclass(frozen=True)
class Caller:
    """What one connection states: its ceiling (``floor(limit * share)``), window and margin, in ms."""

    ceiling: int
    window_ms: int
    margin_ms: int

    @property
    def key(self) -> str:
        return f"{self.ceiling}/{self.window_ms}/{self.margin_ms}"

    @classmethod
    def from_key(cls, key: str) -> Caller:
        ceiling, window_ms, margin_ms = (int(part) for part in key.split("/"))
        return cls(ceiling, window_ms, margin_ms)


@dataclasses.dataclass
class State:
    """The account's shared state. Times are store-clock milliseconds (see the module docstring)."""

    callers: dict[str, int] = dataclasses.field(default_factory=dict)  # Caller.key -> last seen
    effective: int | None = None  # calls per interval, None until the first caller sets it to the ceiling
    failed_at: int | None = None  # the rate of the latest cut (BIC's w_max): climb fast below it, pause before it
    good: int | None = None  # the rate before the latest increase, which held for a clean window
    step: int = 1  # the next increase at or above ``failed_at``
    last_change: int = 0
    last_decrease: int = 0
    last_limited: int = 0  # the latest rate-limit answer (debounced or not)
    hold_until: int = 0  # no increase before this time (the plateau just below ``failed_at``)
    day_spent_until: int = 0  # wall-clock ms: LeadSquared said the account's day is spent (an unstated quota)
    account: str | None = None  # in a key's own state: the tag of the account the key belongs to, once learnt
    margin: int | None = None  # ms added to the window: the stated margin, doubled by refusals at the ceiling
    margin_before: int | None = None  # the margin before the latest widening, until a clean window confirms it

    @classmethod
    def load(cls, raw: str | bytes | None) -> State:
        if not raw:
            return cls()
        try:
            values = json.loads(raw)
            names = {f.name for f in dataclasses.fields(cls)}
            return cls(**{k: v for k, v in values.items() if k in names})
        except (ValueError, TypeError, AttributeError):
            # Derived knowledge only (the log of calls is elsewhere): start afresh rather than stop every caller.
            log.warning("Rate budget state %r is unreadable: starting again at the ceiling", raw[:200])
            return cls()

    def dump(self) -> str:
        return json.dumps(dataclasses.asdict(self), separators=(",", ":"))


@dataclasses.dataclass(frozen=True)
class Rule:
    ceiling: int  # calls per interval
    interval_ms: int  # window + margin


@dataclasses.dataclass(frozen=True)
class Limits:
    """What every live caller states, read strictly: the smallest limit over the shortest window; the largest
    margin, which is the least the adaptive margin may be (where it starts, and to which it returns)."""

    ceiling: int
    window_ms: int
    margin_ms: int

    @property
    def widest_ms(self) -> int:
        return max(self.margin_ms, MARGIN_WIDEST_MS)

    def rule(self, margin_ms: int | None) -> Rule:
        return Rule(self.ceiling, self.window_ms + (self.margin_ms if margin_ms is None else margin_ms))


def limits_of(callers: list[Caller]) -> Limits:
    """The strictest reading of every live caller's limit, over the shortest window and the largest margin."""
    window = min(c.window_ms for c in callers)
    margin = max(c.margin_ms for c in callers)
    ceiling = min(max(1, c.ceiling // math.ceil(c.window_ms / window)) for c in callers)
    return Limits(ceiling, window, margin)


def prepare(state: State, me: Caller, now: int) -> tuple[bool, Limits]:
    """Clamp future times, (re)register ``me``, bound the rate by the ceiling and the margin by the stated ones.
    Return (changed, limits); the rule in force is ``limits.rule(state.margin)``."""
    changed = False
    for name in ("last_change", "last_decrease", "last_limited"):
        if getattr(state, name) > now:
            setattr(state, name, now)
            changed = True
    seen = state.callers.get(me.key)
    if seen is None or seen > now or now - seen >= CALLER_REFRESH_SECONDS * 1000:
        state.callers[me.key] = now
        state.callers = {k: t for k, t in state.callers.items() if now - min(t, now) < CALLER_TTL_SECONDS * 1000}
        changed = True
    limits = limits_of([Caller.from_key(k) for k in state.callers])
    stale = now - max(state.last_change, state.last_limited) > FORGET_SECONDS * 1000
    margin = state.margin
    if margin is None or not limits.margin_ms <= margin <= limits.widest_ms or (stale and margin > limits.margin_ms):
        state.margin, state.margin_before = limits.margin_ms, None
        changed = True
    interval = limits.rule(state.margin).interval_ms
    if state.hold_until > now + HOLD_WINDOWS * interval:
        state.hold_until = now + HOLD_WINDOWS * interval
        changed = True
    if state.effective is None or state.effective > limits.ceiling or (stale and state.effective < limits.ceiling):
        state.effective, state.step, state.failed_at, state.good, state.hold_until = limits.ceiling, 1, None, None, 0
        state.last_change = now
        changed = True
    return changed, limits


def settle(state: State, me: Caller, now: int, where: str | None) -> tuple[bool, Rule]:
    """Before taking a unit: apply the increases the clean windows since the last change have earned.

    Logs each change under ``where`` (the store and account); ``None`` for a dry run on a snapshot.
    """
    old = state.effective
    changed, limits = prepare(state, me, now)
    rule = limits.rule(state.margin)
    if old != state.effective and where is not None:
        how = "starts at" if old is None else f"{old} →"
        log.info(
            "Rate budget of %s: %s %d calls per %.1f s (the ceiling: the strictest stated limit)",
            where,
            how,
            state.effective,
            rule.interval_ms / 1000,
        )
    # Windows earn increases once clean; those of a plateau earn none (its last window is the first earning).
    quiet_since = max(state.last_change, state.last_limited, state.hold_until - rule.interval_ms)
    if now - quiet_since < rule.interval_ms:
        return changed, rule
    assert state.effective is not None
    if state.effective >= rule.ceiling:
        if state.step != 1:
            state.step = 1
            changed = True
        return changed, rule
    old = state.effective
    for _ in range((now - quiet_since) // rule.interval_ms):
        _climb(state, rule, now)
        if state.effective == rule.ceiling or state.hold_until > now:
            break
    state.last_change = now
    if where is not None:
        log.info(
            "Rate budget of %s: %d → %d calls per %.1f s (clean window)",
            where,
            old,
            state.effective,
            rule.interval_ms / 1000,
        )
    return True, rule


def _climb(state: State, rule: Rule, now: int) -> None:
    """One clean window's increase: BIC-TCP's binary increase below the latest cut, then +1, +2, +4..."""
    assert state.effective is not None
    state.good = state.effective  # it has just held for a clean window
    state.margin_before = None  # ...and so has the margin: it stays
    plateau = None if state.failed_at is None else state.failed_at - 1
    if plateau is not None and state.effective < plateau:
        # Halfway to the rate just below the latest cut, at least one call: fast, as nothing failed there.
        state.effective = min(plateau, state.effective + max(1, (plateau - state.effective + 1) // 2))
        if state.effective == plateau:
            state.hold_until = now + HOLD_WINDOWS * rule.interval_ms
    else:
        # At or above it: slow where the last cut happened, fast once past it (a co-tenant has gone).
        state.effective += state.step
        state.step *= STEP_GROWTH
    state.effective = min(state.effective, rule.ceiling)


class Reaction(enum.IntEnum):
    """What a rate-limit answer did to the account's budget (falsy: nothing)."""

    DEBOUNCED = 0  # the call was sent before the latest change, which answered it already
    WIDENED = 1  # at the ceiling: the margin widened and the rate went one call down
    CUT = 2  # below the ceiling: the rate was cut (or stepped back to the rate that held)
    AT_FLOOR = 3  # refused again at one call per window: the 5-s limit cannot explain it (the day's quota)


def penalize(state: State, me: Caller, now: int, sent: int, where: str) -> Reaction:
    """After a rate-limit answer to a call sent at ``sent``: widen the margin or cut the rate, unless debounced.

    At the ceiling the cheapest explanation comes first: our calls reached LeadSquared closer together than we
    sent them (jitter), so the margin doubles (up to ``MARGIN_WIDEST_MS``) and the rate goes back to the last
    clean rate, or one call down. A second refusal finds the rate below the ceiling: someone else uses the
    account; the rate is cut and the margin goes back.
    """
    _, limits = prepare(state, me, now)
    state.last_limited = now
    if sent <= state.last_decrease:  # sent under the rate before the latest cut: that cut answered it already
        return Reaction.DEBOUNCED
    old, old_margin = state.effective, state.margin
    assert old is not None and old_margin is not None
    interval = limits.rule(old_margin).interval_ms
    state.failed_at = old
    reaction, widened = Reaction.CUT, ""
    if old >= limits.ceiling and old_margin < limits.widest_ms:
        state.margin_before = old_margin
        state.margin = min(limits.widest_ms, max(2 * old_margin, MARGIN_STEP_MS))
        reaction, widened = Reaction.WIDENED, f"at the ceiling: margin {old_margin} → {state.margin} ms, "
    if old == 1 and limits.ceiling > 1:
        reaction, why = Reaction.AT_FLOOR, "refused at the floor: the account's quota, not its rate"
    elif state.good is not None and old > state.good and sent >= state.last_change:
        # The call was sent after an increase from a rate that held for a clean window: back to that rate.
        state.effective = state.good
        state.hold_until = now + HOLD_WINDOWS * interval
        why = f"{widened}back to the last clean rate, next probe in {HOLD_WINDOWS} windows"
    elif reaction is Reaction.WIDENED:
        state.effective = max(1, old - 1)
        state.hold_until = now + HOLD_WINDOWS * interval
        why = f"{widened}one call less"
    else:
        state.effective = max(1, math.floor(old * DECREASE_FACTOR))
        state.hold_until = 0
        why = f"x{DECREASE_FACTOR}"
    if reaction is not Reaction.WIDENED and state.margin_before is not None:
        # Refused again before a clean window: not our timing but someone else's calls; the margin goes back.
        state.margin, state.margin_before = state.margin_before, None
        why += f", margin back to {state.margin} ms"
    state.good, state.step = None, 1
    state.last_decrease = state.last_change = now
    log.warning(
        "Rate budget of %s: %d → %d calls per %.2f s (rate-limit answer: %s)",
        where,
        old,
        state.effective,
        limits.rule(state.margin).interval_ms / 1000,
        why,
    )
    return reaction


def rates(rule: Rule) -> list[Rate]:
    """The rule as pyrate-limiter rates: ``ceiling`` per interval, and calls paced over it.

    The pacing rate lets ``PACING_BURST`` calls through per ``PACING_BURST / ceiling`` of the interval (less
    ``PACING_SLACK``, so that a late call can catch up and the window's rate stays the ceiling). Without it the
    callers would send the window's calls in one burst and, once the account is full, each of our calls would
    reuse the slot our own call freed one window earlier: another integration's calls would be the ones
    refused, and we would never hear of it. Paced, our calls arrive at any time, as the others' do, so the
    refusals fall on whoever sends more: on us, who can adapt.
    """
    from pyrate_limiter import Rate

    rates = [Rate(rule.ceiling, rule.interval_ms)]
    if rule.ceiling > PACING_BURST:
        pace_ms = math.floor(rule.interval_ms * PACING_BURST / rule.ceiling * (1 - PACING_SLACK))
        rates.insert(0, Rate(PACING_BURST, max(1, pace_ms)))
    return rates
