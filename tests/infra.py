"""Session-wide infrastructure for the tests: a real Kafka-protocol broker and
a real PostgreSQL. ``KAFKA_BOOTSTRAP_SERVERS`` and ``TEST_DATABASE_URL`` point
the tests at servers of your own; otherwise the embedded ones start. When they
cannot be started the tests fail: a skipped suite would hide a broken install."""

from __future__ import annotations

import os

import pytest

from medsettle.embedded import EmbeddedBroker, EmbeddedPostgres, ensure_topics
from medsettle.topics import ALL_TOPICS

PARTITIONS = 4


@pytest.fixture(scope="session")
async def kafka_bootstrap(tmp_path_factory):
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    broker = None
    if not bootstrap:
        broker = EmbeddedBroker(log_path=tmp_path_factory.mktemp("broker") / "broker.log").start()
        bootstrap = broker.bootstrap
    await ensure_topics(bootstrap, ALL_TOPICS, PARTITIONS)
    yield bootstrap
    if broker is not None:
        broker.stop()


@pytest.fixture(scope="session")
def embedded_broker_factory(tmp_path_factory):
    """Brokers of a test's own (the crash test restarts one)."""
    started: list[EmbeddedBroker] = []

    def start() -> EmbeddedBroker:
        broker = EmbeddedBroker(log_path=tmp_path_factory.mktemp("broker") / "broker.log").start()
        started.append(broker)
        return broker

    yield start
    for broker in started:
        broker.stop()


@pytest.fixture(scope="session")
def database_url():
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield url
        return
    server = EmbeddedPostgres().start()
    yield server.url
    server.stop()
