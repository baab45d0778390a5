import pytest

from tests.factories import hospital_record
from tests.harness import Pipeline, fresh_database, pipeline_settings

SIGNING_HOSPITAL = "H3404210099"
SIGNING_KEY = "county-hospital-signing-key"

HOSPITALS = {
    "village": "H3404210010",
    "township": "H3404210011",
    "county": "H3404210001",
    "city": "H3404000001",
    "province": "H3400000001",
    "out_of_province": "H3100000001",
}


@pytest.fixture(scope="package")
async def pipeline(kafka_bootstrap, database_url):
    url = await fresh_database(database_url)
    settings = pipeline_settings(kafka_bootstrap, url, hospital_keys={SIGNING_HOSPITAL: SIGNING_KEY})
    system = Pipeline(settings)
    await system.start()
    await system.register(hospitals=[hospital_record(code, level) for level, code in HOSPITALS.items()]
                          + [hospital_record(SIGNING_HOSPITAL, "county"),
                             hospital_record("H1509000001", "county", region="150900")])
    yield system
    await system.stop()
