"""The HTTP path of the bench: p50/p99 from ``POST /v1/claims`` to its ``200``.

``paced_http`` is what ``deploy/bench.py`` (``make bench``) calls against the
running system, right after the Kafka path at the same rate: an open-loop
paced cashier (claim i is due at ``t0 + i / rate``, its latency counted from
then, so a late sender counts against us) posting signed claims of the
bench's population for the hospitals given keys, each waiting for its answer
(``wait``). Only those hospitals sign (``http_keys``: one per level); the
Kafka path's cashier signs their claims too, as a hospital with a key must.
The gateway and eligibility run with ``HOSPITAL_KEYS`` = ``http_keys``.
``TopicWatch`` sees when each claim and its answer appear on the topics: the
pipeline's own share of an HTTP claim's latency.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from typing import Any

import aiohttp
import orjson

from deploy.bench_population import Population
from services.gateway.signing import signed_headers

def http_keys(population: Population) -> dict[str, str]:
    """One hospital of each level signs and sends over HTTP; its key."""
    first: dict[str, str] = {}
    for hospital in population.hospitals:
        first.setdefault(hospital["level"], hospital["hospital_code"])
    return {code: f"bench-http-{code}" for code in first.values()}


HTTP_MARK = "-HTTP"
"""In the claim_id of every claim the HTTP path sends (the Kafka path's cashier
sees their answers on his.settlements too, and leaves them alone)."""


def is_http_claim(claim_id: object) -> bool:
    return isinstance(claim_id, str) and HTTP_MARK in claim_id


def http_claim(population: Population, rng: random.Random, level_of: Mapping[str, str],
               by_level: Mapping[str, str], serial: int, run: str) -> dict[str, Any]:
    """A claim of the bench's mix, sent by the keyed hospital of the level it was drawn for."""
    claim = population.claim(rng)
    hospital = by_level[level_of[claim["hospital_code"]]]
    return {**claim, "hospital_code": hospital, "claim_id": f"{hospital}{HTTP_MARK}{run}-{serial:08d}"}


class TopicWatch:
    """When each claim appears on ``his.claims`` and its answer on ``his.settlements``,
    seen by one reader: the pipeline's share of an HTTP claim's latency, so that what
    the gateway adds (the rest) is measured claim by claim in the same run."""

    def __init__(self, bootstrap: str) -> None:
        from aiokafka import AIOKafkaConsumer

        self.bootstrap = bootstrap
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                         fetch_max_wait_ms=5, max_partition_fetch_bytes=8 * 1024 * 1024)
        self.claimed: dict[str, float] = {}
        self.answered: dict[str, float] = {}
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        from aiokafka import TopicPartition

        from medsettle import topics

        from aiokafka import AIOKafkaProducer

        await self.consumer.start()
        # the partitions from a producer's metadata, as the gateway does: a consumer of no topics is told
        # nothing of them by Apache Kafka (it has no subscription whose metadata it keeps)
        probe = AIOKafkaProducer(bootstrap_servers=self.bootstrap)
        await probe.start()
        try:
            assigned = [TopicPartition(topic, p) for topic in (topics.CLAIMS, topics.SETTLEMENTS)
                        for p in sorted(await probe.partitions_for(topic))]
        finally:
            await probe.stop()
        self.consumer.assign(assigned)
        await self.consumer.seek_to_end(*assigned)
        for tp in assigned:
            await self.consumer.position(tp)
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        from medsettle import topics

        while True:
            batch = await self.consumer.getmany(timeout_ms=50, max_records=5000)
            now = time.perf_counter()
            for tp, records in batch.items():
                seen = self.claimed if tp.topic == topics.CLAIMS else self.answered
                for record in records:
                    claim_id = orjson.loads(record.value).get("claim_id")
                    if isinstance(claim_id, str):
                        seen.setdefault(claim_id, now)

    def pipeline_ms(self, claim_id: str) -> float | None:
        if claim_id in self.claimed and claim_id in self.answered:
            return (self.answered[claim_id] - self.claimed[claim_id]) * 1000
        return None

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.consumer.stop()


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, int(-(-q * len(ordered) // 1)) - 1))]


async def paced_http(base_url: str, population: Population, keys: Mapping[str, str], rate: float, seconds: float,
                     *, seed: int = 20240310, wait: float = 30.0, connections: int = 512,
                     watch: TopicWatch | None = None) -> dict[str, Any]:
    """Post ``rate × seconds`` claims at ``rate`` per second; latency from each one's due time to its 200.
    With ``watch``: also what the gateway and the HTTP client added to each, beyond the pipeline's time."""
    rng = random.Random(seed)
    level_of = {h["hospital_code"]: h["level"] for h in population.hospitals}
    by_level = {level_of[code]: code for code in keys}
    run = uuid.uuid4().hex[:6].upper()
    latencies: list[float] = []
    added: list[tuple[str, float]] = []
    statuses: Counter[str] = Counter()
    path = f"/v1/claims?wait={wait:g}"
    # aiohttp, not httpx: on this machine httpx's client cost 6.5-7.2 ms of CPU per request against a bare
    # FastAPI endpoint and aiohttp's 0.4-0.5 (README "Hospital HTTP API"); the client shares the two cores
    # with what it measures
    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=wait + 30)
    async with aiohttp.ClientSession(base_url, connector=connector, timeout=timeout) as client:

        async def one(due: float, claim: dict[str, Any]) -> None:
            body = orjson.dumps(claim)
            headers = signed_headers(claim["hospital_code"], keys[claim["hospital_code"]], "POST", path, body)
            try:
                async with client.post(path, data=body, headers={**headers, "Content-Type": "application/json"}) as answer:
                    content = await answer.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                statuses[f"error {type(exc).__name__}"] += 1
                return
            if answer.status == 200:
                latencies.append((time.perf_counter() - due) * 1000)
                added.append((claim["claim_id"], latencies[-1]))
                statuses[orjson.loads(content).get("status", "?")] += 1
            else:
                statuses[f"http {answer.status}"] += 1

        total = int(rate * seconds)
        tasks: list[asyncio.Task] = []
        t0 = time.perf_counter() + 0.05
        for i in range(total):
            claim = http_claim(population, rng, level_of, by_level, i, run)
            due = t0 + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(due, claim)))
        await asyncio.gather(*tasks)
    extra: dict[str, Any] = {}
    if watch is not None:
        await asyncio.sleep(0.5)  # the watch's last fetch
        beyond = [total - pipeline for claim_id, total in added
                  if (pipeline := watch.pipeline_ms(claim_id)) is not None]
        extra = {"added_by_http_p50_ms": round(_percentile(beyond, 0.50), 2),
                 "added_by_http_p99_ms": round(_percentile(beyond, 0.99), 2), "added_measured": len(beyond)}
    return {
        "path": "http", "rate": round(rate, 1), "sent": total, "answered": len(latencies),
        "p50_ms": round(_percentile(latencies, 0.50), 2), "p99_ms": round(_percentile(latencies, 0.99), 2),
        "p999_ms": round(_percentile(latencies, 0.999), 2), "max_ms": round(max(latencies, default=float("nan")), 2),
        "statuses": dict(statuses), **extra,
    }
