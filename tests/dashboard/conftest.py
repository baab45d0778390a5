"""One pipeline of its own for the dashboard's tests (its own broker, so its
consumer groups never meet another test's pipeline), a known set of settled
claims, eligibility's operator API, and the dashboard served on a free port."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import shutil
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
import uvicorn
import yaml

from medsettle.contract import SettlementResult
from deploy.dev_credentials import dev_users
from medsettle.access import OperatorGuard, Users
from medsettle.httpserver import ServiceHttp
from medsettle.settings import ROOT, Settings
from services.dashboard.app import build_app
from services.eligibility.app import EligibilityStage
from tests.dashboard import dataset
from tests.harness import Pipeline, fresh_database, pipeline_settings
from tests.infra import own_broker

CST = dt.timezone(dt.timedelta(hours=8))
TODAY = dt.datetime(2024, 3, 31, 12, 0, tzinfo=CST)  # the dashboard's clock: a quarter of 2024 gone
# Budgets of the test's policy copy (policies/ ships real ones): small enough to warn.
TEST_BUDGETS = {
    "340421-2024": {"390100": "60000000.00", "390200": "500000.00", "610100": "5000000.00", "640100": "100.00"},
}
REVISION = "340421-2024-r2"
# screenshots: $TEST_ARTIFACTS, or test-artifacts/ (ignored by git)
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS") or ROOT / "test-artifacts")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.asynccontextmanager
async def serving(app: Any, port: int) -> AsyncIterator[None]:
    """An ASGI app served by uvicorn on this event loop, lifespan included."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started or task.done():
            break
        await asyncio.sleep(0.02)
    if not server.started:
        raise RuntimeError(f"the server on port {port} did not start: {task.exception() if task.done() else 'timeout'}")
    try:
        yield
    finally:
        server.should_exit = True
        await asyncio.gather(task, return_exceptions=True)


@dataclass
class DashboardSystem:
    pipeline: Pipeline
    url: str  # the dashboard
    eligibility_url: str
    settings: Settings
    dashboard: Any  # services.dashboard.app.Dashboard

    @property
    def answers(self) -> dict[str, list[SettlementResult]]:
        return self.pipeline.hospital.results

    def expected(self) -> dataset.Expected:
        return dataset.Expected.from_answers(self.answers)

    def clearing_events(self) -> dict[tuple[str, str, str], tuple[int, str]]:
        return dataset.Expected.clearing_events(self.answers)

    @contextlib.asynccontextmanager
    async def client(self, user: str, password: str) -> AsyncIterator[httpx.AsyncClient]:
        """An HTTP client logged in as ``user``."""
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as client:
            response = await client.post("/login", data={"username": user, "password": password})
            assert response.status_code == 303 and response.headers["location"] == "/", response.text
            yield client


async def settle_dataset(pipeline: Pipeline) -> None:
    hospital = pipeline.hospital
    await pipeline.register(persons=dataset.PERSONS, hospitals=dataset.HOSPITAL_RECORDS)
    for claim in [*dataset.SETTLED, dataset.REVERSED, *dataset.INJURIES]:
        await hospital.send(claim)
    for claim in [*dataset.SETTLED, dataset.REVERSED]:
        answer = await hospital.answer(claim["claim_id"])
        assert answer.status == "settled", (claim["claim_id"], answer.rejection)
    for claim in dataset.INJURIES:
        assert (await hospital.answer(claim["claim_id"])).status == "pending_review"
    reversed_id = dataset.REVERSED["claim_id"]
    await hospital.send({"type": "cancel", "claim_id": reversed_id, "hospital_code": dataset.REVERSED["hospital_code"],
                         "reason": "收费有误"})
    assert [a.status for a in await hospital.answers(reversed_id, 2)] == ["settled", "reversed"]
    # a message no stage can read: dead-lettered by eligibility
    await hospital.send(b"\xff not a claim", key="unreadable")
    await hospital.dead_letter(lambda d: d.get("key") == "unreadable")


async def drop_database(server_url: str, url: str) -> None:
    connection = await asyncpg.connect(server_url)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{urlsplit(url).path.lstrip("/")}" WITH (FORCE)')
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def test_policies(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("policies")
    for source in (ROOT / "policies").glob("*.yaml"):
        shutil.copy(source, folder / source.name)
    for policy, budgets in TEST_BUDGETS.items():
        path = folder / f"{policy}.yaml"
        body = yaml.safe_load(path.read_text(encoding="utf-8"))
        body["budgets"] = budgets
        path.write_text(yaml.safe_dump(body, allow_unicode=True, sort_keys=False), encoding="utf-8")
    # a later revision of 340421-2024, in force after the data set's claims: one scheme, one budget
    body = yaml.safe_load((folder / "340421-2024.yaml").read_text(encoding="utf-8"))
    body.update(policy=REVISION, effective_from="2024-12-01", name="340421 2024 年度补偿方案（12月起调整）")
    (folder / f"{REVISION}.yaml").write_text(yaml.safe_dump(body, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return folder


@pytest.fixture(scope="package")
async def dashboard_system(database_url: str, embedded_broker_factory: Any,
                           test_policies: Path) -> AsyncIterator[DashboardSystem]:
    url = await fresh_database(database_url, prefix="dash")
    # a broker of its own: the consumer groups (named after the services) never meet another test's pipeline
    async with own_broker(embedded_broker_factory) as bootstrap:
        pipeline = Pipeline(pipeline_settings(bootstrap, url))
        await pipeline.start()
        eligibility = pipeline.runtime(EligibilityStage)
        eligibility_port, dashboard_port, nobody = free_port(), free_port(), free_port()
        users, token = dev_users(), "dashboard-service-token"  # the development pair, as under make run
        api = ServiceHttp("eligibility", "127.0.0.1", eligibility_port, eligibility.health,
                          eligibility.service.routes(), guard=OperatorGuard(Users(users), token),
                          pool=eligibility.service.pool)
        try:
            await api.start()
            eligibility_url = f"http://127.0.0.1:{eligibility_port}"
            settings = Settings(
                database_url=url,
                policy_dir=test_policies,
                eligibility_api_url=eligibility_url,
                operations_api_url=f"http://127.0.0.1:{nobody}",  # the operations service is down
                service_metrics_urls={"pipeline": f"{eligibility_url}/metrics"},
                dashboard_stuck_after_seconds=30,
                log_level="WARNING",
                dashboard_users=users, dashboard_development_users=True, operator_api_token=token,
            )
            await settle_dataset(pipeline)
            app = build_app(settings, clock=lambda: TODAY)
            async with serving(app, dashboard_port):
                yield DashboardSystem(pipeline, f"http://127.0.0.1:{dashboard_port}", eligibility_url, settings,
                                      app.state.dashboard)
        finally:
            await api.stop()
            await pipeline.stop()
            await drop_database(database_url, url)
