"""``make simulate-bench``: the policy simulation at a province's scale.

Generates a synthetic year of one region's settled claims in PostgreSQL, in
the tables the simulation reads (``eligibility.claims`` with each claim's
document, ``settlement.one_bills`` with when it was settled and reversed;
the services' own migrations make them), then runs the simulation of the
reference policy over them exactly as ``make simulate`` does, and prints its
wall time, the CPU it and PostgreSQL used, the peak memory of its processes
and the machine's load average before and after.

The year is made by PostgreSQL itself (``generate_series``), not through the
pipeline: 1,000,000 claims through the services take hours on this machine,
and what is measured here is the replay, which reads only those two tables.
Claims: a third of a million persons with three claims each, every hospital
level and visit type, four items each (two A, one B, one C), one in ten
persons in each assistance category, one claim in twenty reversed two hours
after it settled. The one-bills' fund amounts are placeholders (0): the
report's "actual" side is meaningless here, the "simulated" side is real.

    python -m deploy.simulate_bench [--claims 1000000] [--workers 0] [--database-url URL] [--keep]
    python -m deploy.simulate_bench --database-url URL --reuse DATABASE   # a year kept with --keep
    python -m deploy.simulate_bench --in-memory 20000 [--repeat 3] [--policy FILE]

``--in-memory N``: only the replay (the layers' arithmetic and the
replay's counters), the part of a worker's CPU that is the layer code,
measured apart from PostgreSQL, the reading and the tally: N claims of the
same year (made in Python the way ``GENERATE`` makes them, and read as bills
before the clock starts), one in twenty reversed two hours after its
settle, are replayed person by person by the simulation's own ``Replayer``
in one process; it prints the best of ``--repeat`` runs in µs a claim (wall
and CPU) and a SHA-256 of every settled document's JSON and every delta's
(the same claims settled again through ``services.pipeline.Ledger``, the
stages' rules with their explanations, untimed; each claim's amounts there
must equal the replay's), so that two versions of the layer code can be
shown to settle every claim alike.

The database: ``--database-url``, else ``DATABASE_URL`` or
``TEST_DATABASE_URL``, else an embedded PostgreSQL in a temporary folder; a
fresh database is made on that server and dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import gc
import hashlib
import os
import random
import resource
import sys
import tempfile
import threading
import time
import uuid
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import orjson

from medsettle.contract import SettlementDocument
from medsettle.db import create_pool, migrate
from medsettle.money import ZERO
from medsettle.policy import Policy, load_policy
from medsettle.settings import ROOT
from services.simulation.runner import Request, simulate

POLICY = ROOT / "policies" / "340421-2024.yaml"

GENERATE = """
WITH g AS (
    SELECT n,
           '3404211980' || lpad((n % $2)::text, 8, '0') AS person_id,
           (n % $2) % 10 AS kind,
           (ARRAY['village', 'township', 'county', 'county', 'city', 'province', 'out_of_province'])
               [1 + (hashint4(n) & 2147483647) % 7] AS level,
           CASE WHEN (hashint4(n + 1) & 2147483647) % 10 < 6 THEN 'inpatient'
                WHEN (hashint4(n + 1) & 2147483647) % 10 < 9 THEN 'outpatient'
                ELSE 'chronic_outpatient' END AS visit,
           timestamptz '2024-01-01 08:00+08' + (n - 1) * (interval '1 second' * (31536000.0 / $1)) AS settled_at
      FROM generate_series(1, $1) AS n
), c AS (
    SELECT g.*,
           'H' || CASE level WHEN 'village' THEN '3404210010' WHEN 'township' THEN '3404210011'
                 WHEN 'county' THEN '3404210001' WHEN 'city' THEN '3404000001' WHEN 'province' THEN '3400000001'
                 ELSE '3100000001' END AS hospital_code,
           CASE visit WHEN 'inpatient' THEN 2500000 WHEN 'outpatient' THEN 15000 ELSE 80000 END AS scale,
           (settled_at AT TIME ZONE 'Asia/Shanghai')::date AS day,
           CASE kind WHEN 0 THEN ARRAY['poverty_registered'] WHEN 1 THEN ARRAY['subsistence']
                     WHEN 2 THEN ARRAY['extreme_poverty'] WHEN 3 THEN ARRAY['monitored']
                     WHEN 4 THEN ARRAY['poverty_registered', 'subsistence'] ELSE ARRAY[]::text[] END AS categories
      FROM g
), a AS (
    SELECT c.*,
           ((hashint4(n + 2) & 2147483647) % scale + 100)::numeric / 100 AS a1,
           ((hashint4(n + 3) & 2147483647) % scale)::numeric / 200 AS a2,
           ((hashint4(n + 4) & 2147483647) % scale)::numeric / 400 AS b1,
           ((hashint4(n + 5) & 2147483647) % scale)::numeric / 1000 AS c1
      FROM c
), d AS (
    SELECT a.*, 'BENCH-' || n AS claim_id, round(a1, 2) + round(a2, 2) + round(b1, 2) + round(c1, 2) AS total,
           jsonb_build_object(
             'kind', 'settle', 'policy', '340421-2024',
             'claim', jsonb_build_object(
                'type', 'settle', 'claim_id', 'BENCH-' || n, 'hospital_code', hospital_code, 'person_id', person_id,
                'visit_type', visit, 'admitted_on', CASE WHEN visit = 'inpatient' THEN (day - 6)::text END,
                'discharged_on', day::text, 'referral', n % 2 = 0, 'injury', false,
                'diagnosis_codes', jsonb_build_array('I63.900'),
                'items', jsonb_build_array(
                   jsonb_build_object('code', 'XA01', 'name', '甲类药品', 'category', 'A', 'quantity', '1',
                                      'unit_price', round(a1, 2)::text, 'amount', round(a1, 2)::text,
                                      'limit_price', null),
                   jsonb_build_object('code', 'XA02', 'name', '甲类检查', 'category', 'A', 'quantity', '1',
                                      'unit_price', round(a2, 2)::text, 'amount', round(a2, 2)::text,
                                      'limit_price', null),
                   jsonb_build_object('code', 'XB01', 'name', '乙类药品', 'category', 'B', 'quantity', '1',
                                      'unit_price', round(b1, 2)::text, 'amount', round(b1, 2)::text,
                                      'limit_price', null),
                   jsonb_build_object('code', 'XC01', 'name', '丙类自费', 'category', 'C', 'quantity', '1',
                                      'unit_price', round(c1, 2)::text, 'amount', round(c1, 2)::text,
                                      'limit_price', null)),
                'submitted_at', to_char(settled_at AT TIME ZONE 'Asia/Shanghai', 'YYYY-MM-DD"T"HH24:MI:SS+08:00')),
             'person', jsonb_build_object('person_id', person_id, 'region', '340421',
                                          'categories', to_jsonb(categories), 'favoured', kind IN (0, 1, 2, 4)),
             'hospital', jsonb_build_object('hospital_code', hospital_code, 'level', level, 'name', level || ' 医院'),
             'breakdown', null, 'deductible', null, 'layers', jsonb_build_array(), 'cancel_reason', null,
             'received_at', to_char(settled_at AT TIME ZONE 'Asia/Shanghai', 'YYYY-MM-DD"T"HH24:MI:SS+08:00')
           ) AS document
      FROM a
), e AS (
    INSERT INTO eligibility.claims (claim_id, hospital_code, person_id, content_hash, status, document, visit_type,
                                    discharged_on, level, total)
    SELECT claim_id, hospital_code, person_id, md5(claim_id), CASE WHEN n % 20 = 0 THEN 'reversed' ELSE 'accepted' END,
           convert_to(document::text, 'UTF8'), visit, day, level, total
      FROM d
)
INSERT INTO settlement.one_bills (claim_id, hospital_code, hospital_level, person_id, policy, visit_type, service_date,
                                  status, total, self_pay, over_limit_self_pay, pre_self_pay, compliant, deductible,
                                  basic, serious_illness, assistance, backstop, fund_total, personal, body,
                                  received_at, settled_at, reversed_at)
SELECT claim_id, hospital_code, level, person_id, '340421-2024', visit, day,
       CASE WHEN n % 20 = 0 THEN 'reversed' ELSE 'settled' END, total, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, total, '\\x7b7d',
       settled_at, settled_at, CASE WHEN n % 20 = 0 THEN settled_at + interval '2 hours' END
  FROM d
"""


LEVELS = ("village", "township", "county", "county", "city", "province", "out_of_province")
HOSPITAL_CODES = {"village": "H3404210010", "township": "H3404210011", "county": "H3404210001",
                  "city": "H3404000001", "province": "H3400000001", "out_of_province": "H3100000001"}
SCALES = {"inpatient": 2500000, "outpatient": 15000, "chronic_outpatient": 80000}
KINDS = (["poverty_registered"], ["subsistence"], ["extreme_poverty"], ["monitored"],
         ["poverty_registered", "subsistence"], [], [], [], [], [])
CHINA = dt.timezone(dt.timedelta(hours=8))


def in_memory_year(claims: int, policy: Policy, seed: int = 2024) -> list[dict]:
    """The documents ``GENERATE`` makes, made in Python (its own random numbers)."""
    rng = random.Random(seed)
    persons = max(1, claims // 3)
    start, step = dt.datetime(2024, 1, 1, 8, tzinfo=CHINA), dt.timedelta(seconds=31536000 / claims)
    found = []
    for n in range(1, claims + 1):
        person_id, categories = f"3404211980{n % persons:08d}", KINDS[(n % persons) % 10]
        level = rng.choice(LEVELS)
        draw = rng.randrange(10)
        visit = "inpatient" if draw < 6 else "outpatient" if draw < 9 else "chronic_outpatient"
        scale, at = SCALES[visit], start + (n - 1) * step
        day = at.date()
        amounts = [Decimal(rng.randrange(scale) + 100) / 100, Decimal(rng.randrange(scale)) / 200,
                   Decimal(rng.randrange(scale)) / 400, Decimal(rng.randrange(scale)) / 1000]
        items = [{"code": code, "name": name, "category": code[1], "quantity": "1", "unit_price": f"{price:.2f}",
                  "amount": f"{price:.2f}", "limit_price": None}
                 for (code, name), amount in zip((("XA01", "甲类药品"), ("XA02", "甲类检查"), ("XB01", "乙类药品"),
                                                  ("XC01", "丙类自费")), amounts)
                 for price in [amount.quantize(Decimal("0.01"), ROUND_HALF_UP)]]
        found.append({
            "kind": "settle", "policy": policy.policy,
            "claim": {"type": "settle", "claim_id": f"BENCH-{n}", "hospital_code": HOSPITAL_CODES[level],
                      "person_id": person_id, "visit_type": visit,
                      "admitted_on": (day - dt.timedelta(days=6)).isoformat() if visit == "inpatient" else None,
                      "discharged_on": day.isoformat(), "referral": n % 2 == 0, "injury": False,
                      "diagnosis_codes": ["I63.900"], "items": items, "submitted_at": at.isoformat()},
            "person": {"person_id": person_id, "region": policy.region, "categories": categories,
                       "favoured": policy.favoured(categories)},
            "hospital": {"hospital_code": HOSPITAL_CODES[level], "level": level, "name": f"{level} 医院"},
            "received_at": at.isoformat(),
        })
    return found


def layers_bench(claims: int, repeat: int, policy_file: Path) -> dict:
    """``--in-memory``: the replay alone (see the module's doc)."""
    from services.pipeline import Ledger  # the layers' in-memory pipeline, for the digest
    from services.simulation.replay import Bill, RecordedClaim, Replayer

    policy = load_policy(policy_file)
    documents = [SettlementDocument.model_validate(body) for body in in_memory_year(claims, policy)]
    years: dict[str, list[RecordedClaim]] = {}
    for n, document in enumerate(documents, 1):
        at: dt.datetime = document.claim.submitted_at  # type: ignore[assignment]
        years.setdefault(document.person.person_id, []).append(RecordedClaim(
            Bill.of(document), at, at + dt.timedelta(hours=2) if n % 20 == 0 else None, (ZERO, ZERO, ZERO, ZERO),
            document.claim.total, ZERO, document.claim.total))
    walls, cpus = [], []
    for _ in range(repeat):
        replayer, replayed = Replayer(policy), []
        gc.collect()
        gc.disable()  # as the simulation replays a range
        try:
            wall, cpu = time.perf_counter(), time.process_time()
            for person_id, year in years.items():
                replayed.append(replayer.person_year(person_id, year))
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
        finally:
            gc.enable()
    paid = {claim.claim.bill.claim.claim_id: claim.paid for year in replayed for claim in year.claims}
    ledger, digest = Ledger(), hashlib.sha256()  # the same claims again, for what they wrote
    for n, document in enumerate(documents, 1):
        settled = ledger.settle(policy, document)
        assert tuple(layer.amount for layer in settled.layers) == paid[document.claim.claim_id]
        digest.update(settled.to_json())
        for _, delta in ledger.deltas[document.claim.claim_id]:
            digest.update(orjson.dumps(delta.model_dump(mode="json")))
        if n % 20 == 0:  # before the person's next claim, as in the replay
            ledger.reverse(document.claim.claim_id)
    return {"claims": claims, "policy": policy.policy, "repeat": repeat,
            "us_per_claim": {"wall": round(min(walls) / claims * 1e6, 1), "cpu": round(min(cpus) / claims * 1e6, 1)},
            "runs_wall_s": [round(w, 2) for w in walls], "load_average": [round(x, 2) for x in os.getloadavg()],
            "sha256": digest.hexdigest()}


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))


class ProcessCpu:
    """CPU seconds used, while it watches, by this machine's processes whose
    command line holds ``word``: the backends of the bench's own database,
    whose process title names it (other PostgreSQL servers run on this
    machine too). Backends come and go: each is sampled every second, and one
    that ended counts what it had used when last seen."""

    def __init__(self, word: str) -> None:
        self.word = word.encode()
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _sample(self) -> None:
        ticks = os.sysconf("SC_CLK_TCK")
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if self.word not in (entry / "cmdline").read_bytes():
                    continue
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                used = (int(fields[11]) + int(fields[12])) / ticks
            except (OSError, IndexError, ValueError):
                continue
            pid = int(entry.name)
            if self._thread.is_alive():
                self.first.setdefault(pid, 0.0)  # started while watched
            self.last[pid] = used

    def _watch(self) -> None:
        while not self._stop.wait(1.0):
            self._sample()

    def __enter__(self) -> ProcessCpu:
        self._sample()
        self.first = dict(self.last)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    @property
    def seconds(self) -> float:
        return sum(used - self.first.get(pid, 0.0) for pid, used in self.last.items())


async def generate(url: str, claims: int) -> tuple[float, str]:
    """Makes the year in the (new) database ``url``: (seconds it took, its size)."""
    for schema, folder in (("eligibility", ROOT / "services" / "eligibility" / "migrations"),
                           ("settlement", ROOT / "services" / "settlement" / "migrations")):
        pool = await create_pool(url, schema, size=1)
        try:
            await migrate(pool, schema, folder)
        finally:
            await pool.close()
    started = time.perf_counter()
    c = await asyncpg.connect(url, command_timeout=3600)
    try:
        await c.execute("SET search_path = eligibility, public")
        await c.execute(GENERATE, claims, max(1, claims // 3))
        await c.execute("VACUUM (ANALYZE) eligibility.claims")
        await c.execute("VACUUM (ANALYZE) settlement.one_bills")
        size = await c.fetchval("SELECT pg_size_pretty(pg_database_size(current_database()))")
    finally:
        await c.close()
    return time.perf_counter() - started, size


async def bench(args: argparse.Namespace, server_url: str) -> dict:
    name = args.reuse or f"simbench_{uuid.uuid4().hex[:8]}"
    url = _with_database(server_url, name)
    if not args.reuse:
        admin = await asyncpg.connect(server_url)
        await admin.execute(f'CREATE DATABASE "{name}"')
        await admin.close()
    try:
        if args.reuse:
            generated, size = 0.0, "reused"
            print(f"simulating the year kept in database {name}", flush=True)
        else:
            generated, size = await generate(url, args.claims)
            print(f"generated {args.claims:,} claims in {generated:.1f} s (database {size})", flush=True)

        request = Request(region="340421", year=2024, candidate=load_policy(POLICY), workers=args.workers)
        load_before = os.getloadavg()
        own_before = resource.getrusage(resource.RUSAGE_SELF)
        with ProcessCpu(name) as postgres:
            started = time.perf_counter()
            report = await simulate(url, request, policy_dir=ROOT / "policies")
            wall = time.perf_counter() - started
        own = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        pg_cpu = postgres.seconds
        load_after = os.getloadavg()
        main_cpu = (own.ru_utime + own.ru_stime) - (own_before.ru_utime + own_before.ru_stime)
        workers_cpu = children.ru_utime + children.ru_stime
        result = {
            "claims": report["claims"], "persons": report["persons"], "reversals": report["reversals"],
            "workers": report["workers"], "seconds": round(wall, 1),
            "claims_per_second": round(report["claims"] / wall),
            "cpu_seconds": {"main": round(main_cpu, 1), "workers": round(workers_cpu, 1), "postgres": round(pg_cpu, 1)},
            "cpu_us_per_claim": round((main_cpu + workers_cpu) / report["claims"] * 1e6, 1),
            "peak_rss_mib": {"main": own.ru_maxrss // 1024, "largest_worker": children.ru_maxrss // 1024},
            "load_average": {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in load_after]},
            "cpus": os.cpu_count(), "simulated_funds": {k: v["simulated"] for k, v in report["funds"].items()},
            "generated_seconds": round(generated, 1), "database_size": size,
        }
        return result
    finally:
        if not (args.keep or args.reuse):
            admin = await asyncpg.connect(server_url)
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
            await admin.close()
        else:
            print(f"kept database {url}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.simulate_bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--claims", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=0, help="worker processes (0: one per CPU)")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL") or os.environ.get("TEST_DATABASE_URL"))
    parser.add_argument("--keep", action="store_true", help="keep the generated database")
    parser.add_argument("--reuse", metavar="DATABASE",
                        help="simulate the year a run with --keep left in DATABASE (on --database-url's server) "
                             "instead of generating one; --claims is then ignored")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results" / "simulate.json")
    parser.add_argument("--in-memory", type=int, metavar="N",
                        help="only the four layer functions over N claims in memory, no PostgreSQL (prints JSON)")
    parser.add_argument("--repeat", type=int, default=3, help="with --in-memory: runs, the best reported")
    parser.add_argument("--policy", type=Path, default=POLICY, help="with --in-memory: the policy file")
    args = parser.parse_args(argv)
    if args.in_memory:
        print(orjson.dumps(layers_bench(args.in_memory, args.repeat, args.policy), option=orjson.OPT_INDENT_2).decode())
        return 0
    if args.reuse and not args.database_url:
        parser.error("--reuse needs the server the database was kept on: --database-url")
    with contextlib.ExitStack() as stack:
        url = args.database_url
        if not url:
            from medsettle.embedded import EmbeddedPostgres

            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="simbench-")))
            server = stack.enter_context(EmbeddedPostgres(folder / "pgdata"))
            url = server.url
        result = asyncio.run(bench(args, url))
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
