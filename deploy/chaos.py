"""``make chaos``: claims settle while every service is killed at random.

Runs the six services as real processes on an embedded broker and a fresh
PostgreSQL database, sends claims for many people (each person's claims one
after another, as a cashier does; some crossing thresholds and caps, some
reversed), kills a random service with SIGKILL every few seconds (the
supervisor restarts it) and restarts the broker once, losing every message in
flight. A hospital that gets no answer resends the identical claim, as a real
HIS would; eligibility re-drives stuck claims from PostgreSQL.

``--broker kafka-cluster`` runs it on three Apache Kafka nodes (replication
factor 3, ``min.insync.replicas=2``, idempotent producers with acks=all)
instead: one node is SIGKILLed and restarted mid-run, then the active
controller. ``--copies 2`` runs two processes of every service sharing its
partitions, and ``--rolling`` restarts them one after another once the kills
are over.

``--secure`` runs it on the secure Kafka profile (``medsettle.secure_kafka``,
with ``--broker kafka`` or ``kafka-cluster``): SASL/SCRAM over TLS, a CA of
the run's own, deny by default; every service process signs in as its own
principal (a restarted one with the same secrets), the hospitals' claims and
answers go through the ``gateway`` principal (hospitals have none: the
hospital HTTP API's is the one that writes ``his.claims`` and reads
``his.settlements``), the registry records through ``registry``, the topics
and ACLs are made as ``admin``. The report then counts the broker's
authorization refusals (``Denied`` in its audit log): there must be none.

At the end every claim must have exactly one final state, every person's
accumulators must equal those of the same claims run through the pure layer
functions in order, and the fund totals per layer must equal the sum of the
one-bills. It prints
``claims N, confirmed N, lost 0, duplicated 0, accumulator mismatches 0``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import random
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from medsettle import topics
from medsettle.accumulator import Counters
from medsettle.contract import SettlementDocument, SettlementResult
from medsettle.embedded import EmbeddedBroker, EmbeddedPostgres, ensure_topics
from medsettle.kafka_broker import ApacheKafka
from medsettle.policy import PolicyBook
from medsettle.secure_kafka import SecureKafka
from medsettle.settings import ROOT, Settings
from services import pipeline
from services.pipeline import layer_functions

from deploy.run import Supervisor, service_env

LAYER_SERVICES = list(pipeline.NAMES)
LEVELS = {"H3404210201": "township", "H3404210001": "county", "H3404000001": "city", "H3400000001": "province"}
CATEGORY_MIX = [[], [], ["poverty_registered"], ["subsistence"], ["extreme_poverty"], ["monitored"],
                ["poverty_registered", "subsistence"]]


@dataclass
class Claim:
    body: dict[str, Any]
    cancel: bool
    answers: list[SettlementResult] = field(default_factory=list)

    @property
    def claim_id(self) -> str:
        return self.body["claim_id"]


@dataclass
class Report:
    claims: int
    confirmed: int
    lost: int
    duplicated: int
    mismatches: int
    fund_mismatches: int
    seconds: float
    kills: int
    details: list[str]
    broker_restarts: int = 0
    redriven: int = 0  # claims eligibility re-drove from PostgreSQL at least once
    broker_events: list[str] = field(default_factory=list)
    rolled: int = 0  # processes restarted one after another (--rolling)
    denied: list[str] | None = None  # --secure: the broker's authorization refusals during the run
    restarts: dict[str, int] = field(default_factory=dict)  # process -> times the supervisor started it again
    stuck_after: float = 0.0  # the services' STUCK_AFTER_SECONDS in this run
    waits: list[float] = field(default_factory=list)  # seconds from a claim's first send to its first final answer

    def waited(self) -> str:
        """How long the cashiers waited for their claims' answers (settle or cancel)."""
        if not self.waits:
            return "no answers"
        w = sorted(self.waits)
        p50, p99 = (w[min(len(w) - 1, int(q * len(w)))] for q in (0.5, 0.99))
        # over the embedded broker's re-drive patience: on Apache Kafka, the claims a 6-s re-drive would have
        # driven again for nothing
        over = sum(1 for x in w if x > STUCK_AFTER_ON_TANSU)
        return (f"answers waited p50 {p50:.1f} s, p99 {p99:.1f} s, longest {w[-1]:.1f} s; "
                f"{over} over {STUCK_AFTER_ON_TANSU:g} s (the re-drive's patience on the embedded broker)")

    def line(self) -> str:
        return (f"claims {self.claims}, confirmed {self.confirmed}, lost {self.lost}, "
                f"duplicated {self.duplicated}, accumulator mismatches {self.mismatches}")

    @property
    def ok(self) -> bool:
        return self.lost == self.duplicated == self.mismatches == self.fund_mismatches == 0 and self.confirmed == self.claims


def plan(persons: int, claims: int, seed: int) -> tuple[list[dict], dict[str, list[Claim]]]:
    rng = random.Random(seed)
    people = []
    for n in range(persons):
        person_id = f"340421{1950 + n % 50:04d}0101{n:04d}"
        people.append({"person_id": person_id, "name": "参保人", "region": "340421",
                       "coverage": [{"year": 2024, "paid": True}],
                       "categories": [{"category": c, "valid_from": "2024-01-01", "valid_to": None}
                                      for c in rng.choice(CATEGORY_MIX)],
                       "blacklisted": False})
    by_person: dict[str, list[Claim]] = defaultdict(list)
    for n in range(claims):
        person = people[n % persons]["person_id"]
        hospital = rng.choice(list(LEVELS))
        visit = rng.choices(["inpatient", "outpatient", "chronic_outpatient"], [6, 3, 1])[0]
        big = rng.random() < 0.3
        a = Decimal(rng.randint(20000, 90000) if big else rng.randint(100, 9000))
        b = Decimal(rng.randint(0, 5000))
        c = Decimal(rng.choice([0, 0, 300, 1200]))
        items = [{"code": f"X{cat}1", "name": "项目", "category": cat, "quantity": "1", "unit_price": f"{amt:.2f}",
                  "amount": f"{amt:.2f}", "limit_price": None} for cat, amt in (("A", a), ("B", b), ("C", c)) if amt > 0]
        day = 1 + len(by_person[person])
        body = {"type": "settle", "claim_id": f"{hospital}-2024-C{seed:03d}{n:06d}", "hospital_code": hospital,
                "person_id": person, "visit_type": visit,
                "admitted_on": f"2024-{1 + day % 12:02d}-01" if visit == "inpatient" else None,
                "discharged_on": f"2024-{1 + day % 12:02d}-0{1 + rng.randint(1, 8)}", "referral": rng.random() < 0.5,
                "injury": False, "diagnosis_codes": ["I63.900"], "items": items,
                "submitted_at": "2024-03-10T10:00:00+08:00"}
        by_person[person].append(Claim(body, cancel=rng.random() < 0.12))
    return people, by_person


class Hospitals:
    """Every hospital's HIS at once: sends, resends, and reads the answers."""

    def __init__(self, bootstrap: str, idempotent: bool = False, client: Mapping[str, Any] | None = None) -> None:
        self.bootstrap = bootstrap
        self.client = dict(client or {"bootstrap_servers": bootstrap})  # aiokafka's arguments (--secure: gateway)
        self.idempotent = idempotent
        self.answers: dict[str, list[SettlementResult]] = defaultdict(list)
        self.waits: list[float] = []  # seconds from a first send to its final answer, claim or cancel
        self.arrived = asyncio.Event()
        self.producer: AIOKafkaProducer | None = None
        self.consumer: AIOKafkaConsumer | None = None
        self.task: asyncio.Task | None = None

    def _new_producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(**self.client, acks="all", request_timeout_ms=10000,
                                enable_idempotence=self.idempotent)

    async def start(self) -> None:
        self.producer = self._new_producer()
        self.consumer = AIOKafkaConsumer(topics.SETTLEMENTS, **self.client, group_id=None,
                                         auto_offset_reset="earliest", fetch_max_wait_ms=20)
        await self.producer.start()
        await self.consumer.start()
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.consumer is not None
        while True:
            try:
                batch = await self.consumer.getmany(timeout_ms=200)
            except Exception:  # noqa: BLE001 - the broker restarts under us
                await asyncio.sleep(0.5)
                continue
            for records in batch.values():
                for record in records:
                    result = SettlementResult.from_json(record.value)
                    self.answers[result.claim_id].append(result)
            if batch:
                self.arrived.set()

    async def send(self, body: dict[str, Any]) -> None:
        producer = self.producer
        assert producer is not None
        try:
            # bounded: a send caught by the broker's restart has been seen to wait forever
            await asyncio.wait_for(
                producer.send_and_wait(topics.CLAIMS, orjson.dumps(body), key=body["claim_id"].encode()), 15)
        except TimeoutError:  # that producer is stuck: the next send gets a new one
            fresh = self._new_producer()
            try:
                await asyncio.wait_for(fresh.start(), 10)
            except Exception:  # noqa: BLE001 - the broker is still away: the next resend tries again
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(fresh.stop(), 5)
                return
            if self.producer is producer:
                self.producer = fresh
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(producer.stop(), 5)
            else:  # another send renewed it meanwhile
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(fresh.stop(), 5)
        except Exception:  # noqa: BLE001 - the broker restarts: the resend covers it
            pass

    async def ask(self, body: dict[str, Any], statuses: set[str], since: int, every: float,
                  deadline: float) -> SettlementResult | None:
        """Send ``body`` and wait for its claim's answer of one of ``statuses``
        (``until``); how long the cashier waited for it is kept (``waits``)."""
        sent = time.monotonic()
        await self.send(body)
        got = await self.until(body["claim_id"], statuses, since, body, every, deadline)
        if got is not None:
            self.waits.append(time.monotonic() - sent)
        return got

    async def until(self, claim_id: str, statuses: set[str], since: int, resend: dict[str, Any],
                    every: float, deadline: float) -> SettlementResult | None:
        last = time.monotonic()
        while time.monotonic() < deadline:
            for answer in self.answers.get(claim_id, [])[since:]:
                if answer.status in statuses:
                    return answer
            if time.monotonic() - last > every:
                await self.send(resend)
                last = time.monotonic()
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), 0.5)
            except TimeoutError:
                pass
        return None

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        for client in (self.consumer, self.producer):
            if client is not None:
                try:
                    await asyncio.wait_for(client.stop(), 10)
                except Exception:  # noqa: BLE001
                    pass


REVERSED_ANSWER_WAIT = 60.0
"""How long a cashier waits for the `reversed` answer before looking the reversal up."""


async def reversal_recorded(database_url: str, claim_id: str, deadline: float) -> None:
    """Wait until the one-bill of ``claim_id`` is stored as reversed."""
    c = await asyncpg.connect(database_url)
    try:
        while time.monotonic() < deadline:
            if await c.fetchval("SELECT status FROM settlement.one_bills WHERE claim_id = $1", claim_id) == "reversed":
                return
            await asyncio.sleep(0.5)
    finally:
        await c.close()


async def drive_person(his: Hospitals, claims: list[Claim], deadline: float, resend_every: float,
                       database_url: str, gap: float = 0.0) -> None:
    for n, claim in enumerate(claims):
        if n and gap:  # a cashier's queue: the next patient comes later
            await asyncio.sleep(gap)
        got = await his.ask(claim.body, {"settled", "rejected"}, 0, resend_every, deadline)
        if got is None or got.status != "settled" or not claim.cancel:
            continue
        cancel = {"type": "cancel", "claim_id": claim.claim_id, "hospital_code": claim.body["hospital_code"],
                  "reason": "测试撤销"}
        seen = len(his.answers[claim.claim_id])
        # A resent cancel may be answered ALREADY_REVERSED while the first one is
        # still on its way through the layers: the final answer is `reversed`.
        got = await his.ask(cancel, {"reversed"}, seen, resend_every,
                            min(deadline, time.monotonic() + REVERSED_ANSWER_WAIT))
        if got is None:
            # No `reversed` answer within the wait: the broker lost it (a resent
            # cancel is then answered ALREADY_REVERSED, not with the bill), or
            # lost the cancel itself, which eligibility re-drives from its
            # records, later than the kills may let it within the wait (seen:
            # two dozen cancels in one run with no answer at all in 60 s). The
            # cashier asks the bureau's records and waits for the reversal
            # before the person's next claim: a claim settled before it is
            # computed on accumulators that still count the claim being
            # reversed (make chaos found 4-6 such accumulators a run).
            await reversal_recorded(database_url, claim.claim_id, deadline)


STUCK_AFTER_ON_TANSU = 6.0
"""The re-drive's patience on the embedded broker, which loses every message in
flight when it restarts: the re-drive is what brings those claims back. On
Apache Kafka, which keeps its log, the services' own default applies (60 s):
there the re-drive is a safety net, and a claim it drives again is one that a
stall made it take for lost (``--stuck-after`` sets either)."""

BROKER_DOWN_SECONDS = 5.0
"""How long a killed Apache Kafka node stays down before it is started again."""

BROKER_START_TIMEOUT = 300.0
"""How long an Apache Kafka node may take to start (a secure node restarting on
the shared 2-core machine took 132 s; ``KafkaNode.start``'s own wait is 120 s)."""


async def kill_kafka_node(cluster: ApacheKafka, controller: bool, events: list[str]) -> None:
    """SIGKILL one node of the cluster (the active controller, or one that is
    not), and start it again on the same log after ``BROKER_DOWN_SECONDS``."""
    active = cluster.active_controller()
    if (controller or len(cluster.nodes) == 1) and active is not None:  # one node: it is the controller
        victim = active
    else:
        victim = next(n.node_id for n in cluster.nodes if n.node_id != active)
    role = "the active controller" if victim == active else "a follower controller"
    print(f"chaos: SIGKILL Kafka node {victim} ({role})", file=sys.stderr, flush=True)
    node = cluster.node(victim)
    down = time.monotonic()
    node.kill()
    await asyncio.sleep(BROKER_DOWN_SECONDS)
    await asyncio.to_thread(node.start, BROKER_START_TIMEOUT)
    events.append(f"node {victim} ({role}) SIGKILLed, back after {time.monotonic() - down:.0f} s"
                  f" (controller then: node {cluster.active_controller()})")
    print(f"chaos: {events[-1]}", file=sys.stderr, flush=True)


def victims(copies: int) -> list[str]:
    return [name if copies == 1 else f"{name}-{n}" for name in LAYER_SERVICES for n in range(1, copies + 1)]


async def chaos_monkey(supervisor: Supervisor, broker: EmbeddedBroker | ApacheKafka, rng: random.Random,
                       stop: asyncio.Event, every: tuple[float, float], restart_broker_after: float, partitions: int,
                       chaos_seconds: float, events: list[str] | None = None, copies: int = 1) -> tuple[int, int]:
    """Kill a random service every ``every`` seconds for ``chaos_seconds``, and
    restart the broker once (Tansu: everything in flight is lost) or, on an
    Apache Kafka cluster, SIGKILL and restart one node after
    ``restart_broker_after`` seconds and the active controller after twice that,
    one node down at a time (an outage due while the last node is still
    starting waits for it, after ``chaos_seconds`` if need be).

    Then the monkey rests: whatever the kills left half-done must still come
    out exactly once while the hospitals keep sending. Returns (kills, broker restarts)."""
    events = events if events is not None else []
    names = victims(copies)
    kills, restarts, started = 0, 0, time.monotonic()
    cluster = isinstance(broker, ApacheKafka)
    schedule = [(restart_broker_after, False), (2 * restart_broker_after, True)] if cluster else [
        (restart_broker_after, False)]
    schedule = [(at, controller) for at, controller in schedule if math.isfinite(at)]
    outages: list[asyncio.Task] = []
    # With several copies, one copy of every service falls first (in a random
    # order), then random ones: each service loses a process under load.
    first = [f"{name}-{rng.randint(1, copies)}" for name in rng.sample(LAYER_SERVICES, len(LAYER_SERVICES))] \
        if copies > 1 else []

    def victim() -> str:
        return first.pop(0) if first else rng.choice(names)

    await asyncio.sleep(1.0)  # the first victim falls at once, mid-stream
    supervisor.kill(victim())
    kills += 1
    while not stop.is_set() and (time.monotonic() - started < chaos_seconds or schedule):
        try:
            await asyncio.wait_for(stop.wait(), rng.uniform(*every))
            break
        except TimeoutError:
            pass
        killing = time.monotonic() - started < chaos_seconds  # after that, only the outages still due
        # One node down at a time: the next outage waits until the last node is
        # back (on one node it would kill its restart; on three, two down leave
        # fewer than min.insync.replicas, and every acks=all write waits).
        restarting = cluster and not all(o.done() for o in outages)
        if schedule and time.monotonic() - started > schedule[0][0] and not restarting:
            _, controller = schedule.pop(0)
            restarts += 1
            if isinstance(broker, ApacheKafka):  # the node's outage runs beside the service kills
                outages.append(asyncio.create_task(kill_kafka_node(broker, controller, events)))
            else:
                print("chaos: restarting the broker (every message in flight is lost)", file=sys.stderr, flush=True)
                broker.restart()
                await ensure_topics(broker.bootstrap, topics.ALL_TOPICS, partitions)
                events.append("Tansu restarted: every topic and message lost")
            continue
        if killing:
            supervisor.kill(victim())
            kills += 1
    await asyncio.gather(*outages)
    return kills, restarts


async def rolling_restart(supervisor: Supervisor, names: list[str], pause: float = 3.0) -> int:
    """Restart every process one after another (SIGTERM, the supervisor starts it
    again), as a deployment does; returns how many were restarted."""
    for name in names:
        await supervisor.terminate(name)
        await asyncio.sleep(pause)
    return len(names)


async def verify(database_url: str, by_person: dict[str, list[Claim]], his: Hospitals) -> Report:
    c = await asyncpg.connect(database_url)
    details: list[str] = []
    try:
        bills = {r["claim_id"]: r for r in await c.fetch("SELECT * FROM settlement.one_bills")}
        documents = {r["claim_id"]: r["document"] for r in await c.fetch("SELECT claim_id, document FROM eligibility.claims")}
        redriven = int(await c.fetchval("SELECT count(*) FROM eligibility.claims WHERE redrives > 0"))
        stored: dict[tuple[str, str, int], dict] = {}
        for schema in ("basic", "insurer", "assistance", "backstop"):
            for r in await c.fetch(f"SELECT person_id, year, state FROM {schema}.accumulators"):
                stored[(schema, r["person_id"], r["year"])] = orjson.loads(r["state"])
        layer_sums = {}
        for schema, column in (("basic", "basic"), ("insurer", "serious_illness"), ("assistance", "assistance"),
                               ("backstop", "backstop")):
            layer_sums[column] = await c.fetchval(
                f"SELECT coalesce(sum(amount), 0) FROM {schema}.layers WHERE status = 'settled'")
        bill_sums = await c.fetchrow(
            "SELECT coalesce(sum(basic),0) basic, coalesce(sum(serious_illness),0) serious_illness,"
            " coalesce(sum(assistance),0) assistance, coalesce(sum(backstop),0) backstop"
            " FROM settlement.one_bills WHERE status = 'settled'")
    finally:
        await c.close()

    total = confirmed = lost = duplicated = 0
    for claims in by_person.values():
        for claim in claims:
            total += 1
            bill = bills.get(claim.claim_id)
            wanted = "reversed" if claim.cancel else "settled"
            answers = his.answers.get(claim.claim_id, [])
            if bill is None or bill["status"] != wanted:
                lost += 1
                details.append(f"{claim.claim_id}: wanted {wanted}, database has {bill and bill['status']}")
                continue
            confirmed += 1
            settled = {a.model_dump_json(exclude={"settled_at"}) for a in answers if a.status == "settled"}
            if len(settled) > 1:
                duplicated += 1
                details.append(f"{claim.claim_id}: {len(settled)} different settled answers")

    policies = PolicyBook(ROOT / "policies")
    layers = layer_functions()
    schema_of = {"basic": "basic", "insurer": "insurer", "assistance": "assistance", "backstop": "backstop"}
    mismatches = 0
    for person, claims in by_person.items():
        expected: dict[str, Counters] = {name: kind() for name, _, kind in layers}
        for claim in claims:
            body = documents.get(claim.claim_id)
            if body is None:
                continue
            document = SettlementDocument.from_json(body)
            policy = policies.by_id(document.policy)
            assert policy is not None
            deltas = []
            for name, apply, _ in layers:
                outcome = apply(policy, document, expected[name])
                deltas.append((name, outcome.delta))
                document = outcome.document
            for name, delta in deltas:
                expected[name] = expected[name].add(delta)
            if claim.cancel and bills.get(claim.claim_id) and bills[claim.claim_id]["status"] == "reversed":
                for name, delta in deltas:
                    expected[name] = expected[name].add(delta, -1)
        for name, _, kind in layers:
            got = kind.model_validate(stored.get((schema_of[name], person, 2024), {}))
            if got != expected[name]:
                mismatches += 1
                details.append(f"{person[:6]}…{person[-4:]} {name}: stored {got!r} ≠ oracle {expected[name]!r}")
    fund_mismatches = sum(1 for k, v in layer_sums.items() if v != bill_sums[k])
    for k, v in layer_sums.items():
        if v != bill_sums[k]:
            details.append(f"fund {k}: layers {v} ≠ one-bills {bill_sums[k]}")
    return Report(total, confirmed, lost, duplicated, mismatches, fund_mismatches, 0.0, 0, details, redriven=redriven)


async def run_chaos(*, persons: int, claims: int, seed: int, database_url: str | None = None,
                    kill_every: tuple[float, float] = (2.0, 5.0), restart_broker_after: float = 20.0,
                    chaos_seconds: float = 120.0, timeout: float = 600.0, partitions: int = 4, log_dir: Path | None = None,
                    echo: bool = False, broker_kind: str = "tansu", copies: int = 1, rolling: bool = False,
                    claim_gap: float = 0.0, secure: bool = False, stuck_after: float | None = None) -> Report:
    from tests.harness import fresh_database  # the same helper the tests use

    started = time.monotonic()
    rng = random.Random(seed)
    log_dir = log_dir or (ROOT / ".run")
    log_dir.mkdir(parents=True, exist_ok=True)
    broker: EmbeddedBroker | ApacheKafka
    profile: SecureKafka | None = None
    if secure:  # the secure profile's own topics, users and ACLs, a CA of this run's own
        if broker_kind not in ("kafka", "kafka-cluster"):
            raise ValueError("the secure profile runs on Apache Kafka: --broker kafka or kafka-cluster")
        secure_dir = Path(tempfile.mkdtemp(prefix="chaos-secure-"))
        profile = SecureKafka(secure_dir / "profile", certs=secure_dir / "certs", heap="384m",
                              nodes=3 if broker_kind == "kafka-cluster" else 1)
        broker = profile.start(BROKER_START_TIMEOUT).kafka
    elif broker_kind == "tansu":
        broker = EmbeddedBroker(log_path=log_dir / "chaos-broker.log").start()
    elif broker_kind in ("kafka", "kafka-cluster"):
        broker = ApacheKafka(nodes=3 if broker_kind == "kafka-cluster" else 1, heap="384m").start()
    else:
        raise ValueError(f"no broker {broker_kind!r}: tansu, kafka or kafka-cluster")
    on_kafka = isinstance(broker, ApacheKafka)
    if stuck_after is None:
        stuck_after = Settings().stuck_after_seconds if on_kafka else STUCK_AFTER_ON_TANSU
    postgres = None
    if database_url is None:
        postgres = EmbeddedPostgres().start()
        database_url = postgres.url
    url = await fresh_database(database_url, "chaos")
    supervisor = Supervisor(echo=echo, grace_seconds=5)

    def client(principal: str) -> dict[str, Any]:  # aiokafka's arguments of the chaos's own clients
        return profile.client(principal) if profile else {"bootstrap_servers": broker.bootstrap}

    def signed_in(principal: str) -> dict[str, str]:  # a service process's environment: its principal, if any
        return profile.environment(principal) if profile else {}

    his = Hospitals(broker.bootstrap, idempotent=on_kafka, client=client("gateway"))
    stop = asyncio.Event()
    events: list[str] = []
    try:
        if profile:
            await profile.prepare(partitions)  # signed in as admin
        else:
            await ensure_topics(broker.bootstrap, topics.ALL_TOPICS, partitions)
        settings = Settings()
        for name in LAYER_SERVICES:
            for copy in range(1, copies + 1):
                process = name if copies == 1 else f"{name}-{copy}"
                supervisor.add(process, [sys.executable, "-m", f"services.{name}"],
                               service_env(settings, broker.bootstrap, url, name, **signed_in(name),
                                           LOG_LEVEL="WARNING",
                                           METRICS_PORT="0", STUCK_AFTER_SECONDS=str(stuck_after), STUCK_CHECK_SECONDS="1",
                                           CONSUMER_INSTANCE_ID=process,
                                           KAFKA_IDEMPOTENT_PRODUCER="true" if on_kafka else "false"))
        await supervisor.start()
        people, by_person = plan(persons, claims, seed)
        await his.start()
        registry = AIOKafkaProducer(**client("registry"), acks="all")  # the enrolment office's feed
        await registry.start()
        try:
            for person in people:
                await registry.send_and_wait(topics.PERSONS, orjson.dumps(person), key=person["person_id"].encode())
            for code, level in LEVELS.items():
                record = {"hospital_code": code, "name": code, "region": "340421", "level": level,
                          "designated": True, "suspended": False}
                await registry.send_and_wait(topics.HOSPITALS, orjson.dumps(record), key=code.encode())
        finally:
            await registry.stop()
        await _wait_for_registry(url, len(people), len(LEVELS), deadline=time.monotonic() + 120)
        deadline = time.monotonic() + timeout
        monkey = asyncio.create_task(chaos_monkey(supervisor, broker, rng, stop, kill_every,
                                                  restart_broker_after, partitions, chaos_seconds, events, copies))
        drivers = asyncio.gather(*(drive_person(his, c, deadline, 12.0, url, claim_gap) for c in by_person.values()))
        rolled = 0
        if rolling:  # after the kills, while claims still flow: every process restarted in turn
            await asyncio.wait({monkey})
            if not drivers.done():
                rolled = await rolling_restart(supervisor, victims(copies))
        await drivers
        stop.set()
        kills, restarts = await monkey
        report = await verify(url, by_person, his)
        report.kills, report.broker_restarts, report.broker_events = kills, restarts, events
        report.rolled = rolled
        report.restarts = {name: child.restarts for name, child in supervisor.children.items()}
        report.denied = profile.denials() if profile else None
        report.seconds = time.monotonic() - started
        report.stuck_after, report.waits = stuck_after, his.waits
        return report
    finally:
        stop.set()
        await his.stop()
        await supervisor.stop()
        if isinstance(broker, ApacheKafka):
            broker.cleanup()
        else:
            broker.stop()
        if profile is not None:
            shutil.rmtree(profile.dir.parent, ignore_errors=True)
        if postgres is not None:
            postgres.stop()


async def _wait_for_registry(url: str, persons: int, hospitals: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            c = await asyncpg.connect(url)
            try:
                p = await c.fetchval("SELECT count(*) FROM eligibility.persons")
                h = await c.fetchval("SELECT count(*) FROM eligibility.hospitals")
            finally:
                await c.close()
            if p >= persons and h >= hospitals:
                return
        except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError, OSError):
            pass
        await asyncio.sleep(0.5)
    raise RuntimeError("the registry did not reach eligibility")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--persons", type=int, default=200)
    parser.add_argument("--claims", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timeout", type=float, default=1200.0)
    parser.add_argument("--chaos-seconds", type=float, default=120.0, help="how long services are killed for")
    parser.add_argument("--kill-every", type=float, nargs=2, default=(2.0, 5.0), metavar=("MIN", "MAX"))
    parser.add_argument("--echo", action="store_true", help="show the services' logs")
    parser.add_argument("--broker", choices=("tansu", "kafka", "kafka-cluster"), default=os.environ.get("BROKER", "tansu"),
                        help="the embedded Tansu (default), one Apache Kafka node, or three (BROKER=kafka-cluster)")
    parser.add_argument("--copies", type=int, default=1, help="processes of every service sharing its partitions")
    parser.add_argument("--rolling", action="store_true", help="after the kills, restart every process in turn")
    parser.add_argument("--secure", action="store_true",
                        help="the secure Kafka profile: SASL/SCRAM over TLS, one principal per service, ACLs")
    parser.add_argument("--claim-gap", type=float, default=None,
                        help="seconds between one person's claims (default 0 on Tansu, 12 on Apache Kafka, which "
                             "loses nothing and would be done before its nodes' outages)")
    parser.add_argument("--stuck-after", type=float, default=None,
                        help="the services' STUCK_AFTER_SECONDS (default 6 on Tansu, which loses what is in flight "
                             "on a restart; the services' default, 60, on Apache Kafka, which keeps its log)")
    args = parser.parse_args(argv)
    if args.secure and args.broker == "tansu":
        parser.error("--secure runs on Apache Kafka: --broker kafka or kafka-cluster")
    if args.claim_gap is None:
        args.claim_gap = 0.0 if args.broker == "tansu" else 12.0
    report = asyncio.run(run_chaos(persons=args.persons, claims=args.claims, seed=args.seed,
                                   database_url=os.environ.get("DATABASE_URL"), timeout=args.timeout,
                                   kill_every=tuple(args.kill_every), chaos_seconds=args.chaos_seconds,
                                   restart_broker_after=30.0, echo=args.echo, broker_kind=args.broker,
                                   copies=args.copies, rolling=args.rolling, claim_gap=args.claim_gap,
                                   secure=args.secure, stuck_after=args.stuck_after))
    for line in report.details[:30]:
        print(line)
    for event in report.broker_events:
        print(f"broker: {event}")
    rolled = f", {report.rolled} processes restarted in turn" if report.rolled else ""
    print(f"{report.kills} kills, {report.broker_restarts} broker restart(s){rolled}, {report.seconds:.0f} s")
    print(f"claims re-driven from PostgreSQL: {report.redriven} (a claim unanswered for {report.stuck_after:g} s)")
    print(report.waited())
    if report.denied is not None:
        for refusal in report.denied[:10]:
            print(f"broker refused: {refusal}")
        print(f"secure profile: every service its own principal; broker authorization refusals: {len(report.denied)}")
    print(report.line())
    return 0 if report.ok and not report.denied else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
