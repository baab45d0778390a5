"""The service process's garbage collector: rare passes over what is new;
the priority the runner gives the gateway."""

import functools
import gc
import os
import subprocess
import sys
from pathlib import Path

import pytest

from medsettle.process import reprioritise, tune_garbage_collector


@pytest.fixture
def restored_gc():
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


def test_the_collector_runs_rarely_and_skips_what_exists_at_start(restored_gc):
    _, older, oldest = gc.get_threshold()
    kept = [object() for _ in range(10)]
    tune_garbage_collector(50_000)
    assert gc.get_threshold() == (50_000, older, oldest)
    assert gc.get_freeze_count() > len(kept)


def test_zero_leaves_the_defaults(restored_gc):
    gc.set_threshold(700, 10, 10)
    tune_garbage_collector(0)
    assert gc.get_threshold() == (700, 10, 10)
    assert gc.get_freeze_count() == 0


AUTOGROUP = Path("/proc/self/autogroup")
# A process in the boot session's group (autogroup_default, where a runner that
# never called setsid leaves its children: the CI's does) reads the file empty.
PRINT_PRIORITY = ("import os, pathlib; p = pathlib.Path('/proc/self/autogroup'); "
                  "group = p.read_text().split() if p.exists() else []; "
                  "print(os.nice(0), group[-1] if group else '-')")


def priority_of_child(nice: int, *, new_session: bool = True) -> tuple[int, str]:
    """The child's nice against ours, and its autogroup's nice."""
    output = subprocess.run([sys.executable, "-c", PRINT_PRIORITY], capture_output=True, text=True, check=True,
                            start_new_session=new_session, preexec_fn=functools.partial(reprioritise, nice)).stdout
    process, group = output.split()
    return int(process) - os.nice(0), group


def test_a_child_in_a_session_of_its_own_gets_the_lower_priority_and_its_autogroup_too():
    raised, group = priority_of_child(5)
    assert raised == 5
    if AUTOGROUP.exists():
        assert group == "5"


def test_a_higher_priority_where_the_runner_may_give_it_else_none():
    raised, group = priority_of_child(-3)
    if os.geteuid() == 0:  # CAP_SYS_NICE
        assert raised == -3
        if AUTOGROUP.exists():
            assert group == "-3"
    else:
        assert raised == 0


def test_zero_or_a_shared_session_leaves_the_caller_s_autogroup_alone():
    assert priority_of_child(0)[0] == 0
    if AUTOGROUP.exists():
        before = AUTOGROUP.read_text()
        raised, _ = priority_of_child(3, new_session=False)
        assert raised == 3
        assert AUTOGROUP.read_text() == before
