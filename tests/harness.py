"""The whole pipeline in one process, on a real broker and real PostgreSQL,
with a hospital's view of it: publish claims, read the one-bills."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from medsettle import topics
from medsettle.contract import SettlementResult
from medsettle.runtime import Runtime, Service
from medsettle.settings import ROOT, Settings
from services import pipeline
from services.eligibility.app import EligibilityStage
from services.operations.app import OperationsService

STAGES: tuple[type[Service], ...] = (*(stage.service_class() for stage in pipeline.STAGES), OperationsService)


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))


async def fresh_database(server_url: str, prefix: str = "e2e") -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    connection = await asyncpg.connect(server_url)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return with_database(server_url, name)


class Hospital:
    """Reads ``his.settlements`` and ``settlement.dlq`` from the beginning."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.results: dict[str, list[SettlementResult]] = defaultdict(list)
        self.dead_letters: list[dict[str, Any]] = []
        self._arrived = asyncio.Condition()
        self._task: asyncio.Task | None = None
        self.producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=1)
        self.consumer = AIOKafkaConsumer(
            topics.SETTLEMENTS, topics.DLQ, bootstrap_servers=bootstrap, group_id=None,
            auto_offset_reset="earliest", fetch_max_wait_ms=5, enable_auto_commit=False,
        )

    async def start(self) -> None:
        await self.producer.start()
        await self.consumer.start()
        self._task = asyncio.create_task(self._read())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        # A broker that stopped answering must not turn the end of the session
        # into an error: what the tests asserted has been asserted.
        for client in (self.consumer, self.producer):
            try:
                await asyncio.wait_for(client.stop(), 15)
            except (Exception, asyncio.CancelledError):  # noqa: BLE001
                pass

    async def _read(self) -> None:
        while True:
            batch = await self.consumer.getmany(timeout_ms=100)
            if not batch:
                continue
            async with self._arrived:
                for records in batch.values():
                    for record in records:
                        if record.topic == topics.DLQ:
                            self.dead_letters.append(orjson.loads(record.value))
                        else:
                            result = SettlementResult.from_json(record.value)
                            self.results[result.claim_id].append(result)
                self._arrived.notify_all()

    async def send(self, body: dict[str, Any] | bytes, *, key: str | None = None,
                   headers: list[tuple[str, bytes]] | None = None, topic: str = topics.CLAIMS) -> None:
        value = body if isinstance(body, bytes) else orjson.dumps(body)
        if key is None and isinstance(body, dict):
            key = str(body.get("claim_id") or body.get("person_id") or body.get("hospital_code") or "")
        await self.producer.send_and_wait(topic, value, key=(key or "").encode() or None, headers=headers)

    async def answers(self, claim_id: str, count: int = 1, timeout: float = 60.0) -> list[SettlementResult]:
        async def enough() -> list[SettlementResult]:
            async with self._arrived:
                await self._arrived.wait_for(lambda: len(self.results.get(claim_id, [])) >= count)
                return list(self.results[claim_id])
        try:
            return await asyncio.wait_for(enough(), timeout)
        except TimeoutError:
            raise AssertionError(f"{claim_id}: {len(self.results.get(claim_id, []))} answers, wanted {count}") from None

    async def answer(self, claim_id: str, timeout: float = 60.0) -> SettlementResult:
        return (await self.answers(claim_id, 1, timeout))[-1]

    async def dead_letter(self, predicate: Any, timeout: float = 60.0) -> dict[str, Any]:
        async def found() -> dict[str, Any]:
            async with self._arrived:
                await self._arrived.wait_for(lambda: any(predicate(d) for d in self.dead_letters))
                return next(d for d in self.dead_letters if predicate(d))
        return await asyncio.wait_for(found(), timeout)


class Pipeline:
    """The six stages, each with its own Runtime, on one event loop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.runtimes = [Runtime(stage(settings), settings) for stage in STAGES]
        self.hospital = Hospital(settings.kafka_bootstrap_servers)

    def stage(self, kind: type[Service]) -> Any:
        return next(r.service for r in self.runtimes if isinstance(r.service, kind))

    def runtime(self, kind: type[Service]) -> Runtime:
        return next(r for r in self.runtimes if isinstance(r.service, kind))

    async def start(self) -> None:
        await asyncio.gather(*(r.start() for r in self.runtimes))
        await self.hospital.start()

    async def stop(self) -> None:
        await self.hospital.stop()
        await asyncio.gather(*(r.stop() for r in self.runtimes), return_exceptions=True)

    async def register(self, *, persons: list[dict] = (), hospitals: list[dict] = ()) -> None:  # type: ignore[assignment]
        """Publish registry records and wait until eligibility holds them."""
        for person in persons:
            await self.hospital.send(person, key=person["person_id"], topic=topics.PERSONS)
        for hospital in hospitals:
            await self.hospital.send(hospital, key=hospital["hospital_code"], topic=topics.HOSPITALS)
        pool = self.stage(EligibilityStage).db
        wanted_p = {p["person_id"]: orjson.loads(orjson.dumps(p)) for p in persons}
        wanted_h = {h["hospital_code"]: h for h in hospitals}
        for _ in range(600):
            async with pool.acquire() as c:
                got_p = {r["person_id"]: orjson.loads(r["body"]) for r in await c.fetch(
                    "SELECT person_id, body FROM persons WHERE person_id = any($1::text[])", list(wanted_p))}
                got_h = {r["hospital_code"]: orjson.loads(r["body"]) for r in await c.fetch(
                    "SELECT hospital_code, body FROM hospitals WHERE hospital_code = any($1::text[])", list(wanted_h))}
            if all(_same(got_p.get(k), v) for k, v in wanted_p.items()) and all(
                _same(got_h.get(k), v) for k, v in wanted_h.items()
            ):
                return
            await asyncio.sleep(0.05)
        raise AssertionError("registry records did not reach eligibility in 30 s")

    async def accumulator(self, kind: type[Service], person_id: str, year: int = 2024) -> Any:
        return await self.stage(kind).accumulator(person_id, year)


def _same(stored: dict | None, sent: dict) -> bool:
    if stored is None:
        return False
    return all(stored.get(k) == v for k, v in sent.items() if k != "categories") and len(
        stored.get("categories", [])) == len(sent.get("categories", []))


def pipeline_settings(bootstrap: str, database_url: str, **overrides: Any) -> Settings:
    return Settings(
        kafka_bootstrap_servers=bootstrap,
        database_url=database_url,
        policy_dir=ROOT / "policies",
        fetch_max_wait_ms=5,
        log_level="WARNING",
        **overrides,
    )
