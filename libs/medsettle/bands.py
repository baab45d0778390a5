"""Ratio bands (分段报销), written once for every layer that pays by bands.

A band is ``(lower, upper, ratio)``: the part of an amount from ``lower`` up
to ``upper`` (``None``: no upper end) is paid at ``ratio`` percent. Basic
insurance's ratio bands (the part of an admission above the deductible, each
band some points above the level's ratio) and serious illness's bands (the
year's base above the threshold, each band its own ratio) are both made
here, and paid and explained by the same three functions. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal

from medsettle.money import HUNDRED, ZERO, clamp, fen, pct, yuan

Band = tuple[Decimal, Decimal | None, Decimal]
"""(lower, upper or ``None``, ratio in percent)."""


def raised(ratio: Decimal, points: Decimal) -> Decimal:
    """``ratio`` moved by ``points`` percentage points, kept within 0–100%."""
    return clamp(ratio + points, ZERO, HUNDRED)


def bands_above(ratio: Decimal, raises: Iterable[tuple[Decimal, Decimal]]) -> list[Band]:
    """``ratio`` from 0 on, and from each ``(above, points)`` on (ascending)
    ``ratio`` raised by its points instead: basic's ``ratio_bands``."""
    edges = [(ZERO, ZERO), *raises]
    return [(lower, edges[n + 1][0] if n + 1 < len(edges) else None, raised(ratio, points))
            for n, (lower, points) in enumerate(edges)]


def bands_upto(ratios: Iterable[tuple[Decimal | None, Decimal]], points: Decimal = ZERO) -> list[Band]:
    """Each band from where the one before it ended up to its ``upto``
    (``None``: no end), at its ratio raised by ``points``: serious illness's ``bands``."""
    bands: list[Band] = []
    lower = ZERO
    for upto, ratio in ratios:
        bands.append((lower, upto, raised(ratio, points)))
        lower = upto if upto is not None else lower
    return bands


def parts(bands: Sequence[Band], start: Decimal, end: Decimal) -> list[tuple[Decimal, Decimal]]:
    """``(part, ratio)``: the part of ``start``–``end`` in each band it reaches into, in order."""
    found = []
    for lower, upper, ratio in bands:
        low = max(start, lower)
        high = end if upper is None else min(end, upper)
        if high > low:
            found.append((high - low, ratio))
    return found


def banded(pieces: Iterable[tuple[Decimal, Decimal]]) -> Decimal:
    """What ``parts`` pay in all: each part at its ratio, the sum rounded to the fen once."""
    return fen(sum((part * ratio / HUNDRED for part, ratio in pieces), ZERO))


def shown(pieces: Iterable[tuple[Decimal, Decimal]]) -> str:
    """``parts`` as the explanations write them: ``50000.00 × 65% + 20950.00 × 75%``."""
    return " + ".join(f"{yuan(part)} × {pct(ratio)}" for part, ratio in pieces)
