"""The OpenAPI document: generated, committed, and what the running gateway does.

schemathesis draws requests from the document served at ``/openapi.json`` by
a running gateway (real HTTP, real pipeline), signs them as a hospital
would, and checks every answer: no 500, no status, content type, header or
body outside the document.
"""

from __future__ import annotations

import asyncio

import orjson
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from medsettle.settings import ROOT, Settings
from services.gateway.app import create_app
from services.gateway.signing import signed_headers
from tests.gateway.conftest import COUNTY, COUNTY_KEY

COMMITTED = ROOT / "docs" / "openapi" / "gateway.json"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]
EXAMPLES_PER_OPERATION = 40


def generated_document() -> bytes:
    document = create_app(Settings(database_url="postgresql://unused")).openapi()
    return orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def test_the_committed_openapi_document_is_the_generated_one():
    assert COMMITTED.exists(), "docs/openapi/gateway.json is missing: run make docs"
    assert COMMITTED.read_bytes() == generated_document(), "docs/openapi/gateway.json is stale: run make docs"


def test_the_running_gateway_serves_the_generated_document(gateways):
    served = requests.get(f"{gateways[0].url}/openapi.json", timeout=10).json()
    assert served == orjson.loads(generated_document())
    assert requests.get(f"{gateways[0].url}/docs", timeout=10).status_code == 404  # nothing else open


class Signing(requests.auth.AuthBase):
    """Signs each request as §8 says, over its final path, query and body."""

    def __init__(self, hospital_code: str, key: str) -> None:
        self.hospital_code, self.key = hospital_code, key

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode()
        request.headers.update(signed_headers(self.hospital_code, self.key, request.method or "GET",
                                              request.path_url, body))
        return request


def fuzz(base_url: str) -> dict[str, set[int]]:
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    session = requests.Session()
    session.auth = Signing(COUNTY, COUNTY_KEY)
    seen: dict[str, set[int]] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        statuses = seen.setdefault(operation.label, set())

        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(), own=st.booleans())
        def call(case, own: bool) -> None:  # noqa: ANN001
            if own and isinstance(case.body, dict) and "hospital_code" in case.body:
                case.body["hospital_code"] = COUNTY  # half the claims are the caller's own, and go all the way
            if own and isinstance(case.body, dict) and "fund_total" in case.body:  # and half the books add up
                first, last = sorted((str(case.body.get("from")), str(case.body.get("to"))))
                case.body.update({"from": first, "to": last, "total": "0.00", "fund_total": "0.00", "claims": None})
            if isinstance(case.query, dict) and "wait" in case.query:
                case.query["wait"] = 3  # what the answer is does not depend on how long it may take
            response = case.call_and_validate(base_url=base_url, session=session, checks=CHECKS)
            statuses.add(response.status_code)

        call()
    return seen


async def test_schemathesis_finds_no_500_and_no_answer_outside_the_document(gateways):
    seen = await asyncio.to_thread(fuzz, gateways[0].url)  # the pipeline runs on this loop meanwhile
    assert sorted(seen) == ["GET /v1/claims/{claim_id}", "POST /v1/claims", "POST /v1/reconciliations"]
    # the drawn requests got through the signature to the work behind it, not only refusals
    assert {200, 403} <= seen["POST /v1/claims"], seen
    assert 200 in seen["POST /v1/reconciliations"] and 404 in seen["GET /v1/claims/{claim_id}"], seen

