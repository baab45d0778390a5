"""Settings from the environment (the variables CONTRACT.md §7 names)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ROOT = Path(__file__).resolve().parents[2]


LOCAL_TOPIC_PARTITIONS = 2
"""Partitions per topic on a broker started here, on this one machine (the
embedded Tansu, or one Apache Kafka node: ``make run``, ``make bench``): each
service runs as one process there, so more buy no parallelism, while every
produce and fetch costs the broker more with the partitions it touches. On
Apache Kafka, 2 against 8 gave 13% more claims/s in 10-s windows (734 and 758
against 655 and 668) at 12% less CPU a claim, and p99 282-312 against 393-425
ms at 130 claims/s; over 60 s, 517 against 509, within the spread (README
"Brokers", "Speed", 2026-12-06). Not 1: a stage's batch of a
few hundred documents then outgrows one record batch
(``PRODUCER_BATCH_BYTES``) and goes out in several produce requests one after
another, and the next stage takes it in pieces."""

TOPIC_PARTITIONS = 8
"""Partitions per topic on a broker given by ``KAFKA_BOOTSTRAP_SERVERS`` (a
cluster of its own, as ``docker-compose.yml`` asks): up to 8 copies of a
service share the work. Topics cannot lose partitions later, and adding some
moves persons to other partitions, so a cluster gets room to grow at once."""


class Settings(BaseSettings):
    """Everything a service reads from its environment.

    ``DATABASE_URL`` may differ per service (the insurer runs on its own
    database); when it is unset the process is expected to be started by the
    runner, which sets it to the embedded server.
    """

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    kafka_bootstrap_servers: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers")
    database_url: str | None = Field(None, description="PostgreSQL URL; unset means the embedded server")
    dashboard_port: int = Field(8080, description="port of the operator dashboard")
    gateway_port: int = Field(8000, description="port of the hospital HTTP API (CONTRACT §8)")
    gateway_host: str = Field("127.0.0.1", description="address the hospital HTTP API listens on")
    gateway_fetch_max_wait_ms: int = Field(
        5, ge=1,
        description="how long the gateway's reader of his.settlements lets the broker hold an empty fetch while a "
                    "request waits: a cashier at the counter waits on that reader (README \"Hospital HTTP API\"); "
                    "with no request waiting it fetches as every service does (FETCH_MAX_WAIT_MS)",
    )
    gateway_nice: int = Field(
        -10, ge=-20, le=19,
        description="the nice value the runner (make run, make bench) starts the gateway with, against its own: "
                    "below 0 a core goes to the gateway first when a request or an answer arrives (README "
                    "\"Hospital HTTP API\"); needs CAP_SYS_NICE (root), else it runs as the others",
    )
    policy_dir: Path = Field(ROOT / "policies", description="folder of policy files, one per region and year")
    topic_partitions: int | None = Field(
        None, ge=1,
        description="partitions of each topic created at start-up; unset: 2 on a broker started here (Tansu or one "
                    "Apache Kafka node: one process per service on one machine, and the broker pays for every "
                    "partition of every produce and fetch), 8 on a broker given by KAFKA_BOOTSTRAP_SERVERS (room "
                    "for 8 copies of a service)",
    )
    consumer_max_records: int = Field(500, description="largest batch a stage takes from Kafka at once")
    fetch_max_wait_ms: int = Field(
        50, ge=1,
        description="how long the broker holds a fetch that finds no data: shorter answers an idle system sooner"
                    " but every consumer asks more often (at 5 ms an idle system burned 1.3 of 2 cores in fetches)")
    fetch_min_bytes: int = Field(
        1, ge=1,
        description="how much data a held fetch waits for (up to FETCH_MAX_WAIT_MS) before the broker answers it: "
                    "1 answers at the first record")
    db_pool_size: int = Field(4, description="connections in each service's pool")
    producer_batch_bytes: int = Field(
        512 * 1024, ge=16 * 1024,
        description="largest batch of records the producer sends to one partition at once (aiokafka's default, "
                    "16 KiB, holds six documents: a stage's batch then went out in several produce requests one "
                    "after the other, each waiting for the broker); under the broker's 1 MiB record-batch limit",
    )
    gc_threshold: int = Field(
        50_000, ge=0,
        description="allocations between two runs of Python's cycle collector in a service process (Python's "
                    "default: 700); the objects alive after start-up are frozen out of its scans. 0: Python's "
                    "defaults. At 700 the collector took about 40% of a stage's CPU per claim",
    )
    kafka_idempotent_producer: bool = Field(
        True,
        description="the idempotent producer (KIP-98: the broker drops a retried batch it already wrote, so a "
                    "retry after a lost answer never writes a document twice); Apache Kafka has it, the embedded "
                    "Tansu broker does not (its InitProducerId fails), so whatever starts Tansu sets this false",
    )
    consumer_instance_id: str | None = Field(
        None,
        description="static consumer-group membership (KIP-345): a process restarted with the same id takes its "
                    "partitions back at once instead of waiting for the dead member's session to expire; one id "
                    "per running copy of a service (make run sets the service's name)",
    )
    metrics_port: int = Field(0, description="port of this service's /metrics and /health (0: none)")
    http_host: str = Field("127.0.0.1", description="address the service's HTTP server listens on")
    stuck_after_seconds: float = Field(
        60.0, description="a claim no stage has answered after this is driven again from eligibility's records"
    )
    stuck_check_seconds: float = Field(5.0, description="how often eligibility looks for stuck claims (0: never)")
    log_level: str = Field("INFO", description="structlog level")
    log_format: str = Field("json", description="json, or console for people")
    hospital_keys: dict[str, str | list[str]] = Field(
        default_factory=dict,
        description="HMAC-SHA256 keys of hospitals that must sign their claims (JSON object: hospital code to a key, "
                    "or to a list of keys while one is rotated; the first signs, any is accepted)",
        repr=False,  # never in a repr, so never in a log line or a traceback
    )
    hospital_keys_file: Path | None = Field(
        None, description="a JSON file of the same shape as HOSPITAL_KEYS, added to it (medsettle.hospital_keys)",
    )
    audit_sample_rate: float = Field(
        0.01, ge=0, le=1, description="share of accepted claims drawn for a random audit (by a hash of claim_id)",
    )
    audit_cost_factor: Decimal = Field(
        Decimal("3"), gt=0,
        description="a claim costing more than this many times the average of its main diagnosis is flagged",
    )
    audit_cost_min_claims: int = Field(
        5, ge=1, description="claims of a diagnosis needed before its average is used to flag outliers",
    )

    # ------------------------------------------------ operators' view (dashboard)
    health_broker_timeout_seconds: float = Field(2.0, description="how long /health waits for the broker to answer")
    dashboard_host: str = Field("127.0.0.1", description="address the operator dashboard listens on")
    dashboard_users: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description='operator users as JSON {"name": {"password_hash": "scrypt$...", "role": "viewer"|"operator"}}, '
                    "for the dashboard and the services' operator APIs; empty: nobody signs in (make run sets the "
                    "development pair, deploy/dev_credentials.py)",
    )
    dashboard_secret: str | None = Field(
        None, description="key signing the dashboard's session cookie; unset: random per start")
    dashboard_stuck_after_seconds: float = Field(
        30.0, description="an accepted claim with no one-bill after this is stuck")
    dashboard_pool_size: int = Field(3, description="connections of the dashboard's read-only pool")
    dashboard_payout_bands: list[Decimal] = Field(
        default_factory=lambda: [Decimal(0), Decimal(10_000), Decimal(30_000), Decimal(50_000)],
        description="lower bounds (yuan) of the dashboard's serious-illness payout buckets per one-bill, from 0 "
                    "and ascending; the last bucket has no upper end (JSON list)",
    )
    clearing_close_day: int | None = Field(
        None, ge=1, le=28,
        description="day of the next month on which a month's clearing closes by itself (00:00 CST); "
                    "unset: only operators close months",
    )
    eligibility_api_url: str = Field("http://127.0.0.1:9101", description="eligibility's operator API (reviews)")
    operations_api_url: str = Field("http://127.0.0.1:9107", description="the operations service's API (dead letters)")
    service_metrics_urls: dict[str, str] = Field(
        default_factory=lambda: {
            "eligibility": "http://127.0.0.1:9101/metrics",
            "basic": "http://127.0.0.1:9102/metrics",
            "insurer": "http://127.0.0.1:9103/metrics",
            "assistance": "http://127.0.0.1:9104/metrics",
            "backstop": "http://127.0.0.1:9105/metrics",
            "settlement": "http://127.0.0.1:9106/metrics",
            "operations": "http://127.0.0.1:9107/metrics",
        },
        description="each service's /metrics, read by the dashboard for consumer lag and dead letters (JSON object)",
    )

    @field_validator("dashboard_payout_bands")
    @classmethod
    def _bands_from_zero(cls, bands: list[Decimal]) -> list[Decimal]:
        if not bands or bands[0] != 0:
            raise ValueError("payout bands start at 0, so that every amount falls in one")
        if any(upper <= lower for lower, upper in zip(bands, bands[1:])):
            raise ValueError(f"payout bands must ascend: {[str(b) for b in bands]}")
        return bands

    # ------------------------------------------------ security (operator access, secrets)
    operator_api_token: str | None = Field(
        None, repr=False,
        description="the dashboard's service credential for the services' operator APIs (Authorization: Bearer); "
                    "unset: the services accept people's HTTP Basic only, and the dashboard cannot call them",
    )
    dashboard_development_users: bool = Field(
        False, description="set by make run only: DASHBOARD_USERS holds the development pair, named on the login page")
    login_throttle_failures: int = Field(
        5, ge=1, description="failed sign-ins of one user name or one address before it must wait")
    login_throttle_seconds: float = Field(
        300.0, gt=0, description="the window of those failures, and how long the wait lasts")
    kafka_security_protocol: Literal["PLAINTEXT", "SASL_SSL", "SASL_PLAINTEXT"] = Field(
        "PLAINTEXT", description="how the Kafka clients connect: PLAINTEXT (make run), or SASL_SSL on the secure "
                                 "profile (SCRAM user and password below, the broker's certificate checked against "
                                 "KAFKA_SSL_CAFILE)")
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = Field(
        "SCRAM-SHA-512", description="the SASL mechanism of the Kafka clients")
    kafka_username: str | None = Field(None, description="this service's Kafka principal (SCRAM user)")
    kafka_password: str | None = Field(None, repr=False, description="its SCRAM password")
    kafka_ssl_cafile: Path | None = Field(None, description="the CA that signed the broker's certificate (PEM)")

    def kafka_client_security(self) -> dict[str, Any]:
        """The security arguments of an aiokafka client (consumer, producer, admin)."""
        if self.kafka_security_protocol == "PLAINTEXT":
            return {}
        options: dict[str, Any] = {
            "security_protocol": self.kafka_security_protocol,
            "sasl_mechanism": self.kafka_sasl_mechanism,
            "sasl_plain_username": self.kafka_username,
            "sasl_plain_password": self.kafka_password,
        }
        if self.kafka_security_protocol == "SASL_SSL":
            from aiokafka.helpers import create_ssl_context

            options["ssl_context"] = create_ssl_context(cafile=str(self.kafka_ssl_cafile) if self.kafka_ssl_cafile
                                                        else None)
        return options

    def faststream_security(self) -> Any:
        """The same for faststream's ``KafkaBroker(security=...)``; None on PLAINTEXT."""
        if self.kafka_security_protocol == "PLAINTEXT":
            return None
        from faststream.security import SASLPlaintext, SASLScram256, SASLScram512

        kind = {"SCRAM-SHA-512": SASLScram512, "SCRAM-SHA-256": SASLScram256, "PLAIN": SASLPlaintext}
        options = self.kafka_client_security()
        return kind[self.kafka_sasl_mechanism](self.kafka_username or "", self.kafka_password or "",
                                               ssl_context=options.get("ssl_context"),
                                               use_ssl=self.kafka_security_protocol == "SASL_SSL")

    # ------------------------------------------------ Kafka clients

    def bootstrap_list(self) -> list[str]:
        """``KAFKA_BOOTSTRAP_SERVERS`` as a list of host:port: FastStream takes a
        string for one address (``"a:1,b:2"`` would be one host named ``a:1,b``)."""
        return [server.strip() for server in self.kafka_bootstrap_servers.split(",") if server.strip()]

    def partitions(self, *, local: bool) -> int:
        """Partitions of the topics created at start-up (``topic_partitions``);
        ``local``: on a broker started here, on this machine."""
        if self.topic_partitions is not None:
            return self.topic_partitions
        return LOCAL_TOPIC_PARTITIONS if local else TOPIC_PARTITIONS

    def producer_options(self) -> dict[str, Any]:
        """How every service's producer sends; the bench's bare relays send the
        same way, so that the floor measures the same clients."""
        options: dict[str, Any] = {"acks": "all", "linger_ms": 1, "max_batch_size": self.producer_batch_bytes}
        if self.kafka_idempotent_producer:
            options["enable_idempotence"] = True
        return options

    def consumer_options(self) -> dict[str, Any]:
        """How every service's consumer fetches (offsets committed by hand,
        after the work is durable); the bench's bare relays fetch the same way."""
        return {
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "fetch_max_wait_ms": self.fetch_max_wait_ms,
            "fetch_min_bytes": self.fetch_min_bytes,
            "max_partition_fetch_bytes": 8 * 1024 * 1024,
            "session_timeout_ms": 10_000,
            "heartbeat_interval_ms": 1_000,
        }
