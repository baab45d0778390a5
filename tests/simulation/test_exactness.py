"""Simulating with the policy in force reproduces what was actually paid, on
a year of claims settled (and some reversed) by the real pipeline."""

import os
import subprocess
import sys
from decimal import Decimal

import asyncpg
import orjson

from medsettle.policy import load_policy
from medsettle.settings import ROOT
from services.simulation.runner import Request, simulate

LIVE = ROOT / "policies" / "340421-2024.yaml"


def paid_by_the_bills(bills) -> dict[str, Decimal]:
    """Each fund's net from the hospitals' view: settled one-bills not reversed."""
    funds = dict.fromkeys(("390100", "390200", "610100", "640100"), Decimal(0))
    for answers in bills.values():
        if answers[-1].status != "settled":
            continue
        for detail in answers[-1].fund_details:
            funds[detail.fund_pay_type] += detail.amount
    return funds


async def test_the_policy_in_force_reproduces_every_fund_and_person_to_the_fen(settled_year):
    _, url, bills = settled_year
    report = await simulate(url, Request(region="340421", year=2024, candidate=load_policy(LIVE), workers=2),
                            policy_dir=ROOT / "policies")
    assert report["claims"] > 250 and report["reversals"] > 25 and report["persons"] == 48
    expected = paid_by_the_bills(bills)
    assert any(v > 0 for code, v in expected.items() if code != "390100"), "the year should reach every layer"
    for code, fund in report["funds"].items():
        assert fund["actual"] == fund["simulated"] == f"{expected[code]:.2f}", code
    # every claim, reversed ones included, got the same four amounts; so every person
    assert report["differences"] == {"claims": 0, "persons": 0}
    assert report["compensation_ratio"]["actual"] == report["compensation_ratio"]["simulated"]
    reached = report["serious_illness_threshold_reached"]
    assert reached["actual"] == reached["simulated"] > 0
    assert report["personal_change"]["pay_more"] == report["personal_change"]["pay_less"] == 0
    # cut into ranges of about 7 claims (a few persons each), each read and replayed on its own: the same report
    cut = await simulate(url, Request(region="340421", year=2024, candidate=load_policy(LIVE), workers=2, chunk=7),
                         policy_dir=ROOT / "policies")
    assert cut == report


async def test_the_simulation_touches_no_live_table(settled_year):
    _, url, _ = settled_year

    async def state():
        c = await asyncpg.connect(url)
        try:
            return [await c.fetch(f"SELECT * FROM {schema}.accumulators ORDER BY person_id")
                    for schema in ("basic", "insurer", "assistance", "backstop")] + [
                await c.fetch("SELECT claim_id, status, reversed_at FROM settlement.one_bills ORDER BY claim_id")]
        finally:
            await c.close()

    before = await state()
    await simulate(url, Request(region="340421", year=2024, candidate=load_policy(LIVE), workers=1),
                   policy_dir=ROOT / "policies")
    assert await state() == before


def _cli(url: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, DATABASE_URL=url, PYTHONPATH=f"{ROOT / 'libs'}:{ROOT}")
    return subprocess.run([sys.executable, "-m", "services.simulation", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=300)


async def test_the_command_prints_the_table_and_writes_the_json(settled_year, tmp_path):
    _, url, bills = settled_year
    raised = tmp_path / "340421-2025.yaml"  # next year's draft on this year's claims
    text = LIVE.read_text(encoding="utf-8").replace("policy: 340421-2024", "policy: 340421-2025").replace(
        "year: 2024", "year: 2025").replace("county:          {deductible: 600,  ratio: 75}",
                                            "county:          {deductible: 600,  ratio: 80}")
    raised.write_text(text, encoding="utf-8")
    out = tmp_path / "out.json"
    done = _cli(url, "--policy", str(raised), "--region", "340421", "--year", "2024", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "390100" in done.stdout and "compensation ratio" in done.stdout
    report = orjson.loads(out.read_bytes())
    assert (report["region"], report["year"], report["candidate"]["policy"]) == ("340421", 2024, "340421-2025")
    assert report["funds"]["390100"]["actual"] == f"{paid_by_the_bills(bills)['390100']:.2f}"
    assert Decimal(report["funds"]["390100"]["simulated"]) > Decimal(report["funds"]["390100"]["actual"])
    assert Decimal(report["compensation_ratio"]["simulated"]) > Decimal(report["compensation_ratio"]["actual"])
    levels = {row["key"]: row for row in report["by_level"]}
    assert levels["county"]["simulated"] > levels["county"]["actual"]
    # (other levels may move too: a person's larger county payment lowers the serious-illness base that
    # their other claims build on; tests/simulation/test_replay.py checks one ratio by hand)
    assert all("*" in row["person"] for row in report["personal_change"]["largest_decreases"])
    # (a few may pay more: a layer capped by the year, such as the backstop, can shift between claims)
    assert report["personal_change"]["pay_less"] > report["personal_change"]["pay_more"]


async def test_an_invalid_candidate_is_refused_with_the_file_the_field_and_the_reason(settled_year, tmp_path):
    _, url, _ = settled_year
    bad = tmp_path / "340421-2024.yaml"
    bad.write_text(LIVE.read_text(encoding="utf-8").replace("ratio: 75}", "ratio: 175}"), encoding="utf-8")
    done = _cli(url, "--policy", str(bad), "--region", "340421", "--year", "2024", "--out", str(tmp_path / "x.json"))
    assert done.returncode == 2
    assert f"{bad}: basic.inpatient.levels.county.ratio: Input should be less than or equal to 100" in done.stderr
    other = tmp_path / "150900-2024.yaml"
    other.write_text((ROOT / "policies" / "150900-2024.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    done = _cli(url, "--policy", str(other), "--region", "340421", "--year", "2024", "--out", str(tmp_path / "x.json"))
    assert done.returncode == 2 and "region 150900, not of region 340421" in done.stderr
    assert not (tmp_path / "x.json").exists()
