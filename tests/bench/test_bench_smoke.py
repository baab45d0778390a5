"""``make bench`` end to end, very short: every phase runs and reports."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from medsettle.settings import ROOT


def bench(bootstrap: str, database_url: str, out: Path, *options: str) -> tuple[subprocess.CompletedProcess, dict]:
    """``python -m deploy.bench`` with a small county on the given broker and server; its run and its JSON."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "libs"), str(ROOT)])}
    finished = subprocess.run(
        [sys.executable, "-m", "deploy.bench", *options, "--latency-seconds", "1", "--persons", "300",
         "--bootstrap", bootstrap, "--database-url", database_url, "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=150,
    )
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    return finished, orjson.loads(out.read_bytes())


@pytest.fixture
def broker(embedded_broker_factory):
    """A broker of the test's own (the bench's consumer groups are the services'), killed after it."""
    broker = embedded_broker_factory()
    yield broker
    broker.kill()


def test_a_short_bench_settles_claims_measures_every_phase_and_writes_its_table(
        broker, database_url, tmp_path):
    finished, results = bench(broker.bootstrap, database_url, tmp_path / "bench.json",
                              "--seconds", "3", "--warmup", "6", "--in-flight", "300")
    assert results["throughput"]["answers"] > 0 and results["throughput"]["statuses"].get("settled", 0) > 0
    assert [lat["share_percent"] for lat in results["latency"]] == [25, 50]
    assert all(lat["answered"] > 0 and lat["lost"] == 0 and lat["p99_ms"] >= lat["p50_ms"] for lat in results["latency"])
    http = results["latency"][0]["http"]  # the HTTP path at 25%, right after the Kafka path at the same rate
    assert http["rate"] == results["latency"][0]["rate"] and "http" not in results["latency"][1]
    assert http["answered"] > 0 and http["lost"] == 0 and set(http["statuses"]) <= {"settled", "trial", "rejected"}
    assert http["statuses"].get("settled", 0) > 0 and http["p99_ms"] >= http["p50_ms"] > 0
    assert http["added_p50_ms"] == round(http["p50_ms"] - results["latency"][0]["p50_ms"], 2)
    assert http["added_measured"] == http["answered"] and "gateway" in http["processes"]
    # the gateway first for a core, the bench's cashiers at its priority: both -10 where a priority may be
    # raised (CAP_SYS_NICE), both as they were where not, never the one without the other
    priority = results["priority"]
    assert priority["gateway"]["autogroup_nice"] == priority["bench"]["autogroup_nice"]
    assert priority["gateway"]["nice"] <= priority["bench"]["nice"]
    assert results["unexpected_answers"] == 0  # the Kafka path's cashier left the HTTP answers alone
    assert results["floor"]["answers"] > 0 and results["floor"]["per_second"] > 0
    assert [lat["share_percent"] for lat in results["floor"]["latency"]] == [25, 50]
    services = {"eligibility", "basic", "insurer", "assistance", "backstop", "settlement"}
    assert services | {"gateway"} <= set(results["processes"])
    assert {key.split()[0] for key in results["batches"]} == services
    assert "throughput at saturation" in finished.stdout and "floor: six bare hops" in finished.stdout
    assert "over HTTP at" in finished.stdout and "HTTP adds" in finished.stdout


def test_paced_rates_alone_measure_the_pipeline_and_the_bare_hops_at_the_same_rate(
        broker, database_url, tmp_path):
    finished, results = bench(broker.bootstrap, database_url, tmp_path / "bench.json", "--seconds", "0", "--rates", "20",
                              "--no-http")
    assert "throughput" not in results
    assert [(lat["share_percent"], lat["rate"]) for lat in results["latency"]] == [(None, 20.0)]
    assert "http" not in results["latency"][0] and "gateway" not in results["latency"][0]["processes"]
    assert [(lat["share_percent"], lat["rate"]) for lat in results["floor"]["latency"]] == [(None, 20.0)]
    assert all(lat["answered"] > 0 and lat["lost"] == 0 for lat in results["floor"]["latency"])
    assert "per_second" not in results["floor"]  # no saturation run, so no floor throughput either
    assert "floor latency at 20/s" in finished.stdout and "floor: six bare hops" not in finished.stdout
