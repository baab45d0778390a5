"""Where a claim's time goes, hop by hop, on a running system (``make run``).

``python -m deploy.hop_latency [--claims 20] [--gap 1.0]`` sends demo claims
(run ``make demo`` once first, for its county's registry) one every ``--gap``
seconds and reads every topic of the flow. Each stage's producer stamps its
records with the time it sent them, so the difference between one topic's
record of a claim and the previous topic's is that hop: the next stage's
fetch, its batch (database and layer) and its send. Prints the median and
the largest of each hop in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import uuid
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from deploy.demo import day_of_claims
from medsettle import topics
from medsettle.settings import Settings

FLOW = [topics.CLAIMS, topics.ELIGIBLE, topics.BASIC, topics.SERIOUS_ILLNESS, topics.ASSISTANCE, topics.BACKSTOP,
        topics.SETTLEMENTS]


def claim_id_of(value: bytes) -> str | None:
    body: Any = orjson.loads(value)
    if not isinstance(body, dict):
        return None
    claim = body.get("claim")
    return claim.get("claim_id") if isinstance(claim, dict) else body.get("claim_id")


def hops(stamps: dict[str, dict[str, int]], sent: list[str]) -> dict[str, list[int]]:
    """Milliseconds from each topic's record of a claim to the next topic's."""
    found: dict[str, list[int]] = {topic: [] for topic in FLOW[1:]}
    for claim_id in sent:
        seen = stamps.get(claim_id, {})
        for before, after in zip(FLOW, FLOW[1:]):
            if before in seen and after in seen:
                found[after].append(seen[after] - seen[before])
    return found


async def measure(bootstrap: str, claims: int, gap: float) -> dict[str, list[int]]:
    consumer = AIOKafkaConsumer(*FLOW, bootstrap_servers=bootstrap, group_id=f"hop-latency-{uuid.uuid4().hex[:8]}",
                                auto_offset_reset="latest", fetch_max_wait_ms=5)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await consumer.start()
    await producer.start()
    stamps: dict[str, dict[str, int]] = {}

    async def read() -> None:
        async for record in consumer:
            claim_id = claim_id_of(record.value)
            if claim_id:
                stamps.setdefault(claim_id, {})[record.topic] = record.timestamp

    reader = asyncio.create_task(read())
    try:
        while not consumer.assignment():
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # positioned at the end of every partition
        rng = random.Random(7)
        settles = [c for c in day_of_claims(rng, "hops") if c.get("type") == "settle"]
        sent = []
        for _ in range(claims):
            body = dict(rng.choice(settles), claim_id=f"HOP-{uuid.uuid4().hex[:12]}")
            sent.append(body["claim_id"])
            await producer.send_and_wait(topics.CLAIMS, orjson.dumps(body), key=body["claim_id"].encode())
            await asyncio.sleep(gap)
        await asyncio.sleep(2.0)
        return hops(stamps, sent)
    finally:
        reader.cancel()
        await consumer.stop()
        await producer.stop()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--claims", type=int, default=20)
    parser.add_argument("--gap", type=float, default=1.0, help="seconds between claims")
    args = parser.parse_args(argv)
    found = asyncio.run(measure(Settings().kafka_bootstrap_servers, args.claims, args.gap))
    for topic, millis in found.items():
        if millis:
            print(f"{topic:<28} {len(millis):>4} claims   p50 {statistics.median(millis):7.1f} ms   max {max(millis):5d} ms")
        else:
            print(f"{topic:<28}    0 claims (none seen: is the system running, and `make demo` run once?)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
