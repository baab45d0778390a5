"""The HTTP path of the bench: p50/p99 from ``POST /v1/claims`` to its ``200``.

``paced_http`` is what ``deploy/bench.py`` calls against a running system: an
open-loop paced cashier (claim i is due at ``t0 + i / rate``, its latency
counted from then, so a late sender counts against us) posting signed claims
of the bench's population for the hospitals given keys, each waiting for its
answer (``wait``). Only those hospitals sign (``http_keys``: one per level),
so the Kafka path's unsigned claims of every other hospital go on as before.
The gateway must run with the same ``HOSPITAL_KEYS`` as eligibility.

``python -m deploy.bench_http`` runs the two paths side by side on a system of
its own (embedded broker and PostgreSQL, the six services and one gateway as
processes, as ``make run``): at each ``--rates`` rate, first the Kafka path
(publish on ``his.claims``, the answer read on ``his.settlements``, the
bench's cashier), then the HTTP path through the gateway; ``--url`` measures a
gateway already running instead (its system registered and keyed by you).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import orjson

from deploy.bench_population import Population
from medsettle.httpserver import wait_healthy
from services.gateway.signing import signed_headers

ROOT = Path(__file__).resolve().parents[1]


def http_keys(population: Population) -> dict[str, str]:
    """One hospital of each level signs and sends over HTTP; its key."""
    first: dict[str, str] = {}
    for hospital in population.hospitals:
        first.setdefault(hospital["level"], hospital["hospital_code"])
    return {code: f"bench-http-{code}" for code in first.values()}


def http_claim(population: Population, rng: random.Random, level_of: Mapping[str, str],
               by_level: Mapping[str, str], serial: int, run: str) -> dict[str, Any]:
    """A claim of the bench's mix, sent by the keyed hospital of the level it was drawn for."""
    claim = population.claim(rng)
    hospital = by_level[level_of[claim["hospital_code"]]]
    return {**claim, "hospital_code": hospital, "claim_id": f"{hospital}-HTTP{run}-{serial:08d}"}


class TopicWatch:
    """When each claim appears on ``his.claims`` and its answer on ``his.settlements``,
    seen by one reader: the pipeline's share of an HTTP claim's latency, so that what
    the gateway adds (the rest) is measured claim by claim in the same run."""

    def __init__(self, bootstrap: str) -> None:
        from aiokafka import AIOKafkaConsumer

        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                         fetch_max_wait_ms=5, max_partition_fetch_bytes=8 * 1024 * 1024)
        self.claimed: dict[str, float] = {}
        self.answered: dict[str, float] = {}
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        from aiokafka import TopicPartition

        from medsettle import topics

        await self.consumer.start()
        await self.consumer.topics()
        assigned = [TopicPartition(topic, p) for topic in (topics.CLAIMS, topics.SETTLEMENTS)
                    for p in sorted(self.consumer.partitions_for_topic(topic) or ())]
        self.consumer.assign(assigned)
        await self.consumer.seek_to_end(*assigned)
        for tp in assigned:
            await self.consumer.position(tp)
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        from medsettle import topics

        while True:
            batch = await self.consumer.getmany(timeout_ms=50, max_records=5000)
            now = time.perf_counter()
            for tp, records in batch.items():
                seen = self.claimed if tp.topic == topics.CLAIMS else self.answered
                for record in records:
                    claim_id = orjson.loads(record.value).get("claim_id")
                    if isinstance(claim_id, str):
                        seen.setdefault(claim_id, now)

    def pipeline_ms(self, claim_id: str) -> float | None:
        if claim_id in self.claimed and claim_id in self.answered:
            return (self.answered[claim_id] - self.claimed[claim_id]) * 1000
        return None

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.consumer.stop()


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, int(-(-q * len(ordered) // 1)) - 1))]


async def paced_http(base_url: str, population: Population, keys: Mapping[str, str], rate: float, seconds: float,
                     *, seed: int = 20240310, wait: float = 30.0, connections: int = 512,
                     watch: TopicWatch | None = None) -> dict[str, Any]:
    """Post ``rate × seconds`` claims at ``rate`` per second; latency from each one's due time to its 200.
    With ``watch``: also what the gateway and the HTTP client added to each, beyond the pipeline's time."""
    rng = random.Random(seed)
    level_of = {h["hospital_code"]: h["level"] for h in population.hospitals}
    by_level = {level_of[code]: code for code in keys}
    run = uuid.uuid4().hex[:6].upper()
    latencies: list[float] = []
    added: list[tuple[str, float]] = []
    statuses: Counter[str] = Counter()
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    path = f"/v1/claims?wait={wait:g}"
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=wait + 30) as client:

        async def one(due: float, claim: dict[str, Any]) -> None:
            body = orjson.dumps(claim)
            headers = signed_headers(claim["hospital_code"], keys[claim["hospital_code"]], "POST", path, body)
            try:
                answer = await client.post(path, content=body, headers={**headers, "Content-Type": "application/json"})
            except httpx.HTTPError as exc:
                statuses[f"error {type(exc).__name__}"] += 1
                return
            if answer.status_code == 200:
                latencies.append((time.perf_counter() - due) * 1000)
                added.append((claim["claim_id"], latencies[-1]))
                statuses[answer.json().get("status", "?")] += 1
            else:
                statuses[f"http {answer.status_code}"] += 1

        total = int(rate * seconds)
        tasks: list[asyncio.Task] = []
        t0 = time.perf_counter() + 0.05
        for i in range(total):
            claim = http_claim(population, rng, level_of, by_level, i, run)
            due = t0 + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(due, claim)))
        await asyncio.gather(*tasks)
    extra: dict[str, Any] = {}
    if watch is not None:
        await asyncio.sleep(0.5)  # the watch's last fetch
        beyond = [total - pipeline for claim_id, total in added
                  if (pipeline := watch.pipeline_ms(claim_id)) is not None]
        extra = {"added_by_http_p50_ms": round(_percentile(beyond, 0.50), 2),
                 "added_by_http_p99_ms": round(_percentile(beyond, 0.99), 2), "added_measured": len(beyond)}
    return {
        "path": "http", "rate": round(rate, 1), "sent": total, "answered": len(latencies),
        "p50_ms": round(_percentile(latencies, 0.50), 2), "p99_ms": round(_percentile(latencies, 0.99), 2),
        "p999_ms": round(_percentile(latencies, 0.999), 2), "max_ms": round(max(latencies, default=float("nan")), 2),
        "statuses": dict(statuses), **extra,
    }


# ------------------------------------------------------------------ standalone


async def _standalone(args: argparse.Namespace) -> list[dict[str, Any]]:
    from deploy import bench
    from medsettle import topics
    from medsettle.embedded import free_port

    out = Path(args.out).parent
    infra = bench.start_infrastructure(argparse.Namespace(bootstrap=args.bootstrap, database_url=args.database_url,
                                                          out=args.out))
    processes = bench.Processes(out / "logs")
    results: list[dict[str, Any]] = []
    try:
        population = Population(args.persons, run=uuid.uuid4().hex[:6].upper())
        keys = http_keys(population)
        await bench.create_topics(infra.bootstrap, topics.ALL_TOPICS, args.partitions)
        database_url = await bench.fresh_database(infra.server_url)
        env = {**bench.service_env(infra.bootstrap, database_url, args), "HOSPITAL_KEYS": orjson.dumps(keys).decode()}
        for name in bench.SERVICES:
            processes.start(name, [sys.executable, "-m", f"services.{name}"], env)
        port = free_port()
        gateway = processes.start("gateway", [sys.executable, "-m", "services.gateway"],
                        {**env, "GATEWAY_PORT": str(port), "GATEWAY_FETCH_MAX_WAIT_MS": str(args.gateway_fetch_ms)})
        await bench.wait_for_table(database_url, "eligibility.persons", 60)
        await bench.register(infra.bootstrap, database_url, population, "topic", processes, timeout=600)
        url = f"http://127.0.0.1:{port}"
        await wait_healthy(url, alive=processes.check)
        cashier = bench.Cashier(infra.bootstrap, population, topics.CLAIMS, topics.SETTLEMENTS, args.seed, 0.0)
        await cashier.start()
        watch = TopicWatch(infra.bootstrap)
        await watch.start()
        try:
            await cashier.probe(120)
            await paced_http(url, population, keys, 5, 2, seed=args.seed + 1)  # warm the gateway's connections
            for rate in args.rates:
                for repeat in range(args.repeat):
                    kafka = await cashier.paced(rate, args.seconds)
                    results.append({"path": "kafka", **{k: kafka[k] for k in (
                        "rate", "sent", "answered", "p50_ms", "p99_ms", "p999_ms", "max_ms", "statuses")}})
                    print(_line(results[-1]), file=sys.stderr)
                    before = _cpu(gateway), _cpu(None)
                    figures = await paced_http(url, population, keys, rate, args.seconds,
                                               seed=args.seed + 100 * repeat + int(rate), watch=watch)
                    after = _cpu(gateway), _cpu(None)
                    figures["gateway_cpu_ms_per_claim"] = round(1000 * (after[0] - before[0]) / figures["sent"], 2)
                    figures["client_cpu_ms_per_claim"] = round(1000 * (after[1] - before[1]) / figures["sent"], 2)
                    results.append(figures)
                    print(_line(results[-1]), file=sys.stderr)
                    processes.check()
        finally:
            await watch.stop()
            await cashier.stop()
    finally:
        processes.stop()
        infra.close()
    return results


def _cpu(child: Any) -> float:
    """CPU seconds of a child process (``None``: this one)."""
    import psutil

    times = psutil.Process(child.pid if child is not None else None).cpu_times()
    return times.user + times.system


def _line(figures: dict[str, Any]) -> str:
    cpu = (f", CPU ms/claim gateway {figures['gateway_cpu_ms_per_claim']}, client {figures['client_cpu_ms_per_claim']}"
           if "gateway_cpu_ms_per_claim" in figures else "")
    if "added_by_http_p50_ms" in figures:
        cpu += (f"; beyond the pipeline's own time: p50 {figures['added_by_http_p50_ms']} ms, "
                f"p99 {figures['added_by_http_p99_ms']} ms")
    return (f"{figures['path']:<5} at {figures['rate']:>6.1f}/s: p50 {figures['p50_ms']:>8.2f} ms, "
            f"p99 {figures['p99_ms']:>8.2f} ms, answered {figures['answered']}/{figures['sent']} "
            f"{figures['statuses']}{cpu}")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m deploy.bench_http", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", type=float, nargs="+", default=[50.0], help="claims per second (default 50)")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each paced run (default 20)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each path at each rate, alternated")
    parser.add_argument("--persons", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=20240310)
    parser.add_argument("--partitions", type=int, default=2, help="partitions of each topic (as make run: 2)")
    parser.add_argument("--gateway-fetch-ms", type=int, default=5, help="GATEWAY_FETCH_MAX_WAIT_MS of the gateway")
    parser.add_argument("--url", help="a gateway already running: measure only the HTTP path there "
                                      "(its system keyed with http_keys and the population registered)")
    parser.add_argument("--bootstrap", default=os.environ.get("BENCH_KAFKA_BOOTSTRAP_SERVERS"))
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"))
    parser.add_argument("--out", default=str(ROOT / "bench-results" / "bench_http.json"))
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    if args.url:
        population = Population(args.persons)
        results = [asyncio.run(paced_http(args.url, population, http_keys(population), rate, args.seconds,
                                          seed=args.seed)) for rate in args.rates]
        for figures in results:
            print(_line(figures))
    else:
        results = asyncio.run(_standalone(args))
        for figures in results:
            print(_line(figures))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
