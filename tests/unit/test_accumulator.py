"""Adding a claim's delta to an accumulator, as every stage and the replay do."""

from __future__ import annotations

from decimal import Decimal

from medsettle.accumulator import Counters
from services.backstop.rules import BackstopAccumulator
from services.basic.rules import BasicAccumulator


def copied(state: Counters, delta: Counters, sign: int = 1) -> Counters:
    """The straightforward form: each field summed, then pydantic's copy."""
    changes: dict[str, object] = {}
    for name in type(state).model_fields:
        mine, theirs = getattr(state, name), getattr(delta, name)
        if isinstance(mine, dict):
            merged = dict(mine)
            for key, value in theirs.items():
                merged[key] = merged.get(key, Decimal(0)) + sign * value
            changes[name] = {k: v for k, v in merged.items() if v != 0}
        else:
            changes[name] = mine + sign * theirs
    return state.model_copy(update=changes)


def test_adding_a_delta_is_the_field_by_field_sum_and_a_valid_accumulator():
    state = BasicAccumulator(inpatient_paid=Decimal("10.00"), admissions={"county": Decimal(1)})
    deltas = [BasicAccumulator(inpatient_paid=Decimal("5.50"), admissions={"county": Decimal(1), "city": Decimal(1)}),
              BasicAccumulator(outpatient_paid=Decimal("3.00")), BasicAccumulator()]
    for delta in deltas:
        for sign in (1, -1):
            added = state.add(delta, sign)
            assert added == copied(state, delta, sign)
            assert added.model_dump() == copied(state, delta, sign).model_dump()
            assert BasicAccumulator.model_validate(added.model_dump()) == added
    assert state.add(state, -1) == copied(state, state, -1) == BasicAccumulator()
    backstop = BackstopAccumulator(burden=Decimal("2.00"), paid=Decimal("1.00"))
    assert backstop.add(backstop) == copied(backstop, backstop)
