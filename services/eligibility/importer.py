"""Bulk import of the enrolment office's registry files into eligibility.

    python -m services.eligibility.importer persons.csv categories.csv hospitals.csv
        [--database-url URL]      (default: DATABASE_URL)

All three files are needed; a file with only its header row adds nothing.
Files are UTF-8 (a byte-order mark, as spreadsheets write it, is accepted),
comma-separated with a header row naming the columns in any order; a field
holding a comma is quoted. Booleans are ``true``/``false`` (also ``1``/``0``,
``yes``/``no``, ``是``/``否``); dates are ``YYYY-MM-DD``.

``persons.csv``: ``person_id,name,region,paid_years,blacklisted``
    person_id    resident identity number, 6–32 letters or digits
    name         the person's name (never printed in a report)
    region       pooling region code (统筹区), e.g. ``340421``
    paid_years   years paid for, separated by ``;`` (``2023;2024``); empty: none
    blacklisted  boolean

``categories.csv``: ``person_id,category,valid_from,valid_to``
    one row per category span of a person named in persons.csv; category is
    ``poverty_registered``, ``subsistence``, ``extreme_poverty`` or
    ``monitored``; ``valid_to`` empty means open-ended.

``hospitals.csv``: ``hospital_code,name,region,level,designated,suspended``
    level is ``village``, ``township``, ``county``, ``city``, ``province`` or
    ``out_of_province``; designated and suspended are booleans.

What it does: each person and hospital in the files replaces what the registry
held for them (a person's categories are exactly the rows of categories.csv
for them: none, no category), exactly as a ``registry.persons`` or
``registry.hospitals`` message would; people and hospitals not in the files
are left as they are. A feed message that arrives after the import wins over
it, as the latest message does. The change applies to claims that arrive
after the import commits.

All or nothing: every row of every file is checked first (streamed, so memory
stays flat however large the files), the good rows are copied into staging
tables of one transaction (binary COPY), the files are checked together
(duplicate keys, categories of people not in persons.csv), and only when no
row at all is rejected does one ``INSERT ... ON CONFLICT`` per table load them
and the transaction commit. Any rejected row: nothing is loaded, every
rejected row is reported as ``file line N, field: reason`` (the first 1,000
of them) and the exit code is 1. Exit code 2: a file cannot be read or the
database is not configured.
"""

from __future__ import annotations

import argparse
import asyncio
import codecs
import csv
import datetime as dt
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import asyncpg
import orjson

from medsettle.contract import CATEGORIES, LEVELS, mask_person_id
from medsettle.db import create_pool, migrate
from services.eligibility import repository as repo

SCHEMA = "eligibility"
MIGRATIONS = Path(__file__).with_name("migrations")
MAX_REPORTED = 1000

PERSON_FIELDS = ("person_id", "name", "region", "paid_years", "blacklisted")
CATEGORY_FIELDS = ("person_id", "category", "valid_from", "valid_to")
HOSPITAL_FIELDS = ("hospital_code", "name", "region", "level", "designated", "suspended")

PERSON_ID = re.compile(r"[0-9A-Za-z]{6,32}")
REGION = re.compile(r"[0-9A-Za-z]{1,16}")
HOSPITAL_CODE = re.compile(r"[A-Za-z0-9._\-]{1,64}")
TRUE = frozenset({"true", "1", "yes", "y", "是"})
FALSE = frozenset({"false", "0", "no", "n", "否"})
CATEGORY_SET = frozenset(CATEGORIES)
LEVEL_SET = frozenset(LEVELS)
IDENTITY = "an identity number (6–32 letters or digits)"


class RowError(ValueError):
    def __init__(self, field_name: str, reason: str) -> None:
        super().__init__(f"{field_name}: {reason}")
        self.field = field_name
        self.reason = reason


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file} line {self.line}, {self.field}: {self.reason}"


@dataclass
class Report:
    """Rejected rows: all counted, the first ``MAX_REPORTED`` kept."""

    problems: list[Problem] = field(default_factory=list)
    count: int = 0
    rows: dict[str, int] = field(default_factory=dict)

    def add(self, problem: Problem) -> None:
        self.count += 1
        if len(self.problems) < MAX_REPORTED:
            self.problems.append(problem)

    def sorted_problems(self, order: list[str]) -> list[Problem]:
        rank = {name: i for i, name in enumerate(order)}
        return sorted(self.problems, key=lambda p: (rank.get(p.file, len(rank)), p.line))


# ------------------------------------------------------------ the row rules


def _text(value: str, name: str, *, max_length: int = 100) -> str:
    value = value.strip()
    if not value:
        raise RowError(name, "is empty")
    if len(value) > max_length:
        raise RowError(name, f"is longer than {max_length} characters")
    return value


def _matching(value: str, name: str, pattern: re.Pattern[str], what: str,
              show: Callable[[str], str] = lambda v: v) -> str:
    value = value.strip()
    if not pattern.fullmatch(value):
        shown = show(value) if len(value) <= 40 else show(value[:40]) + "…"
        raise RowError(name, f"{shown!r} is not {what}" if value else f"is empty (expected {what})")
    return value


def _boolean(value: str, name: str) -> bool:
    word = value.strip().lower()
    if word in TRUE:
        return True
    if word in FALSE:
        return False
    raise RowError(name, f"{value.strip()!r} is not true or false" if word else "is empty (expected true or false)")


def _date(value: str, name: str) -> dt.date:
    text = value.strip()
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        raise RowError(name, f"{text!r} is not a date YYYY-MM-DD" if text else "is empty (expected a date YYYY-MM-DD)")
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise RowError(name, f"{text!r} is not a calendar date") from None
    if not 1900 <= day.year <= 2100:
        raise RowError(name, f"{text!r} is out of range")
    return day


def _years(value: str, name: str) -> list[int]:
    years: set[int] = set()
    for part in value.split(";"):
        part = part.strip()
        if not part:
            continue
        if not (len(part) == 4 and part.isdigit() and 2000 <= int(part) <= 2100):
            raise RowError(name, f"{part!r} is not a year between 2000 and 2100 (write years as 2023;2024)")
        years.add(int(part))
    return sorted(years)


def person_row(person_id: str, name: str, region: str, paid_years: str, blacklisted: str) -> tuple[str, str, str]:
    """``(person_id, region, body)``: body is the person as ``registry.persons`` carries it, categories to come."""
    pid = _matching(person_id, "person_id", PERSON_ID, IDENTITY, mask_person_id)
    area = _matching(region, "region", REGION, "a region code such as 340421")
    body = {
        "person_id": pid,
        "name": _text(name, "name"),
        "region": area,
        "coverage": [{"year": year, "paid": True} for year in _years(paid_years, "paid_years")],
        "categories": [],
        "blacklisted": _boolean(blacklisted, "blacklisted"),
    }
    return pid, area, orjson.dumps(body).decode()


def category_row(person_id: str, category: str, valid_from: str, valid_to: str) -> tuple[str, str]:
    """``(person_id, span)``: span is one entry of the person's ``categories``."""
    pid = _matching(person_id, "person_id", PERSON_ID, IDENTITY, mask_person_id)
    category = category.strip()
    if category not in CATEGORY_SET:
        raise RowError("category", f"{category!r} is not one of {', '.join(CATEGORIES)}")
    start = _date(valid_from, "valid_from")
    end = _date(valid_to, "valid_to") if valid_to.strip() else None
    if end is not None and end < start:
        raise RowError("valid_to", f"{end} is before valid_from {start}")
    span = {"category": category, "valid_from": start.isoformat(), "valid_to": end.isoformat() if end else None}
    return pid, orjson.dumps(span).decode()


def hospital_row(hospital_code: str, name: str, region: str, level: str, designated: str,
                 suspended: str) -> tuple[str, str, str, str]:
    """``(hospital_code, region, level, body)``: body is the hospital as ``registry.hospitals`` carries it."""
    level = level.strip()
    if level not in LEVEL_SET:
        raise RowError("level", f"{level!r} is not one of {', '.join(LEVELS)}")
    body = {
        "hospital_code": _matching(hospital_code, "hospital_code", HOSPITAL_CODE,
                                   "a hospital code (letters, digits, . _ -)"),
        "name": _text(name, "name", max_length=200),
        "region": _matching(region, "region", REGION, "a region code such as 340421"),
        "level": level,
        "designated": _boolean(designated, "designated"),
        "suspended": _boolean(suspended, "suspended"),
    }
    return body["hospital_code"], body["region"], level, orjson.dumps(body).decode()


# ----------------------------------------------------------- reading a file


@dataclass(frozen=True)
class CsvFile:
    kind: str  # persons, categories, hospitals
    path: Path
    fields: tuple[str, ...]
    parse: Callable[..., tuple[Any, ...]]  # the fields in ``fields`` order → the staging row

    @property
    def label(self) -> str:
        return self.path.name


def _header(reader: Iterator[list[str]], spec: CsvFile, report: Report) -> list[int] | None:
    """Positions of the expected columns, or None (reported) if the header is wrong."""
    try:
        header = next(reader)
    except StopIteration:
        report.add(Problem(spec.label, 1, "header", f"the file is empty; expected {','.join(spec.fields)}"))
        return None
    names = [h.strip().lower() for h in header]
    missing = [f for f in spec.fields if f not in names]
    unknown = [h for h in names if h not in spec.fields]
    doubled = sorted({h for h in names if names.count(h) > 1})
    if missing or unknown or doubled:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing)}")
        if unknown:
            parts.append(f"unknown {', '.join(repr(u) for u in unknown)}")
        if doubled:
            parts.append(f"repeated {', '.join(doubled)}")
        report.add(Problem(spec.label, 1, "header", f"{'; '.join(parts)}; expected {','.join(spec.fields)}"))
        return None
    return [names.index(f) for f in spec.fields]


def _decoded(spec: CsvFile, handle: BinaryIO, report: Report) -> Iterator[str]:
    """The file's lines as text; a line that is not UTF-8 is reported (with its
    own line number) and read as blank, so the lines after it keep theirs."""
    for number, raw in enumerate(handle, start=1):
        if number == 1 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8):]
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError:
            report.add(Problem(spec.label, number, "row", "is not UTF-8 text (a GBK export? save the file as UTF-8)"))
            yield "\n"


def checked_rows(spec: CsvFile, handle: BinaryIO, report: Report) -> Iterator[tuple[Any, ...]]:
    """The file's good rows as ``(line, *values)``; each bad row goes to ``report``."""
    reader = csv.reader(_decoded(spec, handle, report))
    line = 1
    rows = 0
    try:
        positions = _header(reader, spec, report)
        if positions is None:
            return
        width = len(positions)
        for raw in reader:
            line = reader.line_num
            if not raw or (len(raw) == 1 and not raw[0].strip()):
                continue  # blank line
            rows += 1
            if len(raw) != width:
                report.add(Problem(spec.label, line, "row", f"has {len(raw)} fields, expected {width}"))
                continue
            try:
                values = spec.parse(*[raw[at] for at in positions])
            except RowError as exc:
                report.add(Problem(spec.label, line, exc.field, exc.reason))
                continue
            yield (line, *values)
    except csv.Error as exc:
        report.add(Problem(spec.label, reader.line_num or line, "row", f"is not valid CSV: {exc}"))
    finally:
        report.rows[spec.label] = rows


# ------------------------------------------------------------------ loading


@dataclass
class ImportResult:
    loaded: bool
    report: Report
    persons: int = 0
    categories: int = 0
    hospitals: int = 0
    seconds: float = 0.0
    order: list[str] = field(default_factory=list)


class _Rejected(Exception):
    """Rolls the transaction back: nothing of a rejected import stays."""


def specs(persons: Path, categories: Path, hospitals: Path) -> list[CsvFile]:
    return [
        CsvFile("persons", persons, PERSON_FIELDS, person_row),
        CsvFile("categories", categories, CATEGORY_FIELDS, category_row),
        CsvFile("hospitals", hospitals, HOSPITAL_FIELDS, hospital_row),
    ]


STAGING = {
    "persons": (repo.STAGING_PERSONS, repo.PERSON_COLUMNS),
    "categories": (repo.STAGING_CATEGORIES, repo.CATEGORY_COLUMNS),
    "hospitals": (repo.STAGING_HOSPITALS, repo.HOSPITAL_COLUMNS),
}


async def import_registry(database_url: str, persons: Path, categories: Path, hospitals: Path) -> ImportResult:
    """Check and load the three files in one transaction; nothing is loaded if any row is rejected."""
    started = time.perf_counter()
    files = specs(Path(persons), Path(categories), Path(hospitals))
    for spec in files:  # fail before any work when a file is missing
        if not spec.path.is_file():
            raise FileNotFoundError(f"{spec.path}: no such file")
    report = Report()
    result = ImportResult(loaded=False, report=report, order=[f.label for f in files])

    pool = await create_pool(database_url, SCHEMA, size=1)
    try:
        await migrate(pool, SCHEMA, MIGRATIONS)
    finally:
        await pool.close()

    connection = await asyncpg.connect(
        database_url, command_timeout=None,
        server_settings={"search_path": f"{SCHEMA},public", "application_name": "eligibility-import"},
    )
    try:
        async with connection.transaction():
            await repo.create_import_staging(connection)
            copied: dict[str, int] = {}
            for spec in files:
                table, columns = STAGING[spec.kind]
                with spec.path.open("rb") as handle:
                    copied[spec.kind] = await repo.copy_into_staging(
                        connection, table, columns, checked_rows(spec, handle, report))
            await repo.analyze_staging(connection)
            count, problems = await repo.staging_problems(connection, MAX_REPORTED)
            labels = {"persons": files[0].label, "categories": files[1].label, "hospitals": files[2].label}
            for problem in problems:
                report.add(_across_files(problem, labels))
            report.count += count - len(problems)
            if report.count:
                raise _Rejected
            result.persons, result.hospitals = await repo.apply_staging(connection)
            result.categories = copied["categories"]
            result.loaded = True
        await repo.vacuum_registry(connection)
    except _Rejected:
        pass
    finally:
        await connection.close()
    result.seconds = time.perf_counter() - started
    return result


def _across_files(problem: repo.StagingProblem, labels: dict[str, str]) -> Problem:
    if problem.table == "categories":
        return Problem(labels["categories"], problem.line, "person_id",
                       f"{mask_person_id(problem.key)} has no valid row in {labels['persons']}")
    if problem.table == "persons":
        return Problem(labels["persons"], problem.line, "person_id",
                       f"{mask_person_id(problem.key)} is already on line {problem.first_line}")
    return Problem(labels["hospitals"], problem.line, "hospital_code",
                   f"{problem.key} is already on line {problem.first_line}")


def print_result(result: ImportResult, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> None:
    report = result.report
    rows = ", ".join(f"{name} {n:,} rows" for name, n in report.rows.items())
    if result.loaded:
        print(f"loaded {result.persons:,} persons ({result.categories:,} category spans) and "
              f"{result.hospitals:,} hospitals in {result.seconds:.1f} s ({rows})", file=out)
        return
    for problem in report.sorted_problems(result.order):
        print(str(problem), file=err)
    shown = len(report.problems)
    more = f" (the first {shown} are listed)" if shown < report.count else ""
    print(f"{report.count:,} rejected rows{more}; nothing was loaded ({rows})", file=err)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.eligibility.importer",
        description="Load the enrolment office's persons, categories and hospitals files into the registry "
                    "(all or nothing).",
    )
    parser.add_argument("persons", type=Path, help="persons.csv: person_id,name,region,paid_years,blacklisted")
    parser.add_argument("categories", type=Path, help="categories.csv: person_id,category,valid_from,valid_to")
    parser.add_argument("hospitals", type=Path,
                        help="hospitals.csv: hospital_code,name,region,level,designated,suspended")
    parser.add_argument("--database-url", help="PostgreSQL URL (default: DATABASE_URL)")
    args = parser.parse_args(argv)

    url = args.database_url
    if not url:
        from medsettle.settings import Settings

        url = Settings().database_url
    if not url:
        print("DATABASE_URL is not set and --database-url was not given", file=sys.stderr)
        return 2
    try:
        result = asyncio.run(import_registry(url, args.persons, args.categories, args.hospitals))
    except FileNotFoundError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        print(f"cannot reach the database: {type(exc).__name__}: {exc}; nothing was loaded", file=sys.stderr)
        return 2
    print_result(result)
    return 0 if result.loaded else 1


if __name__ == "__main__":
    sys.exit(main())
