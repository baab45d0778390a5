"""Money is Decimal yuan, rounded to the fen (0.01), half up."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

FEN = Decimal("0.01")
ZERO = Decimal("0.00")
HUNDRED = Decimal(100)


def fen(amount: Decimal) -> Decimal:
    """Round to the fen, half up."""
    return amount.quantize(FEN, ROUND_HALF_UP)


def share(amount: Decimal, percent: Decimal) -> Decimal:
    """``amount × percent%``, rounded to the fen."""
    return (amount * percent / HUNDRED).quantize(FEN, ROUND_HALF_UP)  # ``fen``, without a second call


def yuan(amount: Decimal) -> str:
    """The contract's form of an amount: a decimal string with two decimals
    (``str`` of a Decimal with two decimals is its ``:.2f``, and quicker:
    every explanation writes a dozen amounts; ``fen`` inlined, a call fewer)."""
    return str(amount.quantize(FEN, ROUND_HALF_UP))


def pct(percent: Decimal) -> str:
    """A ratio as people write it: ``75%``, ``67.5%``."""
    return f"{percent.normalize():f}%"


def clamp(amount: Decimal, low: Decimal, high: Decimal) -> Decimal:
    return max(low, min(high, amount))
