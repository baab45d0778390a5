"""``make bench``: the whole pipeline under load, on this one box.

Starts (unless told where they are) the embedded broker and PostgreSQL, a
fresh database, the six services and the gateway (the hospital HTTP API) as
separate processes, as ``make run`` does. Registers a county (persons in every category, hospitals of every
level), then measures:

- throughput: answers per second on ``his.settlements`` over a window at
  saturation (a producer that keeps a fixed number of claims in flight);
- latency from publish on ``his.claims`` to the answer, p50/p99/p99.9, with an
  open-loop paced producer at 25% and 50% of that throughput (measured from
  each claim's scheduled send time, so a late producer counts against us);
- the HTTP path at 25% (``--http-shares``) and at every ``--rates`` rate,
  right after the Kafka path at the same rate: signed ``POST /v1/claims``
  through the gateway, p50/p99 from each claim's due time to its ``200``, and
  what that adds over the Kafka path (``deploy.bench_http``; ``--no-http``
  runs neither the gateway nor this);
- the floor: as many messages through six bare consume-and-produce hops
  (``deploy.bench_relay``, no database) on the same broker;
- CPU and memory of each process (psutil) during the saturation window.

Prints one table and writes it as JSON (``bench-results/bench.json``).
``--seconds 5`` makes a quick run; ``--persons 1000000`` a province.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import ctypes
import datetime as dt
import functools
import os
import platform
import random
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import orjson
import psutil
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from deploy.bench_http import TopicWatch, http_keys, is_http_claim, paced_http
from deploy.bench_population import Population
from deploy.run import broker_environment
from medsettle import topics
from medsettle.hospital_keys import signature
from medsettle.httpserver import wait_healthy
from medsettle.process import event_loop_factory, priority_of, reprioritise, tune_garbage_collector
from medsettle.settings import Settings
from services import pipeline

ROOT = Path(__file__).resolve().parents[1]
SERVICES = pipeline.NAMES
GATEWAY = "gateway"  # the hospital HTTP API (services/gateway), unless --no-http
HOPS = 6
KAFKA_SIGNATURE_HEADER = "x-signature"  # what eligibility checks (CONTRACT §7)


def hop_topics(run: str) -> list[str]:
    """The floor's topics, new for each run (a reused broker keeps old ones)."""
    return [f"bench.{run.lower()}.hop{n}" for n in range(HOPS + 1)]


# ------------------------------------------------------------ infrastructure

QUIET_CPU_PERCENT = 60.0
"""The paced runs start once every process together uses less than this much of
a core (over 2 s), at most ``QUIET_TIMEOUT`` after the saturation run (or its
window, if shorter): its
answers are in by then, but the broker and PostgreSQL still write back and
tidy up what it left (on Apache Kafka the broker alone used 40-57% of a core
for 10 s after it, then 13-21%; the whole system idles at 35-45%); a paced
run started at once measured that catching up (2026-12-06: p50 / p99 602 /
3,014 ms at 25%, then 303 / 535 ms at 50%)."""

QUIET_TIMEOUT = 120.0

BROKER_NAMES = {"tansu": "the embedded Tansu broker", "kafka": "Apache Kafka (one KRaft node)"}


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))


async def fresh_database(server_url: str) -> str:
    name = f"bench_{uuid.uuid4().hex[:10]}"
    connection = await asyncpg.connect(server_url)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return with_database(server_url, name)


async def create_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    from medsettle.embedded import ensure_topics

    await ensure_topics(bootstrap, names, partitions)


@dataclass
class Infrastructure:
    """The broker and the PostgreSQL server: given, or embedded and ours."""

    bootstrap: str
    server_url: str
    broker_pid: int | None
    postgres_pid: int | None
    closers: list[Any] = field(default_factory=list)

    def close(self) -> None:
        for close in reversed(self.closers):
            with contextlib.suppress(Exception):
                close()


def start_infrastructure(args: argparse.Namespace) -> Infrastructure:
    from medsettle.embedded import EmbeddedBroker, EmbeddedPostgres

    infra = Infrastructure(args.bootstrap or "", args.database_url or "", None, None)
    try:
        if not infra.bootstrap:
            logs = Path(args.out).parent / "logs"
            logs.mkdir(parents=True, exist_ok=True)
            if args.broker == "kafka":
                from medsettle.kafka_broker import ApacheKafka

                kafka = ApacheKafka()  # a fresh log in a temporary folder, deleted after the run
                infra.closers.append(kafka.cleanup)
                kafka.start()
                infra.bootstrap = kafka.bootstrap
                process = kafka.nodes[0].process
                infra.broker_pid = process.pid if process else None
            else:
                broker = EmbeddedBroker(log_path=logs / "broker.log")
                broker.start()
                infra.closers.append(broker.stop)
                infra.bootstrap = broker.bootstrap
                infra.broker_pid = broker.process.pid if broker.process else None
        if not infra.server_url:
            postgres = EmbeddedPostgres()
            postgres.start()
            infra.closers.append(postgres.stop)
            infra.server_url = postgres.url
            infra.postgres_pid = postgres.server.get_pid()
    except BaseException:
        infra.close()
        raise
    return infra


# ----------------------------------------------------------------- processes


def _die_with_parent() -> None:
    """In the child: SIGTERM when the bench dies, however it dies (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _prepare_child(nice: int) -> None:
    """In a child we start, before it runs: it dies with us, at ``nice`` against ours."""
    _die_with_parent()
    reprioritise(nice)


class Processes:
    """Child processes we start (services, relays); stopped by their id."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.children: dict[str, subprocess.Popen] = {}

    def start(self, name: str, argv: list[str], env: dict[str, str], nice: int = 0) -> subprocess.Popen:
        """``nice``: its nice against ours (GATEWAY_NICE for the gateway, as
        ``make run``)."""
        self.logs.mkdir(parents=True, exist_ok=True)
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        child = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True, preexec_fn=functools.partial(_prepare_child, nice))
        log.close()
        self.children[name] = child
        return child

    def check(self) -> None:
        for name, child in self.children.items():
            if child.poll() is not None:
                tail = (self.logs / f"{name}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{name} exited with {child.returncode}:\n{tail}")

    def stop(self, names: list[str] | None = None, timeout: float = 25.0) -> None:
        chosen = [n for n in (names or list(self.children)) if n in self.children]
        for name in chosen:
            if self.children[name].poll() is None:
                self.children[name].send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for name in chosen:
            child = self.children.pop(name)
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def service_env(bootstrap: str, database_url: str, args: argparse.Namespace) -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(ROOT / "libs"), str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    env.update({
        "PYTHONPATH": os.pathsep.join(paths),
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "DATABASE_URL": database_url,
        "LOG_LEVEL": "WARNING",
        "LOG_FORMAT": "json",
        "METRICS_PORT": "0",
        "TOPIC_PARTITIONS": str(args.partitions),
    })
    return env


class Sampler:
    """CPU and peak memory of every process of the run, phase by phase."""

    def __init__(self) -> None:
        self.named: dict[str, Any] = {}  # name -> callable returning [psutil.Process]
        self.me = psutil.Process()
        self._start: dict[str, tuple[float, dict[int, float]]] = {}
        self._peak: dict[str, float] = {}
        self._task: asyncio.Task | None = None

    def add(self, name: str, finder: Any) -> None:
        self.named[name] = finder

    def _processes(self, name: str) -> list[psutil.Process]:
        try:
            return list(self.named[name]())
        except psutil.Error:
            return []

    @staticmethod
    def _cpu(process: psutil.Process) -> float | None:
        try:
            times = process.cpu_times()
            return times.user + times.system
        except psutil.Error:
            return None

    def begin(self) -> None:
        now = time.perf_counter()
        self._peak = {}
        for name in self.named:
            cpus = {p.pid: c for p in self._processes(name) if (c := self._cpu(p)) is not None}
            self._start[name] = (now, cpus)
        self._task = asyncio.create_task(self._sample())

    async def _sample(self) -> None:
        while True:
            for name in self.named:
                rss = 0
                for process in self._processes(name):
                    with contextlib.suppress(psutil.Error):
                        rss += process.memory_info().rss
                self._peak[name] = max(self._peak.get(name, 0), rss)
            await asyncio.sleep(0.5)

    async def end(self) -> dict[str, dict[str, float]]:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        now = time.perf_counter()
        figures = {}
        for name in self.named:
            started, cpus = self._start.get(name, (now, {}))
            used = 0.0
            for process in self._processes(name):
                cpu = self._cpu(process)
                if cpu is not None:
                    used += cpu - cpus.get(process.pid, 0.0)
            figures[name] = {"cpu_percent": round(100 * used / max(now - started, 1e-9), 1),
                             "rss_mib": round(self._peak.get(name, 0) / 2**20, 1)}
        return figures


def listener_pid(bootstrap: str) -> int | None:
    """The process listening on a local ``host:port`` (a broker we were given)."""
    port = int(bootstrap.rsplit(":", 1)[-1]) if bootstrap.rsplit(":", 1)[-1].isdigit() else None
    with contextlib.suppress(psutil.Error, OSError):
        for connection in psutil.net_connections(kind="tcp"):
            if connection.status == psutil.CONN_LISTEN and connection.laddr.port == port and connection.pid:
                return connection.pid
    return None


async def postmaster_pid(server_url: str) -> int | None:
    """The postmaster of a local server we were given (``postmaster.pid`` in its data directory)."""
    with contextlib.suppress(OSError, asyncpg.PostgresError, ValueError):
        connection = await asyncpg.connect(server_url)
        try:
            folder = await connection.fetchval("SHOW data_directory")
        finally:
            await connection.close()
        return int((Path(folder) / "postmaster.pid").read_text().split()[0])
    return None


def postgres_processes(postmaster: int | None) -> Any:
    def find() -> list[psutil.Process]:
        if postmaster is not None:
            root = psutil.Process(postmaster)
            return [root, *root.children(recursive=True)]
        return [p for p in psutil.process_iter(["name"]) if (p.info["name"] or "").startswith("postgres")]
    return find


def broker_processes(pid: int | None) -> Any:
    def find() -> list[psutil.Process]:
        if pid is not None:
            return [psutil.Process(pid)]
        return [p for p in psutil.process_iter(["name"]) if "tansu" in (p.info["name"] or "")]
    return find


# -------------------------------------------------------------------- driver


def percentile(values: list[float], q: float) -> float:
    """Nearest rank: the smallest value at or above ``q`` of the values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(-(-q * len(ordered) // 1)) - 1))
    return ordered[rank]


class Cashier:
    """The hospitals' side: sends claims, reads answers, times each claim."""

    def __init__(self, bootstrap: str, population: Population, send_topic: str, answer_topic: str,
                 seed: int, cancel_share: float, keys: dict[str, str] | None = None,
                 fetch_wait_ms: int = 5) -> None:
        self.bootstrap = bootstrap
        self.keys = keys or {}  # hospitals that sign their claims (CONTRACT §7): those the HTTP path sends for
        self.population = population
        self.send_topic = send_topic
        self.answer_topic = answer_topic
        self.rng = random.Random(seed)
        self.cancel_share = cancel_share
        self.producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2,
                                         max_batch_size=256 * 1024, max_request_size=8 * 1024 * 1024)
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                         fetch_max_wait_ms=fetch_wait_ms, max_partition_fetch_bytes=8 * 1024 * 1024)
        self.pending: dict[str, float] = {}  # claim_id -> scheduled send time
        self.latencies: list[tuple[float, float]] = []  # (scheduled, latency)
        self.hops: list[dict[str, float]] = []  # per answered claim: topic -> seconds after it was due
        self.arrivals: list[float] = []
        self.statuses: Counter[str] = Counter()
        self.settled: list[tuple[str, str]] = []
        self.unexpected = 0
        self.send_failures = 0
        self.arrived = asyncio.Event()
        self.trace_topics: list[str] = []
        self.seen: dict[str, dict[str, float]] = {}  # claim_id -> topic -> first arrival (``trace``)
        self._reader: asyncio.Task | None = None
        self._futures: list[asyncio.Future] = []

    async def start(self) -> None:
        await self.producer.start()
        await self.consumer.start()
        partitions = await self._partitions(self.answer_topic)
        for topic in self.trace_topics:
            partitions += await self._partitions(topic)
        self.consumer.assign(partitions)
        await self.consumer.seek_to_end(*partitions)
        for tp in partitions:  # resolve the end offsets now, before anything is sent
            await self.consumer.position(tp)
        self._reader = asyncio.create_task(self._read())

    async def _partitions(self, topic: str) -> list[TopicPartition]:
        # the producer asks the broker for this topic's metadata (a consumer that
        # subscribes to nothing only learns of the topics Tansu volunteers)
        for _ in range(100):
            found = await self.producer.partitions_for(topic)
            if found:
                return [TopicPartition(topic, p) for p in sorted(found)]
            await asyncio.sleep(0.1)
        raise RuntimeError(f"topic {topic} has no partitions")

    async def stop(self) -> None:
        if self._reader:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        await self.consumer.stop()
        await self.producer.stop()

    async def _read(self) -> None:
        while True:
            batch = await self.consumer.getmany(timeout_ms=50, max_records=5000)
            now = time.perf_counter()
            for records in batch.values():
                for record in records:
                    body = orjson.loads(record.value)
                    claim_id = body.get("claim_id")
                    if record.topic != self.answer_topic:  # a stage on the way (``trace``)
                        claim_id = claim_id or body.get("claim", {}).get("claim_id")
                        if claim_id in self.pending:
                            self.seen.setdefault(claim_id, {}).setdefault(record.topic, now)
                        continue
                    sent = self.pending.pop(claim_id, None)
                    if sent is None:
                        if not is_http_claim(claim_id):  # the HTTP path's answers are its own
                            self.unexpected += 1
                        continue
                    self.latencies.append((sent, now - sent))
                    if self.trace_topics:
                        stages = self.seen.pop(claim_id, {})
                        self.hops.append({t: stages[t] - sent for t in stages})
                    self.arrivals.append(now)
                    status = body.get("status") or "relayed"
                    self.statuses[status] += 1
                    if status == "settled" and len(self.settled) < 100_000:
                        self.settled.append((claim_id, body["hospital_code"]))
            if batch:
                self.arrived.set()

    async def send_one(self, scheduled: float) -> None:
        if self.settled and self.rng.random() < self.cancel_share:
            claim_id, hospital = self.settled.pop(self.rng.randrange(len(self.settled)))
            body = self.population.cancel(claim_id, hospital)
        else:
            body = self.population.claim(self.rng)
            claim_id = body["claim_id"]
        self.pending[claim_id] = scheduled
        value = orjson.dumps(body)
        key = self.keys.get(body["hospital_code"])
        headers = [(KAFKA_SIGNATURE_HEADER, signature(key, value).encode())] if key else None
        self._futures.append(await self.producer.send(self.send_topic, value, key=claim_id.encode(), headers=headers))
        if len(self._futures) >= 2000:
            await self._reap()

    async def _reap(self) -> None:
        futures, self._futures = self._futures, []
        for result in await asyncio.gather(*futures, return_exceptions=True):
            if isinstance(result, BaseException):
                self.send_failures += 1

    def reset(self) -> None:
        self.hops.clear()
        self.seen.clear()
        self.latencies.clear()
        self.arrivals.clear()
        self.statuses.clear()

    async def probe(self, timeout: float) -> float:
        """Send one claim at a time until one is answered: the system is up."""
        deadline = time.monotonic() + timeout
        started = time.perf_counter()
        while time.monotonic() < deadline:
            before = len(self.arrivals)
            await self.send_one(time.perf_counter())
            await self._reap()
            for _ in range(20):
                if len(self.arrivals) > before:
                    return time.perf_counter() - started
                await asyncio.sleep(0.1)
        raise RuntimeError(f"no answer on {self.answer_topic} within {timeout:.0f} s")

    async def saturate(self, seconds: float, warmup: float, in_flight: int, count: int | None = None) -> dict[str, Any]:
        """Keep ``in_flight`` claims outstanding; answers per second counted
        after ``warmup`` for ``seconds`` (or until ``count`` answers)."""
        self.reset()
        started = time.perf_counter()
        window_start = started + warmup
        window_end = window_start + seconds
        while True:
            now = time.perf_counter()
            if now >= window_end:
                break
            if count is not None and now > window_start and self._in_window(window_start, now) >= count:
                window_end = now
                break
            room = in_flight - len(self.pending)
            if room > 0:
                for _ in range(min(room, 500)):
                    await self.send_one(time.perf_counter())
                await asyncio.sleep(0)
            else:
                self.arrived.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.arrived.wait(), 0.05)
        await self._reap()
        answered = self._in_window(window_start, window_end)
        elapsed = window_end - window_start
        statuses = dict(self.statuses)
        await self.drain(60.0)
        return {"answers": answered, "seconds": round(elapsed, 2), "per_second": round(answered / elapsed, 1),
                "in_flight": in_flight, "statuses": statuses}

    def _in_window(self, start: float, end: float) -> int:
        """Answers that arrived between ``start`` and ``end`` (arrivals are in time order)."""
        return bisect.bisect_right(self.arrivals, end) - bisect.bisect_left(self.arrivals, start)

    async def paced(self, rate: float, seconds: float) -> dict[str, Any]:
        """Open loop: claim i is due at ``t0 + i / rate`` whatever happened
        before; latency is from that due time to the answer."""
        self.reset()
        t0 = time.perf_counter() + 0.05
        total = int(rate * seconds)
        sent = 0
        while sent < total:
            now = time.perf_counter()
            while sent < total and t0 + sent / rate <= now:
                await self.send_one(t0 + sent / rate)
                sent += 1
            if sent < total:
                await asyncio.sleep(max(0.0, t0 + sent / rate - time.perf_counter()))
        await self._reap()
        lost = await self.drain(30.0)
        latencies = [latency * 1000 for _, latency in self.latencies]
        trace = {}
        for topic in self.trace_topics:  # when each stage's output appeared, after the claim was due
            offsets = [hop[topic] * 1000 for hop in self.hops if topic in hop]
            trace[topic] = {"p50_ms": round(percentile(offsets, 0.5), 2), "p99_ms": round(percentile(offsets, 0.99), 2)}
        return {
            "rate": round(rate, 1), "sent": sent, "answered": len(latencies), "lost": lost,
            "p50_ms": round(percentile(latencies, 0.50), 2),
            "p99_ms": round(percentile(latencies, 0.99), 2),
            "p999_ms": round(percentile(latencies, 0.999), 2),
            "max_ms": round(max(latencies, default=float("nan")), 2),
            "statuses": dict(self.statuses),
            **({"trace": trace} if trace else {}),
        }

    async def drain(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.pending and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        lost = len(self.pending)
        self.pending.clear()
        return lost


# ---------------------------------------------------------------- the phases


async def wait_for_table(database_url: str, table: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            connection = await asyncpg.connect(database_url)
            try:
                if await connection.fetchval("SELECT to_regclass($1)", table):
                    return
            finally:
                await connection.close()
        except (OSError, asyncpg.PostgresError):
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError(f"{table} did not appear within {timeout:.0f} s (did eligibility start?)")


async def count_rows(database_url: str, table: str) -> int:
    connection = await asyncpg.connect(database_url)
    try:
        return await connection.fetchval(f"SELECT count(*) FROM {table}")
    finally:
        await connection.close()


async def register(bootstrap: str, database_url: str, population: Population, how: str, processes: Processes,
                   timeout: float) -> float:
    """Hospitals through their registry topic; persons through theirs, or, for
    a province, straight through eligibility's repository upsert."""
    started = time.perf_counter()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=512 * 1024)
    await producer.start()
    try:
        futures = [await producer.send(topics.HOSPITALS, orjson.dumps(h), key=h["hospital_code"].encode())
                   for h in population.hospitals]
        if how == "topic":
            for n in range(population.persons):
                person = population.person(n)
                futures.append(await producer.send(topics.PERSONS, orjson.dumps(person),
                                                   key=person["person_id"].encode()))
                if len(futures) >= 5000:
                    await asyncio.gather(*futures)
                    futures = []
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    if how == "repository":
        await _register_through_repository(database_url, population)
    deadline = time.monotonic() + timeout
    while True:
        processes.check()
        persons = await count_rows(database_url, "eligibility.persons")
        hospitals = await count_rows(database_url, "eligibility.hospitals")
        if persons >= population.persons and hospitals >= len(population.hospitals):
            await _vacuum_registry(database_url)  # as the importer does after a load
            return time.perf_counter() - started
        if time.monotonic() > deadline:
            raise RuntimeError(f"registry: {persons} persons and {hospitals} hospitals after {timeout:.0f} s")
        await asyncio.sleep(0.5)


async def _vacuum_registry(database_url: str) -> None:
    from services.eligibility import repository

    connection = await asyncpg.connect(database_url, server_settings={"search_path": "eligibility,public"})
    try:
        await repository.vacuum_registry(connection)
    finally:
        await connection.close()


async def _register_through_repository(database_url: str, population: Population) -> None:
    from medsettle.contract import Person
    from services.eligibility import repository

    connection = await asyncpg.connect(database_url, server_settings={"search_path": "eligibility,public"})
    try:
        chunk = 10_000
        for start in range(0, population.persons, chunk):
            persons = [Person.model_validate(population.person(n))
                       for n in range(start, min(start + chunk, population.persons))]
            async with connection.transaction():
                await repository.upsert_persons(connection, persons)
            if start and start % 200_000 == 0:
                print(f"  registered {start:,} persons", file=sys.stderr)
    finally:
        await connection.close()


async def run_bench(args: argparse.Namespace, infra: Infrastructure) -> dict[str, Any]:
    out = Path(args.out).parent
    processes = Processes(out / "logs")
    sampler = Sampler()
    sampler.add("broker", broker_processes(infra.broker_pid or listener_pid(infra.bootstrap)))
    sampler.add("postgres", postgres_processes(infra.postgres_pid or await postmaster_pid(infra.server_url)))
    sampler.add("bench", lambda: [sampler.me])
    population = Population(args.persons, seed=args.seed, run=uuid.uuid4().hex[:6].upper())
    results: dict[str, Any] = {
        "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python -m deploy.bench", *sys.argv[1:]]),
        "machine": {"cores": psutil.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
                    "python": platform.python_version()},
        "config": {"broker": args.broker, "persons": args.persons, "hospitals": len(population.hospitals),
                   "partitions": args.partitions,
                   "seconds": args.seconds, "latency_seconds": args.latency_seconds, "in_flight": args.in_flight},
    }
    await create_topics(infra.bootstrap, [*topics.ALL_TOPICS, *hop_topics(population.run)], args.partitions)
    database_url = await fresh_database(infra.server_url)
    env = service_env(infra.bootstrap, database_url, args)
    keys = {} if args.no_http else http_keys(population)  # hospitals that sign: eligibility checks them
    if keys:
        env["HOSPITAL_KEYS"] = orjson.dumps(keys).decode()
    profilers: list[subprocess.Popen] = []
    try:
        from medsettle.embedded import free_port

        metrics: dict[str, str] = {}
        for name in SERVICES:
            port = free_port()
            metrics[name] = f"http://127.0.0.1:{port}/metrics"
            child = processes.start(name, [sys.executable, "-m", f"services.{name}"], {**env, "METRICS_PORT": str(port)})
            sampler.add(name, lambda child=child: [psutil.Process(child.pid)])
        gateway_url = None
        if keys:  # the hospital HTTP API beside them, as make run starts it
            port = free_port()
            gateway_url = f"http://127.0.0.1:{port}"
            child = processes.start(GATEWAY, [sys.executable, "-m", "services.gateway"],
                                    {**env, "GATEWAY_PORT": str(port)}, nice=Settings().gateway_nice)
            sampler.add(GATEWAY, lambda child=child: [psutil.Process(child.pid)])
            # the gateway first for a core, and the bench's cashiers at its priority (_at_the_gateways_priority)
            results["priority"] = {"gateway": priority_of(child.pid), "bench": priority_of(os.getpid())}
        await wait_for_table(database_url, "eligibility.persons", 60)
        how = args.registry if args.registry != "auto" else ("topic" if args.persons <= 100_000 else "repository")
        seconds = await register(infra.bootstrap, database_url, population, how, processes, timeout=1800)
        results["registry"] = {"via": how, "seconds": round(seconds, 1)}
        print(f"registered {args.persons:,} persons and {len(population.hospitals)} hospitals via {how} "
              f"in {seconds:.1f} s", file=sys.stderr)

        cashier = Cashier(infra.bootstrap, population, topics.CLAIMS, topics.SETTLEMENTS, args.seed, args.cancels,
                          keys, reader_wait_ms(args))
        if args.trace:
            cashier.trace_topics = [topics.ELIGIBLE, topics.BASIC, topics.SERIOUS_ILLNESS, topics.ASSISTANCE,
                                    topics.BACKSTOP]
        await cashier.start()
        try:
            await cashier.probe(120)
            if gateway_url is not None:
                await wait_healthy(gateway_url, alive=processes.check)
                await paced_http(gateway_url, population, keys, 5, 1, seed=args.seed - 1)  # its connections warm
            processes.check()
            if args.seconds > 0:
                print("pipeline answers; saturating", file=sys.stderr)
                if args.profile:
                    profilers = start_profilers(processes, out, args.seconds + args.warmup)
                before = await scrape(metrics)
                sampler.begin()
                throughput = await cashier.saturate(args.seconds, args.warmup, args.in_flight)
                results["processes"] = await sampler.end()
                results["batches"] = batches(before, await scrape(metrics))
                results["throughput"] = throughput
                for profiler in profilers:
                    profiler.wait()
                # a short run leaves less to catch up with: its wait is as short
                results["quiet_after_seconds"] = await quiet(sampler, timeout=min(QUIET_TIMEOUT, max(5.0, args.seconds)))
                print(f"throughput {throughput['per_second']:.0f}/s; quiet after "
                      f"{results['quiet_after_seconds']} s; pacing", file=sys.stderr)
            processes.check()
            results["latency"] = []
            measured = results.get("throughput")
            paces = [(share, measured["per_second"] * share / 100) for share in args.shares] if measured else []
            for share, rate in [*paces, *((None, rate) for rate in args.rates)]:
                rate = max(1.0, rate)
                before = await scrape(metrics)
                sampler.begin()
                figures = await cashier.paced(rate, args.latency_seconds)
                figures["processes"] = await sampler.end()
                figures["share_percent"] = share
                figures["batches"] = batches(before, await scrape(metrics))
                results["latency"].append(figures)
                print(f"at {rate:.0f}/s: p99 {figures['p99_ms']} ms", file=sys.stderr)
                if gateway_url is not None and (share is None or share in args.http_shares):
                    figures["http"] = await http_path(gateway_url, infra.bootstrap, population, keys, rate, args,
                                                      figures, sampler, processes, out)
                    print(f"at {rate:.0f}/s over HTTP: p50 {figures['http']['p50_ms']} ms "
                          f"(Kafka path {figures['p50_ms']} ms)", file=sys.stderr)
                    processes.check()
            results["unexpected_answers"] = cashier.unexpected
            results["send_failures"] = cashier.send_failures
        finally:
            await cashier.stop()
        processes.stop([*SERVICES, GATEWAY])

        if not args.no_floor and results["latency"]:
            rates = [(lat["share_percent"], lat["rate"]) for lat in results["latency"]]
            measured = results.get("throughput")
            results["floor"] = await floor(args, infra, population, processes, measured["answers"] if measured else 0,
                                           sampler.named["broker"], rates)
            if measured and "per_second" in results["floor"]:
                ratio = measured["per_second"] / max(results["floor"]["per_second"], 1e-9)
                results["floor"]["pipeline_share_percent"] = round(100 * ratio, 1)
    finally:
        for profiler in profilers:
            with contextlib.suppress(ProcessLookupError):
                profiler.kill()
        processes.stop()
    return results


def reader_wait_ms(args: argparse.Namespace) -> int:
    """How long the bench's own readers let the broker hold a fetch that finds
    nothing. Apache Kafka answers a held fetch as soon as a record arrives, so
    there a long wait costs no latency, and spares the broker up to 200 empty
    fetches a second of each reader; Tansu answers it only when the wait is over."""
    return 500 if args.broker == "kafka" else 5


async def quiet(sampler: Sampler, percent: float = QUIET_CPU_PERCENT, timeout: float = QUIET_TIMEOUT) -> float:
    """Wait until the processes together use under ``percent`` of a core; the seconds waited."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        sampler.begin()
        await asyncio.sleep(2.0)
        if sum(f["cpu_percent"] for f in (await sampler.end()).values()) < percent:
            break
    return round(time.perf_counter() - started, 1)


async def http_path(url: str, bootstrap: str, population: Population, keys: dict[str, str], rate: float,
                    args: argparse.Namespace, kafka: dict[str, Any], sampler: Sampler, processes: Processes,
                    out: Path) -> dict[str, Any]:
    """The HTTP path at the rate the Kafka path was just paced at: signed ``POST
    /v1/claims`` through the gateway, latency from each claim's due time to its
    ``200``; what it adds over the Kafka path's p50 and p99 of the same run, and
    claim by claim beyond the pipeline's own time (``TopicWatch``)."""
    watch = TopicWatch(bootstrap, reader_wait_ms(args))
    await watch.start()
    profilers = start_profilers(processes, out, args.latency_seconds + 1, [GATEWAY], f"http-{rate:.0f}") if args.profile else []
    try:
        sampler.begin()
        figures = await paced_http(url, population, keys, rate, args.latency_seconds, seed=args.seed + int(rate),
                                   watch=watch)
        figures["processes"] = await sampler.end()
    finally:
        await watch.stop()
        for profiler in profilers:
            profiler.wait()
    figures["lost"] = figures["sent"] - figures["answered"]
    for name in (GATEWAY, "bench"):  # the bench's share is the HTTP client's (and the watch's)
        cpu = figures["processes"].get(name, {}).get("cpu_percent", float("nan"))
        figures[f"{name}_cpu_ms_per_claim"] = round(cpu * 10 / max(rate, 1e-9), 2)
    figures["added_p50_ms"] = round(figures["p50_ms"] - kafka["p50_ms"], 2)
    figures["added_p99_ms"] = round(figures["p99_ms"] - kafka["p99_ms"], 2)
    return figures


async def floor(args: argparse.Namespace, infra: Infrastructure, population: Population, processes: Processes,
                count: int, broker: Any, rates: list[tuple[int | None, float]]) -> dict[str, Any]:
    """The same number of messages through six bare relay hops (none when
    ``count`` is 0: no saturation run); then the latency of those hops at the
    rates the pipeline was paced at."""
    sampler = Sampler()
    sampler.add("broker", broker)
    env = service_env(infra.bootstrap, "", args)
    hops = hop_topics(population.run)
    names = []
    for n in range(HOPS):
        name = f"relay{n + 1}"
        child = processes.start(name, [sys.executable, "-m", "deploy.bench_relay", "--bootstrap", infra.bootstrap,
                                       "--source", hops[n], "--target", hops[n + 1]], env)
        sampler.add(name, lambda child=child: [psutil.Process(child.pid)])
        names.append(name)
    sampler.add("bench", lambda: [sampler.me])
    cashier = Cashier(infra.bootstrap, population, hops[0], hops[-1], args.seed + 1, 0.0,
                      fetch_wait_ms=reader_wait_ms(args))
    await cashier.start()
    try:
        await cashier.probe(120)
        figures: dict[str, Any] = {}
        if count:
            sampler.begin()
            figures = await cashier.saturate(args.seconds * 3, min(args.warmup, 2.0), args.in_flight, count=count)
            figures["processes"] = await sampler.end()
        figures["latency"] = []
        for share, rate in rates:
            paced = await cashier.paced(rate, args.latency_seconds)
            figures["latency"].append({"share_percent": share, **{k: v for k, v in paced.items() if k != "statuses"}})
    finally:
        await cashier.stop()
        processes.stop(names)
    figures.pop("statuses", None)
    return figures


METRIC = re.compile(r'^(settlement_batch_seconds_(?:sum|count)|settlement_messages_handled_total)'
                    r'\{[^}]*topic="([^"]+)"[^}]*\} ([0-9.e+-]+)$', re.M)


async def scrape(urls: dict[str, str]) -> dict[str, dict[str, float]]:
    """Each service's batch counters from its /metrics: name:topic:metric -> value."""
    import httpx

    found: dict[str, dict[str, float]] = {}
    async with httpx.AsyncClient(timeout=5, follow_redirects=True) as client:
        for name, url in urls.items():
            try:
                text = (await client.get(url)).text
            except httpx.HTTPError:
                continue
            for metric, topic, value in METRIC.findall(text):
                found.setdefault(f"{name} {topic}", {})[metric] = float(value)
    return found


def batches(before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Per stage and topic during the window: batches, their mean size and mean time."""
    figures = {}
    for key, values in after.items():
        old = before.get(key, {})
        count = values.get("settlement_batch_seconds_count", 0) - old.get("settlement_batch_seconds_count", 0)
        if count <= 0:
            continue
        seconds = values.get("settlement_batch_seconds_sum", 0) - old.get("settlement_batch_seconds_sum", 0)
        handled = values.get("settlement_messages_handled_total", 0) - old.get("settlement_messages_handled_total", 0)
        figures[key] = {"batches": int(count), "mean_size": round(handled / count, 1),
                        "mean_ms": round(1000 * seconds / count, 2)}
    return figures


def start_profilers(processes: Processes, out: Path, seconds: float, names: Any = SERVICES,
                    tag: str = "") -> list[subprocess.Popen]:
    """py-spy on every service for the saturation window (``--profile``); on the
    gateway for its HTTP runs (``profile-gateway-http.txt``)."""
    spy = Path(sys.executable).with_name("py-spy")
    command = str(spy) if spy.exists() else "py-spy"
    started = []
    for name in names:
        child = processes.children[name]
        suffix = f"-{tag}" if tag else ""
        started.append(subprocess.Popen(
            [command, "record", "--pid", str(child.pid), "--duration", str(int(seconds)), "--rate", "200",
             "--nonblocking", "--format", "raw", "-o", str(out / f"profile-{name}{suffix}.txt")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return started


# -------------------------------------------------------------------- report


def table(results: dict[str, Any]) -> str:
    nan = float("nan")
    config = results["config"]
    lines = [
        f"one-stop settlement bench on {BROKER_NAMES.get(config.get('broker', 'tansu'), 'a given broker')} — "
        f"{config['persons']:,} persons, {config['hospitals']} hospitals, "
        f"{config['partitions']} partitions, {results['machine']['cores']} cores",
        f"command: {results['command']}",
        "",
    ]
    tp = results.get("throughput")
    if tp:
        statuses = ", ".join(f"{k} {v}" for k, v in sorted(tp["statuses"].items()))
        lines.append(f"{'throughput at saturation':<34}{tp['per_second']:>9,.0f} claims/s   "
                     f"({tp['answers']:,} answers in {tp['seconds']} s, {tp['in_flight']} in flight; {statuses})")
        if "quiet_after_seconds" in results:
            lines.append(f"{'    paced runs began':<34}{results['quiet_after_seconds']:>9} s after it, once the "
                         f"processes used under {QUIET_CPU_PERCENT:.0f}% of a core (or that wait was over)")
    fl = results.get("floor")
    if fl and "per_second" in fl:
        relays = sum(f["cpu_percent"] for n, f in fl.get("processes", {}).items() if n.startswith("relay"))
        broker = fl.get("processes", {}).get("broker", {}).get("cpu_percent", float("nan"))
        lines.append(f"{'floor: six bare hops, no database':<34}{fl['per_second']:>9,.0f} msgs/s     "
                     f"(pipeline = {fl['pipeline_share_percent']}% of the floor; cpu: relays {relays:.0f}%, "
                     f"broker {broker:.0f}%)")
    for lat in (fl or {}).get("latency", []):
        label = f"floor latency at {lat['rate']:,.0f}/s"
        lines.append(f"{label:<34}p50 {lat['p50_ms']:>7.1f} ms   p99 {lat['p99_ms']:>7.1f} ms   "
                     f"p99.9 {lat['p999_ms']:>7.1f} ms   max {lat['max_ms']:>7.1f} ms   "
                     f"({lat['answered']:,} answered, {lat['lost']} lost)")
    for lat in results.get("latency", []):
        label = (f"latency at {lat['rate']:,.0f}/s" if lat["share_percent"] is None
                 else f"latency at {lat['share_percent']}% ({lat['rate']:,.0f}/s)")
        lines.append(f"{label:<34}p50 {lat['p50_ms']:>7.1f} ms   p99 {lat['p99_ms']:>7.1f} ms   "
                     f"p99.9 {lat['p999_ms']:>7.1f} ms   max {lat['max_ms']:>7.1f} ms   "
                     f"({lat['answered']:,} answered, {lat['lost']} lost)")
        if lat.get("processes"):
            cpu = ", ".join(f"{name} {f['cpu_percent']:.0f}" for name, f in lat["processes"].items())
            lines.append(f"{'  cpu % meanwhile':<34}{sum(f['cpu_percent'] for f in lat['processes'].values()):.0f}"
                         f" ({cpu})")
        for topic, figures in lat.get("trace", {}).items():
            lines.append(f"{'  out of ' + topic:<34}p50 {figures['p50_ms']:>7.1f} ms   p99 {figures['p99_ms']:>7.1f} ms")
        http = lat.get("http")
        if http:
            label = f"  over HTTP at {http['rate']:,.0f}/s"
            lines.append(f"{label:<34}p50 {http['p50_ms']:>7.1f} ms   p99 {http['p99_ms']:>7.1f} ms   "
                         f"p99.9 {http['p999_ms']:>7.1f} ms   max {http['max_ms']:>7.1f} ms   "
                         f"({http['answered']:,} answered, {http['lost']} not)")
            beyond = (f"; claim by claim beyond a Kafka client's wait (record timestamps, deploy/bench_http.py) p50 "
                      f"{http['added_by_http_p50_ms']:.1f} ms, p99 {http['added_by_http_p99_ms']:.1f} ms (from the "
                      f"POST, without the client's lateness: p50 {http.get('added_by_http_post_p50_ms', nan):.1f} ms, "
                      f"p99 {http.get('added_by_http_post_p99_ms', nan):.1f} ms; by one reader's sight of both topics "
                      f"p50 {http.get('added_by_http_seen_p50_ms', nan):.1f} ms)"
                      if "added_by_http_p50_ms" in http else "")
            lines.append(f"{'    HTTP adds':<34}p50 {http['added_p50_ms']:>7.1f} ms   p99 {http['added_p99_ms']:>7.1f} ms"
                         f"   over the Kafka path above{beyond}")
            if http.get("breakdown"):
                lines.append(f"{'    where, claim by claim':<34}{http['breakdown']}")
            if http.get("processes"):
                cpu = ", ".join(f"{name} {f['cpu_percent']:.0f}" for name, f in http["processes"].items())
                total = sum(f["cpu_percent"] for f in http["processes"].values())
                lines.append(f"{'    cpu % meanwhile':<34}{total:.0f} ({cpu}); cpu ms per claim: gateway "
                             f"{http['gateway_cpu_ms_per_claim']}, bench (the HTTP client) "
                             f"{http['bench_cpu_ms_per_claim']}")
    procs = results.get("processes")
    if procs:
        per_second = max((tp or {}).get("per_second", 0.0), 1e-9)
        lines += ["", f"{'process (saturation window)':<34}{'cpu %':>9}{'rss MiB':>10}{'cpu ms/claim':>14}"]
        for name, figures in procs.items():
            lines.append(f"{name:<34}{figures['cpu_percent']:>9.1f}{figures['rss_mib']:>10.1f}"
                         f"{figures['cpu_percent'] * 10 / per_second:>14.2f}")
        total = sum(f["cpu_percent"] for f in procs.values())
        lines.append(f"{'all':<34}{total:>9.1f}{'':>10}{total * 10 / per_second:>14.2f}")
    if results.get("batches"):
        lines += ["", f"{'stage batches (saturation window)':<48}{'batches':>9}{'mean size':>11}{'mean ms':>9}"]
        for key, figures in results["batches"].items():
            lines.append(f"{key:<48}{figures['batches']:>9}{figures['mean_size']:>11.1f}{figures['mean_ms']:>9.1f}")
    return "\n".join(lines)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m deploy.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="saturation window (default 60)")
    parser.add_argument("--latency-seconds", type=float, default=None,
                        help="length of each paced latency run (default: half the window, at least 5)")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds at saturation before the window")
    parser.add_argument("--persons", type=int, default=10_000, help="registered persons (default 10,000)")
    parser.add_argument("--registry", choices=("auto", "topic", "repository"), default="auto",
                        help="how persons are registered (auto: the topic up to 100,000, else the repository)")
    parser.add_argument("--partitions", type=int, default=None,
                        help="partitions of each topic (default: as make run, 2 on a broker the bench starts, 8 on --bootstrap)")
    parser.add_argument("--in-flight", type=int, default=3000, help="claims outstanding at saturation")
    parser.add_argument("--shares", type=int, nargs="+", default=[25, 50], help="paced rates, %% of throughput")
    parser.add_argument("--rates", type=float, nargs="*", default=[],
                        help="paced rates in claims/s, after the shares (to compare runs at the same load);"
                             " with --seconds 0 the saturation run is skipped and only these are paced, the"
                             " floor's bare hops too (unless --no-floor)")
    parser.add_argument("--cancels", type=float, default=0.01, help="share of sends that reverse a settled claim")
    parser.add_argument("--seed", type=int, default=20240310)
    parser.add_argument("--no-floor", action="store_true", help="skip the six-hop floor")
    parser.add_argument("--no-http", action="store_true",
                        help="no gateway and no HTTP path (the gateway otherwise runs throughout, as make run)")
    parser.add_argument("--http-shares", type=int, nargs="*", default=[25],
                        help="the shares at which the HTTP path is paced after the Kafka path (default 25); it is"
                             " paced at every --rates rate too")
    parser.add_argument("--profile", action="store_true", help="py-spy every service during the window")
    parser.add_argument("--trace", action="store_true",
                        help="also read every stage's topic: when each stage's output appears (latency runs)")
    parser.add_argument("--broker", choices=("tansu", "kafka"), default=os.environ.get("BROKER", "tansu"),
                        help="the broker the bench starts: the embedded Tansu (default) or a single-node Apache "
                             "Kafka with a fresh log (BROKER=kafka make bench)")
    parser.add_argument("--bootstrap", default=os.environ.get("BENCH_KAFKA_BOOTSTRAP_SERVERS"),
                        help="an existing broker instead (KAFKA_IDEMPOTENT_PRODUCER=false if it is a Tansu)")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"),
                        help="an existing PostgreSQL server; a fresh database is made on it (default: embedded)")
    parser.add_argument("--out", default=str(ROOT / "bench-results" / "bench.json"))
    args = parser.parse_args(argv)
    if args.bootstrap:
        args.broker = "given"
    else:  # the services inherit it, as make run's do
        os.environ.update(broker_environment(args.broker, Settings()))
    if args.partitions is None:
        args.partitions = Settings().partitions(local=args.broker in ("tansu", "kafka"))
    if args.latency_seconds is None:
        args.latency_seconds = max(5.0, args.seconds / 2)
    return args


OWN_SESSION = "BENCH_OWN_SESSION"
"""Set in the bench run again in a session of its own (``_at_the_gateways_priority``)."""


def _at_the_gateways_priority(argv: list[str]) -> int | None:
    """The bench's own readers and its HTTP client are the two paths'
    cashiers, and its measures subtract one from the other: they run at the
    gateway's priority (``GATEWAY_NICE``), so that neither path's client is
    favoured over the gateway it measures. With autogroup on, what counts is
    the nice of the process's session, and the caller's shell's is not ours
    to change: so the bench runs itself again in a session of its own, at
    that nice (without CAP_SYS_NICE it stays as it was), and returns its exit
    status; ``None`` when already there, or the gateway is not raised."""
    nice = Settings().gateway_nice
    if nice >= 0 or os.environ.get(OWN_SESSION):
        return None
    child = subprocess.Popen([sys.executable, "-m", "deploy.bench", *argv], cwd=ROOT,
                             env={**os.environ, OWN_SESSION: "1"}, start_new_session=True,
                             preexec_fn=functools.partial(_prepare_child, nice))
    try:
        return child.wait()
    except KeyboardInterrupt:  # Ctrl-C reaches our session only: passed on, and the bench stops as it would
        child.send_signal(signal.SIGINT)
        return child.wait()


def main(argv: list[str]) -> int:
    args = parse(argv)
    status = _at_the_gateways_priority(argv)
    if status is not None:
        return status
    infra = start_infrastructure(args)
    # The hospitals' side costs as little as it can: it shares the two cores with what it measures.
    tune_garbage_collector(Settings().gc_threshold)
    try:
        with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
            results = runner.run(run_bench(args, infra))
    finally:
        infra.close()
    report = table(results)
    print(report)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(orjson.dumps({**results, "table": report}, option=orjson.OPT_INDENT_2))
    print(f"\nwritten to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
