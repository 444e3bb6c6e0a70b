"""The provider's settings: the state store's default connection (:data:`DEFAULT_STATE_CONN_ID`), and the
LeadSquared connection's settings (:class:`LeadSquaredSettings`): each with its default, form label,
description, type and bounds, parsed from the connection's extras with one clear message per bad value.

Kept apart from the hook so that the connection form (:func:`leadsquared_provider.get_provider_info`) is
generated from them without importing the hook: Airflow reads provider info in every process and loads the
form "without importing hooks".
"""

from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from leadsquared_provider.exceptions import InvalidConnection

# The state store's connection (sqlite or postgres) unless a DAG names another. Here, in a module cheap to
# import, so that the DAG file, the operator and the sensor name it without importing the store (and
# SQLAlchemy) at every parse.
DEFAULT_STATE_CONN_ID = "leadsquared_state"

_TRUE = frozenset({"true", "1"})
_FALSE = frozenset({"false", "0"})


def _setting(
    default: Any,
    label: str,
    description: str,
    *,
    kind: type,
    minimum: float | None = None,
    exclusive_minimum: bool = True,
    maximum: float | None = None,
) -> Any:
    """A settings field with its form label, description, type and bounds kept beside its default."""
    return field(
        default=default,
        metadata={
            "label": label,
            "description": description,
            "kind": kind,
            "minimum": minimum,
            "exclusive_minimum": exclusive_minimum,
            "maximum": maximum,
        },
    )


@dataclass(frozen=True)
class LeadSquaredSettings:
    """The connection's extras: each field's default, form label, description and bounds, written once."""

    rate_limit: int = _setting(
        25,
        "Rate limit (calls per window)",
        "Your plan's limit of API calls per window, for all API users of the account together: "
        "e.g. 25 (Enterprise), 15 (Standard), 10 (Super/Basic), 5 (Pro), 2 (Lite).",
        kind=int,
        minimum=0,
    )
    rate_window_seconds: float = _setting(
        5.0,
        "Rate window (seconds)",
        "The window of the plan's limit (LeadSquared: 5 seconds); 0.001 or more (the budget counts milliseconds).",
        kind=float,
        minimum=0.001,
        exclusive_minimum=False,
    )
    rate_share: float = _setting(
        1.0,
        "Share of the rate limit",
        "The part of the plan's limit this connection may use, above 0 and at most 1 "
        "(e.g. 0.5 leaves half of the calls to other tools of the account).",
        kind=float,
        minimum=0,
        maximum=1,
    )
    rate_margin_seconds: float = _setting(
        0.05,
        "Rate window margin (seconds)",
        "Added to the window to absorb network jitter; 0 or more. The least margin: a rate-limit answer at the "
        "full rate doubles it, up to 0.5 s (or this, if larger); 5 quiet minutes bring it back.",
        kind=float,
        minimum=0,
        exclusive_minimum=False,
    )
    rate_budget_url: str | None = _setting(
        None,
        "Shared rate budget URL",
        "sqlite:///path (one machine) or redis://host:6379/0 (all workers). Empty: a file in the temp folder.",
        kind=str,
    )
    daily_limit: int | None = _setting(
        None,
        "Daily call quota",
        "Your plan's calls per day for the whole account (e.g. Pro: 10,000 + 1,000 per user), shared by every "
        "tool and user of it. Empty: not stated (older plans have none).",
        kind=int,
        minimum=0,
    )
    daily_share: float = _setting(
        0.5,
        "Share of the daily quota",
        "The part of the day's quota this connection's runs may use, above 0 and at most 1. The default 0.5 "
        "leaves half of the day to web forms, telephony and the other integrations, which must not be refused "
        "because a backfill ran.",
        kind=float,
        minimum=0,
        maximum=1,
    )
    daily_window_seconds: float = _setting(
        86_400.0,
        "Daily quota's window (seconds)",
        "The span the daily quota counts over: a rolling day (86,400 s) unless daily_reset is set. LeadSquared "
        "does not document when its day restarts; a rolling day stays within any calendar day it may use.",
        kind=float,
        minimum=1,
    )
    daily_reset: str | None = _setting(
        None,
        "Daily quota restarts at",
        "Instead of a rolling day: the local time and time zone at which the account's day restarts, "
        "e.g. '00:00 Asia/Kolkata'.",
        kind=str,
    )
    budget_max_wait_seconds: float = _setting(
        600.0,
        "Longest wait for the rate budget (seconds)",
        "A call that cannot get a unit of the shared budget within this time stops the batch (nothing sent).",
        kind=float,
        minimum=0,
    )
    timeout_seconds: float = _setting(
        30.0, "Request timeout (seconds)", "Connect and read timeout of every API call.", kind=float, minimum=0
    )
    max_retries: int = _setting(
        5,
        "Retry budget (transient errors per lead)",
        "How many times a call is sent again after no clear answer (timeout, 5xx, unexplained body); 0 or more.",
        kind=int,
        minimum=0,
        exclusive_minimum=False,
    )
    max_rate_limit_waits: int = _setting(
        20,
        "Rate-limit answers per lead",
        "How many rate-limit answers one call may meet (each slows the account's budget) before it fails.",
        kind=int,
        minimum=0,
    )
    backoff_initial_seconds: float = _setting(
        0.5, "Retry backoff, first (seconds)", "Backoff before the first retry; it doubles.", kind=float, minimum=0
    )
    backoff_max_seconds: float = _setting(
        30.0, "Retry backoff, longest (seconds)", "Upper bound of the backoff between retries.", kind=float, minimum=0
    )
    allow_insecure_http: bool = _setting(
        False,
        "Allow plain http",
        "Send the keys over http:// to a host other than 127.0.0.1, localhost or ::1 (a test server). "
        "Never for LeadSquared itself.",
        kind=bool,
    )

    @classmethod
    def from_extra(cls, extra: dict[str, Any]) -> LeadSquaredSettings:
        """Read and validate the extras; a bad one raises :class:`InvalidConnection` naming it.

        An extra may also be stored under the form's prefixed name ``extra__leadsquared__<name>``.
        """
        if not isinstance(extra, dict):
            raise InvalidConnection(f"connection extra must be a JSON object, got a {type(extra).__name__}")
        values: dict[str, Any] = {}
        for spec in fields(cls):
            raw = extra.get(spec.name, extra.get(f"extra__leadsquared__{spec.name}"))
            if raw is None or (isinstance(raw, str) and not raw.strip()):
                continue
            values[spec.name] = _parse_setting(spec.name, raw, spec.metadata)
        settings = cls(**values)
        if settings.daily_reset:
            from leadsquared_provider.rate_budget import parse_daily_reset

            parse_daily_reset(settings.daily_reset)
        if settings.backoff_max_seconds < settings.backoff_initial_seconds:
            raise InvalidConnection(
                f"connection extra 'backoff_max_seconds' = {settings.backoff_max_seconds!r} is below "
                f"'backoff_initial_seconds' = {settings.backoff_initial_seconds!r}"
            )
        return settings

    @classmethod
    def form_fields(cls) -> dict[str, dict[str, Any]]:
        """The connection form's ``conn-fields``: one per setting, labelled, typed, with its default."""
        json_types = {int: "integer", float: "number", bool: "boolean", str: "string"}
        form: dict[str, dict[str, Any]] = {}
        for spec in fields(cls):
            schema: dict[str, Any] = {"type": [json_types[spec.metadata["kind"]], "null"]}
            if spec.default is not MISSING and spec.default is not None:
                schema["default"] = spec.default
            form[spec.name] = {
                "label": spec.metadata["label"],
                "description": spec.metadata["description"],
                "schema": schema,
            }
        return form


def _parse_setting(name: str, raw: Any, meta: Any) -> Any:
    kind = meta["kind"]

    def refuse(problem: str) -> InvalidConnection:
        return InvalidConnection(f"connection extra {name!r} = {raw!r} {problem}")

    if kind is str:
        if not isinstance(raw, str):
            raise InvalidConnection(f"connection extra {name!r} must be a string, got a {type(raw).__name__}")
        return raw.strip()
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower() if isinstance(raw, int | str) else None
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise refuse("is not a boolean (true/false, 1/0)")
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise refuse(f"is not a {'whole ' if kind is int else ''}number")
    try:
        number = float(raw.strip()) if isinstance(raw, str) else float(raw)
    except (ValueError, OverflowError):
        raise refuse(f"is not a {'whole ' if kind is int else ''}number") from None
    if not math.isfinite(number):
        raise refuse("is not a finite number")
    if kind is int:
        if not number.is_integer():
            raise refuse("is not a whole number")
        value: float = int(number)
    else:
        value = number
    minimum, maximum = meta["minimum"], meta["maximum"]
    if minimum is not None:
        if meta["exclusive_minimum"] and value <= minimum:
            raise refuse("must be positive")
        if not meta["exclusive_minimum"] and value < minimum:
            raise refuse(f"must be {minimum} or more")
    if maximum is not None and value > maximum:
        raise refuse(f"must be at most {maximum}")
    return value
