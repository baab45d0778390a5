"""The dashboard's pure parts: budget progress, ratios, masking, passwords,
reading other services' metrics, and talking to services that are down."""

from __future__ import annotations

import datetime as dt
import socket
from decimal import Decimal

import pytest

from deploy.dev_credentials import DEV_USERS, dev_users
from services.dashboard.auth import Users, hash_password, verify_password
from services.dashboard.figures import (
    BudgetLine,
    average,
    budget_lines,
    mask_identities_in,
    month_bounds,
    percent,
    share_of_year_gone,
)
from services.dashboard.upstream import Scrape, Upstream, _read_metrics


def test_share_of_the_year_gone_counts_days_of_a_leap_year():
    assert share_of_year_gone(dt.date(2024, 1, 1), 2024) == Decimal("0.27")  # 1 / 366
    assert share_of_year_gone(dt.date(2024, 7, 1), 2024) == Decimal("50.00")  # 183 / 366
    assert share_of_year_gone(dt.date(2024, 12, 31), 2024) == Decimal("100.00")
    assert share_of_year_gone(dt.date(2025, 3, 1), 2024) == Decimal(100)  # a past year is all gone
    assert share_of_year_gone(dt.date(2023, 3, 1), 2024) == Decimal(0)


def test_a_fund_is_flagged_when_its_spend_runs_ahead_of_the_year():
    elapsed = Decimal("50.00")
    line = lambda spent, budget="1000.00": BudgetLine("340421-2024", "390100", Decimal(budget) if budget else None,  # noqa: E731
                                                      Decimal(spent), elapsed)
    assert line("500.00").state == "ok"  # exactly on time
    assert line("500.01").spent_share == Decimal("50.00") and line("500.01").state == "ok"  # as shown: 50.00% of 50.00%
    assert line("500.10").state == "ahead"
    assert line("1000.01").state == "over"
    assert line("1.00", None).state == "no_budget" and line("1.00", None).spent_share is None
    shown = line("600.00").as_json()
    assert shown["warning"] and shown["spent_share"] == "60.00" and shown["state_text"].startswith("预警")


def test_budget_lines_list_the_four_funds_in_contract_order():
    lines = budget_lines("340421-2024", {"390100": Decimal(10)}, {"610100": Decimal(3)}, Decimal(0))
    assert [(l.fund_code, l.budget, l.spent) for l in lines] == [
        ("390100", Decimal(10), Decimal(0)), ("390200", None, Decimal(0)), ("610100", None, Decimal(3)),
        ("640100", None, Decimal(0))]


def test_ratios_and_averages_round_half_up_to_the_hundredth():
    assert percent(Decimal("1"), Decimal("3")) == Decimal("33.33")
    assert percent(Decimal("2"), Decimal("3")) == Decimal("66.67")
    assert percent(Decimal("1"), Decimal("8")) == Decimal("12.50")
    assert percent(Decimal("1"), Decimal("0")) is None
    assert average(Decimal("10.01"), 2) == Decimal("5.01")  # 5.005 → 5.01
    assert average(Decimal("1"), 0) is None


def test_months_of_clearing_end_where_the_next_begins():
    assert month_bounds(2024, 12) == (dt.date(2024, 12, 1), dt.date(2025, 1, 1))
    assert month_bounds(2024, 2) == (dt.date(2024, 2, 1), dt.date(2024, 3, 1))
    assert month_bounds(2024, None) == (dt.date(2024, 1, 1), dt.date(2025, 1, 1))
    with pytest.raises(ValueError):
        month_bounds(2024, 13)


def test_identity_numbers_in_free_text_are_masked():
    text = "person 34042119900101123X failed; claim H3404210001-2024-000123 fine; 340421199001011234."
    assert mask_identities_in(text) == (
        "person 340421********123X failed; claim H3404210001-2024-000123 fine; 340421********1234.")


def test_passwords_are_checked_against_scrypt_hashes():
    stored = hash_password("s3cret")
    assert stored.startswith("scrypt$") and "s3cret" not in stored
    assert verify_password("s3cret", stored)
    assert not verify_password("s3cret ", stored)
    assert not verify_password("s3cret", "pbkdf2$1$x$y$z$w")
    assert not verify_password("s3cret", "garbage")
    assert hash_password("same") != hash_password("same")  # salted


def test_users_have_roles_and_the_development_pair_exists_only_where_make_run_configures_it():
    users = Users({"li": {"password_hash": hash_password("pw"), "role": "operator"},
                   "wang": {"password_hash": hash_password("pw2"), "role": "viewer"}})
    assert not users.development
    assert users.authenticate("li", "pw").may_act
    assert not users.authenticate("wang", "pw2").may_act
    assert users.authenticate("li", "pw2") is None and users.authenticate("nobody", "pw") is None
    nobody = Users({})  # nothing configured: nobody signs in, the development pair included
    assert not nobody.development and nobody.names == []
    assert all(nobody.authenticate(name, password) is None for name, (password, _) in DEV_USERS.items())
    development = Users(dev_users(), development=True)  # what make run configures
    for name, (password, role) in DEV_USERS.items():
        assert development.authenticate(name, password).role == role
    with pytest.raises(ValueError, match="role"):
        Users({"x": {"password_hash": hash_password("pw"), "role": "admin"}})
    with pytest.raises(ValueError, match="password_hash"):
        Users({"x": {"password_hash": "plain", "role": "viewer"}})


METRICS = """# HELP settlement_consumer_lag lag
# TYPE settlement_consumer_lag gauge
settlement_consumer_lag{partition="0",service="basic",topic="settlement.eligible"} 3.0
settlement_consumer_lag{partition="1",service="basic",topic="settlement.eligible"} 4.0
settlement_consumer_lag{partition="0",service="eligibility",topic="his.claims"} 0.0
# HELP settlement_dead_letters_total dead letters
# TYPE settlement_dead_letters_total counter
settlement_dead_letters_total{service="eligibility"} 2.0
settlement_dead_letters_created{service="eligibility"} 1.7e+09
"""


def test_lag_and_dead_letters_are_read_from_a_service_metrics_page():
    scrape = Scrape()
    _read_metrics(METRICS, scrape)
    assert scrape.lag == {"basic": {"settlement.eligible": 7.0}, "eligibility": {"his.claims": 0.0}}
    assert scrape.dead_letters == {"eligibility": 2.0}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_services_that_are_down_are_reported_not_raised():
    down = f"http://127.0.0.1:{_closed_port()}"
    upstream = Upstream(eligibility_url=down, operations_url=down, metrics_urls={"basic": f"{down}/metrics"}, timeout=1)
    try:
        review = await upstream.review("C1", approve=True, reason=None, reviewer="li")
        replay = await upstream.replay("7", operator="li")
        letters = await upstream.dead_letters()
        scrape = await upstream.scrape()
    finally:
        await upstream.close()
    assert (review.ok, review.status) == (False, 503) and "eligibility" in review.error
    assert (replay.ok, replay.status) == (False, 503) and "operations" in replay.error
    assert not letters.ok
    assert scrape.unreachable == ["basic"] and scrape.lag == {}
