"""How every service runs: consume a batch, do the work in one PostgreSQL
transaction, publish, and only then let the offsets be committed.

A service implements ``Service.process(topic, records)``, which does its work
durably and returns the messages to publish. The runtime wraps it in the
at-least-once discipline:

- each subscription is a ``Lane``: an aiokafka consumer whose loop takes a
  batch, has it handled, and records its offsets as done only after the
  published messages are confirmed; done offsets are committed at most every
  ``COMMIT_INTERVAL`` seconds, when the topic goes quiet, before partitions are
  taken away in a rebalance, and at shutdown. A crash before a commit means a
  redelivery, which the services' inboxes answer with what they stored;
- a batch that fails rewinds its partitions to its first record, so nothing
  is skipped; an infrastructure failure (PostgreSQL or the broker unreachable)
  is raised after a pause, and the batch comes again;
- any other failure isolates the record that causes it: the batch is retried
  record by record, with back-off, and a record that keeps failing goes to
  ``settlement.dlq`` with the error and the original, so the partition moves on.

faststream runs the process (start-up and shutdown hooks, signals), owns the
producer and describes the topics for AsyncAPI (``make docs``). The consuming
is done here, straight on aiokafka: faststream's batch loop sleeps between
empty polls (a claim arriving meanwhile waits out the sleep at every stage),
commits after every batch and runs its middleware stack for each, which on
small batches cost more CPU than the work.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import time
import traceback
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import ConsumerStoppedError, IllegalStateError, KafkaError
from aiokafka.structs import OffsetAndMetadata
from faststream import FastStream
from faststream.specification import AsyncAPI
from faststream.kafka import KafkaBroker
from prometheus_client import Counter, Gauge, Histogram

from medsettle import topics
from medsettle.db import INFRASTRUCTURE_ERRORS, create_pool, migrate
from medsettle.process import event_loop_factory, tune_garbage_collector
from medsettle.produce import send_batches
from medsettle.settings import Settings

log = structlog.get_logger()

HANDLED = Counter("settlement_messages_handled_total", "messages handled", ["service", "topic"])
FAILED = Counter("settlement_messages_failed_total", "messages sent to the dead-letter topic", ["service", "topic"])
BATCH_SECONDS = Histogram(
    "settlement_batch_seconds",
    "time to handle one batch, from receipt to publish confirmed",
    ["service", "topic"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)

CONSUMER_LAG = Gauge(
    "settlement_consumer_lag",
    "records on the partition not yet fetched by the service's consumer (highwater - position), after each batch",
    ["service", "topic", "partition"],
)
DEAD_LETTERS = Counter("settlement_dead_letters_total", "dead letters published to settlement.dlq", ["service"])
BROKER_UP = Gauge("settlement_broker_up", "1 when the last health check reached the broker", ["service"])

LAG_REFRESH_SECONDS = 2.0

RETRY_DELAYS = (0.05, 0.25, 1.0)

END_OFFSETS_TIMEOUT = 10.0
"""Seconds to wait for a topic's end offsets (a leader away: asked again later)."""


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone(dt.timedelta(hours=8)))


@dataclass(frozen=True)
class Outgoing:
    """A message to publish once the work is durable."""

    topic: str
    key: bytes | None
    value: bytes
    headers: dict[str, str] = field(default_factory=dict)


class Poison(Exception):
    """A record that can never be handled: dead-letter it at once."""


class Service(ABC):
    """One stage of the pipeline, with its schema and its subscriptions."""

    name: str
    subscriptions: Sequence[str]
    migrations: Path
    # For the AsyncAPI document (make docs): the message model of each topic.
    consumes: dict[str, Any] = {}
    produces: dict[str, Any] = {}

    def __init__(self, settings: Settings, *, clock: Callable[[], dt.datetime] = now) -> None:
        self.settings = settings
        self.clock = clock
        self.pool: asyncpg.Pool | None = None
        # Set by the Runtime: publishes outside a batch (an operator's decision, say).
        self.publisher: Callable[[Sequence[Outgoing]], Awaitable[None]] | None = None
        # Set by the Runtime: the end offset of every partition of a topic the service reads, and how far its
        # group has committed each.
        self.end_offsets: Callable[[str], Awaitable[dict[int, int]]] | None = None
        self.committed_offsets: Callable[[str], Awaitable[dict[int, int]]] | None = None

    @property
    def db(self) -> asyncpg.Pool:
        assert self.pool is not None, "the service is not started"
        return self.pool

    async def started(self) -> None:
        """Called once the pool is ready and migrations applied."""

    async def stopping(self) -> None:
        """Called before the pool closes."""

    async def published(self, topic: str) -> None:
        """Called once the messages of the last batch of ``topic`` are confirmed by the broker."""

    def routes(self) -> list[Any]:
        """Starlette routes this service adds to its HTTP server (operator API)."""
        return []

    async def health(self) -> dict[str, Any]:
        async with self.db.acquire() as c:
            await c.fetchval("SELECT 1")
        return {"status": "ok"}

    @abstractmethod
    async def process(self, topic: str, records: Sequence[ConsumerRecord]) -> list[Outgoing]:
        """Do the work of these records durably; return what to publish."""


def dead_letter(service: str, record: ConsumerRecord, error: str, at: dt.datetime) -> Outgoing:
    value: bytes = record.value or b""
    try:
        original, encoding = value.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        original, encoding = base64.b64encode(value).decode(), "base64"
    body = {
        "stage": service,
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "key": (record.key or b"").decode("utf-8", "replace"),
        "error": error[:4000],
        "original": original,
        "original_encoding": encoding,
        "headers": {k: v.decode("utf-8", "replace") for k, v in (record.headers or ())},
        "failed_at": at.isoformat(),
    }
    return Outgoing(topics.DLQ, record.key, orjson.dumps(body), {"x-error": error[:200].encode("ascii", "replace").decode()})


COMMIT_INTERVAL = 0.1
"""Seconds between offset commits while records keep coming: a commit is a
round trip to the broker; what a crash leaves uncommitted is redelivered and
answered from the inbox."""

IDLE_POLL_MS = 500
"""How long one poll waits for records; aiokafka returns as soon as any arrive."""

GRACE_SECONDS = 20.0
"""How long a stopping lane lets the batch in hand finish."""


class Lane:
    """One subscription: an aiokafka consumer in its group, and the loop that
    hands its batches to the runtime and commits what is done."""

    def __init__(self, runtime: Runtime, topic: str) -> None:
        self.runtime = runtime
        self.topic = topic
        self.consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task | None = None
        self._done: dict[TopicPartition, int] = {}  # next offset to commit, per partition, once handled
        self._handling = asyncio.Lock()  # held while a batch is handled; a rebalance waits for it
        self._last_commit = 0.0
        self._stopping = False

    async def start(self) -> None:
        settings = self.runtime.settings
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            client_id=self.runtime.service.name,
            group_id=self.runtime.group_id(self.topic),
            group_instance_id=settings.consumer_instance_id,
            **settings.consumer_options(), **settings.kafka_client_security(),
        )
        self.consumer.subscribe([self.topic], listener=_CommitBeforeRevoke(self))
        await self.consumer.start()
        self._task = asyncio.create_task(self._run(), name=f"lane:{self.topic}")

    async def stop(self) -> None:
        self._stopping = True
        task, self._task = self._task, None
        if task is not None:
            if not self._handling.locked():  # waiting for records: nothing to finish
                task.cancel()
            _, unfinished = await asyncio.wait({task}, timeout=GRACE_SECONDS)
            for late in unfinished:
                late.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self.consumer is not None:
            await self.commit()
            await self.consumer.stop()
            self.consumer = None

    async def _run(self) -> None:
        consumer = self.consumer
        assert consumer is not None
        max_records = self.runtime.settings.consumer_max_records
        while not self._stopping:
            try:
                batch = await consumer.getmany(timeout_ms=IDLE_POLL_MS, max_records=max_records)
            except ConsumerStoppedError:
                return
            except KafkaError as exc:
                log.warning("fetch_failed", topic=self.topic, error=repr(exc))
                await asyncio.sleep(1.0)
                continue
            if not batch:
                await self.commit()  # the topic went quiet: leave nothing handled uncommitted
                continue
            async with self._handling:
                records = [record for part in batch.values() for record in part]
                try:
                    await self.runtime.handle(self.topic, records)
                except Exception as exc:  # noqa: BLE001 - the batch comes again
                    log.warning("batch_rewound", topic=self.topic, records=len(records), error=repr(exc))
                    for tp, part in batch.items():
                        with contextlib.suppress(IllegalStateError):  # no longer ours: its new owner has it
                            consumer.seek(tp, part[0].offset)
                    continue
                for tp, part in batch.items():
                    self._done[tp] = part[-1].offset + 1
            if time.monotonic() - self._last_commit >= COMMIT_INTERVAL:
                await self.commit()

    async def commit(self) -> None:
        """Commit the offsets of what has been handled and published."""
        if not self._done or self.consumer is None:
            return
        done, self._done = self._done, {}
        self._last_commit = time.monotonic()
        try:
            await self.consumer.commit({tp: OffsetAndMetadata(offset, "") for tp, offset in done.items()})
        except (KafkaError, IllegalStateError) as exc:  # a rebalance under way, the broker away
            log.info("commit_deferred", topic=self.topic, error=repr(exc))
            held = self.consumer.assignment()
            for tp, offset in done.items():  # not lost: the next commit carries them, unless a newer one does
                if tp in held and tp not in self._done:
                    self._done[tp] = offset


class _CommitBeforeRevoke(ConsumerRebalanceListener):
    """Partitions leaving in a rebalance: finish the batch in hand and commit
    it first, so that their next owner does not handle it again."""

    def __init__(self, lane: Lane) -> None:
        self.lane = lane

    async def on_partitions_revoked(self, revoked: Any) -> None:
        async with self.lane._handling:
            await self.lane.commit()

    async def on_partitions_assigned(self, assigned: Any) -> None:
        pass


class Runtime:
    """The Kafka and PostgreSQL wiring around one ``Service``."""

    def __init__(self, service: Service, settings: Settings) -> None:
        self.service = service
        self.settings = settings
        self.http: Any = None
        self._lag_partitions: dict[str, set[int]] = {}
        self._lag_updated: dict[str, float] = {}
        self._lag_watch: asyncio.Task | None = None
        self.broker = KafkaBroker(
            settings.bootstrap_list(),
            client_id=service.name,
            **settings.producer_options(), security=settings.faststream_security(),
            logger=None,
            graceful_timeout=20.0,
            description=f"one-stop settlement: {service.name}",
        )
        service.publisher = self.publish
        service.end_offsets = self.end_offsets
        service.committed_offsets = self.committed_offsets
        self.lanes = {topic: Lane(self, topic) for topic in service.subscriptions}  # their consumers give the lag
        # What the service reads and writes, for AsyncAPI (make docs): declared
        # on a broker that is never started, since the lanes do the consuming.
        self.description = KafkaBroker(settings.kafka_bootstrap_servers, logger=None,
                                       description=f"one-stop settlement: {service.name}")
        for topic in service.subscriptions:
            self._describe(topic, service.consumes.get(topic, Any))
        for topic, model in service.produces.items():
            self.description.publisher(topic, schema=model, title=f"{service.name}:{topic}:publish",
                                       description=(model.__doc__ or "").strip() or None)

    def group_id(self, topic: str) -> str:
        """The service's consumer group; one per topic when it reads several,
        so that a registry feed never waits on a rebalance of the claims."""
        if len(self.service.subscriptions) == 1:
            return self.service.name
        return f"{self.service.name}.{topic}"

    def _describe(self, topic: str, model: Any) -> None:
        async def consumes(body: Any) -> None:  # only its signature is read
            raise AssertionError("a described subscriber never runs")

        consumes.__annotations__ = {"body": model, "return": None}  # the message model, for the schema
        consumes.__name__ = f"{self.service.name}_{topic.replace('.', '_').replace('-', '_')}"
        self.description.subscriber(topic, group_id=self.group_id(topic), batch=True,
                                    title=f"{self.service.name}:{topic}")(consumes)

    async def start_consuming(self) -> None:
        for lane in self.lanes.values():
            await lane.start()
        log.info("service_started", subscriptions=list(self.service.subscriptions))

    async def stop_consuming(self) -> None:
        await asyncio.gather(*(lane.stop() for lane in self.lanes.values()))

    async def open_database(self) -> None:
        if not self.settings.database_url:
            raise RuntimeError("DATABASE_URL is not set (make run sets it to the embedded server)")
        service = self.service
        service.pool = await create_pool(self.settings.database_url, service.name, size=self.settings.db_pool_size)
        await migrate(service.pool, service.name, service.migrations)
        await service.started()
        self._lag_watch = asyncio.create_task(self._watch_lag())
        if self.settings.metrics_port:
            from medsettle.httpserver import ServiceHttp

            self.http = ServiceHttp(service.name, self.settings.http_host, self.settings.metrics_port,
                                    self.health, service.routes(), settings=self.settings, pool=service.pool)
            await self.http.start()

    async def close_database(self) -> None:
        if self._lag_watch is not None:
            self._lag_watch.cancel()
            await asyncio.gather(self._lag_watch, return_exceptions=True)
            self._lag_watch = None
        if self.http is not None:
            await self.http.stop()
            self.http = None
        await self.service.stopping()
        if self.service.pool is not None:
            await self.service.pool.close()
            self.service.pool = None

    async def start(self) -> None:
        """Start in-process (tests): database first, then the consumers."""
        await self.open_database()
        await self.broker.start()
        await self.start_consuming()

    async def stop(self) -> None:
        await self.stop_consuming()
        await self.broker.stop()
        await self.close_database()
        log.info("service_stopped")

    async def health(self) -> dict[str, Any]:
        """The service's own health (its database) and whether the broker answers."""
        try:
            body = {"database": "ok", **(await self.service.health())}
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            body = {"status": "down", "database": "down", "error": repr(exc)}
        try:
            reachable = await self.broker.ping(timeout=self.settings.health_broker_timeout_seconds)
        except Exception:  # noqa: BLE001 - a broker that cannot be asked is down
            reachable = False
        BROKER_UP.labels(self.service.name).set(1 if reachable else 0)
        body = {**body, "broker": "ok" if reachable else "down"}
        if not reachable:
            body["status"] = "down"
        return body

    async def update_lag(self, topic: str) -> None:
        """Set the lag gauge of each partition of ``topic`` this consumer holds."""
        lane = self.lanes.get(topic)
        consumer = lane.consumer if lane is not None else None
        if consumer is None:
            return
        name = self.service.name
        held: set[int] = set()
        try:
            assigned = [tp for tp in consumer.assignment() if tp.topic == topic]
            for tp in assigned:
                highwater = consumer.highwater(tp)
                if highwater is None:
                    continue
                try:  # known at once for a partition just fetched; else it waits for an offset reset
                    position = await asyncio.wait_for(consumer.position(tp), 0.05)
                except TimeoutError:
                    continue
                CONSUMER_LAG.labels(name, topic, str(tp.partition)).set(max(0, highwater - position))
                held.add(tp.partition)
        except (IllegalStateError, AssertionError):  # a rebalance under way: next batch tells
            return
        except Exception as exc:  # noqa: BLE001 - a metric never fails the batch
            log.debug("lag_unknown", topic=topic, error=repr(exc))
            return
        for gone in self._lag_partitions.get(topic, set()) - held:
            try:
                CONSUMER_LAG.remove(name, topic, str(gone))
            except KeyError:
                pass
        self._lag_partitions[topic] = held

    async def _watch_lag(self) -> None:
        """Keep the lag gauges current between batches: after the last batch of
        a burst, and while a consumer is stalled."""
        while True:
            await asyncio.sleep(LAG_REFRESH_SECONDS)
            for topic in self.service.subscriptions:
                await self.update_lag(topic)

    def _every_partition(self, topic: str) -> tuple[AIOKafkaConsumer, list[TopicPartition]]:
        """The consumer of ``topic``'s lane (one of the service's subscriptions) and every partition of the topic."""
        lane = self.lanes.get(topic)
        consumer = lane.consumer if lane is not None else None
        partitions = consumer.partitions_for_topic(topic) if consumer is not None else None
        if consumer is None or not partitions:
            raise LookupError(f"the partitions of {topic} are not known yet")
        return consumer, [TopicPartition(topic, p) for p in sorted(partitions)]

    async def end_offsets(self, topic: str) -> dict[int, int]:
        """The end offset (the next message's) of every partition of ``topic``,
        one of the service's subscriptions, asked of the partitions' leaders
        by its lane's consumer, whichever partitions the lane holds."""
        consumer, partitions = self._every_partition(topic)
        ends = await asyncio.wait_for(consumer.end_offsets(partitions), END_OFFSETS_TIMEOUT)
        return {tp.partition: offset for tp, offset in ends.items()}

    async def committed_offsets(self, topic: str) -> dict[int, int]:
        """How far the service's group has committed each partition of ``topic``
        (one of its subscriptions), whichever of its processes holds it: a lane
        commits only what it has handled durably. A partition never committed
        is left out."""
        consumer, partitions = self._every_partition(topic)
        found = await asyncio.wait_for(asyncio.gather(*(consumer.committed(tp) for tp in partitions)),
                                       END_OFFSETS_TIMEOUT)
        return {tp.partition: offset for tp, offset in zip(partitions, found, strict=True) if offset is not None}

    def _kafka_producer(self) -> Any:
        """The connected aiokafka producer under the faststream broker, if any."""
        state = getattr(self.broker.config.producer, "_producer", None)
        return getattr(state, "producer", None)

    async def publish(self, outgoing: Sequence[Outgoing]) -> None:
        if not outgoing:
            return
        producer = self._kafka_producer()
        if producer is None:  # a broker not connected to Kafka (faststream's test broker): its own publish
            futures = [
                await self.broker.publish(o.value, o.topic, key=o.key, headers=o.headers or None, no_confirm=True)
                for o in outgoing
            ]
        else:  # straight to aiokafka, one record batch per partition: the bytes are ready
            futures = await send_batches(producer, (
                (o.topic, o.key, o.value, [(k, v.encode()) for k, v in o.headers.items()]) for o in outgoing))
        await asyncio.gather(*futures)
        dead = sum(1 for o in outgoing if o.topic == topics.DLQ)
        if dead:
            DEAD_LETTERS.labels(self.service.name).inc(dead)

    async def handle(self, topic: str, records: list[ConsumerRecord]) -> None:
        started = time.perf_counter()
        name = self.service.name
        try:
            try:
                outgoing = await self.service.process(topic, records)
            except INFRASTRUCTURE_ERRORS + (KafkaError,):
                raise
            except Exception as exc:  # noqa: BLE001 - isolate the record that fails
                log.warning("batch_failed_isolating", topic=topic, records=len(records), error=repr(exc))
                outgoing = await self._one_by_one(topic, records)
            await self.publish(outgoing)
            await self.service.published(topic)
        except INFRASTRUCTURE_ERRORS + (KafkaError,) as exc:
            # PostgreSQL or the broker away, while handling or publishing: the
            # batch comes again (answered from what was stored), once a second,
            # not in a tight loop
            log.warning("infrastructure_unavailable", topic=topic, error=repr(exc))
            await asyncio.sleep(1.0)
            raise
        HANDLED.labels(name, topic).inc(len(records))
        BATCH_SECONDS.labels(name, topic).observe(time.perf_counter() - started)
        if started - self._lag_updated.get(topic, 0.0) >= 1.0:  # a gauge: once a second is enough
            self._lag_updated[topic] = started
            await self.update_lag(topic)

    async def _one_by_one(self, topic: str, records: list[ConsumerRecord]) -> list[Outgoing]:
        outgoing: list[Outgoing] = []
        for record in records:
            error = await self._try_record(topic, record, outgoing)
            if error is not None:
                FAILED.labels(self.service.name, topic).inc()
                log.error("dead_lettered", topic=topic, partition=record.partition, offset=record.offset, error=error)
                outgoing.append(dead_letter(self.service.name, record, error, self.service.clock()))
        return outgoing

    async def _try_record(self, topic: str, record: ConsumerRecord, outgoing: list[Outgoing]) -> str | None:
        """Handle one record with retries; the error if it never succeeds."""
        error = ""
        for attempt, delay in enumerate((0.0, *RETRY_DELAYS)):
            if delay:
                await asyncio.sleep(delay)
            try:
                outgoing += await self.service.process(topic, [record])
                return None
            except INFRASTRUCTURE_ERRORS + (KafkaError,):
                raise
            except Poison as exc:
                return str(exc)
            except Exception as exc:  # noqa: BLE001 - retried, then dead-lettered
                error = "".join(traceback.format_exception_only(exc)).strip()
                log.warning("record_failed", topic=topic, partition=record.partition,
                            offset=record.offset, attempt=attempt + 1, error=error)
        return error


def create_app(service_factory: Callable[[Settings], Service], settings: Settings | None = None) -> FastStream:
    """The faststream app of a service: nothing is built before this is called."""
    from medsettle.logs import configure_logging

    settings = settings or Settings()
    service = service_factory(settings)
    configure_logging(service.name, settings.log_level, settings.log_format)
    runtime = Runtime(service, settings)
    specification = AsyncAPI(runtime.description, title=f"one-stop settlement: {service.name}", version="1.0.0")
    app = FastStream(runtime.broker, logger=None, specification=specification)
    specification.brokers.remove(runtime.broker)  # the running broker declares nothing: the description does

    app.on_startup(runtime.open_database)
    app.after_startup(runtime.start_consuming)
    app.on_shutdown(runtime.stop_consuming)
    app.after_shutdown(runtime.close_database)
    app.runtime = runtime  # type: ignore[attr-defined]
    return app


def run(service_factory: Callable[[Settings], Service]) -> None:
    """``python -m services.<name>``."""
    app = create_app(service_factory)
    threshold = app.runtime.settings.gc_threshold  # type: ignore[attr-defined]

    @app.after_startup
    async def collect_rarely() -> None:
        tune_garbage_collector(threshold)

    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        runner.run(app.run())


__all__: list[Any] = ["Outgoing", "Poison", "Runtime", "Service", "create_app", "dead_letter", "now", "run"]
