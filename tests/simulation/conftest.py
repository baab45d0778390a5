import pytest

from tests.e2e.conftest import HOSPITALS
from tests.factories import hospital_record
from tests.harness import Pipeline, fresh_database, pipeline_settings


@pytest.fixture(scope="package")
async def settled_year(kafka_bootstrap, database_url):
    """The real pipeline (real broker, real PostgreSQL) with a generated year
    of one region's claims settled and some reversed; yields (pipeline, url,
    the one-bills the hospitals got)."""
    from tests.simulation.year import settle_a_year

    url = await fresh_database(database_url, prefix="simulation")
    system = Pipeline(pipeline_settings(kafka_bootstrap, url))
    await system.start()
    try:
        await system.register(hospitals=[hospital_record(code, level) for level, code in HOSPITALS.items()])
        bills = await settle_a_year(system, HOSPITALS)
        yield system, url, bills
    finally:
        await system.stop()
