"""One bare hop of the bench's floor: consume a topic, produce every record to
the next one, commit the offsets after the broker confirmed. No database, no
parsing: what the broker and the Kafka client cost for one stage. The
relays publish as the services do (``medsettle.produce``).

``python -m deploy.bench_relay --bootstrap HOST:PORT --source A --target B``
(run by ``deploy.bench``, one process per hop, like the services).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from medsettle.process import event_loop_factory, tune_garbage_collector
from medsettle.produce import send_batches
from medsettle.settings import Settings


async def relay(bootstrap: str, source: str, target: str, group: str, max_records: int) -> None:
    settings = Settings()  # the services' clients, as the services configure them
    consumer = AIOKafkaConsumer(source, bootstrap_servers=bootstrap, group_id=group, **settings.consumer_options())
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **settings.producer_options())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await producer.start()
    await consumer.start()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=100, max_records=max_records)
            if not batch:
                continue
            futures = await send_batches(producer, (
                (target, record.key, record.value, []) for records in batch.values() for record in records))
            await asyncio.gather(*futures)
            await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--group", default=None)
    parser.add_argument("--max-records", type=int, default=500)
    args = parser.parse_args(argv)
    logging.basicConfig(level=os.environ.get("BENCH_RELAY_LOG", "WARNING"), format="%(asctime)s %(name)s %(message)s")
    tune_garbage_collector(Settings().gc_threshold)  # the same process settings as the services
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        runner.run(relay(args.bootstrap, args.source, args.target, args.group or f"bench-relay-{args.source}",
                         args.max_records))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
