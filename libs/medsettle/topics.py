"""The contract's topics (CONTRACT.md §2)."""

CLAIMS = "his.claims"
PERSONS = "registry.persons"
HOSPITALS = "registry.hospitals"
ELIGIBLE = "settlement.eligible"
BASIC = "settlement.basic"
SERIOUS_ILLNESS = "settlement.serious-illness"
ASSISTANCE = "settlement.assistance"
BACKSTOP = "settlement.backstop"
SETTLEMENTS = "his.settlements"
DLQ = "settlement.dlq"

ALL_TOPICS = [CLAIMS, PERSONS, HOSPITALS, ELIGIBLE, BASIC, SERIOUS_ILLNESS, ASSISTANCE, BACKSTOP, SETTLEMENTS, DLQ]

ANSWER_TO = "x-answer-to"
"""The header on the settlement stage's answers on his.settlements: the message id of the document answered
(``settle:``, ``cancel:``, ``undo:`` or ``trial:`` and the claim id, ``#attempt`` after a failure)."""
