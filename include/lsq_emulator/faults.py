"""Seeded draws (faults, latency, hostile answers, unperformed resets): same seed and call order, same draws."""

from __future__ import annotations

import random
from dataclasses import dataclass

from lsq_emulator.config import EmulatorConfig

FAULT_5XX = "fault_5xx"
FAULT_TIMEOUT = "timeout"
FAULT_DROP = "dropped"
FAULT_HTML = "html"
FAULT_NON_JSON = "non_json"
FAULT_TRICKLE = "trickle"  # performed, answered in full, one byte at a time

# Checked in this order against one uniform draw, so rates add up (a rate of 1.0 forces its fault).
_FAULT_ORDER = (
    (FAULT_5XX, "fault_5xx_rate"),
    (FAULT_TIMEOUT, "fault_timeout_rate"),
    (FAULT_DROP, "fault_drop_rate"),
    (FAULT_HTML, "fault_html_rate"),
    (FAULT_NON_JSON, "fault_non_json_200_rate"),
    (FAULT_TRICKLE, "fault_trickle_rate"),
)


@dataclass(frozen=True)
class Draw:
    """What chance decided for one API call: a rate-limit burst, a fault (or ``None``), a latency."""

    burst: bool
    fault: str | None
    latency: float


class FaultDice:
    """Draws exactly three numbers per API call, whatever the outcome, so the sequence only
    depends on the seed and the order of calls."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)

    def draw(self, config: EmulatorConfig) -> Draw:
        """Roll for one call under ``config``."""
        burst_u, fault_u, latency_u = self._rng.random(), self._rng.random(), self._rng.random()
        fault = None
        threshold = 0.0
        for kind, rate_name in _FAULT_ORDER:
            rate = getattr(config, rate_name)
            threshold += rate
            if rate > 0 and fault_u < threshold:
                fault = kind
                break
        low, high = config.latency
        return Draw(
            burst=burst_u < config.rate_limit_burst_rate,
            fault=fault,
            latency=low + (high - low) * latency_u,
        )


class FateDice:
    """The seeded streams of hostile answers and unperformed resets, apart from :class:`FaultDice` so
    that a seed's transport-fault sequence is the same whether or not these are in use."""

    def __init__(self, seed: int) -> None:
        self._answers = random.Random(f"hostile/{seed}")
        self._fates = random.Random(f"unperformed/{seed}")

    def hostile(self, config: EmulatorConfig) -> str | None:
        """One draw per API call: the hostile kind it gets (if it is a Lead.Reset), or ``None``."""
        u = self._answers.random()
        threshold = 0.0
        for kind, rate in config.hostile_rates.items():
            threshold += rate
            if rate > 0 and u < threshold:
                return kind
        return None

    def unperformed(self, config: EmulatorConfig) -> bool:
        """One draw per accepted reset: True when it is to be answered Success and never performed."""
        return self._fates.random() < config.unperformed_reset_fraction
