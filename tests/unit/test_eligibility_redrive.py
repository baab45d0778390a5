"""The re-drive's pure parts (services/eligibility/redrive.py): what an
answer on his.settlements says of a claim, whether the answers published
before a round are all recorded, and what a stuck claim sends."""

from __future__ import annotations

import orjson

from medsettle import topics
from medsettle.contract import SettlementDocument
from services.eligibility.redrive import Answered, answered, read_so_far, read_up_to, redrives, unread
from services.eligibility.repository import Stuck
from tests.factories import document


def test_the_settlement_stages_answers_say_which_attempt_settled_reversed_or_failed_and_no_other_does():
    headers = [
        [(topics.ANSWER_TO, b"settle:H1-2024-000001")],
        [("x-other", b"1"), (topics.ANSWER_TO, b"cancel:H1-2024-000002#2")],
        [(topics.ANSWER_TO, b"undo:H1-2024-000003#1")],
        [(topics.ANSWER_TO, b"trial:H1-2024-000004")],  # a trial's answer says nothing of the claim
        None,  # eligibility's own answers (rejections, pending_review) carry no header
        [(topics.ANSWER_TO, b"settle:H1-2024-000005#x")],  # not a message id
        [(topics.ANSWER_TO, b"settle:")],
        [(topics.ANSWER_TO, b"\xff")],
    ]
    assert answered(headers) == [
        Answered("H1-2024-000001", 0, "settled"),
        Answered("H1-2024-000002", 2, "reversed"),
        Answered("H1-2024-000003", 1, "failed"),
    ]


def test_a_stuck_claim_sends_its_document_a_reversed_one_its_cancel_and_an_unreadable_one_nothing(reference_policy):
    settle = document(reference_policy, a="1000", claim_id="H1-2024-000011", person_id="340421199001011234")
    settle = settle.model_copy(update={"attempt": 1})
    cancel = document(reference_policy, a="1000", claim_id="H1-2024-000012", person_id="340421199001015678")
    out, unreadable = redrives([
        Stuck("H1-2024-000011", "340421199001011234", "accepted", settle.to_json(), 1),
        Stuck("H1-2024-000010", "340421199001011234", "accepted", orjson.dumps({"not": "a document"})),
        Stuck("H1-2024-000012", "340421199001015678", "reversed", cancel.to_json()),
    ])
    assert [(o.topic, o.key) for o in out] == [(topics.ELIGIBLE, b"340421199001011234"),
                                               (topics.ELIGIBLE, b"340421199001015678")]
    sent = [SettlementDocument.from_json(o.value) for o in out]
    assert [(d.kind, d.message_id) for d in sent] == [("settle", "settle:H1-2024-000011#1"),
                                                      ("cancel", "cancel:H1-2024-000012")]
    assert [claim_id for claim_id, _ in unreadable] == ["H1-2024-000010"]


def test_a_batch_reads_each_of_its_partitions_up_to_the_offset_after_its_last_record():
    assert read_up_to([(0, 7), (1, 3), (0, 9), (0, 8)]) == {0: 10, 1: 4}
    assert read_up_to([]) == {}


def test_the_answers_are_recorded_once_every_partition_is_read_up_to_the_end_offsets_taken_before():
    end = {0: 120, 1: 40, 2: 0, 3: 15}
    assert unread(end, {0: 120, 1: 40, 3: 15}) == {}  # an empty partition needs no row
    assert unread(end, {0: 130, 1: 41, 3: 15}) == {}  # answers published since the end was taken: still read
    assert unread(end, {0: 100, 1: 40, 3: 15}) == {0: 20}
    assert unread(end, {0: 120, 1: 40}) == {3: 15}  # a partition no reader has recorded yet is read up to 0
    assert unread(end, {}) == {0: 120, 1: 40, 3: 15}
    # a partition of another process, or one the reader of a restarted eligibility has not reached: not read
    assert unread({0: 5, 1: 5}, {0: 5, 1: 2}) == {1: 3}


def test_a_partition_the_group_has_committed_further_than_the_recording_counts_as_read_that_far():
    """After the upgrade that began ``answer_offsets``, a partition no answer has come on since has no row;
    the offsets eligibility's group committed (only once the answers before them were recorded) cover it."""
    end = {0: 120, 1: 40}
    assert unread(end, read_so_far({0: 120}, {0: 90, 1: 40})) == {}
    assert read_so_far({0: 120}, {0: 90, 1: 40}) == {0: 120, 1: 40}
    assert unread(end, read_so_far({0: 120}, {0: 90, 1: 30})) == {1: 10}  # committed short of the end: not read
    assert unread(end, read_so_far({0: 100}, {})) == {0: 20, 1: 40}  # nothing committed: the recording alone


def test_after_a_broker_that_lost_its_log_the_end_offsets_go_back_and_the_answers_count_as_read():
    assert unread({0: 3, 1: 0}, {0: 5000, 1: 4200}) == {}
