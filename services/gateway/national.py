"""The one-bill under the national platform's field names (``?format=national``).

Each name of ``FIELDS`` is the national platform's for the field of our
``his.settlements`` message beside it (README "Hospital HTTP API" explains
each). Pure: a message in, a message out.
"""

from __future__ import annotations

from typing import Any

FIELDS: tuple[tuple[str, str], ...] = (
    ("setl_id", "claim_id"),
    ("fixmedins_code", "hospital_code"),
    ("psn_cert_no", "person_id_masked"),
    ("setl_stas", "status"),
    ("insu_plc", "policy"),
    ("setl_time", "settled_at"),
    ("medfee_sumamt", "total"),
    ("fulamt_ownpay_amt", "self_pay"),
    ("overlmt_selfpay", "over_limit_self_pay"),
    ("preselfpay_amt", "pre_self_pay"),
    ("inscp_scp_amt", "compliant"),
    ("act_pay_dedc", "deductible"),
    ("hifp_pay", "basic"),
    ("hifmi_pay", "serious_illness"),
    ("maf_pay", "assistance"),
    ("hifob_pay", "backstop"),
    ("fund_pay_sumamt", "fund_total"),
    ("psn_part_amt", "personal"),
    ("rejection", "rejection"),
)
"""(national name, our name), in the order they are written."""

FUND_LAYERS = {"390100": "basic", "390200": "serious_illness", "610100": "assistance", "640100": "backstop"}


def national(bill: dict[str, Any]) -> dict[str, Any]:
    """``bill`` (a ``his.settlements`` message as JSON) under the national names."""
    answer = {ours_national: bill.get(ours) for ours_national, ours in FIELDS}
    explanations = {layer.get("layer"): layer.get("explanation") for layer in bill.get("layers") or ()}
    answer["setldetail"] = [
        {
            "fund_pay_type": detail.get("fund_pay_type"),
            "fund_payamt": detail.get("amount"),
            "setl_proc_info": explanations.get(FUND_LAYERS.get(detail.get("fund_pay_type", "")), detail.get("name")),
        }
        for detail in bill.get("fund_details") or ()
    ]
    return answer
