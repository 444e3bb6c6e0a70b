"""The metrics: each name once with its meaning, sent through Airflow's stats interface, tagged by the DAG."""

from __future__ import annotations

from typing import Any

import pytest

from leadsquared_provider import metrics


class Recorder:
    """A stats backend that keeps what it was sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, Any, dict[str, Any]]] = []

    def incr(self, stat: str, count: int = 1, rate: float = 1, *, tags: dict[str, Any] | None = None) -> None:
        self.sent.append(("incr", stat, count, tags or {}))

    def gauge(self, stat: str, value: float, rate: float = 1, delta: bool = False, *, tags: Any = None) -> None:
        self.sent.append(("gauge", stat, value, tags or {}))

    def timing(self, stat: str, dt: Any, *, tags: dict[str, Any] | None = None) -> None:
        self.sent.append(("timing", stat, dt, tags or {}))


@pytest.fixture
def recorder():
    from airflow.sdk.observability import stats

    recorder = Recorder()
    stats.initialize(factory=lambda: recorder, export_legacy_names=False)
    yield recorder
    from airflow.sdk._shared.observability.metrics.base_stats_logger import NoStatsLogger

    stats.initialize(factory=NoStatsLogger, export_legacy_names=True)


def test_every_name_is_declared_once_with_a_meaning():
    names = [metric.name for metric in metrics.METRICS]
    assert len(names) == len(set(names))
    assert all(
        name.startswith("leadsquared.") and metric.meaning for name, metric in zip(names, metrics.METRICS, strict=True)
    )


@pytest.mark.parametrize(
    ("path", "name"),
    [
        pytest.param("/v2/LeadManagement.svc/Lead.Reset", "Lead.Reset", id="reset"),
        pytest.param("/v2/Authentication.svc/UserByAccessKey.Get", "UserByAccessKey.Get", id="user"),
        pytest.param("/v2/ProspectActivity.svc/Retrieve", "ProspectActivity.Retrieve", id="activities"),
        pytest.param("/", "root", id="root"),
        pytest.param("/v2/x/a b;c", "x.a_b_c", id="odd-characters"),
    ],
)
def test_endpoint_name(path, name):
    assert metrics.endpoint_name(path) == name


def test_a_metric_is_sent_with_the_dag_and_its_own_tags(recorder):
    metrics.count(metrics.API_CALLS, endpoint="Lead.Reset", answer="queued")
    metrics.count(metrics.LEADS, 0, outcome="queued")  # nothing to count: nothing sent
    metrics.gauge(metrics.EFFECTIVE_RATE, 24.0)
    metrics.timing(metrics.BUDGET_WAIT, 0.25)
    assert [(kind, stat, tags) for kind, stat, _, tags in recorder.sent] == [
        ("incr", "leadsquared.api.calls", {"dag_id": "none", "endpoint": "Lead.Reset", "answer": "queued"}),
        ("gauge", "leadsquared.budget.effective_rate", {"dag_id": "none"}),
        ("timing", "leadsquared.budget.wait", {"dag_id": "none"}),
    ]
    assert recorder.sent[2][2].total_seconds() == 0.25


def test_a_metric_refuses_tags_it_does_not_declare():
    with pytest.raises(ValueError, match="takes the tags"):
        metrics.count(metrics.API_CALLS, endpoint="Lead.Reset")


def test_the_hook_counts_each_call_by_endpoint_and_answer(recorder, lsq_connection):
    from leadsquared_provider.hooks.leadsquared import LeadSquaredHook
    from lsq_emulator import EmulatorConfig, run_emulator

    with run_emulator(EmulatorConfig(rate_limit=1000, rate_window_seconds=1.0)) as emulator:
        LeadSquaredHook(leadsquared_conn_id=lsq_connection(emulator.base_url)).get_user()
    sent = [(stat, tags) for kind, stat, _, tags in recorder.sent if kind == "incr"]
    assert ("leadsquared.api.calls", {"dag_id": "none", "endpoint": "UserByAccessKey.Get", "answer": "queued"}) in sent
    assert sum(1 for stat, _ in sent if stat == "leadsquared.api.calls") == len(emulator.calls())
    assert any(stat == "leadsquared.budget.wait" for _, stat, _, _ in recorder.sent)
