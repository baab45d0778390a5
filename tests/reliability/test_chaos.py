"""The crash test in short (make chaos runs 2,000 claims for 200 people)."""

from deploy.chaos import run_chaos


async def test_claims_survive_killed_services_and_a_lost_broker(database_url, tmp_path):
    # a minute of kills (one every 4 to 8 s) and one broker restart, then the hospitals keep resending until done
    report = await run_chaos(persons=10, claims=40, seed=11, database_url=database_url, kill_every=(4.0, 8.0),
                             chaos_seconds=60.0, restart_broker_after=15.0, timeout=300.0, log_dir=tmp_path)
    print(report.line(), f"({report.kills} kills, {report.seconds:.0f} s)")
    assert report.kills >= 5 and report.broker_restarts == 1, (report.kills, report.broker_restarts)
    assert report.details == [], report.details[:10]
    assert report.line() == "claims 40, confirmed 40, lost 0, duplicated 0, accumulator mismatches 0"
    assert report.fund_mismatches == 0
