"""The hop-by-hop latency tool reads the claim in every topic's message and
subtracts the stamps of consecutive topics."""

import orjson

from deploy.hop_latency import FLOW, claim_id_of, hops
from medsettle import topics


def test_the_claim_is_found_in_a_claim_a_document_and_a_one_bill() -> None:
    assert claim_id_of(orjson.dumps({"type": "settle", "claim_id": "C1"})) == "C1"
    assert claim_id_of(orjson.dumps({"kind": "settle", "claim": {"claim_id": "C2"}})) == "C2"
    assert claim_id_of(orjson.dumps({"claim_id": "C3", "status": "settled"})) == "C3"
    assert claim_id_of(b"[1, 2]") is None


def test_each_hop_is_the_difference_of_consecutive_topics() -> None:
    stamps = {
        "C1": {topic: 1000 + 10 * n * n for n, topic in enumerate(FLOW)},
        "C2": {topics.CLAIMS: 5000, topics.ELIGIBLE: 5007},  # stopped after eligibility
        "other": {topics.CLAIMS: 1, topics.ELIGIBLE: 2},  # not one of ours
    }
    found = hops(stamps, ["C1", "C2"])
    assert found[topics.ELIGIBLE] == [10, 7]
    assert found[topics.BASIC] == [30]
    assert found[topics.SETTLEMENTS] == [110]
    assert list(found) == FLOW[1:]
