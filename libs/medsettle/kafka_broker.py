"""Apache Kafka on this machine, for the tests, ``make run``, the bench and the
crash test: the broker from Maven Central (``deploy/kafka/pom.xml``, copied
into ``.kafka/lib`` on first use), KRaft mode, each node a combined broker and
controller on loopback free ports, its log on disk so that a restarted node
keeps its messages. Nothing starts at import.

``ApacheKafka()`` is one node; ``ApacheKafka(nodes=3)`` a cluster of three
(replication factor 3, ``min.insync.replicas=2``). ``port`` fixes the first
node's client port (``make run``); every other port is a free one. The configuration is open
to profiles on top of it: ``extra_properties`` (added to every node's
``server.properties``; values may use ``{node_id}``, ``{port}``,
``{controller_port}``, ``{dir}`` and ``{port:NAME}``), ``extra_listeners``
(name -> security protocol, each on a free port of its own per node, see
``KafkaNode.listener_port``), ``client_listener`` (the listener ``bootstrap``
names), ``format_args`` (more arguments to ``StorageTool format``, e.g.
``--add-scram``) and ``jvm_options``.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from medsettle.embedded import _port_open, free_port
from medsettle.settings import ROOT

KAFKA_VERSION = "4.1.1"
"""The release deploy/kafka/pom.xml pins (and docker-compose.yml runs)."""

POM = ROOT / "deploy" / "kafka" / "pom.xml"
KAFKA_HOME = Path(os.environ.get("KAFKA_HOME_DIR", ROOT / ".kafka"))
"""Where the broker's jars are copied (``$KAFKA_HOME_DIR/lib``); ignored by git."""

READY_LINE = b"Kafka Server started"
"""What ``kafka.Kafka`` logs once the broker is registered and unfenced."""

_LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = out
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
logger.log.name = kafka.log
logger.log.level = WARN
logger.storage.name = org.apache.kafka.storage
logger.storage.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.config.name = org.apache.kafka.common.config.AbstractConfig
logger.config.level = WARN
"""

_fetch_lock = threading.Lock()


def kafka_lib(fetch: bool = True) -> Path:
    """The folder of Kafka's jars; copied from Maven Central by ``mvn`` when missing."""
    lib = KAFKA_HOME / "lib"
    stamp = lib / f".kafka-{KAFKA_VERSION}"
    with _fetch_lock:
        if stamp.exists():
            return lib
        if not fetch:
            raise RuntimeError(f"Apache Kafka is not in {lib}: run `make kafka`")
        mvn = shutil.which("mvn")
        if mvn is None:
            raise RuntimeError("Apache Kafka needs Maven to be fetched (apt-get install maven) and Java 17")
        shutil.rmtree(lib, ignore_errors=True)
        result = subprocess.run(
            [mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
             "-DincludeScope=runtime", f"-DoutputDirectory={lib}"],
            capture_output=True, text=True,
        )
        if result.returncode != 0:
            raise RuntimeError(f"mvn could not fetch Apache Kafka {KAFKA_VERSION}:\n{result.stdout}\n{result.stderr}")
        if not (lib / f"kafka_2.13-{KAFKA_VERSION}.jar").exists():
            raise RuntimeError(f"mvn ran but {lib} holds no kafka_2.13-{KAFKA_VERSION}.jar")
        stamp.touch()
        return lib


def _cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding,
    never starting with "-" (as Kafka's own ``Uuid.randomUuid``): StorageTool
    would read such an id after ``-t`` as an option of its own."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


_FORMATTED: dict[tuple[str, ...], bytes] = {}
"""The ``bootstrap.checkpoint`` StorageTool wrote in this process, by its format arguments and the profile's
``extra_properties`` (one could set the feature levels a release defaults to). The file holds
the release's feature levels (metadata.version and the like) and the arguments' records (``--add-scram``'s
credentials), nothing of the cluster's or the node's: those are in ``meta.properties`` (node.id, cluster.id,
directory.id). A copy spares each later node a JVM of its own (seconds on a busy machine)."""


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not java:
        raise RuntimeError("Apache Kafka needs Java 17 or later (apt-get install openjdk-17-jre-headless)")
    return java


@dataclass
class KafkaNode:
    """One combined broker+controller of an ``ApacheKafka``."""

    cluster: ApacheKafka
    node_id: int
    port: int
    controller_port: int
    dir: Path
    listener_ports: dict[str, int] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None
    _ready_offset: int = 0

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    @property
    def log_path(self) -> Path:
        return self.dir / "server.log"

    @property
    def config_path(self) -> Path:
        return self.dir / "server.properties"

    def listener_port(self, name: str) -> int:
        """The port of a listener: PLAINTEXT, CONTROLLER or one of ``extra_listeners``."""
        if name == "PLAINTEXT":
            return self.port
        if name == "CONTROLLER":
            return self.controller_port
        return self.listener_ports[name]

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    # ------------------------------------------------------------ config

    def properties(self) -> dict[str, str]:
        c = self.cluster
        listeners = {"PLAINTEXT": "PLAINTEXT", **c.extra_listeners, "CONTROLLER": "PLAINTEXT"}
        advertised = [f"{n}://127.0.0.1:{self.listener_port(n)}" for n in listeners if n != "CONTROLLER"]
        replicas = min(3, len(c.nodes))
        props = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "controller.quorum.voters": ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in c.nodes),
            "listeners": ",".join(f"{n}://127.0.0.1:{self.listener_port(n)}" for n in listeners),
            "advertised.listeners": ",".join(advertised),
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": ",".join(f"{n}:{p}" for n, p in listeners.items()),
            "log.dirs": str(self.data_dir),
            "auto.create.topics.enable": "false",
            "num.partitions": "1",
            "default.replication.factor": str(replicas),
            "min.insync.replicas": str(min(2, replicas)),
            "offsets.topic.replication.factor": str(replicas),
            "offsets.topic.num.partitions": str(c.offsets_partitions),
            "transaction.state.log.replication.factor": str(replicas),
            "transaction.state.log.min.isr": str(min(2, replicas)),
            "share.coordinator.state.topic.replication.factor": str(replicas),
            "share.coordinator.state.topic.min.isr": str(min(2, replicas)),
            "group.initial.rebalance.delay.ms": "0",
            # a killed node is back within seconds: its replicas catch up instead of being dropped
            "unclean.leader.election.enable": "false",
            "log.retention.hours": "24",
            "num.network.threads": "2",
            "num.io.threads": "4",
        }
        if len(c.nodes) > 1:
            # A SIGKILLed node is fenced, and its partitions led elsewhere, once
            # the controller has missed its heartbeats this long (Kafka's
            # default 9 s, every partition it led stalled meanwhile).
            props["broker.heartbeat.interval.ms"] = str(CLUSTER_HEARTBEAT_MS)
            props["broker.session.timeout.ms"] = str(CLUSTER_SESSION_TIMEOUT_MS)
        fill = {"node_id": self.node_id, "port": self.port, "controller_port": self.controller_port, "dir": self.dir}
        for key, value in c.extra_properties.items():
            text = str(value)
            for name, port in self.listener_ports.items():
                text = text.replace("{port:" + name + "}", str(port))
            props[key] = text.format(**fill) if "{" in text else text
        return props

    def write_config(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text("".join(f"{k}={v}\n" for k, v in self.properties().items()))
        (self.dir / "log4j2.properties").write_text(_LOG4J2)

    def _command(self, main: str, *args: str) -> list[str]:
        c = self.cluster
        return [
            _java(), f"-Xmx{c.heap}", f"-Xms{c.heap_initial}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
            "-XX:InitiatingHeapOccupancyPercent=35", "-XX:+ExplicitGCInvokesConcurrent", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.dir / 'log4j2.properties'}", f"-Dkafka.logs.dir={self.dir}",
            *c.jvm_options, "-cp", str(kafka_lib() / "*"), main, *args,
        ]

    def format(self) -> None:
        """Format the storage once (``kafka.tools.StorageTool``); a formatted node keeps it. StorageTool
        runs once a process for the same format arguments and profile: a later node gets a copy of the
        ``bootstrap.checkpoint`` it wrote and a ``meta.properties`` of its own (``_FORMATTED``)."""
        meta = self.data_dir / "meta.properties"
        if meta.exists():
            return
        self.write_config()
        key = (*self.cluster.format_args, *(f"{k}={v}" for k, v in sorted(self.cluster.extra_properties.items())))
        checkpoint = _FORMATTED.get(key)
        if checkpoint is not None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            (self.data_dir / "bootstrap.checkpoint").write_bytes(checkpoint)
            meta.write_text(f"node.id={self.node_id}\ndirectory.id={_cluster_id()}\nversion=1\n"
                            f"cluster.id={self.cluster.cluster_id}\n")
            return
        result = subprocess.run(
            self._command("kafka.tools.StorageTool", "format", "--ignore-formatted", "-t", self.cluster.cluster_id,
                          "-c", str(self.config_path), *self.cluster.format_args),
            capture_output=True, text=True, timeout=120,
        )
        if result.returncode != 0:
            raise RuntimeError(f"StorageTool could not format node {self.node_id}: {result.stdout}{result.stderr}")
        _FORMATTED[key] = (self.data_dir / "bootstrap.checkpoint").read_bytes()

    # ------------------------------------------------------------ process

    def spawn(self) -> None:
        if self.alive:
            return
        for port in (self.port, self.controller_port, *self.listener_ports.values()):
            if _port_open(port):
                raise RuntimeError(f"port {port} of Kafka node {self.node_id} is taken")
        self.format()
        self.write_config()
        self._ready_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in kill()
        self.process = subprocess.Popen(
            self._command("kafka.Kafka", str(self.config_path)),
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.dir,
        )

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process is None or self.process.poll() is not None:
                code = None if self.process is None else self.process.returncode
                raise RuntimeError(f"Kafka node {self.node_id} exited with {code}:\n{self.tail()}")
            with open(self.log_path, "rb") as log:
                log.seek(self._ready_offset)
                if READY_LINE in log.read():
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kafka node {self.node_id} was not ready within {timeout} s:\n{self.tail()}")
            time.sleep(0.1)

    def start(self, timeout: float = 120.0) -> KafkaNode:
        self.spawn()
        self.wait_ready(timeout)
        return self

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def kill(self) -> None:
        """SIGKILL: no shutdown, whatever is not yet on disk is the cluster's problem."""
        if self.alive:
            assert self.process is not None
            os.killpg(self.process.pid, signal.SIGKILL)
        self._reap()

    def stop(self, timeout: float = 30.0) -> None:
        """A controlled shutdown (SIGTERM), SIGKILL after ``timeout``."""
        if self.alive:
            assert self.process is not None
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def _reap(self) -> None:
        if self.process is not None:
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                pass
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_port_open(p) for p in (self.port, self.controller_port)):
            time.sleep(0.05)

    def restart(self, *, hard: bool = True, timeout: float = 120.0) -> None:
        """Kill (SIGKILL; ``hard=False``: SIGTERM) and start again on the same ports and log."""
        if hard:
            self.kill()
        else:
            self.stop()
        self.start(timeout)


CLUSTER_HEARTBEAT_MS = 500
CLUSTER_SESSION_TIMEOUT_MS = 3000
"""A node of a cluster heartbeats the controller every half second and is
fenced after 3 s without one (Kafka's defaults: 2 s and 9 s); ``extra_properties``
may say otherwise."""


class ApacheKafka:
    """Apache Kafka in KRaft mode on 127.0.0.1: ``nodes`` combined broker+controller nodes."""

    def __init__(
        self,
        nodes: int = 1,
        *,
        dir: Path | None = None,
        port: int = 0,
        heap: str = "512m",
        heap_initial: str = "256m",
        offsets_partitions: int = 8,
        extra_properties: Mapping[str, Any] | None = None,
        extra_listeners: Mapping[str, str] | None = None,
        client_listener: str = "PLAINTEXT",
        format_args: Sequence[str] = (),
        jvm_options: Sequence[str] = (),
    ) -> None:
        if nodes < 1:
            raise ValueError("a cluster has at least one node")
        self._temporary = dir is None
        self.dir = Path(dir or tempfile.mkdtemp(prefix="settlement-kafka-"))
        self.heap = heap
        self.heap_initial = heap_initial
        self.offsets_partitions = offsets_partitions
        self.extra_properties = dict(extra_properties or {})
        self.extra_listeners = dict(extra_listeners or {})
        self.client_listener = client_listener
        self.format_args = list(format_args)
        self.jvm_options = list(jvm_options)
        id_file = self.dir / "cluster.id"
        self.cluster_id = id_file.read_text().strip() if id_file.exists() else _cluster_id()
        self.nodes: list[KafkaNode] = []
        for node_id in range(1, nodes + 1):
            self.nodes.append(KafkaNode(
                self, node_id, (port if node_id == 1 and port else free_port()), free_port(),
                self.dir / f"node-{node_id}",
                {name: free_port() for name in self.extra_listeners},
            ))

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{n.listener_port(self.client_listener)}" for n in self.nodes)

    @property
    def port(self) -> int:
        return self.nodes[0].listener_port(self.client_listener)

    def node(self, node_id: int) -> KafkaNode:
        return self.nodes[node_id - 1]

    def start(self, timeout: float = 180.0) -> ApacheKafka:
        """Start every node (together: a quorum needs a majority) and wait until each is ready."""
        kafka_lib()
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "cluster.id").write_text(self.cluster_id)
        try:
            for node in self.nodes:
                node.format()
            for node in self.nodes:
                node.spawn()
            for node in self.nodes:
                node.wait_ready(timeout)
        except BaseException:
            self.kill()
            raise
        return self

    def kill(self) -> None:
        for node in self.nodes:
            node.kill()

    def stop(self) -> None:
        for node in self.nodes:
            if node.alive:
                assert node.process is not None
                node.process.terminate()
        for node in self.nodes:
            node.stop()

    def restart(self, *, hard: bool = True) -> None:
        """Every node down (SIGKILL unless ``hard=False``) and up again; the logs stay."""
        if hard:
            self.kill()
        else:
            self.stop()
        self.start()

    def active_controller(self) -> int | None:
        """The node id of the quorum's leader as the live nodes last recorded it (``quorum-state``)."""
        best: tuple[int, int] | None = None
        for node in self.nodes:
            if not node.alive:
                continue
            path = node.data_dir / "__cluster_metadata-0" / "quorum-state"
            try:
                state = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            leader, epoch = state.get("leaderId", -1), state.get("leaderEpoch", -1)
            if leader >= 0 and (best is None or epoch > best[1]):
                best = (leader, epoch)
        return None if best is None else best[0]

    def cleanup(self) -> None:
        """Stop and, when the folder was a temporary one, delete it."""
        self.stop()
        if self._temporary:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> ApacheKafka:
        return self.start()

    def __exit__(self, *_: Any) -> None:
        self.cleanup()
