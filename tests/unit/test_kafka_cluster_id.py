"""Apache Kafka's cluster id, as StorageTool takes it on its command line."""

from __future__ import annotations

import uuid

from medsettle import kafka_broker


def test_a_cluster_id_never_starts_with_a_dash(monkeypatch):
    # 0xF8 encodes as "-" in URL-safe base64: StorageTool would read "-t -..." as a missing id
    draws = iter([uuid.UUID(bytes=b"\xf8" + bytes(15)), uuid.UUID(bytes=b"\x10" + bytes(15))])
    monkeypatch.setattr(kafka_broker.uuid, "uuid4", lambda: next(draws))
    cluster_id = kafka_broker._cluster_id()
    assert not cluster_id.startswith("-")
    assert len(cluster_id) == 22
