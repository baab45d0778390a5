"""How a service process runs, apart from what it does: its event loop and
its garbage collector, and its priority. Apart from the optional uvloop it imports only the
standard library, so that the bench's bare relays (deploy/bench_relay.py) run
exactly as the services do without loading the platform."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
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


def reprioritise(nice: int) -> None:
    """In a child the runner starts, before it runs the service (a
    ``preexec_fn``): ``nice`` added to its parent's nice. Positive (a batch
    stage) lowers its priority and needs no privilege; negative (the gateway,
    which a cashier waits on) raises it and needs CAP_SYS_NICE (root), without
    which it is left as it was. 0 changes nothing.

    With autogroup on (Linux's default on desktops and this kind of box) a
    process in a session of its own, as every service the runner starts, is
    scheduled as a group of its own, and a process's own nice only counts
    within its group: so the group's nice (``/proc/self/autogroup``) is the
    one that matters, set to ``nice`` itself (a new session's group starts at
    0); the process's is set too, for a machine without autogroup or a
    process in a cgroup of its own.
    """
    if nice == 0:
        return
    with contextlib.suppress(OSError):
        os.nice(nice)
    if os.getsid(0) == os.getpid():  # a session of its own: its autogroup is its own
        with contextlib.suppress(OSError), open("/proc/self/autogroup", "w") as group:
            group.write(str(max(-20, min(nice, 19))))


def priority_of(pid: int) -> dict[str, int | None]:
    """A process's nice and its autogroup's (``None`` without autogroup, or in
    the boot session's group, whose file reads empty): what
    ``reprioritise`` set, for a report to show."""
    group: int | None = None
    try:
        with open(f"/proc/{pid}/autogroup") as found:  # "/autogroup-123 nice -10"
            group = int(found.read().split()[-1])
    except (OSError, ValueError, IndexError):
        pass
    return {"nice": os.getpriority(os.PRIO_PROCESS, pid), "autogroup_nice": group}
