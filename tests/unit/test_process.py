"""The service process's garbage collector: rare passes over what is new."""

import gc

import pytest

from medsettle.process import tune_garbage_collector


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
