from tests.infra import broker_kind, database_url, embedded_broker_factory, kafka_bootstrap  # noqa: F401 - fixtures
