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


def test_a_later_node_is_formatted_from_the_first_ones_checkpoint_with_ids_of_its_own(monkeypatch, tmp_path):
    # no JVM: the checkpoint StorageTool wrote for the same format arguments is in the process's cache
    monkeypatch.setattr(kafka_broker, "_FORMATTED", {(): b"the release's feature levels"})
    monkeypatch.setattr(kafka_broker.subprocess, "run", lambda *a, **k: (_ for _ in ()).throw(AssertionError(a)))
    first, second = (kafka_broker.ApacheKafka(dir=tmp_path / name) for name in ("a", "b"))
    metas = []
    for kafka in (first, second):
        node = kafka.node(1)
        node.format()
        assert (node.data_dir / "bootstrap.checkpoint").read_bytes() == b"the release's feature levels"
        meta = dict(line.split("=", 1) for line in (node.data_dir / "meta.properties").read_text().splitlines())
        assert meta["node.id"] == "1" and meta["version"] == "1" and meta["cluster.id"] == kafka.cluster_id
        metas.append(meta)
    assert metas[0]["directory.id"] != metas[1]["directory.id"] and len(metas[0]["directory.id"]) == 22
    assert first.cluster_id != second.cluster_id
