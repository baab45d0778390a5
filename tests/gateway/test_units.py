"""The gateway's pure parts: signatures, keys, the answers kept, the national
names, reconciliation. No broker, no database."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import orjson
import pytest

from deploy.bench_http import server_timing
from medsettle.contract import FUNDS, FundDetail, Layer, LayerName, SettlementResult
from medsettle.hospital_keys import HospitalKeys, KeysError
from medsettle.settings import Settings
from services.gateway import repository as repo
from services.gateway.app import Delivered, Timing, answer_of
from services.gateway.models import NationalSettlement, ReconciliationRequest
from services.gateway.national import national
from services.gateway.reconciliation import BookedClaim, reconcile, settlement_day
from services.gateway.signing import refusal, sign_request, signed_headers, signed_text

KEYS = HospitalKeys({"H1": ("new", "old"), "H2": ("two",)})
NOW = 1_765_000_000.0


def test_the_signed_text_is_timestamp_method_path_and_body_on_their_own_lines():
    assert signed_text("1700000000", "post", "/v1/claims?wait=5", b'{"a":1}') == (
        b'1700000000\nPOST\n/v1/claims?wait=5\n{"a":1}')
    # a known vector, computed independently: printf '1700000000\nGET\n/v1/claims/X\n' | openssl sha256 -hmac k
    assert sign_request("k", "1700000000", "GET", "/v1/claims/X") == (
        "5fca5d30ac349fdb1e96e824a01504495fb854c71f022936e62912d058ce0cf4")


@pytest.mark.parametrize("skew", [-300, 0, 300])
def test_a_request_signed_with_any_of_the_hospitals_keys_within_300_seconds_passes(skew):
    for key in ("new", "old"):
        headers = signed_headers("H1", key, "POST", "/v1/claims", b"{}", now=NOW + skew)
        assert refusal(KEYS, "H1", headers["X-Timestamp"], headers["X-Signature"], "POST", "/v1/claims", b"{}",
                       NOW) is None


@pytest.mark.parametrize("case", ["stale", "future", "other key", "other body", "other path", "other method",
                                  "no key", "not digits", "missing", "upper case hex", "non-ascii"])
def test_a_request_not_signed_as_the_contract_says_is_refused(case):
    headers = signed_headers("H1", "new", "POST", "/v1/claims", b"{}", now=NOW)
    code, stamp, sent = "H1", headers["X-Timestamp"], headers["X-Signature"]
    method, path, body = "POST", "/v1/claims", b"{}"
    if case == "stale":
        stamp = str(int(NOW) - 301)
        sent = sign_request("new", stamp, method, path, body)
    elif case == "future":
        stamp = str(int(NOW) + 301)
        sent = sign_request("new", stamp, method, path, body)
    elif case == "other key":
        sent = sign_request("two", stamp, method, path, body)
    elif case == "other body":
        body = b'{"x": 1}'
    elif case == "other path":
        path = "/v1/claims?wait=30"
    elif case == "other method":
        method = "GET"
    elif case == "no key":
        code = "H9"
    elif case == "not digits":
        stamp = f"{NOW:.1f}"
    elif case == "missing":
        sent = None
    elif case == "upper case hex":
        sent = sent.upper()
    elif case == "non-ascii":
        sent = "签名"
    assert refusal(KEYS, code, stamp, sent, method, path, body, NOW) is not None


def test_keys_come_from_the_environment_and_a_keys_file_together(tmp_path, monkeypatch):
    keys_file = tmp_path / "keys.json"
    keys_file.write_text(json.dumps({"H1": ["rotated"], "H3": "three"}))
    monkeypatch.setenv("HOSPITAL_KEYS", json.dumps({"H1": "first", "H2": ["a", "b"]}))
    monkeypatch.setenv("HOSPITAL_KEYS_FILE", str(keys_file))
    keys = HospitalKeys.from_settings(Settings())
    assert (keys.keys_of("H1"), keys.keys_of("H2"), keys.keys_of("H3")) == (("first", "rotated"), ("a", "b"), ("three",))
    assert keys.signing_key("H1") == "first" and keys.signing_key("H9") is None
    assert "first" not in repr(keys)
    keys_file.write_text(json.dumps({"H1": []}))
    with pytest.raises(KeysError, match="H1"):
        HospitalKeys.from_settings(Settings())


def bill(status: str, *, claim_id: str = "C1", total: str = "100.00", fund: str = "60.00",
         at: str = "2024-03-10T23:30:00+08:00", code: str | None = None) -> bytes:
    body = {"claim_id": claim_id, "hospital_code": "H1", "status": status, "total": total, "fund_total": fund,
            "settled_at": at, "rejection": {"code": code, "message": "m"} if code else None}
    return orjson.dumps(body)


def kept(*bodies: bytes) -> repo.Answer:
    answers = [answer_of(b) for b in bodies]
    assert all(a is not None for a in answers)
    [only] = repo.latest_per_claim(answers)  # type: ignore[arg-type]
    return only


def test_a_trial_or_a_rejection_never_replaces_a_settled_or_reversed_answer():
    assert kept(bill("settled"), bill("trial"), bill("rejected", code="DUPLICATE_CLAIM")).status == "settled"
    reversed_ = kept(bill("settled"), bill("reversed", at="2024-03-12T09:00:00+08:00"), bill("trial"),
                     bill("settled"))
    assert reversed_.status == "reversed"
    # the reversal keeps the settlement's day, not its own
    assert reversed_.settled_on == dt.date(2024, 3, 10) and reversed_.total == Decimal("100.00")
    assert kept(bill("trial"), bill("rejected", code="UNKNOWN_PERSON")).status == "rejected"
    assert kept(bill("pending_review"), bill("rejected", code="REVIEW_REJECTED")).status == "rejected"
    assert kept(bill("pending_review"), bill("rejected", code="DUPLICATE_CLAIM")).status == "pending_review"
    assert kept(bill("trial"), bill("settled", total="90.00")).total == Decimal("90.00")


def test_a_settlement_is_on_its_day_in_china_standard_time():
    assert settlement_day(dt.datetime(2024, 3, 10, 16, 30, tzinfo=dt.UTC)) == dt.date(2024, 3, 11)
    assert answer_of(bill("settled", at="2024-03-10T15:59:59+00:00")).settled_on == dt.date(2024, 3, 10)  # type: ignore[union-attr]
    assert answer_of(bill("trial")).settled_on is None  # type: ignore[union-attr]
    assert answer_of(b"not json") is None and answer_of(b'{"claim_id": 1}') is None


def test_the_national_names_carry_every_amount_of_the_one_bill():
    result = SettlementResult(
        claim_id="C1", hospital_code="H1", person_id_masked="340421********1234", status="settled",
        policy="340421-2024", total=Decimal("10500"), self_pay=Decimal("500"), over_limit_self_pay=Decimal("0"),
        pre_self_pay=Decimal("200"), compliant=Decimal("9800"), deductible=Decimal("600"), basic=Decimal("6900"),
        serious_illness=Decimal("0"), assistance=Decimal("0"), backstop=Decimal("0"), fund_total=Decimal("6900"),
        personal=Decimal("3600"),
        fund_details=[FundDetail(fund_pay_type=f, name=n, amount=Decimal("6900") if layer == LayerName.BASIC else 0)
                      for f, n, layer in FUNDS],
        layers=[Layer(layer=LayerName.BASIC, amount=Decimal("6900"), explanation="起付线 600 元……")],
        settled_at=dt.datetime(2024, 3, 10, 10, tzinfo=dt.timezone(dt.timedelta(hours=8))),
    )
    answer = national(orjson.loads(result.to_json()))
    NationalSettlement.model_validate(answer)
    assert {k: answer[k] for k in ("setl_id", "medfee_sumamt", "fulamt_ownpay_amt", "overlmt_selfpay",
                                   "preselfpay_amt", "inscp_scp_amt", "act_pay_dedc", "hifp_pay", "hifmi_pay",
                                   "maf_pay", "hifob_pay", "fund_pay_sumamt", "psn_part_amt")} == {
        "setl_id": "C1", "medfee_sumamt": "10500.00", "fulamt_ownpay_amt": "500.00", "overlmt_selfpay": "0.00",
        "preselfpay_amt": "200.00", "inscp_scp_amt": "9800.00", "act_pay_dedc": "600.00", "hifp_pay": "6900.00",
        "hifmi_pay": "0.00", "maf_pay": "0.00", "hifob_pay": "0.00", "fund_pay_sumamt": "6900.00",
        "psn_part_amt": "3600.00"}
    assert answer["setldetail"][0] == {"fund_pay_type": "390100", "fund_payamt": "6900.00",
                                       "setl_proc_info": "起付线 600 元……"}
    assert [d["fund_pay_type"] for d in answer["setldetail"]] == ["390100", "390200", "610100", "640100"]


def books(**fields) -> ReconciliationRequest:  # noqa: ANN003
    return ReconciliationRequest.model_validate({"from": "2024-03-10", "to": "2024-03-10", **fields})


OURS = [BookedClaim("C1", "settled", Decimal("100.00"), Decimal("60.00")),
        BookedClaim("C2", "settled", Decimal("50.00"), Decimal("30.00")),
        BookedClaim("C3", "reversed", Decimal("40.00"), Decimal("20.00"))]


def test_reconciliation_by_totals_counts_only_the_claims_still_settled():
    answer = reconcile("H1", books(count=2, total="150.00", fund_total="90.00"), OURS)
    assert answer.balanced and (answer.ours.count, answer.ours.total, answer.ours.fund_total) == (
        2, Decimal("150.00"), Decimal("90.00"))
    assert not reconcile("H1", books(count=3, total="190.00", fund_total="110.00"), OURS).balanced
    assert reconcile("H1", books(count=2, total="150.00", fund_total="90.00"), OURS).only_ours == []


def test_reconciliation_claim_by_claim_lists_each_difference():
    theirs = [{"claim_id": "C1", "status": "settled", "total": "100.00", "fund_total": "66.00"},
              {"claim_id": "C3", "status": "settled", "total": "40.00", "fund_total": "20.00"},
              {"claim_id": "C9", "status": "settled", "total": "1.00", "fund_total": "1.00"}]
    answer = reconcile("H1", books(count=2, total="150.00", fund_total="90.00", claims=theirs), OURS)
    assert not answer.balanced
    assert (answer.only_ours, answer.only_theirs) == (["C2"], ["C9"])
    assert [(m.claim_id, m.field, m.ours, m.theirs) for m in answer.mismatched] == [
        ("C1", "fund_total", "60.00", "66.00"), ("C3", "status", "reversed", "settled")]
    body = answer.model_dump(mode="json", by_alias=True)
    assert body["from"] == "2024-03-10" and body["ours"]["total"] == "150.00"


def test_a_requests_server_timing_names_each_stage_and_the_bench_reads_it_back():
    timing = Timing()
    timing.mark("sign")
    timing.mark("produce")
    timing.answered(Delivered(b"{}", timing.last, 1.5))
    parts = server_timing(timing.header())
    assert list(parts) == ["sign", "produce", "answer", "read", "wake", "gateway"]
    assert parts["read"] == 1.5 and all(ms >= 0 for ms in parts.values())
    assert parts["gateway"] >= parts["sign"] + parts["produce"] + parts["answer"] + parts["wake"] - 0.05
    assert server_timing(None) == {} and server_timing("x;dur=oops, y;dur=2") == {"y": 2.0}
