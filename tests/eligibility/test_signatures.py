"""Signed claims: a hospital with a key must sign every message with it;
hospitals without one need not; keys never reach a log line."""

import json

import orjson
import structlog

from medsettle.contract import RejectionCode
from medsettle.logs import configure_logging
from medsettle.settings import Settings
from services.eligibility.app import SIGNATURE_HEADER, sign
from tests.eligibility.conftest import (
    HOSPITALS,
    OTHER_SIGNING_HOSPITAL,
    OTHER_SIGNING_KEY,
    SIGNING_HOSPITAL,
    SIGNING_KEY,
)
from tests.factories import claim_body, person_record


def pid(n: int) -> str:
    return f"34042119960101{n:04d}"


async def send_signed(system, claim: dict, key: str | None) -> None:
    body = orjson.dumps(claim)
    headers = [(SIGNATURE_HEADER, sign(key, body).encode())] if key else None
    await system.hospital.send(body, key=claim["claim_id"], headers=headers)


async def test_a_hospital_without_a_key_settles_unsigned_claims(system):
    person = pid(1)
    await system.pipeline.register(persons=[person_record(person)])
    claim = claim_body(a="100", person_id=person, hospital_code=HOSPITALS["county"])
    await send_signed(system, claim, None)
    assert (await system.hospital.answer(claim["claim_id"])).status == "settled"


async def test_a_signing_hospital_settles_only_claims_signed_with_its_own_key(system):
    person = pid(2)
    await system.pipeline.register(persons=[person_record(person)])
    unsigned = claim_body(a="100", person_id=person, hospital_code=SIGNING_HOSPITAL)
    borrowed = claim_body(a="100", person_id=person, hospital_code=SIGNING_HOSPITAL)
    good = claim_body(a="100", person_id=person, hospital_code=SIGNING_HOSPITAL)
    await send_signed(system, unsigned, None)
    await send_signed(system, borrowed, OTHER_SIGNING_KEY)  # another hospital's key
    await send_signed(system, good, SIGNING_KEY)
    for claim in (unsigned, borrowed):
        answer = await system.hospital.answer(claim["claim_id"])
        assert answer.rejection.code == RejectionCode.INVALID_SIGNATURE
        assert SIGNING_HOSPITAL in answer.rejection.message
    assert (await system.hospital.answer(good["claim_id"])).status == "settled"


async def test_a_signing_hospital_must_sign_its_cancels_too(system):
    person = pid(3)
    await system.pipeline.register(persons=[person_record(person)])
    claim = claim_body(a="100", person_id=person, hospital_code=OTHER_SIGNING_HOSPITAL)
    await send_signed(system, claim, OTHER_SIGNING_KEY)
    assert (await system.hospital.answer(claim["claim_id"])).status == "settled"
    cancel = {"type": "cancel", "claim_id": claim["claim_id"], "hospital_code": OTHER_SIGNING_HOSPITAL}
    await send_signed(system, cancel, None)
    refused = (await system.hospital.answers(claim["claim_id"], 2))[-1]
    assert refused.rejection.code == RejectionCode.INVALID_SIGNATURE
    await send_signed(system, cancel, OTHER_SIGNING_KEY)
    assert (await system.hospital.answers(claim["claim_id"], 3))[-1].status == "reversed"


def test_hospital_keys_never_reach_a_log_line(capsys, monkeypatch):
    secret = "s3cret-hmac-key-of-the-county-hospital"
    monkeypatch.setenv("HOSPITAL_KEYS", json.dumps({"H3404210001": secret}))
    settings = Settings()
    assert settings.hospital_keys == {"H3404210001": secret}
    assert secret not in repr(settings) and secret not in str(settings)
    try:
        configure_logging("eligibility", "INFO", "json")
        log = structlog.get_logger()
        log.info("settings_loaded", hospital_keys=settings.hospital_keys, settings=settings.model_dump())
        log.info("signing", key=secret, signature=sign(secret, b"{}"), hospital_code="H3404210001")
        log.warning("startup", settings=repr(settings))
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    finally:
        structlog.reset_defaults()
    assert len(lines) == 3
    text = json.dumps(lines, ensure_ascii=False)
    assert secret not in text and sign(secret, b"{}") not in text
    assert lines[0]["hospital_keys"] == "***" and lines[0]["settings"]["hospital_keys"] == "***"
    assert lines[1]["key"] == "***" and lines[1]["signature"] == "***" and lines[1]["hospital_code"] == "H3404210001"


def test_settings_read_hospital_keys_as_json_from_the_environment(monkeypatch):
    monkeypatch.setenv("HOSPITAL_KEYS", '{"H1": "k1", "H2": "k2"}')
    assert Settings().hospital_keys == {"H1": "k1", "H2": "k2"}
