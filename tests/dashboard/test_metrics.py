"""Every service's metrics and health: consumer lag per topic and partition,
dead letters published, and a /health that asks the broker too."""

from __future__ import annotations

import asyncio

import httpx
from prometheus_client import REGISTRY

from medsettle import topics
from medsettle.runtime import LAG_REFRESH_SECONDS, Runtime
from services.basic.app import BasicStage
from services.eligibility.app import EligibilityStage
from services.settlement.app import SettlementStage
from tests.dashboard import dataset
from tests.dashboard.conftest import free_port
from tests.harness import pipeline_settings


def lag_samples(service: str, topic: str) -> dict[int, float]:
    return {
        int(s.labels["partition"]): s.value
        for family in REGISTRY.collect() if family.name == "settlement_consumer_lag"
        for s in family.samples if s.labels["service"] == service and s.labels["topic"] == topic
    }


async def test_consumer_lag_is_kept_per_topic_and_partition_the_service_holds(dashboard_system):
    for kind, topic in ((EligibilityStage, topics.CLAIMS), (SettlementStage, topics.BACKSTOP)):
        runtime = dashboard_system.pipeline.runtime(kind)
        held = {tp.partition for tp in runtime.lanes[topic].consumer.assignment()}
        lag = lag_samples(runtime.service.name, topic)
        assert lag and set(lag) <= held, (topic, lag, held)
        assert all(value >= 0 for value in lag.values())


async def test_consumer_lag_comes_back_to_zero_once_every_record_is_handled(dashboard_system):
    stages = [(r.service.name, t) for r in dashboard_system.pipeline.runtimes for t in r.service.subscriptions]
    await dashboard_system.pipeline.hospital.answer(dataset.SETTLED[-1]["claim_id"])  # everything was answered
    deadline = asyncio.get_running_loop().time() + 2 * LAG_REFRESH_SECONDS + 5
    while True:  # the gauges are refreshed every LAG_REFRESH_SECONDS, also when no batch comes
        left = {stage: sum(lag_samples(*stage).values()) for stage in stages}
        if not any(left.values()) or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.1)
    assert left == {stage: 0 for stage in stages}


async def test_dead_letters_published_are_counted_per_service(dashboard_system):
    # the data set sent one unreadable message, which eligibility dead-lettered
    assert REGISTRY.get_sample_value("settlement_dead_letters_total", {"service": "eligibility"}) >= 1
    async with httpx.AsyncClient(follow_redirects=True) as client:
        page = (await client.get(f"{dashboard_system.eligibility_url}/metrics")).text
    assert 'settlement_dead_letters_total{service="eligibility"}' in page
    assert 'settlement_consumer_lag{partition=' in page


async def test_health_reports_the_database_and_the_broker(dashboard_system):
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{dashboard_system.eligibility_url}/health")
        dashboard = await client.get(f"{dashboard_system.url}/health")
    assert response.status_code == 200
    assert {k: response.json()[k] for k in ("service", "status", "database", "broker")} == {
        "service": "eligibility", "status": "ok", "database": "ok", "broker": "ok"}
    assert dashboard.json() == {"service": "dashboard", "status": "ok", "database": "ok"}


async def test_health_is_down_while_the_broker_cannot_be_reached(dashboard_system):
    settings = pipeline_settings(f"127.0.0.1:{free_port()}", dashboard_system.settings.database_url,
                                 health_broker_timeout_seconds=0.5)
    runtime = Runtime(BasicStage(settings), settings)
    await runtime.open_database()  # the database is there; the broker was never reached
    try:
        body = await runtime.health()
    finally:
        await runtime.close_database()
    assert (body["status"], body["database"], body["broker"]) == ("down", "ok", "down")
    assert REGISTRY.get_sample_value("settlement_broker_up", {"service": "basic"}) == 0


async def test_the_dashboard_publishes_fund_progress_for_grafana(dashboard_system):
    expected = dashboard_system.expected()
    await dashboard_system.dashboard.refresh_gauges()  # as its background task does every few seconds
    async with httpx.AsyncClient(follow_redirects=True) as client:
        page = (await client.get(f"{dashboard_system.url}/metrics")).text
    spent = expected.spent[("340421-2024", "390200")]
    assert f'dashboard_fund_spent_yuan{{fund="390200",policy="340421-2024"}} {float(spent)}' in page
    assert 'dashboard_fund_warning{fund="640100",policy="340421-2024"} 1.0' in page
    assert 'dashboard_fund_budget_yuan{fund="390200",policy="340421-2024"} 500000.0' in page
