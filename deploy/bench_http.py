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
import contextlib
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
    """When each claim appears on ``his.claims`` and its answer on ``his.settlements``:
    the pipeline's share of an HTTP claim's latency, so that what the gateway adds
    (the rest) is measured claim by claim in the same run.

    Two clocks: when this reader saw each record (``claimed``, ``answered``:
    ``time.perf_counter``) and the record's own timestamp (``claim_put``,
    ``answer_put``: Unix ms, set by its producer when it was sent, CreateTime, or by
    the broker, LogAppendTime). A reader that falls behind on ``his.claims`` (it
    reads eight partitions of claims beside the answers, in the bench's busy
    process) makes the pipeline look shorter and the gateway's share longer; the
    claim's timestamp does not depend on when anyone read it."""

    def __init__(self, bootstrap: str, fetch_wait_ms: int = 5) -> None:
        from aiokafka import AIOKafkaConsumer

        self.bootstrap = bootstrap
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                         fetch_max_wait_ms=fetch_wait_ms, max_partition_fetch_bytes=8 * 1024 * 1024)
        self.claimed: dict[str, float] = {}
        self.answered: dict[str, float] = {}
        self.claim_put: dict[str, int] = {}
        self.answer_put: dict[str, int] = {}
        self.timestamp_types: Counter[int] = Counter()
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
                claims = tp.topic == topics.CLAIMS
                seen = self.claimed if claims else self.answered
                put = self.claim_put if claims else self.answer_put
                for record in records:
                    claim_id = orjson.loads(record.value).get("claim_id")
                    if isinstance(claim_id, str) and claim_id not in seen:
                        seen[claim_id] = now
                        put[claim_id] = record.timestamp
                        self.timestamp_types[record.timestamp_type] += 1

    def pipeline_ms(self, claim_id: str) -> float | None:
        if claim_id in self.claimed and claim_id in self.answered:
            return (self.answered[claim_id] - self.claimed[claim_id]) * 1000
        return None

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.consumer.stop()


def server_timing(header: str | None) -> dict[str, float]:
    """``{"sign": 0.31, ...}`` of a ``Server-Timing: sign;dur=0.31, ...`` header."""
    parts: dict[str, float] = {}
    for part in (header or "").split(","):
        name, _, duration = part.strip().partition(";dur=")
        with contextlib.suppress(ValueError):
            parts[name] = float(duration)
    return parts


STAGES = (
    ("late", "the client's send after the claim was due"),
    ("to_kafka", "due to the claim's record timestamp on his.claims"),
    ("pipeline", "claim's record timestamp to its answer's"),
    ("from_kafka", "answer's record timestamp to the 200 read by the client"),
    ("kafka_reader", "answer's record timestamp to a bench reader of his.settlements seeing it"),
    ("trips", "the POST to its 200 less the gateway's handler (Server-Timing gateway): the request's and the "
              "response's trips between the client's process and the gateway's (each a wait for one to run), and "
              "uvicorn's work outside the handler"),
)


def claim_by_claim(timed: list[tuple[str, float, float, float, dict[str, float]]], watch: TopicWatch,
                   wall: float) -> dict[str, Any]:
    """What the gateway and the HTTP client add, claim by claim (ms).

    ``added_by_http``: the claim's latency less what a Kafka client would have
    waited for it: from its record's timestamp on his.claims (the moment the claim
    is the pipeline's) to a reader of his.settlements (the bench's, fetching as the
    Kafka path's cashier does) seeing its answer. So it is the HTTP path's own
    cost on both ends: POST to the claim on Kafka, and the answer on Kafka to the
    200, less a Kafka reader's delay. Record timestamps are whole ms, truncated:
    0.5 ms is added to each, their mean truncation. ``added_by_http_seen``: the
    former measure, the latency less the time between this reader seeing the claim
    and seeing its answer (too high when the reader falls behind on his.claims).
    ``added_by_http_post``: ``added_by_http`` from the client's ``POST`` instead
    of the claim's due time, as the issue words it: without the client's own
    lateness (``late``), which a Kafka client sending from the same busy process
    pays as well.
    The ``stage_*`` medians split the latency (STAGES) and the gateway's own
    time (its ``Server-Timing``)."""
    beyond: list[float] = []
    beyond_post: list[float] = []
    seen: list[float] = []
    stages: dict[str, list[float]] = {name: [] for name, _ in STAGES}
    gateway: dict[str, list[float]] = {}
    for claim_id, due, sent, received, timing in timed:
        total = (received - due) * 1000
        if (pipeline := watch.pipeline_ms(claim_id)) is not None:
            seen.append(total - pipeline)
        claim_put, answer_put = watch.claim_put.get(claim_id), watch.answer_put.get(claim_id)
        answer_seen = watch.answered.get(claim_id)
        if claim_put is None or answer_put is None or answer_seen is None or claim_put < 0 or answer_put < 0:
            continue
        claim_at, answer_at = (claim_put + 0.5) / 1000 - wall, (answer_put + 0.5) / 1000 - wall  # perf_counter
        beyond.append(total - (answer_seen - claim_at) * 1000)
        beyond_post.append(beyond[-1] - (sent - due) * 1000)
        for name, ms in (("late", sent - due), ("to_kafka", claim_at - due), ("pipeline", answer_at - claim_at),
                         ("from_kafka", received - answer_at), ("kafka_reader", answer_seen - answer_at)):
            stages[name].append(ms * 1000)
        if "gateway" in timing:
            stages["trips"].append((received - sent) * 1000 - timing["gateway"])
        for name, ms in timing.items():
            gateway.setdefault(name, []).append(ms)
    figures: dict[str, Any] = {
        "added_by_http_p50_ms": round(_percentile(beyond, 0.50), 2),
        "added_by_http_p99_ms": round(_percentile(beyond, 0.99), 2), "added_measured": len(beyond),
        "added_by_http_post_p50_ms": round(_percentile(beyond_post, 0.50), 2),
        "added_by_http_post_p99_ms": round(_percentile(beyond_post, 0.99), 2),
        "added_by_http_seen_p50_ms": round(_percentile(seen, 0.50), 2),
        "added_by_http_seen_p99_ms": round(_percentile(seen, 0.99), 2),
        "record_timestamp_types": {("LogAppendTime" if t == 1 else "CreateTime"): n
                                   for t, n in watch.timestamp_types.items()},
    }
    for name, values in stages.items():
        figures[f"stage_{name}_p50_ms"] = round(_percentile(values, 0.50), 2)
    for name, values in gateway.items():
        figures[f"stage_gateway_{name}_p50_ms"] = round(_percentile(values, 0.50), 2)
    figures["breakdown"] = ", ".join(
        f"{name} {figures[key]:.1f}" for name, key in (
            *((name, f"stage_{name}_p50_ms") for name, _ in STAGES),
            *((f"gateway {name}", f"stage_gateway_{name}_p50_ms") for name in gateway))) + " (p50s, ms)"
    return figures


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
    # per answered claim: (claim_id, due, sent, received) on time.perf_counter, and the gateway's Server-Timing
    timed: list[tuple[str, float, float, float, dict[str, float]]] = []
    wall = time.time() - time.perf_counter()  # perf_counter + wall: Unix seconds, to set beside record timestamps
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
            sent = time.perf_counter()
            try:
                async with client.post(path, data=body, headers={**headers, "Content-Type": "application/json"}) as answer:
                    content = await answer.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                statuses[f"error {type(exc).__name__}"] += 1
                return
            if answer.status == 200:
                received = time.perf_counter()
                latencies.append((received - due) * 1000)
                timed.append((claim["claim_id"], due, sent, received, server_timing(answer.headers.get("Server-Timing"))))
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
        extra = claim_by_claim(timed, watch, wall)
    return {
        "path": "http", "rate": round(rate, 1), "sent": total, "answered": len(latencies),
        "p50_ms": round(_percentile(latencies, 0.50), 2), "p99_ms": round(_percentile(latencies, 0.99), 2),
        "p999_ms": round(_percentile(latencies, 0.999), 2), "max_ms": round(max(latencies, default=float("nan")), 2),
        "statuses": dict(statuses), **extra,
    }
