"""The dashboard's page 方案测算 in headless Chromium, on the year the real
pipeline settled (tests/simulation/conftest.py)."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from playwright.async_api import Browser, Page, expect

from deploy.dev_credentials import dev_users
from medsettle.settings import ROOT, Settings
from services.dashboard.app import build_app
from tests.dashboard.conftest import ARTIFACTS, free_port, serving
from tests.dashboard.test_browser import browser, logged_in  # noqa: F401 - browser is a fixture
from tests.simulation.test_exactness import LIVE, paid_by_the_bills

RAISED = LIVE.read_text(encoding="utf-8").replace("policy: 340421-2024", "policy: 340421-2025").replace(
    "year: 2024", "year: 2025").replace("county:          {deductible: 600,  ratio: 75}",
                                        "county:          {deductible: 600,  ratio: 80}")


def money(amount: Decimal) -> str:
    return f"{amount:,.2f}"


@pytest.fixture(scope="module")
async def page_url(settled_year, tmp_path_factory) -> AsyncIterator[str]:
    _, url, _ = settled_year
    folder = tmp_path_factory.mktemp("candidates")
    shutil.copy(LIVE, folder / LIVE.name)
    (folder / "340421-2026.yaml").write_text(
        LIVE.read_text(encoding="utf-8").replace("policy: 340421-2024", "policy: 340421-2026")
        .replace("year: 2024", "year: 2026").replace("ratio: 75}", "ratio: 175}"), encoding="utf-8")
    os.environ["SIMULATION_POLICY_DIR"] = str(folder)
    try:
        nobody = f"http://127.0.0.1:{free_port()}"
        settings = Settings(database_url=url, policy_dir=ROOT / "policies", eligibility_api_url=nobody,
                            operations_api_url=nobody, service_metrics_urls={}, log_level="WARNING",
                            dashboard_users=dev_users(), dashboard_development_users=True)  # as under make run
        port = free_port()
        async with serving(build_app(settings), port):
            yield f"http://127.0.0.1:{port}"
    finally:
        del os.environ["SIMULATION_POLICY_DIR"]


async def on_the_page(browser: Browser, url: str, user: str, password: str) -> Page:
    page = await logged_in(browser, url, user, password)
    await page.goto(f"{url}/simulation")
    await expect(page.locator("#who-name")).to_have_text(user)
    return page


async def test_an_operator_simulates_the_policy_in_force_a_refused_file_and_an_uploaded_draft(
        settled_year, page_url, browser, tmp_path):
    _, _, bills = settled_year
    paid = paid_by_the_bills(bills)
    page = await on_the_page(browser, page_url, "operator", "operator-dev")
    await expect(page.locator("#upload-bar")).to_be_visible()

    # the policy in force, replayed: every fund as actually paid, to the fen
    await page.select_option("#candidate", "340421-2024.yaml")
    await page.select_option("#claims-of", "340421/2024")
    await page.click("#run")
    await expect(page.locator("#results")).to_be_visible(timeout=120_000)
    for code, amount in paid.items():
        row = page.locator(f'#fund-rows tr[data-fund="{code}"]')
        await expect(row.locator('[data-figure="actual"]')).to_have_text(money(amount))
        await expect(row.locator('[data-figure="simulated"]')).to_have_text(money(amount))
        await expect(row.locator('[data-figure="change"]')).to_have_text("0.00")
    ratio = await page.locator("#ratio-actual").text_content()
    await expect(page.locator("#ratio-simulated")).to_have_text(ratio or "")
    assert await page.locator("#level-rows tr").count() >= 5
    assert await page.locator("#category-rows tr").count() == 5
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "simulation-in-force.png"), full_page=True)

    # a candidate that fails validation: the file, the field and the reason
    await page.select_option("#candidate", "340421-2026.yaml")
    await page.click("#run")
    await expect(page.locator("#error")).to_be_visible()
    await expect(page.locator("#error-details")).to_contain_text(
        "340421-2026.yaml: basic.inpatient.levels.county.ratio: Input should be less than or equal to 100")

    # an uploaded draft for next year, replayed on this year's claims: the basic fund pays more
    draft = tmp_path / "340421-2025.yaml"
    draft.write_text(RAISED, encoding="utf-8")
    await page.set_input_files("#upload-file", str(draft))
    await page.click("#upload-run")
    await expect(page.locator("#error")).to_be_hidden(timeout=120_000)
    # the error goes as the run starts; its result comes when the run is done (seconds under load)
    await expect(page.locator("#result-title")).to_contain_text("340421-2025", timeout=120_000)
    basic = page.locator('#fund-rows tr[data-fund="390100"]')
    await expect(basic.locator('[data-figure="actual"]')).to_have_text(money(paid["390100"]))
    simulated = Decimal((await basic.locator('[data-figure="simulated"]').text_content() or "0").replace(",", ""))
    assert simulated > paid["390100"]
    assert int(await page.locator("#pay-less").text_content() or "0") > 0
    assert "*" in (await page.locator("#change-rows tr td").first.text_content() or "")
    await page.screenshot(path=str(ARTIFACTS / "simulation-draft.png"), full_page=True)
    await page.close()


async def test_a_viewer_may_run_a_file_of_the_folder_but_not_upload(page_url, browser):
    page = await on_the_page(browser, page_url, "viewer", "viewer-dev")
    await expect(page.locator("#upload-bar")).to_be_hidden()
    status = await page.evaluate("""async () => (await fetch('/api/simulation/upload', {method: 'POST',
        headers: {'content-type': 'application/json'},
        body: JSON.stringify({filename: '340421-2025.yaml', content: 'x', region: '340421', year: 2024})})).status""")
    assert status == 403
    await page.goto(f"{page_url}/simulation")
    await page.select_option("#candidate", "340421-2024.yaml")
    await page.select_option("#claims-of", "340421/2024")
    await page.click("#run")
    await expect(page.locator("#results")).to_be_visible(timeout=120_000)
    await page.close()


async def test_the_page_and_its_api_need_a_login(page_url):
    import httpx

    async with httpx.AsyncClient(base_url=page_url) as client:
        assert (await client.get("/simulation")).status_code == 303
        assert (await client.get("/api/simulation/options")).status_code == 401
        assert (await client.post("/api/simulation/run", json={"file": "340421-2024.yaml"})).status_code == 401
