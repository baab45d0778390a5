"""A pipeline of this package's own (its own broker, so its consumer groups
never meet another package's pipeline), with eligibility's operator API served
on a free port, as ``make run`` serves it on METRICS_PORT."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from medsettle.embedded import free_port
from medsettle.httpserver import ServiceHttp
from services.eligibility.app import EligibilityStage
from tests.factories import hospital_record
from tests.harness import Pipeline, fresh_database, pipeline_settings
from tests.infra import own_broker
from tests.security import credentials

SIGNING_HOSPITAL = "H3404210199"
SIGNING_KEY = "township-hospital-signing-key"
OTHER_SIGNING_HOSPITAL = "H3404210198"
OTHER_SIGNING_KEY = "another-hospital-signing-key"
SAMPLE_RATE = 0.05

HOSPITALS = {
    "township": "H3404210111",
    "county": "H3404210101",
    "city": "H3404000101",
}


@dataclass
class System:
    pipeline: Pipeline
    api: httpx.AsyncClient  # eligibility's operator API, signed in as an operator
    url: str = ""

    @property
    def hospital(self):  # noqa: ANN201
        return self.pipeline.hospital

    @property
    def stage(self) -> EligibilityStage:
        return self.pipeline.stage(EligibilityStage)


@pytest.fixture(scope="package")
async def system(database_url: str, embedded_broker_factory: Callable[[], Any]) -> AsyncIterator[System]:
    url = await fresh_database(database_url, prefix="elig")
    async with own_broker(embedded_broker_factory) as bootstrap:
        settings = pipeline_settings(
            bootstrap, url,
            hospital_keys={SIGNING_HOSPITAL: SIGNING_KEY, OTHER_SIGNING_HOSPITAL: OTHER_SIGNING_KEY},
            audit_sample_rate=SAMPLE_RATE,
        )
        pipeline = Pipeline(settings)
        await pipeline.start()
        eligibility = pipeline.runtime(EligibilityStage)
        port = free_port()
        http = ServiceHttp("eligibility", "127.0.0.1", port, eligibility.health, eligibility.service.routes(),
                           guard=credentials.guard(), pool=eligibility.service.pool)
        try:
            await http.start()
            await pipeline.register(hospitals=[hospital_record(code, level) for level, code in HOSPITALS.items()]
                                    + [hospital_record(SIGNING_HOSPITAL, "township"),
                                       hospital_record(OTHER_SIGNING_HOSPITAL, "township")])
            url = f"http://127.0.0.1:{port}"
            async with httpx.AsyncClient(base_url=url, timeout=10, auth=credentials.as_operator()) as api:
                yield System(pipeline, api, url)
        finally:
            await http.stop()
            await pipeline.stop()
