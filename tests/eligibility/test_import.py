"""The enrolment office's CSV import: what it loads is what eligibility reads;
a file with any bad row loads nothing and says which rows, fields and why."""

import codecs
import csv
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest

from deploy.bench_import import person_id, write_county
from medsettle.contract import Hospital, Person
from medsettle.settings import ROOT
from services.eligibility.importer import RowError, category_row, import_registry, person_row
from tests.eligibility.conftest import HOSPITALS
from tests.factories import claim_body
from tests.harness import fresh_database

PERSONS_HEADER = "person_id,name,region,paid_years,blacklisted\n"
CATEGORIES_HEADER = "person_id,category,valid_from,valid_to\n"
HOSPITALS_HEADER = "hospital_code,name,region,level,designated,suspended\n"


def write(folder: Path, persons: str, categories: str, hospitals: str) -> tuple[Path, Path, Path]:
    paths = folder / "persons.csv", folder / "categories.csv", folder / "hospitals.csv"
    for path, text in zip(paths, (persons, categories, hospitals), strict=True):
        path.write_text(text, encoding="utf-8")
    return paths


async def registry(url: str) -> tuple[dict[str, Person], dict[str, Hospital]]:
    import orjson

    connection = await asyncpg.connect(url)
    try:
        persons = {r["person_id"]: Person.model_validate(orjson.loads(r["body"]))
                   for r in await connection.fetch("SELECT person_id, body FROM eligibility.persons")}
        hospitals = {r["hospital_code"]: Hospital.model_validate(orjson.loads(r["body"]))
                     for r in await connection.fetch("SELECT hospital_code, body FROM eligibility.hospitals")}
    finally:
        await connection.close()
    return persons, hospitals


async def vacuumed(url: str) -> set[str]:
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch("SELECT relname FROM pg_stat_user_tables WHERE schemaname = 'eligibility'"
                                      " AND last_vacuum IS NOT NULL AND last_analyze IS NOT NULL")
    finally:
        await connection.close()
    return {r["relname"] for r in rows}


def run_importer(paths: tuple[Path, Path, Path], url: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "libs"), str(ROOT)])}
    return subprocess.run([sys.executable, "-m", "services.eligibility.importer", *map(str, paths),
                           "--database-url", url], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.fixture
async def empty_registry(database_url: str) -> str:
    return await fresh_database(database_url, prefix="imp")


async def test_a_thousand_persons_load_in_the_form_the_feeds_give_and_a_second_file_replaces_them(
        empty_registry, tmp_path):
    paths = write_county(tmp_path, 1000)
    result = await import_registry(empty_registry, paths["persons"], paths["categories"], paths["hospitals"])
    assert result.loaded, [str(p) for p in result.report.problems]
    persons, hospitals = await registry(empty_registry)
    assert len(persons) == result.persons == 1000 and len(hospitals) == result.hospitals == 360
    assert await vacuumed(empty_registry) == {"persons", "hospitals"}  # the claims after it do not pay for the load
    spans = sum(len(p.categories) for p in persons.values())
    assert spans == result.categories == sum(1 for _ in paths["categories"].open()) - 1
    with paths["persons"].open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            stored = persons[row["person_id"]]
            assert (stored.name, stored.region, stored.blacklisted) == (
                row["name"], row["region"], row["blacklisted"] == "true")
            assert [c.year for c in stored.coverage] == [int(y) for y in row["paid_years"].split(";") if y]

    rewritten = write(
        tmp_path,
        PERSONS_HEADER + f"{person_id('340421', 0)},王伟,340421,2024,true\n",
        CATEGORIES_HEADER + f"{person_id('340421', 0)},subsistence,2024-01-01,2024-06-30\n",
        HOSPITALS_HEADER + "H3404210001,县人民医院,340421,county,true,true\n",
    )
    again = await import_registry(empty_registry, *rewritten)
    assert again.loaded and (again.persons, again.hospitals) == (1, 1)
    persons, hospitals = await registry(empty_registry)
    changed = persons[person_id("340421", 0)]
    assert changed.blacklisted and [c.year for c in changed.coverage] == [2024]
    assert [(c.category, str(c.valid_to)) for c in changed.categories] == [("subsistence", "2024-06-30")]
    assert hospitals["H3404210001"].suspended and len(persons) == 1000


async def test_a_file_with_bad_rows_loads_nothing_and_reports_each_row_field_and_reason(empty_registry, tmp_path):
    good = write(tmp_path, PERSONS_HEADER + "340421199001010001,张三,340421,2023;2024,false\n",
                 CATEGORIES_HEADER, HOSPITALS_HEADER + "H3404210001,县人民医院,340421,county,true,false\n")
    assert (await import_registry(empty_registry, *good)).loaded
    before = await registry(empty_registry)

    bad = write(
        tmp_path,
        PERSONS_HEADER
        + "340421199001010001,张三,340421,2023;2024,true\n"   # line 2: fine (would blacklist him)
        + "340421199001010002,李四,340421,2O24,false\n"        # line 3: paid_years
        + "3404211990-0101-0003,王五,340421,2024,false\n"      # line 4: person_id
        + "340421199001010004,赵六,340421,2024,maybe\n"        # line 5: blacklisted
        + "340421199001010005,孙七,340421\n"                   # line 6: too few fields
        + "340421199001010001,张三,340421,2024,false\n",       # line 7: a second row for line 2's person
        CATEGORIES_HEADER
        + "340421199001010001,subsistence,2024-01-01,\n"        # line 2: fine
        + "340421199001010001,rich,2024-01-01,\n"               # line 3: category
        + "340421199001010001,monitored,2024-07-01,2024-06-30\n"  # line 4: valid_to before valid_from
        + "340421199001019999,monitored,2024-02-30,\n"          # line 5: not a date
        + "340421199001018888,monitored,2024-01-01,\n",         # line 6: nobody in persons.csv
        HOSPITALS_HEADER
        + "H3404210001,县人民医院,340421,county,true,true\n"    # line 2: fine (would suspend it)
        + "H3404210002,某卫生院,340421,clinic,true,false\n"     # line 3: level
        + "H3404210001,县人民医院,340421,county,true,false\n",  # line 4: duplicate code
    )
    done = run_importer(bad, empty_registry)
    assert done.returncode == 1, done.stdout + done.stderr
    report = done.stderr
    for expected in (
        "persons.csv line 3, paid_years: '2O24' is not a year",
        "persons.csv line 4, person_id: '340421**********0003' is not an identity number",
        "persons.csv line 5, blacklisted: 'maybe' is not true or false",
        "persons.csv line 6, row: has 3 fields, expected 5",
        "persons.csv line 7, person_id: 340421********0001 is already on line 2",
        "categories.csv line 3, category: 'rich' is not one of poverty_registered",
        "categories.csv line 4, valid_to: 2024-06-30 is before valid_from 2024-07-01",
        "categories.csv line 5, valid_from: '2024-02-30' is not a calendar date",
        "categories.csv line 6, person_id: 340421********8888 has no valid row in persons.csv",
        "hospitals.csv line 3, level: 'clinic' is not one of village",
        "hospitals.csv line 4, hospital_code: H3404210001 is already on line 2",
        "11 rejected rows; nothing was loaded",
    ):
        assert expected in report, f"{expected!r} not in:\n{report}"
    assert "340421199001010002" not in report and "李四" not in report  # identities stay masked
    assert await registry(empty_registry) == before  # nothing half-loaded


async def test_a_wrong_header_or_a_file_that_is_not_utf8_is_reported_at_its_line(empty_registry, tmp_path):
    paths = write(tmp_path, "person_id,name,region,paid_year,blacklisted\n340421199001010001,张三,340421,2024,false\n",
                  CATEGORIES_HEADER, HOSPITALS_HEADER)
    paths[2].write_bytes(codecs.BOM_UTF8 + HOSPITALS_HEADER.encode()
                         + "H1,县医院,340421,county,true,false\n".encode("gbk")
                         + "H2,乡卫生院,340421,township,true,maybe\n".encode())
    result = await import_registry(empty_registry, *paths)
    assert not result.loaded
    problems = [str(p) for p in result.report.sorted_problems(result.order)]
    assert problems == [
        "persons.csv line 1, header: missing paid_years; unknown 'paid_year'; "
        "expected person_id,name,region,paid_years,blacklisted",
        "hospitals.csv line 2, row: is not UTF-8 text (a GBK export? save the file as UTF-8)",
        "hospitals.csv line 3, suspended: 'maybe' is not true or false",
    ]
    assert await registry(empty_registry) == ({}, {})


async def test_an_imported_person_and_hospital_settle_through_the_pipeline(system, tmp_path):
    person, hospital = "340421199701010001", "H3404210177"
    paths = write(tmp_path, PERSONS_HEADER + f"{person},刘备,340421,2024,false\n",
                  CATEGORIES_HEADER + f"{person},subsistence,2024-01-01,\n",
                  HOSPITALS_HEADER + f"{hospital},县中医院,340421,county,true,false\n")
    result = await import_registry(system.pipeline.settings.database_url, *paths)
    assert result.loaded
    claim = claim_body(a="10000", person_id=person, hospital_code=hospital)
    await system.hospital.send(claim)
    bill = await system.hospital.answer(claim["claim_id"])
    assert bill.status == "settled", bill.rejection
    assert (bill.basic, bill.assistance) == (Decimal("7760.00"), Decimal("1568.00"))  # subsistence, favoured
    assert HOSPITALS  # the package's own hospitals are untouched by an import that does not name them


def test_row_rules_give_the_feeds_form_and_name_the_field_at_fault():
    pid, region, body = person_row(" 340421199001010001 ", "张三", "340421", "2024; 2023;2024", "是")
    assert Person.model_validate_json(body).model_dump() == Person(
        person_id=pid, name="张三", region=region, coverage=[{"year": 2023, "paid": True}, {"year": 2024, "paid": True}],
        blacklisted=True).model_dump()
    assert category_row("340421199001010001", "monitored", "2024-01-01", "")[1] == (
        '{"category":"monitored","valid_from":"2024-01-01","valid_to":null}')
    with pytest.raises(RowError) as error:
        person_row("340421199001010001", "", "340421", "2024", "false")
    assert (error.value.field, error.value.reason) == ("name", "is empty")
