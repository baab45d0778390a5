"""The secure Kafka profile (``medsettle.secure_kafka``) on Apache Kafka:
SASL/SCRAM over TLS, one principal per service, ACLs. The insurer's
principal is refused what is not its own by the broker itself, a wrong
password and a client without credentials are refused, and the whole
pipeline, each service signed in as itself, settles the worked examples."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    KafkaError,
    TopicAuthorizationFailedError,
)

from medsettle import topics
from medsettle.runtime import Runtime
from medsettle.secure_kafka import ADMIN, RIGHTS, SecureKafka, acl_bindings
from medsettle.settings import Settings
from tests.factories import claim_body, hospital_record, person_record
from tests.harness import STAGES, Hospital, Pipeline, fresh_database, pipeline_settings

PRINCIPAL_OF = {"EligibilityStage": "eligibility", "BasicStage": "basic", "SeriousIllnessStage": "insurer",
                "AssistanceStage": "assistance", "BackstopStage": "backstop", "SettlementStage": "settlement",
                "OperationsService": "operations"}
COUNTY, PROVINCE = "H3404210001", "H3400000001"


@pytest.fixture(scope="module")
async def secure(tmp_path_factory: pytest.TempPathFactory):
    kafka = SecureKafka(tmp_path_factory.mktemp("secure-kafka"), certs=tmp_path_factory.mktemp("kafka-certs"))
    kafka.start()
    try:
        await kafka.prepare(partitions=2)
        yield kafka
    finally:
        kafka.stop()


def test_every_principal_gets_exactly_its_topics_and_group_and_hospitals_none():
    assert set(RIGHTS) == {"eligibility", "basic", "insurer", "assistance", "backstop", "settlement", "operations",
                           "registry", "gateway"}  # no hospital among them
    insurer = {(name, op) for _, name, _, principal, op in acl_bindings() if principal == "User:insurer"}
    read, write, describe = 3, 4, 8
    assert insurer == {(topics.BASIC, read), (topics.BASIC, describe), (topics.SERIOUS_ILLNESS, write),
                       (topics.SERIOUS_ILLNESS, describe), (topics.DLQ, write), (topics.DLQ, describe),
                       ("insurer", read)}


def test_every_topic_a_service_declares_it_reads_or_writes_its_principal_may():
    # what each service subscribes to and publishes (its AsyncAPI declarations; a layer stage's in and out topic)
    for stage in STAGES:
        rights = RIGHTS[PRINCIPAL_OF[stage.__name__]]
        layer = hasattr(stage, "in_topic")  # a LayerStage declares its topics when built
        reads = (stage.in_topic,) if layer else tuple(stage.subscriptions)
        writes = (stage.out_topic,) if layer else tuple(stage.produces)
        assert set(reads) <= set(rights.reads), (stage.__name__, set(reads) - set(rights.reads))
        assert set(writes) <= set(rights.writes), (stage.__name__, set(writes) - set(rights.writes))
        assert rights.group == PRINCIPAL_OF[stage.__name__]


async def _read_one(kafka: SecureKafka, principal: str, topic: str, group: str | None = None,
                    password: str | None = None) -> None:
    consumer = AIOKafkaConsumer(*([topic] if group else []), **kafka.client(principal, password), group_id=group,
                                auto_offset_reset="earliest", enable_auto_commit=False, request_timeout_ms=10000)
    try:
        await consumer.start()  # a topic it may not read: the broker's TopicAuthorizationFailed, here
        if not group:
            consumer.assign([TopicPartition(topic, 0)])
        await consumer.getmany(timeout_ms=3000)
        await consumer.getmany(timeout_ms=1000)
    finally:
        await consumer.stop()


async def _write_one(kafka: SecureKafka, principal: str, topic: str, password: str | None = None) -> None:
    producer = AIOKafkaProducer(**kafka.client(principal, password), acks="all", request_timeout_ms=10000)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b'{"probe": true}', key=b"probe")
    finally:
        await producer.stop()


async def test_the_insurers_principal_is_refused_his_claims_and_his_settlements_by_the_broker(secure):
    # its own: read settlement.basic in its group, write settlement.serious-illness
    await _read_one(secure, "insurer", topics.BASIC, group="insurer")
    await _write_one(secure, "insurer", topics.SERIOUS_ILLNESS)
    # the broker's answer (error 29), in the insurer's own consumer group
    with pytest.raises(TopicAuthorizationFailedError, match=topics.CLAIMS):
        await _read_one(secure, "insurer", topics.CLAIMS, group="insurer")
    with pytest.raises(TopicAuthorizationFailedError, match=topics.SETTLEMENTS):
        await _write_one(secure, "insurer", topics.SETTLEMENTS)
    with pytest.raises(TopicAuthorizationFailedError):
        await _read_one(secure, "insurer", topics.SETTLEMENTS, group="insurer")
    with pytest.raises(TopicAuthorizationFailedError):
        await _write_one(secure, "insurer", topics.BASIC)  # nor forge the basic layer it reads
    with pytest.raises(GroupAuthorizationFailedError):
        await _read_one(secure, "insurer", topics.BASIC, group="basic")  # nor join another service's group
    # each refusal is in the broker's audit log (the crash test on this profile counts them: none there)
    refused = secure.denials()
    for topic in (topics.CLAIMS, topics.SETTLEMENTS):  # refused at its metadata already: DESCRIBE, or WRITE
        assert any(d.startswith("Principal = User:insurer is Denied operation = ")
                   and d.endswith(f"on resource = Topic:LITERAL:{topic}") for d in refused), refused


async def test_a_wrong_password_and_a_client_without_credentials_are_refused(secure, caplog):
    with pytest.raises(KafkaConnectionError):
        await _write_one(secure, "insurer", topics.SERIOUS_ILLNESS, password="not-the-password")
    # the broker's refusal, as aiokafka logs it before giving up on the bootstrap
    assert "SaslAuthenticationFailed" in caplog.text and "invalid credentials" in caplog.text
    caplog.clear()
    with pytest.raises(KafkaConnectionError):  # one principal's password is not another's
        await _read_one(secure, "settlement", topics.BACKSTOP, group="settlement",
                        password=secure.passwords["insurer"])
    assert "SaslAuthenticationFailed" in caplog.text
    plain = AIOKafkaProducer(bootstrap_servers=secure.bootstrap, request_timeout_ms=5000)  # a hospital, say
    with pytest.raises(KafkaError):
        await asyncio.wait_for(plain.start(), 30)
    await plain.stop()


def _secure_hospital(kafka: SecureKafka) -> Hospital:
    """The tests' hospital and registry feed, signed in as admin (in production: the gateway and registry principals)."""
    hospital = Hospital(kafka.bootstrap)
    hospital.producer = AIOKafkaProducer(**kafka.client(ADMIN), acks="all", linger_ms=1)
    hospital.consumer = AIOKafkaConsumer(topics.SETTLEMENTS, topics.DLQ, **kafka.client(ADMIN), group_id=None,
                                         auto_offset_reset="earliest", fetch_max_wait_ms=5, enable_auto_commit=False)
    return hospital


async def test_the_whole_pipeline_settles_the_worked_examples_each_service_signed_in_as_itself(secure, database_url):
    url = await fresh_database(database_url, prefix="secure")
    base = pipeline_settings(secure.bootstrap, url, kafka_idempotent_producer=True)
    pipeline = Pipeline(base)
    pipeline.runtimes = []
    for stage in STAGES:
        own = Settings(**{**base.model_dump(), **secure.settings(PRINCIPAL_OF[stage.__name__]),
                          "consumer_instance_id": f"{stage.__name__}-{uuid.uuid4().hex[:6]}"})
        pipeline.runtimes.append(Runtime(stage(own), own))
    pipeline.hospital = _secure_hospital(secure)
    await pipeline.start()
    try:
        await pipeline.register(
            persons=[person_record("340421199001010101"),
                     person_record("340421199001010102", categories=["poverty_registered", "subsistence"])],
            hospitals=[hospital_record(COUNTY, "county"), hospital_record(PROVINCE, "province")])
        first = claim_body(a="8000", b="2000", c="500", person_id="340421199001010101", hospital_code=COUNTY)
        second = claim_body(a="150000", b="50000", c="10000", person_id="340421199001010102",
                            hospital_code=PROVINCE, referral=True)
        for claim in (first, second):
            await pipeline.hospital.send(claim)
        one = await pipeline.hospital.answer(first["claim_id"], timeout=120)
        two = await pipeline.hospital.answer(second["claim_id"], timeout=120)
        assert (one.status, one.basic, one.personal) == ("settled", Decimal("6900.00"), Decimal("3600.00"))
        assert (two.status, two.basic, two.serious_illness, two.assistance, two.backstop, two.personal) == (
            "settled", Decimal("116550.00"), Decimal("48212.50"), Decimal("21166.25"), Decimal("0.00"),
            Decimal("24071.25"))
        # the only dead letter is the insurer's probe of the test above, dead-lettered by assistance (as its principal)
        assert [d["stage"] for d in pipeline.hospital.dead_letters if "probe" not in d["original"]] == []
    finally:
        await pipeline.stop()
