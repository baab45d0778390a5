import pytest

from tests.e2e.conftest import HOSPITALS
from tests.factories import hospital_record
from tests.harness import Pipeline, fresh_database, pipeline_settings
from tests.infra import own_broker


@pytest.fixture(scope="package")
async def settled_year(embedded_broker_factory, database_url):
    """The real pipeline (real broker, real PostgreSQL) with a generated year
    of one region's claims settled and some reversed; yields (pipeline, url,
    the one-bills the hospitals got)."""
    from tests.simulation.year import settle_a_year

    url = await fresh_database(database_url, prefix="simulation")
    # a broker of its own: its consumer groups (named after the services) never meet another package's pipeline
    async with own_broker(embedded_broker_factory) as bootstrap:
        system = Pipeline(pipeline_settings(bootstrap, url))
        await system.start()
        try:
            await system.register(hospitals=[hospital_record(code, level) for level, code in HOSPITALS.items()])
            bills = await settle_a_year(system, HOSPITALS)
            yield system, url, bills
        finally:
            await system.stop()
