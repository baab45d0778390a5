"""Stuck claims: a claim no stage has answered within ``STUCK_AFTER_SECONDS``
is driven again, from eligibility's own records.

The broker may lose messages (the embedded one loses all of them when it
restarts); PostgreSQL is the source of truth. Eligibility knows what it
accepted (``claims``) and reads what the stages answer on ``his.settlements``:
the settlement stage names the message it answers (``topics.ANSWER_TO``),
and ``answered`` turns that into an attempt of a claim settled, reversed or
failed, kept in eligibility's ``answers`` table. An accepted claim with no
settled or failed answer for its attempt, or a reversed one with no reversed
or failed answer, is stuck: its document (a cancel for a reversed claim) is
published again on ``settlement.eligible``. A claim is called stuck only
once the answers published before the check are recorded: the reader
records how far it has read each partition of ``his.settlements`` with the
answers (``answer_offsets``; where eligibility's group has committed further,
that counts: its lanes commit only what is recorded), and a round waits for
that to reach the topic's end offsets taken as it starts, or is skipped (a
reader behind, after a restart say, would make claims answered long ago
look stuck).

Every stage is idempotent, so driving a claim again is always safe: each
layer answers it with what it stored, and the settlement stage with the
one-bill it stored, or, for an attempt that failed, with the compensation
again, which is answered ``SETTLEMENT_FAILED`` once through. A failed claim is driven again only while
that answer has not come back, never once it has (CONTRACT §5).

No other service's tables are read: the stages may each run on a database
of their own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import orjson
import structlog
from aiokafka import ConsumerRecord
from pydantic import ValidationError

from medsettle import topics
from medsettle.contract import SettlementDocument
from medsettle.runtime import Outgoing, Service
from services.eligibility import answers
from services.eligibility import repository as repo

log = structlog.get_logger()

ANSWERS = {"settle": "settled", "cancel": "reversed", "undo": "failed"}
"""What an answer to each kind of message says of the claim's attempt (a trial's says nothing)."""

ANSWERS_POLL_SECONDS = 0.2
"""How often a re-drive round looks whether the answers it waits for are recorded."""


@dataclass(frozen=True)
class Answered:
    claim_id: str
    attempt: int
    answer: str  # settled, reversed or failed


def answered(headers: Iterable[Sequence[tuple[str, bytes]] | None]) -> list[Answered]:
    """What the answers with these headers say: for each one from the
    settlement stage, which attempt of which claim it settled, reversed or
    failed. An answer without the header (eligibility's own, say), or with
    one that is not a message id, says nothing."""
    found: list[Answered] = []
    for record_headers in headers:
        for key, value in record_headers or ():
            if key != topics.ANSWER_TO:
                continue
            kind, _, rest = value.decode("utf-8", "replace").partition(":")
            claim_id, _, attempt = rest.partition("#")
            if kind in ANSWERS and claim_id and (attempt == "" or attempt.isdigit()):
                found.append(Answered(claim_id, int(attempt or 0), ANSWERS[kind]))
    return found


def read_up_to(positions: Iterable[tuple[int, int]]) -> dict[int, int]:
    """How far records at these (partition, offset) take the reading of a
    topic: the next offset to handle, per partition."""
    read: dict[int, int] = {}
    for partition, offset in positions:
        read[partition] = max(read.get(partition, 0), offset + 1)
    return read


def read_so_far(recorded: Mapping[int, int], committed: Mapping[int, int]) -> dict[int, int]:
    """How far his.settlements is known read, per partition: as recorded with
    the answers, or as eligibility's group committed it, whichever is further
    (a lane commits only what is recorded). The commits cover a partition the
    recording does not: one no answer has come on since ``answer_offsets``
    began (migration 0006)."""
    return {p: max(recorded.get(p, 0), committed.get(p, 0)) for p in recorded.keys() | committed.keys()}


def unread(end: Mapping[int, int], read: Mapping[int, int]) -> dict[int, int]:
    """The partitions whose records up to ``end`` (their end offsets) are not
    all handled by ``read`` (how far each is read; a partition not in it is
    read up to 0), with how many are left. Empty: every record published
    before ``end`` was taken is handled. A partition read beyond its end (a
    broker that lost its log and started again from 0) is read."""
    return {p: offset - read.get(p, 0) for p, offset in sorted(end.items()) if read.get(p, 0) < offset}


def redrives(stuck: Sequence[repo.Stuck]) -> tuple[list[Outgoing], list[tuple[str, str]]]:
    """What driving these claims again publishes, and the claims whose stored
    document cannot be read (claim_id, why): one of those must not hold up
    every other stuck claim."""
    out: list[Outgoing] = []
    unreadable: list[tuple[str, str]] = []
    for claim in stuck:
        try:
            document = SettlementDocument.from_json(claim.document)
        except (ValidationError, orjson.JSONDecodeError) as exc:
            unreadable.append((claim.claim_id, str(exc)[:300]))
            continue
        if claim.status == "reversed":
            document = document.model_copy(update={"kind": "cancel"})
        out.append(answers.onward(document))
    return out, unreadable


class Redrive(Service):
    """The re-drive of a stage (its database, its publisher), and what it reads of the answers."""

    async def record_answers(self, records: Sequence[ConsumerRecord]) -> list[Outgoing]:
        """The batch's answers recorded, and how far it reads his.settlements;
        nothing to publish. Sent again, an answer is recorded once."""
        found = answered(record.headers for record in records)
        read = read_up_to((record.partition, record.offset) for record in records)
        async with self.db.acquire() as c:
            await repo.record_answers(c, [(a.claim_id, a.attempt, a.answer) for a in found], read)
        return []

    async def answers_recorded(self) -> bool:
        """Whether every answer published on his.settlements before now is
        recorded, waiting up to STUCK_AFTER_SECONDS for the reader to get
        there (whichever eligibility process reads each partition); until
        then no claim is known to be stuck."""
        if self.end_offsets is None:
            log.info("redrive_skipped", reason=f"the end offsets of {topics.SETTLEMENTS} cannot be asked")
            return False
        end = await self.end_offsets(topics.SETTLEMENTS)
        # asked once: a partition that gets answers while the round waits is recorded with them
        committed = await self.committed_offsets(topics.SETTLEMENTS) if self.committed_offsets else {}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.stuck_after_seconds
        while True:
            async with self.db.acquire() as c:
                left = unread(end, read_so_far(await repo.answer_offsets(c), committed))
            if not left:
                return True
            if loop.time() >= deadline:
                log.warning("redrive_skipped", reason=f"answers on {topics.SETTLEMENTS} not yet recorded",
                         records_unread=sum(left.values()), partitions=sorted(left))
                return False
            await asyncio.sleep(ANSWERS_POLL_SECONDS)

    async def redrive_stuck(self) -> int:
        """Drive again every claim accepted or reversed that no stage has
        answered, once the answers published before are recorded: a claim is
        judged as of then, so one answered while the round waited is not
        taken for stuck."""
        if self.publisher is None:
            return 0
        loop = asyncio.get_running_loop()
        started = loop.time()
        if not await self.answers_recorded():
            return 0
        waited = loop.time() - started
        async with self.db.acquire() as c:  # taken and marked at once: no other round sends them too
            stuck = await repo.take_stuck_claims(c, self.settings.stuck_after_seconds + waited)
        if not stuck:
            return 0
        outgoing, unreadable = redrives(stuck)
        for claim_id, error in unreadable:  # marked, so reported once per STUCK_AFTER_SECONDS
            log.error("stuck_claim_unreadable", claim_id=claim_id, error=error)
        # a send that fails leaves them marked: the round after STUCK_AFTER_SECONDS takes them again
        await self.publisher(outgoing)
        log.warning("stuck_claims_redriven", claims=len(stuck))
        return len(stuck)

    async def redrive_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.stuck_check_seconds)
            try:
                await self.redrive_stuck()
            except Exception as exc:  # noqa: BLE001 - try again at the next round
                log.warning("redrive_failed", error=repr(exc))
