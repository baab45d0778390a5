"""The running system, as ``make run`` runs it: every service its own process
(``deploy.run.Supervisor``), JSON logs as in production, each service's HTTP
server on a free port, the dashboard in front, on a broker and a database of
this package's own. The users and the service credential are the tests'
(``credentials.py``), given the way compose gives them: in the environment."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from deploy.run import Supervisor, service_env
from medsettle import topics
from medsettle.embedded import free_port
from medsettle.httpserver import wait_healthy
from medsettle.settings import Settings
from tests.factories import hospital_record
from tests.harness import Hospital, fresh_database
from tests.infra import own_broker
from tests.security import credentials

SERVICES = ("eligibility", "basic", "insurer", "assistance", "backstop", "settlement", "operations", "dashboard")
COUNTY = "H3404210001"
PROVINCE = "H3400000001"


@dataclass
class RunningSystem:
    supervisor: Supervisor
    hospital: Hospital
    database_url: str
    ports: dict[str, int]  # service -> its HTTP port (the dashboard's: DASHBOARD_PORT)

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def client(self, service: str, auth: Any = None, **headers: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url(service), auth=auth, headers=headers, timeout=15)

    @property
    def log_lines(self) -> list[str]:
        return list(self.supervisor.lines)

    async def register(self, persons: list[dict[str, Any]] = (), hospitals: list[dict[str, Any]] = ()) -> None:  # type: ignore[assignment]
        for person in persons:
            await self.hospital.send(person, key=person["person_id"], topic=topics.PERSONS)
        for record in hospitals:
            await self.hospital.send(record, key=record["hospital_code"], topic=topics.HOSPITALS)
        wanted_p = {p["person_id"] for p in persons}
        wanted_h = {h["hospital_code"] for h in hospitals}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            c = await asyncpg.connect(self.database_url)
            try:
                got_p = {r[0] for r in await c.fetch(
                    "SELECT person_id FROM eligibility.persons WHERE person_id = any($1::text[])", list(wanted_p))}
                got_h = {r[0] for r in await c.fetch(
                    "SELECT hospital_code FROM eligibility.hospitals WHERE hospital_code = any($1::text[])",
                    list(wanted_h))}
            except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
                got_p, got_h = set(), set()
            finally:
                await c.close()
            if got_p >= wanted_p and got_h >= wanted_h:
                return
            await asyncio.sleep(0.2)
        raise AssertionError("the registry records did not reach eligibility in 60 s")

    async def audit(self, service: str) -> list[dict[str, Any]]:
        c = await asyncpg.connect(self.database_url)
        try:
            rows = await c.fetch(f'SELECT * FROM "{service}".operator_audit ORDER BY id')
        finally:
            await c.close()
        return [{**dict(r), "detail": orjson.loads(r["detail"])} for r in rows]


@pytest.fixture(scope="package")
async def running(database_url: str, embedded_broker_factory: Any) -> AsyncIterator[RunningSystem]:
    url = await fresh_database(database_url, prefix="sec")
    async with own_broker(embedded_broker_factory) as bootstrap:
        ports = {name: free_port() for name in SERVICES}
        common = {
            "DASHBOARD_USERS": orjson.dumps(credentials.users()).decode(),
            "OPERATOR_API_TOKEN": credentials.SERVICE_TOKEN,
            "DASHBOARD_SECRET": "a-test-session-key",
            "DASHBOARD_PORT": str(ports["dashboard"]),
            "ELIGIBILITY_API_URL": f"http://127.0.0.1:{ports['eligibility']}",
            "OPERATIONS_API_URL": f"http://127.0.0.1:{ports['operations']}",
            "SERVICE_METRICS_URLS": orjson.dumps({n: f"http://127.0.0.1:{p}/metrics" for n, p in ports.items()
                                                  if n != "dashboard"}).decode(),
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "INFO",
            "FETCH_MAX_WAIT_MS": "10",
            "LOGIN_THROTTLE_SECONDS": "10",  # the throttle test's lock-out ends before the next test
        }
        supervisor = Supervisor(echo=False, grace_seconds=5)
        settings = Settings()
        for name in SERVICES:
            supervisor.add(name, [sys.executable, "-m", f"services.{name}"],
                           service_env(settings, bootstrap, url, name, **common, METRICS_PORT=str(ports[name])))
        hospital = Hospital(bootstrap)
        await supervisor.start()
        try:
            await asyncio.gather(*(wait_healthy(f"http://127.0.0.1:{p}", 120, every=0.3) for p in ports.values()))
            await hospital.start()
            system = RunningSystem(supervisor, hospital, url, ports)
            await system.register(hospitals=[hospital_record(COUNTY, "county"), hospital_record(PROVINCE, "province")])
            yield system
        finally:
            await hospital.stop()
            await supervisor.stop()
