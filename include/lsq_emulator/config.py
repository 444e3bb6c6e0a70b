"""Accounts and the emulator's settings, validated on construction and on every runtime change."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from lsq_emulator.hostile import HOSTILE_KINDS

RATE_LIMIT_STYLES = ("429", "200", "403")
MISSING_LEAD_STATUSES = (400, 500)
DEFAULT_REDIRECT_URL = "https://maintenance.leadsquared.invalid"
FAULT_RATES = (
    "fault_5xx_rate",
    "fault_timeout_rate",
    "fault_drop_rate",
    "fault_html_rate",
    "fault_non_json_200_rate",
    "fault_trickle_rate",
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
    ``random.Random(seed)``; a timeout fault hangs ``hang_seconds`` then answers 504; a trickle fault
    performs the call and sends its whole answer one byte every ``trickle_byte_seconds``; an accepted reset
    is performed ``reset_processing_delay_seconds`` later (``reset_apply_delay`` is its older name);
    keys of an account outside ``region`` get 401. ``daily_limit`` calls per account in any ``day_seconds``
    (admitted calls count), refused like the 5-s limit with ``...limit of N in <day_seconds> second(s)``, or
    (``daily_message_names_window`` False) with :data:`~lsq_emulator.errors.DAILY_QUOTA_MESSAGE`, naming none.

    Hostile answers (never performing the reset; kinds in :data:`lsq_emulator.hostile.HOSTILE_KINDS`):
    ``hostile_rates`` maps a kind to the fraction of Lead.Reset calls answered so (its own seeded
    stream, drawn once per API call), ``hostile_leads`` maps a lead id to the kind its resets always
    get; redirects point at ``redirect_url`` + the call's path and query. ``missing_lead_status`` answers
    an unknown lead with 400 "Lead not found" or 500 "Lead does not exist". ``unperformed_reset_fraction``
    (seeded) and ``unperformed_leads`` make accepted resets that answer Success but are never performed.
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
    fault_trickle_rate: float = 0.0
    rate_limit_burst_rate: float = 0.0
    hang_seconds: float = 30.0
    trickle_byte_seconds: float = 0.5
    seed: int = 0
    reset_apply_delay: float = 0.0  # older name of reset_processing_delay_seconds; both always hold one value
    region: str = "in21"
    failing_leads: tuple[str, ...] = ()  # Lead.Reset of these leads always answers 500 (a persistent fault)
    reset_processing_delay_seconds: float = 0.0
    hostile_rates: Mapping[str, float] = field(default_factory=dict)
    hostile_leads: Mapping[str, str] = field(default_factory=dict)
    redirect_url: str = DEFAULT_REDIRECT_URL
    missing_lead_status: int = 400
    unperformed_reset_fraction: float = 0.0
    unperformed_leads: tuple[str, ...] = ()
    daily_limit: int | None = None  # calls per account per rolling ``day_seconds``; None: no daily quota
    day_seconds: float = 86_400.0  # the day's length (tests shorten it)
    daily_message_names_window: bool = True  # False: the daily refusal names no window (its text is undocumented)

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
        if self.hang_seconds < 0:
            raise ValueError("hang_seconds must be >= 0")
        if not 0 < self.trickle_byte_seconds <= 60:
            raise ValueError(f"trickle_byte_seconds must be above 0 and at most 60, got {self.trickle_byte_seconds!r}")
        self._check_processing_delay()
        object.__setattr__(self, "failing_leads", _lead_ids(self.failing_leads, "failing_leads"))
        object.__setattr__(self, "unperformed_leads", _lead_ids(self.unperformed_leads, "unperformed_leads"))
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        self._check_hostile()
        if self.daily_limit is not None and (isinstance(self.daily_limit, bool) or int(self.daily_limit) < 1):
            raise ValueError(f"daily_limit must be a positive integer or None, got {self.daily_limit!r}")
        if not self.day_seconds > 0:
            raise ValueError(f"day_seconds must be > 0, got {self.day_seconds!r}")
        fraction = float(self.unperformed_reset_fraction)
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"unperformed_reset_fraction must be within [0, 1], got {fraction!r}")
        object.__setattr__(self, "unperformed_reset_fraction", fraction)
        if self.missing_lead_status not in MISSING_LEAD_STATUSES or isinstance(self.missing_lead_status, bool):
            raise ValueError(f"missing_lead_status must be 400 or 500, got {self.missing_lead_status!r}")
        url = urlsplit(str(self.redirect_url))
        if url.scheme not in ("http", "https") or not url.netloc:
            raise ValueError(f"redirect_url must be an absolute http(s) URL, got {self.redirect_url!r}")

    def _check_processing_delay(self) -> None:
        new, old = float(self.reset_processing_delay_seconds), float(self.reset_apply_delay)
        if new < 0 or old < 0:
            raise ValueError("reset_processing_delay_seconds (reset_apply_delay) must be >= 0")
        if new and old and new != old:
            raise ValueError("reset_processing_delay_seconds and its older name reset_apply_delay disagree")
        delay = new or old
        object.__setattr__(self, "reset_processing_delay_seconds", delay)
        object.__setattr__(self, "reset_apply_delay", delay)

    def _check_hostile(self) -> None:
        if not isinstance(self.hostile_rates, Mapping) or not isinstance(self.hostile_leads, Mapping):
            raise ValueError("hostile_rates and hostile_leads must be objects (kind -> rate, lead id -> kind)")
        unknown = sorted({*self.hostile_rates, *self.hostile_leads.values()} - set(HOSTILE_KINDS))
        if unknown:
            raise ValueError(f"unknown hostile kind(s) {unknown}; known: {', '.join(HOSTILE_KINDS)}")
        rates = {kind: float(rate) for kind, rate in self.hostile_rates.items()}
        if any(not 0.0 <= rate <= 1.0 for rate in rates.values()) or sum(rates.values()) > 1.0 + 1e-9:
            raise ValueError(f"hostile_rates must each lie within [0, 1] and add up to at most 1, got {rates}")
        object.__setattr__(self, "hostile_rates", rates)
        leads = {str(lead).strip().lower(): kind for lead, kind in self.hostile_leads.items()}
        object.__setattr__(self, "hostile_leads", leads)

    def replace(self, **changes: Any) -> EmulatorConfig:
        """Return a copy with ``changes`` applied; unknown names raise ``ValueError``."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(unknown)}")
        if isinstance(changes.get("latency"), list):
            changes["latency"] = tuple(changes["latency"])
        aliases = ("reset_processing_delay_seconds", "reset_apply_delay")
        for name, other in (aliases, aliases[::-1]):
            if name in changes and other not in changes:
                changes[other] = changes[name]
        return dataclasses.replace(self, **changes)

    def public(self) -> dict[str, Any]:
        """The settings as JSON, accounts without their keys."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "accounts"}
        out["latency"] = list(self.latency)
        out["failing_leads"] = list(self.failing_leads)
        out["unperformed_leads"] = list(self.unperformed_leads)
        out["hostile_rates"] = dict(self.hostile_rates)
        out["hostile_leads"] = dict(self.hostile_leads)
        out["accounts"] = [a.public() for a in self.accounts]
        return out


def _lead_ids(values: Any, name: str) -> tuple[str, ...]:
    """Lead ids as lower-cased stripped strings (ids match case-insensitively)."""
    if isinstance(values, str):
        raise ValueError(f"{name} must be a list of lead ids, not one string")
    return tuple(str(x).strip().lower() for x in values)
