"""The infrastructure the other tests stand on, and the deployment files."""

import uuid

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from medsettle.topics import DLQ


async def test_a_message_goes_through_the_broker_to_a_consumer_group(kafka_bootstrap):
    marker = uuid.uuid4().hex.encode()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    consumer = AIOKafkaConsumer(DLQ, bootstrap_servers=kafka_bootstrap, group_id=f"infra-{marker.decode()}",
                                auto_offset_reset="earliest", fetch_max_wait_ms=10)
    await producer.start()
    await consumer.start()
    try:
        await producer.send_and_wait(DLQ, marker, key=b"infra")
        seen = False
        for _ in range(200):
            batch = await consumer.getmany(timeout_ms=100)
            if any(r.value == marker for records in batch.values() for r in records):
                seen = True
                break
        assert seen
    finally:
        await consumer.stop()
        await producer.stop()


async def test_postgresql_answers(database_url):
    connection = await asyncpg.connect(database_url)
    try:
        assert await connection.fetchval("SELECT 1 + 1") == 2
    finally:
        await connection.close()

