"""How a service process runs, apart from what it does: its event loop and
its garbage collector. Apart from the optional uvloop it imports only the
standard library, so that the bench's bare relays (deploy/bench_relay.py) run
exactly as the services do without loading the platform."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable


def tune_garbage_collector(threshold: int) -> None:
    """Run Python's cycle collector every ``threshold`` allocations instead of
    every 700, over the objects made after start-up only.

    What a stage allocates per claim (the document's dicts, lists, strings
    and Decimals, a few thousand objects) is freed by reference counting as
    soon as the batch is done; the collector is only for reference cycles,
    which are rare here. At Python's default it ran several times per claim
    and each older-generation pass walked everything the process ever kept
    (modules, pydantic schemas, the policy book): measured on a layer stage's
    batches, 40% of its CPU. ``gc.freeze`` moves what exists after start-up
    out of every later scan. 0 leaves Python's defaults.
    """
    if threshold <= 0:
        return
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(threshold, older, oldest)


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when it is installed (requirements.txt): the services spend much
    of their time in the event loop, asyncpg and aiokafka's sockets."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
