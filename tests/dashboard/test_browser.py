"""The dashboard as an operator and a viewer see it, in headless Chromium
(Debian's package, driven by Playwright; no browser download)."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from tests.dashboard import dataset
from tests.dashboard.conftest import ARTIFACTS

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]


def _money(amount: str | Decimal) -> str:
    """As the page writes an amount: thousands separated, two decimals."""
    return f"{Decimal(amount):,.2f}"


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    assert shutil.which(CHROMIUM) or os.path.exists(CHROMIUM), \
        f"{CHROMIUM} is missing: apt-get install -y chromium (make test does: deploy/system-deps.sh)"
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        await browser.close()


async def logged_in(browser: Browser, url: str, user: str, password: str) -> Page:
    page = await browser.new_page(viewport={"width": 1500, "height": 2200}, locale="zh-CN")
    await page.goto(f"{url}/")
    await expect(page).to_have_url(f"{url}/login")
    await page.fill("#username", user)
    await page.fill("#password", password)
    await page.click("#login-submit")
    await expect(page).to_have_url(f"{url}/")
    await expect(page.locator("#who-name")).to_have_text(user)
    return page


async def test_operator_sees_the_figures_searches_a_claim_and_approves_a_review(dashboard_system, browser):
    expected = dashboard_system.expected()
    page = await logged_in(browser, dashboard_system.url, "operator", "operator-dev")
    await expect(page.locator("#who-role")).to_have_text("经办员")

    # the funds: ratio overall and by level, serious-illness bands, per hospital, the budget warning
    await expect(page.locator("#ratio-overall")).to_have_text(f"{expected.overall_ratio()}%")
    for level, figures in expected.by_level().items():
        row = page.locator(f'#level-rows tr[data-level="{level}"]')
        await expect(row.locator('[data-figure="claims"]')).to_have_text(str(figures["claims"]))
        await expect(row.locator('[data-figure="fund-total"]')).to_have_text(_money(figures["fund_total"]))
        await expect(row.locator('[data-figure="ratio"]')).to_have_text(f"{figures['ratio']}%")
    for index, (count, amount) in enumerate(expected.bands()):
        row = page.locator(f'#band-rows tr[data-band="{index}"]')
        await expect(row.locator('[data-figure="count"]')).to_have_text(str(count))
        await expect(row.locator('[data-figure="amount"]')).to_have_text(_money(amount))
    for code, figures in expected.by_hospital().items():
        row = page.locator(f'#hospital-rows tr[data-hospital="{code}"]')
        await expect(row.locator('[data-figure="claims"]')).to_have_text(str(figures["claims"]))
        await expect(row.locator('[data-figure="ratio"]')).to_have_text(f"{figures['ratio']}%")
    serious = page.locator('#budget-rows tr[data-policy="340421-2024"][data-fund="390200"]')
    await expect(serious.locator('[data-figure="spent"]')).to_have_text(
        _money(expected.spent[("340421-2024", "390200")]))
    await expect(serious.locator('[data-figure="state"]')).to_contain_text("预警")
    await expect(page.locator("canvas").first).to_be_visible()  # ECharts drew

    # the pipeline: reviews waiting, the dead letter counted while the operations service is down
    await expect(page.locator("#kpi-reviews")).not_to_have_text("—")
    await expect(page.locator("#dead-note")).to_contain_text("operations")

    # search a claim: its one-bill with each layer explained
    claim_id = dataset.SETTLED[1]["claim_id"]
    bill = dashboard_system.answers[claim_id][-1]
    await page.fill("#search-input", claim_id)
    await page.click("#search-button")
    await expect(page.locator("#search-status")).to_have_text("已结算")
    await expect(page.locator("#search-person")).to_have_text("340421********0002")
    layers = page.locator("#search-result .layer")
    await expect(layers).to_have_count(4)
    for layer in bill.layers:
        box = page.locator(f'#search-result .layer[data-layer="{layer.layer.value}"]')
        await expect(box.locator(".explanation")).to_have_text(layer.explanation)
        await expect(box).to_contain_text(_money(layer.amount))

    # approve the first injury claim: it goes on through the layers and settles
    review_id = dataset.INJURIES[0]["claim_id"]
    row = page.locator(f'#review-rows tr[data-claim-id="{review_id}"]')
    await row.locator("button.approve").click()
    await expect(page.locator("#toast")).to_contain_text("审核通过")
    answers = await dashboard_system.pipeline.hospital.answers(review_id, 2)
    assert [a.status for a in answers] == ["pending_review", "settled"]
    await expect(row).to_have_count(0, timeout=10_000)

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "dashboard-operator.png"), full_page=True)
    html = await page.content()
    for person_id in dataset.ALL_PERSON_IDS:
        assert person_id not in html
    await page.close()


async def test_viewer_sees_the_dashboard_but_is_refused_approving(dashboard_system, browser):
    page = await logged_in(browser, dashboard_system.url, "viewer", "viewer-dev")
    await expect(page.locator("#who-role")).to_have_text("只读")
    review_id = dataset.INJURIES[1]["claim_id"]
    row = page.locator(f'#review-rows tr[data-claim-id="{review_id}"]')
    await row.locator("button.approve").click()
    await expect(page.locator("#toast")).to_contain_text("无权操作")
    await expect(row).to_have_count(1)  # still waiting
    assert [a.status for a in dashboard_system.answers[review_id]] == ["pending_review"]
    await page.screenshot(path=str(ARTIFACTS / "dashboard-viewer.png"))
    await page.click("#logout")
    await expect(page).to_have_url(f"{dashboard_system.url}/login")
    await page.close()
