"""Publishing a stage's batch as one record batch per partition."""

from __future__ import annotations

import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from medsettle.embedded import ensure_topics
from medsettle.produce import partition_of, send_batches


@given(st.binary(min_size=1, max_size=40), st.integers(min_value=1, max_value=64))
def test_a_key_goes_to_the_partition_aiokafkas_default_partitioner_gives(key: bytes, count: int) -> None:
    partitions = list(range(count))
    assert partition_of(key, partitions) == DefaultPartitioner()(key, partitions, partitions)


async def test_every_message_arrives_once_in_order_on_its_keys_partition(kafka_bootstrap: str) -> None:
    topic = f"test.produce.{uuid.uuid4().hex[:8]}"
    await ensure_topics(kafka_bootstrap, [topic], 4)
    # small batches, so that one partition's messages fill several
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", max_batch_size=4096, linger_ms=1)
    await producer.start()
    keys = [f"34042119900101{n:04d}".encode() for n in range(7)]
    messages = [(topic, keys[n % 7], f"{n:05d}".encode() + b"." * 900, [("n", str(n).encode())])
                for n in range(120)]
    try:
        futures = await send_batches(producer, messages)
        for future in futures:
            await future
        assert len(futures) > 4  # some partition took more than one batch
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, fetch_max_wait_ms=10)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(4)])
        seen: list[tuple[int, bytes, int, dict[str, bytes]]] = []
        for _ in range(100):
            for tp, records in (await consumer.getmany(timeout_ms=200)).items():
                seen += [(tp.partition, r.key, int(r.value[:5]), dict(r.headers)) for r in records]
            if len(seen) >= len(messages):
                break
    finally:
        await consumer.stop()

    assert sorted(n for _, _, n, _ in seen) == list(range(120))  # each once
    for partition, key, n, headers in seen:
        assert partition == partition_of(key, [0, 1, 2, 3])
        assert headers == {"n": str(n).encode()}
    for key in keys:  # one key's messages in the order they were given
        order = [n for _, k, n, _ in seen if k == key]
        assert order == sorted(order)
