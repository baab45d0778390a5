"""Secrets: compose starts nothing with a default credential, and Grafana's
database user reads the one-bills' figures and nothing else."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import asyncpg
import pytest
import yaml

from medsettle.db import create_pool, migrate
from medsettle.settings import ROOT
from tests.harness import fresh_database

KAFKA_PRINCIPALS = ("ELIGIBILITY", "BASIC", "INSURER", "ASSISTANCE", "BACKSTOP", "SETTLEMENT", "OPERATIONS",
                    "REGISTRY", "GATEWAY")
SECRETS = ("POSTGRES_PASSWORD", "DASHBOARD_USERS", "DASHBOARD_SECRET", "OPERATOR_API_TOKEN",
           "GRAFANA_ADMIN_PASSWORD", "GRAFANA_DB_PASSWORD", "KAFKA_ADMIN_PASSWORD",
           *(f"KAFKA_PASSWORD_{p}" for p in KAFKA_PRINCIPALS))
READER_SQL = ROOT / "deploy" / "grafana" / "sql" / "reader.sql"


def _compose_config(env: dict[str, str]) -> subprocess.CompletedProcess:
    docker_compose = shutil.which("docker-compose")
    assert docker_compose, "docker-compose is missing (make system-deps installs it)"
    clean = {k: v for k, v in os.environ.items() if k not in SECRETS}
    return subprocess.run([docker_compose, "-f", str(ROOT / "docker-compose.yml"), "config"], cwd=ROOT,
                          env={**clean, **env}, capture_output=True, text=True, timeout=60)


def test_compose_refuses_to_start_without_each_secret_and_has_no_default_credential():
    given = {name: f"value-of-{name.lower()}" for name in SECRETS}
    given["DASHBOARD_USERS"] = '{"li": {"password_hash": "scrypt$16384$8$1$c2FsdA$aGFzaA", "role": "operator"}}'
    for missing in SECRETS:
        refused = _compose_config({k: v for k, v in given.items() if k != missing})
        assert refused.returncode != 0 and missing in refused.stderr, (missing, refused.stderr[-500:])
    accepted = _compose_config(given)
    assert accepted.returncode == 0, accepted.stderr
    config = accepted.stdout
    assert "admin/admin" not in config and "settlement:settlement@" not in config
    assert not re.search(r"GF_SECURITY_ADMIN_PASSWORD: admin\b", config)
    assert "viewer-dev" not in config and "operator-dev" not in config
    assert "MEDSETTLE_DB_USER: grafana_reader" in config
    # the services with an operator API get the users and the credential; the others (the insurer above all) not
    services = yaml.safe_load(config)["services"]
    for name, service in services.items():
        env = service.get("environment") or {}
        assert ("OPERATOR_API_TOKEN" in env) == (name in ("eligibility", "operations", "dashboard")), name
        assert ("DASHBOARD_USERS" in env) == (name in ("eligibility", "operations", "dashboard")), name
    assert services["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"] == "value-of-grafana_admin_password"
    # the secure Kafka profile: each service signs in as its own principal over SASL_SSL, no PLAINTEXT listener
    for name in ("eligibility", "basic", "insurer", "assistance", "backstop", "settlement", "operations"):
        env = services[name]["environment"]
        assert (env["KAFKA_SECURITY_PROTOCOL"], env["KAFKA_USERNAME"]) == ("SASL_SSL", name)
        assert env["KAFKA_PASSWORD"] == f"value-of-kafka_password_{name}"
    assert services["topics"]["environment"]["KAFKA_USERNAME"] == "admin"
    assert "PLAINTEXT://" not in config and "PLAINTEXT" not in str(services["kafka"])


@pytest.fixture
async def settlement_database(database_url: str):
    url = await fresh_database(database_url, prefix="reader")
    pool = await create_pool(url, "settlement", size=1)
    try:
        await migrate(pool, "settlement", ROOT / "services" / "settlement" / "migrations")
        yield url, pool
    finally:
        await pool.close()


def _dashboard_queries() -> list[str]:
    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            found.extend(v for k, v in node.items() if k == "rawSql")
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(json.loads((ROOT / "deploy" / "grafana" / "dashboards" / "medsettle.json").read_text(encoding="utf-8")))
    return [re.sub(r"\$\{?year\}?", "2024", q).replace("$month", "3") for q in found]


async def test_grafanas_database_user_reads_the_dashboards_figures_and_nothing_else(settlement_database):
    url, pool = settlement_database
    async with pool.acquire() as c:
        await c.execute("CREATE SCHEMA IF NOT EXISTS eligibility; CREATE TABLE eligibility.persons (person_id text)")
        # psql's -v reader_password=..., as compose's grafana-reader job passes it; run twice: it may run again
        for _ in range(2):
            await c.execute(READER_SQL.read_text(encoding="utf-8").replace(":'reader_password'", "'reader-pw'"))
    reader = await asyncpg.connect(url, user="grafana_reader", password="reader-pw")
    try:
        queries = _dashboard_queries()
        assert len(queries) >= 4
        for query in queries:
            await reader.fetch(query)  # every panel of the provisioned dashboard works
        for forbidden in ("SELECT person_id FROM settlement.one_bills", "SELECT body FROM settlement.one_bills",
                          "SELECT * FROM settlement.one_bills", "SELECT * FROM settlement.inbox",
                          "SELECT * FROM eligibility.persons"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await reader.fetch(forbidden)
        for write in ("DELETE FROM settlement.one_bills", "UPDATE settlement.one_bills SET total = 0",
                      "CREATE TABLE public.grafana_was_here (x int)", "CREATE TABLE settlement.x (x int)"):
            with pytest.raises((asyncpg.InsufficientPrivilegeError, asyncpg.ReadOnlySQLTransactionError)):
                await reader.execute(write)
    finally:
        await reader.close()
