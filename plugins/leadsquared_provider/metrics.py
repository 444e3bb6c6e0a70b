"""The provider's metrics: each name once, with its meaning, sent through Airflow's stats interface.

Airflow sends them where ``[metrics]`` says (StatsD, Datadog's DogStatsD or OpenTelemetry), with its
``statsd_prefix`` (``airflow.``) in front. Every metric is tagged with the DAG that sent it (``dag_id``: one DAG
per account), never with a key, a host or a lead.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    COUNTER = "counter"
    GAUGE = "gauge"
    TIMER = "timer"


@dataclass(frozen=True)
class Metric:
    """One metric: its name, kind, meaning and tags (``dag_id`` on every one)."""

    name: str
    kind: Kind
    meaning: str
    tags: tuple[str, ...] = ()


API_CALLS = Metric(
    "leadsquared.api.calls",
    Kind.COUNTER,
    "HTTP calls sent to LeadSquared (every attempt, retries included), by endpoint (`Lead.Reset`, "
    "`UserByAccessKey.Get`, `ProspectActivity.Retrieve`, ...) and answer class (`queued`: it did what was asked, "
    "`rejected`, `refused`, `auth_failed`, `rate_limited`, `transient`: no clear answer)",
    ("endpoint", "answer"),
)
RATE_LIMITED = Metric(
    "leadsquared.budget.rate_limited",
    Kind.COUNTER,
    "rate-limit answers, by what the account's budget did (`widened`: margin widened at the full rate, `cut`: rate "
    "cut, `debounced`: already answered by an earlier change, `at_floor` or `day_spent`: the daily quota)",
    ("reaction",),
)
BUDGET_WAIT = Metric(
    "leadsquared.budget.wait",
    Kind.TIMER,
    "time a call waited for a unit of the account's budget (milliseconds)",
)
EFFECTIVE_RATE = Metric(
    "leadsquared.budget.effective_rate",
    Kind.GAUGE,
    "calls per window the account's callers may use now (the plan's limit x rate_share, lowered by rate-limit "
    "answers); sent after each batch, each rate-limit answer and by the plan and the report",
)
DAILY_USED = Metric(
    "leadsquared.budget.daily_used",
    Kind.GAUGE,
    "calls of today's share of the daily quota used (only when the connection states `daily_limit`)",
)
DAILY_SHARE = Metric(
    "leadsquared.budget.daily_share",
    Kind.GAUGE,
    "today's share of the daily quota (`daily_limit` x `daily_share`), beside `daily_used`",
)
LEADS = Metric(
    "leadsquared.leads",
    Kind.COUNTER,
    "a run's leads by outcome (`queued`, `rejected`, `failed`, `deferred`, `already_done`, ...), sent by its report",
    ("outcome",),
)
VERIFICATION = Metric(
    "leadsquared.verification",
    Kind.COUNTER,
    "sampled leads read back by a run's verification, by result (`verified`, `still_present`, `unverifiable`, "
    "`nothing_checkable`), sent by its report",
    ("result",),
)

METRICS: tuple[Metric, ...] = (
    API_CALLS,
    RATE_LIMITED,
    BUDGET_WAIT,
    EFFECTIVE_RATE,
    DAILY_USED,
    DAILY_SHARE,
    LEADS,
    VERIFICATION,
)

_NOT_A_TAG_CHAR = re.compile(r"[^A-Za-z0-9_.-]")


def endpoint_name(path: str) -> str:
    """The API method a URL path calls: ``Lead.Reset``, ``UserByAccessKey.Get``, ``ProspectActivity.Retrieve``."""
    parts = [part for part in path.split("/") if part]
    if not parts:
        return "root"
    name = parts[-1]
    if "." not in name and len(parts) > 1:
        name = f"{parts[-2].removesuffix('.svc')}.{name}"
    return _NOT_A_TAG_CHAR.sub("_", name)[:100]


def current_dag_id() -> str:
    """The DAG of the running task (every thread of it), or ``none`` outside a task."""
    from airflow.sdk import get_current_context

    try:
        return str(get_current_context()["dag"].dag_id)
    except (RuntimeError, KeyError, AttributeError):
        return "none"


def _tags(metric: Metric, tags: Mapping[str, str]) -> dict[str, str]:
    if set(tags) != set(metric.tags):
        raise ValueError(f"{metric.name} takes the tags {metric.tags}, got {sorted(tags)}")
    return {"dag_id": current_dag_id(), **{key: _NOT_A_TAG_CHAR.sub("_", str(value)) for key, value in tags.items()}}


def count(metric: Metric, value: int = 1, **tags: str) -> None:
    from airflow.sdk.observability import stats

    assert metric.kind is Kind.COUNTER, metric.name
    if value:
        stats.incr(metric.name, count=value, tags=_tags(metric, tags))


def gauge(metric: Metric, value: float, **tags: str) -> None:
    from airflow.sdk.observability import stats

    assert metric.kind is Kind.GAUGE, metric.name
    stats.gauge(metric.name, value, tags=_tags(metric, tags))


def timing(metric: Metric, seconds: float, **tags: str) -> None:
    from datetime import timedelta

    from airflow.sdk.observability import stats

    assert metric.kind is Kind.TIMER, metric.name
    stats.timing(metric.name, timedelta(seconds=seconds), tags=_tags(metric, tags))
