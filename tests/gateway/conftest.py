"""The running system for the gateway's tests: the pipeline on a broker of this
package's own and real PostgreSQL, and the gateway as real processes
(``python -m services.gateway``) serving real HTTP on free ports."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest

from medsettle.embedded import free_port
from medsettle.httpserver import wait_healthy
from medsettle.settings import ROOT
from services.gateway.signing import signed_headers
from tests.factories import hospital_record
from tests.harness import Pipeline, fresh_database, pipeline_settings
from tests.infra import own_broker

COUNTY = "H3404210001"  # two keys: the new one signs, the old one is still accepted (rotation)
COUNTY_KEY, COUNTY_OLD_KEY = "county-key-2026", "county-key-2025"
TOWNSHIP = "H3404210011"
TOWNSHIP_KEY = "township-key"
BOOKS = "H3404210002"  # a hospital of the reconciliation test alone
BOOKS_KEY = "books-key"
UNKEYED = "H3404210012"  # registered, but with no key: may not use the API

KEYS: dict[str, Any] = {COUNTY: [COUNTY_KEY, COUNTY_OLD_KEY], TOWNSHIP: TOWNSHIP_KEY, BOOKS: BOOKS_KEY}


@dataclass
class System:
    pipeline: Pipeline
    bootstrap: str
    database_url: str

    def gateway_env(self, port: int) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            KAFKA_BOOTSTRAP_SERVERS=self.bootstrap, DATABASE_URL=self.database_url, GATEWAY_PORT=str(port),
            HOSPITAL_KEYS=json.dumps(KEYS), FETCH_MAX_WAIT_MS="5", LOG_LEVEL="WARNING",
            PYTHONPATH=f"{ROOT / 'libs'}{os.pathsep}{ROOT}", PYTHONUNBUFFERED="1",
        )
        return env


class GatewayProcess:
    """``python -m services.gateway`` on a free port."""

    def __init__(self, system: System, log_path: Any) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen([sys.executable, "-m", "services.gateway"], cwd=ROOT,
                                        env=system.gateway_env(self.port), stdout=self.log, stderr=subprocess.STDOUT)

    async def ready(self, timeout: float = 60.0) -> GatewayProcess:
        await wait_healthy(self.url, timeout, alive=self._alive)
        return self

    def _alive(self) -> None:
        if self.process.poll() is not None:
            raise AssertionError(f"the gateway exited with {self.process.returncode}: {self.log.name}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


class Cashier:
    """A hospital's HIS calling the API over HTTP, signing every request."""

    def __init__(self, base_url: str, hospital_code: str, key: str) -> None:
        self.hospital_code, self.key = hospital_code, key
        self.http = httpx.AsyncClient(base_url=base_url, timeout=60)

    def at(self, base_url: str) -> Cashier:
        return Cashier(base_url, self.hospital_code, self.key)

    async def request(self, method: str, path: str, body: Any = None, *, now: float | None = None,
                      headers: dict[str, str] | None = None) -> httpx.Response:
        content = b"" if body is None else body if isinstance(body, bytes) else orjson.dumps(body)
        signed = signed_headers(self.hospital_code, self.key, method, path, content, now=now)
        return await self.http.request(method, path, content=content or None,
                                       headers={**signed, "Content-Type": "application/json", **(headers or {})})

    async def post_claim(self, claim: Any, *, wait: float = 20, query: str = "") -> httpx.Response:
        return await self.request("POST", f"/v1/claims?wait={wait:g}{query}", claim)

    async def get_claim(self, claim_id: str, query: str = "") -> httpx.Response:
        return await self.request("GET", f"/v1/claims/{claim_id}{query}")

    async def reconcile(self, books: dict[str, Any]) -> httpx.Response:
        return await self.request("POST", "/v1/reconciliations", books)

    async def close(self) -> None:
        await self.http.aclose()


@pytest.fixture(scope="package")
async def system(database_url: str, embedded_broker_factory) -> AsyncIterator[System]:  # noqa: ANN001
    url = await fresh_database(database_url, prefix="gateway")
    async with own_broker(embedded_broker_factory) as bootstrap:
        pipeline = Pipeline(pipeline_settings(bootstrap, url, hospital_keys=KEYS))
        await pipeline.start()
        try:
            await pipeline.register(hospitals=[hospital_record(COUNTY, "county"), hospital_record(BOOKS, "county"),
                                               hospital_record(TOWNSHIP, "township"),
                                               hospital_record(UNKEYED, "township")])
            yield System(pipeline, bootstrap, url)
        finally:
            await pipeline.stop()


@pytest.fixture(scope="package")
async def gateways(system: System, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[list[GatewayProcess]]:
    """Two gateway processes on one store, as behind one load balancer."""
    folder = tmp_path_factory.mktemp("gateway-logs")
    started = [GatewayProcess(system, folder / f"gateway-{i}.log") for i in range(2)]
    try:
        await asyncio.gather(*(p.ready() for p in started))
        yield started
    finally:
        for process in started:
            process.stop()


@pytest.fixture
def gateway_factory(system: System, tmp_path: Any) -> Iterator[Any]:
    """Gateway processes of one test's own (started after others' answers exist)."""
    started: list[GatewayProcess] = []

    async def start() -> GatewayProcess:
        process = GatewayProcess(system, tmp_path / f"gateway-{len(started)}.log")
        started.append(process)
        return await process.ready()

    yield start
    for process in started:
        process.stop()


@pytest.fixture
async def county(gateways: list[GatewayProcess]) -> AsyncIterator[Cashier]:
    cashier = Cashier(gateways[0].url, COUNTY, COUNTY_KEY)
    yield cashier
    await cashier.close()


@pytest.fixture
async def township(gateways: list[GatewayProcess]) -> AsyncIterator[Cashier]:
    cashier = Cashier(gateways[1].url, TOWNSHIP, TOWNSHIP_KEY)
    yield cashier
    await cashier.close()
