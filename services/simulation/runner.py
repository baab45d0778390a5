"""Runs a simulation: streams a region's year of recorded claims out of
PostgreSQL person by person and replays them in worker processes.

The main process holds one read-only transaction and cuts the year's persons
into ranges of person ids of about ``chunk`` claims each
(``repository.person_ranges``: one row per range leaves the database). Each
worker process joins the same snapshot, reads a range's claims with their
documents in person order (one index range scan), replays each person
(``replay.Replayer``) and returns a ``Tally`` of the range; the main process
merges them. At most two ranges per worker are in flight, so memory stays
bounded whatever the year's size.
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg

from medsettle.policy import Policy, PolicyBook
from medsettle.process import tune_garbage_collector
from services.simulation import repository as repo
from services.simulation.replay import FUND_CODES, Replayer
from services.simulation.report import Tally


class SimulationError(ValueError):
    """A simulation that cannot be run as asked; the message says why."""


@dataclass(frozen=True)
class Request:
    region: str
    year: int
    candidate: Policy
    budgets: dict[str, Decimal] = field(default_factory=dict)  # overrides of the candidate's
    change_threshold: Decimal = Decimal(100)
    largest: int = 10
    workers: int = 0  # 0: one per CPU
    chunk: int = 2000  # claims per range of persons a worker reads and replays at a time

    @property
    def live_policy_id(self) -> str:
        return f"{self.region}-{self.year}"


def check_candidate(candidate: Policy, region: str, year: int) -> None:
    """The claims are the region's of that year (the one-bills settled under
    policy ``region-year``); the candidate's year may differ (a draft for next
    year replayed on this year's claims), its region may not."""
    if candidate.region != region:
        raise SimulationError(
            f"candidate {candidate.policy} is a scheme of region {candidate.region}, not of region {region} "
            "whose claims were asked for")


def live_policy(policy_dir: Path, region: str, year: int) -> Policy | None:
    return PolicyBook(policy_dir).get(region, year)


def budgets_of(request: Request) -> dict[str, Decimal]:
    budgets = {code: amount for code, amount in request.candidate.budgets.items() if code in FUND_CODES}
    budgets.update(request.budgets)
    return budgets


# ----------------------------------------------------------- worker process

_worker: dict[str, Any] = {}


def _start_worker(database_url: str, snapshot: str, policy_id: str, candidate: Policy, live: Policy | None,
                  change_threshold: Decimal, largest: int) -> None:
    tune_garbage_collector(50000)  # as the services do (medsettle.process)
    loop = asyncio.new_event_loop()

    async def connect() -> asyncpg.Connection:
        connection = await asyncpg.connect(database_url)
        await repo.join_snapshot(connection, snapshot)
        return connection

    _worker.update(loop=loop, connection=loop.run_until_complete(connect()), policy_id=policy_id,
                   replayer=Replayer(candidate),
                   candidate=candidate, live=live, change_threshold=change_threshold, largest=largest)


def _replay_range(persons: tuple[str, str]) -> Tally:
    """A range's claims read and replayed with the cycle collector off: the
    range's documents all stay alive until its tally is made, and the
    collector's passes over them (every 50,000 allocations, the services'
    setting) found nothing to free (a range leaves no cycles: measured with
    ``gc.collect()`` after each). It runs as usual between ranges."""
    gc.disable()
    try:
        return _read_and_replay(persons)
    finally:
        gc.enable()


def _read_and_replay(persons: tuple[str, str]) -> Tally:
    w = _worker
    try:
        by_person = w["loop"].run_until_complete(repo.recorded_claims(w["connection"], w["policy_id"], *persons))
    except LookupError as exc:
        raise SimulationError(f"the record is incomplete: {exc}") from None
    return replay_persons(by_person, w["replayer"], w["candidate"], w["live"], w["change_threshold"], w["largest"])


def replay_persons(by_person: dict, replayer: Replayer, candidate: Policy, live: Policy | None,
                   change_threshold: Decimal, largest: int) -> Tally:
    tally = Tally(change_threshold=change_threshold, largest=largest)
    for person_id, claims in by_person.items():
        tally.add(replayer.person_year(person_id, claims), candidate, live)
    return tally


# ------------------------------------------------------------ main process

async def simulate(database_url: str, request: Request, *, policy_dir: Path) -> dict[str, Any]:
    """The report (``Tally.report``) of replaying ``request``."""
    check_candidate(request.candidate, request.region, request.year)
    live = live_policy(policy_dir, request.region, request.year)
    workers = request.workers or os.cpu_count() or 1
    total = Tally(change_threshold=request.change_threshold, largest=request.largest)
    connection = await asyncpg.connect(database_url)
    try:
        transaction, snapshot = await repo.begin_snapshot(connection)
        try:
            with ProcessPoolExecutor(
                max_workers=workers, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker,
                initargs=(database_url, snapshot, request.live_policy_id, request.candidate, live,
                          request.change_threshold, request.largest),
            ) as pool:
                loop = asyncio.get_running_loop()
                in_flight: set[asyncio.Future] = set()
                for persons in await repo.person_ranges(connection, request.live_policy_id, request.chunk):
                    if len(in_flight) >= 2 * workers:
                        done, in_flight = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                        for future in done:
                            total.merge(future.result())
                    in_flight.add(loop.run_in_executor(pool, _replay_range, persons))
                for tally in await asyncio.gather(*in_flight):
                    total.merge(tally)
        finally:
            await transaction.rollback()
    finally:
        await connection.close()
    report = total.report(region=request.region, year=request.year, candidate=request.candidate, live=live,
                          budgets=budgets_of(request))
    report["workers"] = workers
    return report
