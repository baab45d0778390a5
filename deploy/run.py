"""``make run``: the whole system on this machine, no Docker.

Starts a broker on 127.0.0.1:9092 (``BROKER_PORT``) unless
``KAFKA_BOOTSTRAP_SERVERS`` is set: the embedded Tansu broker (memory only),
or with ``BROKER=kafka`` Apache Kafka (one KRaft node, its log in
``.run/kafka``, kept across runs); an embedded PostgreSQL (data in
``.run/pgdata``) unless ``DATABASE_URL`` is set; creates the topics, then runs
every service as its own process with their logs interleaved line by line,
the gateway at ``GATEWAY_NICE`` (a core goes to it first: a cashier waits).
A service that dies is restarted. Ctrl-C (or SIGTERM) stops everything.
"""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from deploy import dev_credentials
from medsettle.embedded import EmbeddedBroker, EmbeddedPostgres, ensure_topics
from medsettle.kafka_broker import ApacheKafka
from medsettle.process import reprioritise
from medsettle.settings import ROOT, Settings
from medsettle.topics import ALL_TOPICS
from services import pipeline

SERVICES = [*pipeline.NAMES, *pipeline.SUPPORT]
METRICS_PORTS = {name: int(os.environ.get("METRICS_PORT_BASE", "9101")) + port  # the gateway serves on GATEWAY_PORT
                 for name, port in pipeline.PORTS.items()}
BROKERS = ("tansu", "kafka")
COLOURS = [31, 32, 33, 34, 35, 36, 91, 92, 93, 94]


def available_services() -> list[str]:
    return [s for s in SERVICES if (ROOT / "services" / s / "__main__.py").exists()]


@dataclass
class Child:
    name: str
    command: list[str]
    env: dict[str, str]
    colour: int
    nice: int = 0  # against the supervisor's (medsettle.process.reprioritise)
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0
    started_at: float = 0.0
    pump: asyncio.Task | None = field(default=None, repr=False)


class Supervisor:
    """Runs child processes, prefixes their output, restarts the ones that die."""

    def __init__(self, *, echo: bool = True, restart: bool = True, grace_seconds: float = 10.0) -> None:
        self.children: dict[str, Child] = {}
        self.echo = echo
        self.restart = restart
        self.grace_seconds = grace_seconds
        self.stopping = False
        self._watch: asyncio.Task | None = None
        self.lines: list[str] = []

    def add(self, name: str, command: list[str], env: dict[str, str], nice: int = 0) -> None:
        self.children[name] = Child(name, command, env, COLOURS[len(self.children) % len(COLOURS)], nice)

    async def start(self) -> None:
        for child in self.children.values():
            await self._spawn(child)
        self._watch = asyncio.create_task(self._watch_children())

    async def _spawn(self, child: Child) -> None:
        child.process = await asyncio.create_subprocess_exec(
            *child.command, env=child.env, cwd=ROOT,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True,
            preexec_fn=functools.partial(reprioritise, child.nice) if child.nice else None,
        )
        child.started_at = time.monotonic()
        child.pump = asyncio.create_task(self._pump(child, child.process))

    async def _pump(self, child: Child, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        prefix = f"\x1b[{child.colour}m[{child.name:<11}]\x1b[0m " if sys.stdout.isatty() else f"[{child.name:<11}] "
        while line := await process.stdout.readline():
            text = line.decode("utf-8", "replace").rstrip()
            self.lines.append(f"{child.name}: {text}")
            del self.lines[:-2000]
            if self.echo:
                print(prefix + text, flush=True)

    async def _watch_children(self) -> None:
        while not self.stopping:
            for child in self.children.values():
                process = child.process
                if process is None or process.returncode is None or self.stopping:
                    continue
                print(f"[supervisor ] {child.name} exited with {process.returncode}", flush=True)
                if not self.restart:
                    continue
                child.restarts += 1
                await asyncio.sleep(min(5.0, 0.5 * child.restarts) if time.monotonic() - child.started_at < 10 else 0.2)
                if not self.stopping:
                    await self._spawn(child)
            await asyncio.sleep(0.2)

    def kill(self, name: str) -> None:
        """SIGKILL one child (the crash test); the watcher restarts it."""
        process = self.children[name].process
        if process is not None and process.returncode is None:
            process.kill()

    async def terminate(self, name: str, timeout: float = 30.0) -> None:
        """SIGTERM one child (a rolling restart), wait until it is gone and the
        watcher has started it again."""
        child = self.children[name]
        process = child.process
        if process is None or process.returncode is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            process.kill()
            await process.wait()
        deadline = time.monotonic() + timeout
        while child.process is process and not self.stopping and time.monotonic() < deadline:
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        self.stopping = True
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)
        running = [c.process for c in self.children.values() if c.process and c.process.returncode is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.gather(*(p.wait() for p in running)), self.grace_seconds)
        except TimeoutError:
            for process in running:
                if process.returncode is None:
                    process.kill()
            await asyncio.gather(*(p.wait() for p in running))
        await asyncio.gather(*(c.pump for c in self.children.values() if c.pump), return_exceptions=True)


def broker_environment(kind: str, settings: Settings) -> dict[str, str]:
    """What the services' environment says of the broker ``make run`` or the
    bench starts (``tansu`` or ``kafka``). Tansu has no ``InitProducerId``: no
    idempotent producer. Apache Kafka answers a held fetch as soon as data
    arrives, so the gateway's reader need not poll at 5 ms while a cashier
    waits: it holds its fetches ``FETCH_MAX_WAIT_MS``, unless told otherwise
    (README "Hospital HTTP API")."""
    if kind == "tansu":
        return {"KAFKA_IDEMPOTENT_PRODUCER": "false"}
    return {"KAFKA_IDEMPOTENT_PRODUCER": "true",
            "GATEWAY_FETCH_MAX_WAIT_MS": os.environ.get("GATEWAY_FETCH_MAX_WAIT_MS", str(settings.fetch_max_wait_ms))}


def service_env(settings: Settings, bootstrap: str, database_url: str, name: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=bootstrap,
        DATABASE_URL=database_url,
        PYTHONPATH=f"{ROOT / 'libs'}{os.pathsep}{ROOT}",
        METRICS_PORT=str(METRICS_PORTS.get(name, 0)),
        CONSUMER_INSTANCE_ID=name,  # one process per service: a restarted one takes its partitions back at once
        DASHBOARD_PORT=str(settings.dashboard_port),
        GATEWAY_PORT=str(settings.gateway_port),
        PYTHONUNBUFFERED="1",
    )
    env.setdefault("LOG_FORMAT", "console")
    env.update(extra)
    return env


async def main() -> int:
    settings = Settings()
    broker = postgres = None
    supervisor = Supervisor()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        kind = os.environ.get("BROKER", "tansu")
        if kind not in BROKERS:
            raise SystemExit(f"BROKER={kind!r}: tansu (the default) or kafka")
        broker_env: dict[str, str] = {}
        if not bootstrap:
            run_dir = ROOT / ".run"
            run_dir.mkdir(exist_ok=True)
            port = int(os.environ.get("BROKER_PORT", "9092"))
            if kind == "kafka":
                broker = ApacheKafka(dir=run_dir / "kafka", port=port).start()
                print(f"[supervisor ] Apache Kafka (KRaft, log in {run_dir / 'kafka'}) on {broker.bootstrap}", flush=True)
            else:
                broker = EmbeddedBroker(port, log_path=run_dir / "broker.log").start()
                print(f"[supervisor ] embedded Kafka-compatible broker (Tansu) on {broker.bootstrap}", flush=True)
            bootstrap = broker.bootstrap
            broker_env = broker_environment(kind, settings)
        database_url = os.environ.get("DATABASE_URL")
        if not database_url:
            postgres = EmbeddedPostgres(ROOT / ".run" / "pgdata").start()
            database_url = postgres.url
            print(f"[supervisor ] embedded PostgreSQL at {database_url}", flush=True)
        await ensure_topics(bootstrap, ALL_TOPICS, settings.partitions(local=broker is not None))
        development = dev_credentials.environment(os.environ)  # make run only: the dev pair and a service token
        for name in available_services():
            supervisor.add(name, [sys.executable, "-m", f"services.{name}"],
                           service_env(settings, bootstrap, database_url, name, **broker_env, **development),
                           nice=settings.gateway_nice if name == "gateway" else 0)
        await supervisor.start()
        print(f"[supervisor ] {', '.join(supervisor.children)} started; dashboard on "
              f"http://127.0.0.1:{settings.dashboard_port}; hospital API on http://127.0.0.1:{settings.gateway_port}; "
              "Ctrl-C stops everything", flush=True)
        await stop.wait()
        print("[supervisor ] stopping", flush=True)
    finally:
        await supervisor.stop()
        if broker is not None:
            broker.stop()
        if postgres is not None:
            postgres.stop()
    return 0


def run_dir() -> Path:
    return ROOT / ".run"


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
