"""Session-wide infrastructure for the tests: a real Kafka-protocol broker and
a real PostgreSQL. Every test that needs a broker runs twice, once on the
embedded Tansu broker and once on Apache Kafka (``ApacheKafka``, fetched from
Maven Central on first use); ``TEST_BROKERS=kafka`` (or ``tansu``) runs one.
``KAFKA_BOOTSTRAP_SERVERS`` and ``TEST_DATABASE_URL`` point the tests at
servers of your own instead; otherwise the embedded ones start. When they
cannot be started the tests fail: a skipped suite would hide a broken install."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable
from typing import Protocol

import pytest

from medsettle.embedded import EmbeddedBroker, EmbeddedPostgres, ensure_topics
from medsettle.kafka_broker import ApacheKafka
from medsettle.topics import ALL_TOPICS

PARTITIONS = 4
BROKERS = ("tansu", "kafka")


class Broker(Protocol):
    """What the tests use of a broker of their own, Tansu or Apache Kafka."""

    @property
    def bootstrap(self) -> str: ...

    def stop(self) -> None: ...

    def kill(self) -> None: ...

    def restart(self) -> None: ...


def broker_kinds() -> list[str]:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        return ["external"]
    wanted = [kind.strip() for kind in os.environ.get("TEST_BROKERS", ",".join(BROKERS)).split(",") if kind.strip()]
    unknown = set(wanted) - set(BROKERS)
    if unknown or not wanted:
        raise pytest.UsageError(f"TEST_BROKERS={os.environ['TEST_BROKERS']!r}: name tansu and/or kafka")
    return wanted


def start_broker(kind: str, folder) -> Broker:  # noqa: ANN001 - a pathlib.Path from tmp_path_factory
    """A broker of ``kind`` logging into ``folder``; raises when it cannot start."""
    if kind == "tansu":
        return EmbeddedBroker(log_path=folder / "broker.log").start()
    if kind == "kafka":
        return ApacheKafka(dir=folder, heap="384m").start()
    raise ValueError(f"no broker of kind {kind!r}")


@pytest.fixture(scope="session", params=broker_kinds())
def broker_kind(request: pytest.FixtureRequest):
    """The broker the test runs on: tansu, kafka (or external: KAFKA_BOOTSTRAP_SERVERS).

    On Tansu the producers are not idempotent (it has no InitProducerId): the
    variable reaches every ``Settings`` the tests build and every service
    process they start."""
    kind = str(request.param)
    before = os.environ.get("KAFKA_IDEMPOTENT_PRODUCER")
    if kind == "tansu":
        os.environ["KAFKA_IDEMPOTENT_PRODUCER"] = "false"
    elif kind == "kafka":
        os.environ["KAFKA_IDEMPOTENT_PRODUCER"] = "true"
    yield kind
    if before is None:
        os.environ.pop("KAFKA_IDEMPOTENT_PRODUCER", None)
    else:
        os.environ["KAFKA_IDEMPOTENT_PRODUCER"] = before


@pytest.fixture(scope="session")
async def kafka_bootstrap(broker_kind, tmp_path_factory):
    if broker_kind == "external":
        bootstrap = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
        broker = None
    else:
        broker = start_broker(broker_kind, tmp_path_factory.mktemp(f"broker-{broker_kind}"))
        bootstrap = broker.bootstrap
    try:
        await ensure_topics(bootstrap, ALL_TOPICS, PARTITIONS)
        yield bootstrap
    finally:
        if broker is not None:
            broker.stop()


@pytest.fixture(scope="session")
def embedded_broker_factory(broker_kind, tmp_path_factory):
    """Brokers of a test's own, of the session's kind (the crash test restarts one). Whoever starts one
    stops it when done (``own_broker``): one left running until the end of the broker's pass would take
    its CPU and heap from every later test. The rest are stopped at the end of the pass."""
    if broker_kind == "external":
        raise RuntimeError("these tests start brokers of their own: unset KAFKA_BOOTSTRAP_SERVERS")
    started: list[Broker] = []

    def start() -> Broker:
        broker = start_broker(broker_kind, tmp_path_factory.mktemp(f"own-broker-{broker_kind}"))
        started.append(broker)
        return broker

    yield start
    for broker in started:
        broker.stop()


@contextlib.asynccontextmanager
async def own_broker(start: Callable[[], Broker]) -> AsyncIterator[str]:
    """A broker for one package, module or test alone (from ``embedded_broker_factory``), with every topic,
    killed when it is done (what it holds is nobody's any more: no controlled shutdown to wait for); yields
    its bootstrap."""
    broker = start()
    try:
        await ensure_topics(broker.bootstrap, ALL_TOPICS, PARTITIONS)
        yield broker.bootstrap
    finally:
        broker.kill()


@pytest.fixture(scope="session")
def database_url():
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield url
        return
    server = EmbeddedPostgres().start()
    yield server.url
    server.stop()
