"""Publishing a batch of messages as a few record batches, one per partition.

aiokafka's ``send`` does, for every message, the partitioner (murmur2 in
Python), a lookup in its accumulator and a future of its own: about 40 µs of
CPU per 2.5 KiB document against about 22 µs when a stage's messages are
appended to one record batch per partition and each batch is handed over
once (``create_batch`` / ``send_batch``, aiokafka's public batch API).

The partition of a key is the one aiokafka's default partitioner (and the
Java client's) gives: murmur2 of the key bytes, so everything downstream of
eligibility stays keyed by ``person_id``. Messages to one partition keep
their order.
"""

from __future__ import annotations

import asyncio
import functools
import random
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2

Message = tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]
"""topic, key, value, headers"""


@functools.lru_cache(maxsize=1 << 16)
def _key_hash(key: bytes) -> int:
    return murmur2(key) & 0x7FFFFFFF


def partition_of(key: bytes | None, partitions: list[int]) -> int:
    """The partition aiokafka's ``DefaultPartitioner`` gives ``key`` among
    ``partitions`` (sorted); a message without a key goes to any."""
    if key is None:
        return random.choice(partitions)
    return partitions[_key_hash(key) % len(partitions)]


async def send_batches(producer: AIOKafkaProducer, messages: Iterable[Message]) -> list[asyncio.Future[Any]]:
    """Hand ``messages`` to ``producer`` as one record batch per partition
    (more when a batch fills up); the futures resolve when the broker has
    confirmed each batch."""
    partitions: dict[str, list[int]] = {}
    open_batches: dict[tuple[str, int], Any] = {}
    futures: list[asyncio.Future[Any]] = []
    for topic, key, value, headers in messages:
        known = partitions.get(topic)
        if known is None:
            known = partitions[topic] = sorted(await producer.partitions_for(topic))
        place = (topic, partition_of(key, known))
        batch = open_batches.get(place)
        if batch is not None and batch.append(key=key, value=value, timestamp=None, headers=headers) is not None:
            continue
        if batch is not None:  # full: on its way, and a new one for this message
            futures.append(await producer.send_batch(batch, topic, partition=place[1]))
        batch = open_batches[place] = producer.create_batch()
        batch.append(key=key, value=value, timestamp=None, headers=headers)  # the first always fits
    for (topic, partition), batch in open_batches.items():
        futures.append(await producer.send_batch(batch, topic, partition=partition))
    return futures
