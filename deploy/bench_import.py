"""``make bench-import``: the enrolment office's CSV import at county scale.

Generates a county's files into a temporary folder (1,000,000 persons by
default, about one in five in an assistance category, some categories ending
mid-year, a few hundred hospitals), then runs the real command,
``python -m services.eligibility.importer persons.csv categories.csv
hospitals.csv``, as a child process on a fresh database, and prints its wall
time, its peak memory (``getrusage(RUSAGE_CHILDREN).ru_maxrss``) and what it
loaded. ``--twice`` imports the same files again (every row an update).

The database: ``--database-url``, else ``DATABASE_URL`` or
``TEST_DATABASE_URL``, else an embedded PostgreSQL (as ``make run`` uses) in a
temporary folder. A fresh
database is made on that server and dropped afterwards.

    python -m deploy.bench_import [--persons 1000000] [--twice] [--keep-files]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

ROOT = Path(__file__).resolve().parents[1]

REGIONS = ("340421", "150900")
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英"
LEVEL_COUNTS = {"village": 300, "township": 40, "county": 8, "city": 4, "province": 3, "out_of_province": 5}
CATEGORY_MIX = (  # (categories, share)
    (("poverty_registered",), 0.07),
    (("subsistence",), 0.05),
    (("extreme_poverty",), 0.02),
    (("monitored",), 0.03),
    (("poverty_registered", "subsistence"), 0.03),
)


# ----------------------------------------------------------------- the files


def person_id(region: str, n: int) -> str:
    return f"{region}19{n:09d}{n % 10}"


def write_county(folder: Path, persons: int, seed: int = 20240101) -> dict[str, Path]:
    """Write persons.csv, categories.csv and hospitals.csv; return their paths."""
    rng = random.Random(seed)
    paths = {name: folder / f"{name}.csv" for name in ("persons", "categories", "hospitals")}
    thresholds = []
    acc = 0.0
    for cats, share in CATEGORY_MIX:
        acc += share
        thresholds.append((acc, cats))
    with paths["persons"].open("w", encoding="utf-8", newline="") as pf, \
            paths["categories"].open("w", encoding="utf-8", newline="") as cf:
        people, spans = csv.writer(pf), csv.writer(cf)
        people.writerow(("person_id", "name", "region", "paid_years", "blacklisted"))
        spans.writerow(("person_id", "category", "valid_from", "valid_to"))
        for n in range(persons):
            region = REGIONS[0] if rng.random() < 0.9 else REGIONS[1]
            pid = person_id(region, n)
            draw = rng.random()
            paid = "2023;2024" if draw < 0.95 else ("2023" if draw < 0.98 else "")
            name = rng.choice(SURNAMES) + rng.choice(GIVEN) + (rng.choice(GIVEN) if rng.random() < 0.6 else "")
            people.writerow((pid, name, region, paid, "true" if rng.random() < 0.001 else "false"))
            draw = rng.random()
            for limit, cats in thresholds:
                if draw < limit:
                    ends = "2024-06-30" if rng.random() < 0.1 else ""
                    for category in cats:
                        spans.writerow((pid, category, "2023-01-01", ends))
                    break
    with paths["hospitals"].open("w", encoding="utf-8", newline="") as hf:
        hospitals = csv.writer(hf)
        hospitals.writerow(("hospital_code", "name", "region", "level", "designated", "suspended"))
        serial = 0
        for level, count in LEVEL_COUNTS.items():
            for _ in range(count):
                serial += 1
                hospitals.writerow((f"H{REGIONS[0]}{serial:04d}", f"{level} 医疗机构 {serial}", REGIONS[0], level,
                                    "false" if serial % 97 == 0 else "true", "true" if serial % 211 == 0 else "false"))
    return paths


def lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for _ in handle) - 1


# ------------------------------------------------------------------ database


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))


@contextlib.contextmanager
def server_url(given: str | None) -> Iterator[str]:
    url = given or os.environ.get("DATABASE_URL") or os.environ.get("TEST_DATABASE_URL")
    if url:
        yield url
        return
    from medsettle.embedded import EmbeddedPostgres  # the embedded server of make run, in a temporary folder

    with EmbeddedPostgres() as server:
        yield server.url


async def create_database(url: str) -> str:
    name = f"bench_import_{uuid.uuid4().hex[:8]}"
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return name


async def drop_database(url: str, name: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


async def loaded(url: str) -> tuple[int, int, int]:
    connection = await asyncpg.connect(url)
    try:
        persons = await connection.fetchval("SELECT count(*) FROM eligibility.persons")
        spans = await connection.fetchval(
            "SELECT coalesce(sum(jsonb_array_length(body -> 'categories')), 0) FROM eligibility.persons")
        hospitals = await connection.fetchval("SELECT count(*) FROM eligibility.hospitals")
    finally:
        await connection.close()
    return int(persons), int(spans), int(hospitals)


# --------------------------------------------------------------------- bench


def run_import(paths: dict[str, Path], url: str) -> tuple[float, float, str]:
    """The importer as a child process: (seconds, peak MiB of the child, its output)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "libs"), str(ROOT)])}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "services.eligibility.importer", str(paths["persons"]), str(paths["categories"]),
         str(paths["hospitals"]), "--database-url", url],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False,
    )
    seconds = time.perf_counter() - started
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # kilobytes on Linux
    if done.returncode != 0:
        raise SystemExit(f"the import failed (exit {done.returncode}):\n{done.stdout}{done.stderr[-4000:]}")
    return seconds, peak_mib, done.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.bench_import", description=__doc__.split("\n")[0])
    parser.add_argument("--persons", type=int, default=1_000_000)
    parser.add_argument("--database-url", help="a PostgreSQL server (a fresh database is made on it)")
    parser.add_argument("--twice", action="store_true", help="import the same files again: every row an update")
    parser.add_argument("--keep-files", action="store_true", help="keep the generated CSV files")
    args = parser.parse_args(argv)

    folder = Path(tempfile.mkdtemp(prefix="bench-import-"))
    try:
        started = time.perf_counter()
        paths = write_county(folder, args.persons)
        generated = time.perf_counter() - started
        sizes = {name: path.stat().st_size / 2**20 for name, path in paths.items()}
        print(f"generated {args.persons:,} persons, {lines(paths['categories']):,} category spans, "
              f"{lines(paths['hospitals']):,} hospitals in {generated:.1f} s "
              f"({sizes['persons']:.0f} + {sizes['categories']:.0f} + {sizes['hospitals']:.1f} MiB) in {folder}")
        with server_url(args.database_url) as server:
            name = asyncio.run(create_database(server))
            url = with_database(server, name)
            try:
                seconds, peak, output = run_import(paths, url)
                print(f"importer: {output}")
                persons, spans, hospitals = asyncio.run(loaded(url))
                print(f"first import:  {seconds:6.1f} s wall, {persons / seconds:,.0f} persons/s, "
                      f"importer peak memory {peak:.0f} MiB (maxrss)")
                print(f"registry holds {persons:,} persons with {spans:,} category spans and {hospitals:,} hospitals")
                if persons != args.persons:
                    raise SystemExit(f"expected {args.persons:,} persons in the registry, found {persons:,}")
                if args.twice:
                    seconds, peak, output = run_import(paths, url)
                    print(f"second import: {seconds:6.1f} s wall (every row an update), "
                          f"importer peak memory {peak:.0f} MiB (maxrss, largest child so far)")
            finally:
                asyncio.run(drop_database(server, name))
    finally:
        if args.keep_files:
            print(f"files kept in {folder}")
        else:
            for path in folder.iterdir():
                path.unlink()
            folder.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main())
