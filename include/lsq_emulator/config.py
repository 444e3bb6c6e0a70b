"""Accounts and the emulator's settings, validated on construction and on every runtime change."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

RATE_LIMIT_STYLES = ("429", "200", "403")
FAULT_RATES = (
    "fault_5xx_rate",
    "fault_timeout_rate",
    "fault_drop_rate",
    "fault_html_rate",
    "fault_non_json_200_rate",
    "rate_limit_burst_rate",
)
_SINGAPORE = {"", "sg", "sg1", "ap1"}


def api_host(region: str) -> str:
    """Return the LeadSquared API host of ``region`` (``in21`` -> ``api-in21.leadsquared.com``)."""
    region = region.strip().lower()
    return "api.leadsquared.com" if region in _SINGAPORE else f"api-{region}.leadsquared.com"


@dataclass(frozen=True)
class Account:
    """One API user: accounts sharing a ``name`` are users of one account and share its rate limit."""

    name: str
    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    admin: bool = True
    region: str = "in21"
    org_id: str | None = None

    def __post_init__(self) -> None:
        for attr in ("name", "access_key", "secret_key", "region"):
            if not isinstance(getattr(self, attr), str):
                raise ValueError(f"Account.{attr} must be a string")
        if not self.name or not self.access_key or not self.secret_key:
            raise ValueError("Account needs a name, an access_key and a secret_key")
        if not isinstance(self.admin, bool):
            raise ValueError(f"Account {self.name!r}: admin must be a bool")

    @property
    def org(self) -> str:
        """The organisation id: the configured one, else a stable one derived from the account name."""
        return self.org_id or str(uuid.uuid5(uuid.NAMESPACE_DNS, f"org.{self.name}.lsq-emulator"))

    def public(self) -> dict[str, Any]:
        """The account without its keys, for logs and the inspection API."""
        return {"name": self.name, "admin": self.admin, "region": self.region, "org_id": self.org}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Account:
        """Build an account from a JSON object with the dataclass's field names."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - names)
        if unknown:
            raise ValueError(f"unknown account field(s): {', '.join(unknown)}")
        return cls(**raw)


def default_accounts() -> list[Account]:
    """One admin account (``demo``) and one non-admin account (``viewer``), both in region in21."""
    return [
        Account(name="demo", access_key="u$demo-access", secret_key="demo-secret", admin=True, region="in21"),
        Account(name="viewer", access_key="u$viewer-access", secret_key="viewer-secret", admin=False, region="in21"),
    ]


@dataclass(frozen=True)
class EmulatorConfig:
    """Everything that shapes the emulator's answers.

    ``rate_limit`` admitted calls per account in any ``rate_window_seconds`` span, refused as HTTP
    ``rate_limit_style`` ("429", "200" or "403"); ``latency`` (min, max) seconds added to every API
    answer; ``fault_*_rate`` and ``rate_limit_burst_rate`` are per-call probabilities drawn from
    ``random.Random(seed)``; a timeout fault hangs ``hang_seconds`` then answers 504; an accepted reset
    is applied ``reset_apply_delay`` seconds later; keys of an account outside ``region`` get 401.
    """

    accounts: list[Account] = field(default_factory=default_accounts)
    rate_limit: int = 25
    rate_window_seconds: float = 5.0
    rate_limit_style: str = "429"
    latency: tuple[float, float] = (0.0, 0.0)
    fault_5xx_rate: float = 0.0
    fault_timeout_rate: float = 0.0
    fault_drop_rate: float = 0.0
    fault_html_rate: float = 0.0
    fault_non_json_200_rate: float = 0.0
    rate_limit_burst_rate: float = 0.0
    hang_seconds: float = 30.0
    seed: int = 0
    reset_apply_delay: float = 0.0
    region: str = "in21"
    failing_leads: tuple[str, ...] = ()  # Lead.Reset of these leads always answers 500 (a persistent fault)

    def __post_init__(self) -> None:
        accounts = [a if isinstance(a, Account) else Account.from_dict(a) for a in self.accounts]
        object.__setattr__(self, "accounts", accounts)
        keys = [a.access_key for a in accounts]
        if len(keys) != len(set(keys)):
            raise ValueError("two accounts share an access key")
        if isinstance(self.rate_limit, bool) or not isinstance(self.rate_limit, int) or self.rate_limit < 1:
            raise ValueError(f"rate_limit must be a positive integer, got {self.rate_limit!r}")
        if self.rate_window_seconds <= 0:
            raise ValueError(f"rate_window_seconds must be > 0, got {self.rate_window_seconds!r}")
        style = str(self.rate_limit_style)
        if style not in RATE_LIMIT_STYLES:
            raise ValueError(f"rate_limit_style must be one of {RATE_LIMIT_STYLES}, got {style!r}")
        object.__setattr__(self, "rate_limit_style", style)
        latency = self.latency
        if isinstance(latency, int | float):
            latency = (latency, latency)
        low, high = (float(x) for x in latency)
        if low < 0 or high < low:
            raise ValueError(f"latency must be (min, max) with 0 <= min <= max, got {self.latency!r}")
        object.__setattr__(self, "latency", (low, high))
        for name in FAULT_RATES:
            rate = float(getattr(self, name))
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {rate!r}")
            object.__setattr__(self, name, rate)
        if self.hang_seconds < 0 or self.reset_apply_delay < 0:
            raise ValueError("hang_seconds and reset_apply_delay must be >= 0")
        object.__setattr__(self, "failing_leads", tuple(str(x).strip().lower() for x in self.failing_leads))
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")

    def replace(self, **changes: Any) -> EmulatorConfig:
        """Return a copy with ``changes`` applied; unknown names raise ``ValueError``."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(unknown)}")
        if isinstance(changes.get("latency"), list):
            changes["latency"] = tuple(changes["latency"])
        return dataclasses.replace(self, **changes)

    def public(self) -> dict[str, Any]:
        """The settings as JSON, accounts without their keys."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "accounts"}
        out["latency"] = list(self.latency)
        out["failing_leads"] = list(self.failing_leads)
        out["accounts"] = [a.public() for a in self.accounts]
        return out
